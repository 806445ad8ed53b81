"""Trials created after a restore write into the experiment directory where it is now.

Ray's search algorithms save the experiment's spec with their state, and that spec names the
storage the experiment was launched in. After `Tuner.restore` of a moved or copied experiment,
Ray moves the trials it restores (`TuneController._restore_trials`), but a trial created later
(a WSD cooldown the searcher queues, a grid trial not generated yet) would get the old storage:
it would be written beside the original directory, or into a directory that no longer exists.
`FollowingScheduler` is FIFO scheduling plus one step when a trial is added, before it starts:
a trial whose storage differs from the experiment's other trials gets theirs, the way Ray moves
a restored trial.

This module is pickled by value into tuner.pkl (sweep.launch.portable_pickles): it imports
only Ray and the standard library.
"""
from __future__ import annotations

import copy

from ray.tune.schedulers import FIFOScheduler


def location(storage) -> tuple:
    return storage.storage_fs_path, storage.experiment_dir_name, storage.storage_filesystem


def same_place(a, b) -> bool:
    return location(a)[:2] == location(b)[:2] and a.storage_filesystem is b.storage_filesystem


class FollowingScheduler(FIFOScheduler):
    def on_trial_add(self, tune_controller, trial) -> None:
        # the trials restored first carry the experiment's current location (and the driver's
        # storage filesystem, sweep/integrity.py); a fresh experiment's trials all agree anyway
        ref = next((t for t in tune_controller.get_trials() if t is not trial), None)
        if ref is not None and not same_place(trial.storage, ref.storage):
            moved = copy.copy(trial.storage)
            moved.storage_fs_path, moved.experiment_dir_name, moved.storage_filesystem = location(ref.storage)
            trial.set_storage(moved)
        super().on_trial_add(tune_controller, trial)
