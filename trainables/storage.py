"""Where a running trial's checkpoints live on the experiment's storage, as the trial sees it.

Two rules keep a resumed experiment consistent, whatever the driver's saved state says:

* A checkpoint on storage is never overwritten. Ray names a trial's checkpoints
  checkpoint_<index> from a counter it restores from the driver's experiment state; a driver
  killed after a checkpoint's upload but before its next state snapshot hands back an older
  counter, and the next checkpoint would land in (and overwrite) a directory that already holds
  a newer one, e.g. a WSD fork point. `skip_existing_checkpoints` moves the counter past every
  checkpoint_* directory already there.
* A WSD cooldown finds its fork checkpoint by step, in the stable trial's directory named
  relative to the experiment (`fork_from`): not by Ray's index, not by an absolute path, so the
  experiment directory can be moved or copied and resumed where it is.
"""
from __future__ import annotations

import os

from search_spaces.errors import ConfigError
from search_spaces.trial import TrialConfig
from trainables import checkpoint as ckpt


def trial_storage():
    """Ray's storage context of the running trial, or None outside Tune."""
    try:
        from ray.train._internal.session import get_session

        return get_session().storage
    except Exception:  # noqa: BLE001 - private Ray API: without it only Ray's own checkpoint is used
        return None


def trial_dir_and_fs() -> tuple:
    """(trial dir, pyarrow filesystem) of this trial's storage, or (None, None) outside Tune."""
    storage = trial_storage()
    return (storage.trial_fs_path, storage.storage_filesystem) if storage is not None else (None, None)


def checkpoint_indices(directory: str, filesystem) -> list[int]:
    """The indices of the checkpoint_* directories in `directory` (on `filesystem`)."""
    import pyarrow.fs

    try:
        infos = filesystem.get_file_info(pyarrow.fs.FileSelector(directory, allow_not_found=True))
    except OSError:
        return []
    return sorted(int(m.group(1)) for i in infos
                  if i.type == pyarrow.fs.FileType.Directory and (m := ckpt.CKPT_DIR.match(i.base_name)))


def skip_existing_checkpoints() -> None:
    """Make this trial's next checkpoint a new directory after every existing one (see above)."""
    storage = trial_storage()
    if storage is None:
        return
    existing = checkpoint_indices(storage.trial_fs_path, storage.storage_filesystem)
    if existing and storage.current_checkpoint_index < existing[-1]:
        storage.current_checkpoint_index = existing[-1]  # Ray adds 1 before it saves the next one


def stable_trial_dir(fork_from: str) -> str:
    """The stable trial's directory name in `fork_from`: a name relative to the experiment, or a
    path to the trial or to one of its checkpoints (experiments launched before relative names)."""
    path = fork_from.rstrip("/")
    if ckpt.CKPT_DIR.match(os.path.basename(path)):
        path = os.path.dirname(path)
    return os.path.basename(path)


def fork_candidates(cfg: TrialConfig) -> list:
    """The stable trial's checkpoints at this cooldown's fork step, newest directory first."""
    from ray import tune

    storage = trial_storage()
    if storage is None:  # outside Tune (tests): fork_from is a checkpoint directory
        return [tune.Checkpoint(cfg.fork_from)]
    fs = storage.storage_filesystem
    stable = f"{storage.experiment_fs_path}/{stable_trial_dir(cfg.fork_from)}"
    found = [tune.Checkpoint(f"{stable}/checkpoint_{i:06d}", filesystem=fs)
             for i in reversed(checkpoint_indices(stable, fs))]
    at_fork = [c for c in found if ckpt.checkpoint_step(c) == cfg.fork_step]
    if not at_fork:
        steps = sorted({ckpt.checkpoint_step(c) for c in found})
        raise ConfigError(f"{cfg.trial_name}: the stable trial {stable} has no checkpoint at its fork step "
                          f"{cfg.fork_step} (checkpoints at steps {steps or 'none'})")
    return at_fork


def load_fork(engine, cfg: TrialConfig, log=print) -> tuple[dict, str]:
    """(trainer state, path) of the newest loadable fork checkpoint; a damaged one falls back to
    an older copy at the same step, if any."""
    problems = []
    for c in fork_candidates(cfg):
        try:
            with c.as_directory() as d:
                return ckpt.load(d, engine, cfg, fork=True), c.path
        except ckpt.CheckpointCorrupt as e:
            problems.append(str(e))
            log(f"[{cfg.trial_name}] {e}; trying another fork checkpoint")
    raise ckpt.CheckpointCorrupt(f"{cfg.trial_name}: no loadable fork checkpoint: {'; '.join(problems)}")
