"""The learning-rate search's Ray part: the runs still missing, as one Tune grid.

Kept apart from sweep/lr_search.py (which runs, their records, the choice, the table), which
plans and scores without Ray by reading the runs' own files. An interrupted set of runs is
continued with `Tuner.restore` (finished runs are kept); progress is one line per finished run.
"""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import ray
from ray import tune

from search_spaces import metric_names as M
from search_spaces.trial import TrialConfig
from search_spaces.vision_rule import sees
from sweep.cluster import start_ray
from sweep.launch import make_trainable
from sweep.options import SweepOptions

EXPERIMENT_PREFIX = "runs"  # the search's Tune experiments: runs-<digest of the runs each holds>
DIRNAME = "{0.config[trial][variant]}_{0.config[trial][config]}_{0.config[trial][tag]}_s{0.config[trial][seed]}"


class SearchProgress(tune.Callback):
    """'lr search 7/24: foveated T2-T2 lr 0.002 seed 1: eval loss 0.63, gap 1.81 ± 0.05 (sees)'."""

    def __init__(self, total: int):
        self.total, self.done = total, 0

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.done += 1
        t, m = trial.config["trial"], trial.last_result or {}
        gap, se = m.get(M.VISION_GAP), m.get(M.VISION_GAP_SE)
        seen = "sees" if sees(gap, se, m.get(M.EVAL_LOSS_SHUFFLED)) else "BLIND"
        numbers = (f"eval loss {m[M.EVAL_LOSS]:.4f}, gap {gap:.3g} ± {se:.2g} ({seen})"
                   if m.get(M.EVAL_LOSS) is not None and gap is not None else "no evaluation")
        print(f"lr search {self.done}/{self.total}: {t['variant']} {t['config']} lr {t['lr']:.3g} "
              f"seed {t['seed']}: {numbers}", flush=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.done += 1
        t = trial.config["trial"]
        print(f"lr search {self.done}/{self.total}: {t['variant']} {t['config']} lr {t['lr']:.3g} seed "
              f"{t['seed']}: FAILED ({trial.error_file or 'see its error.txt'})", file=sys.stderr, flush=True)


def train(args: SweepOptions, runs: list[TrialConfig], out_dir: Path) -> None:
    """Train `runs` as one Tune experiment in out_dir, named by what it holds: the same missing
    runs after an interruption continue the same experiment (finished runs kept)."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    start_ray(args)
    trainable = make_trainable(args, use_gpu=bool(ray.cluster_resources().get("GPU", 0)))
    digest = hashlib.sha1("\n".join(sorted(r.to_json() for r in runs)).encode()).hexdigest()[:8]
    name = f"{EXPERIMENT_PREFIX}{digest}"
    path = str(out_dir / name)
    if tune.Tuner.can_restore(path):
        print(f"lr search: continuing {path} (finished runs are kept)", flush=True)
        tuner = tune.Tuner.restore(path, trainable, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space={"trial": tune.grid_search([r.to_dict() for r in runs])},
            tune_config=tune.TuneConfig(max_concurrent_trials=args.max_concurrent or None,
                                        trial_name_creator=DIRNAME.format, trial_dirname_creator=DIRNAME.format),
            run_config=tune.RunConfig(name=name, storage_path=str(out_dir.resolve()), verbose=0,
                                      callbacks=[SearchProgress(len(runs))],
                                      checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                                      failure_config=tune.FailureConfig(max_failures=args.max_failures)),
        )
    tuner.fit()
