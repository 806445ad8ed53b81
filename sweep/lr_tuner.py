"""The learning-rate search's Ray part: one Tune grid over every (pair, rate, seed) run.

Kept apart from sweep/lr_search.py (runs, choice, table), which plans and scores without Ray.
An interrupted search is continued with `Tuner.restore` (finished runs are kept); progress is
one line per finished run.
"""
from __future__ import annotations

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

EXPERIMENT = "runs"  # the Tune experiment inside the search directory
DIRNAME = "{0.config[trial][variant]}_{0.config[trial][config]}_{0.config[trial][tag]}_s{0.config[trial][seed]}"


def run_record(cfg: TrialConfig, rows: list[dict], error: str | None) -> dict:
    """One search run's numbers at half its horizon and at its end (None where it has none)."""
    by_step = {r.get(M.STEP): r for r in rows if r.get(M.EVAL_LOSS) is not None}
    rec = {"variant": cfg.variant, "config": cfg.config, "lr": cfg.lr, "lr_backbone": cfg.lr_backbone,
           "seed": cfg.seed, "steps": cfg.steps, "status": "error" if error else "ok", "error": error}
    for where, step in (("half", cfg.milestones[0]), ("end", cfg.steps)):
        r = by_step.get(step, {})
        gap, se, shuffled = r.get(M.VISION_GAP), r.get(M.VISION_GAP_SE), r.get(M.EVAL_LOSS_SHUFFLED)
        rec[where] = {"step": step, "eval_loss": r.get(M.EVAL_LOSS), "eval_loss_se": r.get(M.EVAL_LOSS_SE),
                      "gap": gap, "gap_se": se, "sees": bool(r) and sees(gap, se, shuffled)}
    if rec["end"]["eval_loss"] is None and not error:
        rec.update(status="error", error="no evaluation at the horizon")
    return rec


class SearchProgress(tune.Callback):
    """'lr search 7/24: foveated T2-T2 lr 0.002 seed 1: eval loss 0.63, gap 1.81 ± 0.05 (sees)'."""

    def __init__(self, total: int):
        self.total, self.done = total, 0

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.done += 1
        t, m = trial.config["trial"], trial.last_result or {}
        gap, se = m.get("eval_vision_gap"), m.get("eval_vision_gap_se")
        seen = "sees" if sees(gap, se, m.get("eval_loss_shuffled_frames")) else "BLIND"
        numbers = (f"eval loss {m['eval_loss']:.4f}, gap {gap:.3g} ± {se:.2g} ({seen})"
                   if m.get("eval_loss") is not None and gap is not None else "no evaluation")
        print(f"lr search {self.done}/{self.total}: {t['variant']} {t['config']} lr {t['lr']:.3g} "
              f"seed {t['seed']}: {numbers}", flush=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.done += 1
        t = trial.config["trial"]
        print(f"lr search {self.done}/{self.total}: {t['variant']} {t['config']} lr {t['lr']:.3g} seed "
              f"{t['seed']}: FAILED ({trial.error_file or 'see its error.txt'})", file=sys.stderr, flush=True)


def run_search(args: SweepOptions, runs: list[TrialConfig], out_dir: Path) -> list[dict]:
    """Train every run (or the rest of them) and return lr_search.run_record of each."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    start_ray(args)
    trainable = make_trainable(args, use_gpu=bool(ray.cluster_resources().get("GPU", 0)))
    path = str(out_dir / EXPERIMENT)
    if tune.Tuner.can_restore(path):
        print(f"lr search: continuing {path} (finished runs are kept)", flush=True)
        tuner = tune.Tuner.restore(path, trainable, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space={"trial": tune.grid_search([r.to_dict() for r in runs])},
            tune_config=tune.TuneConfig(max_concurrent_trials=args.max_concurrent or None,
                                        trial_name_creator=DIRNAME.format, trial_dirname_creator=DIRNAME.format),
            run_config=tune.RunConfig(name=EXPERIMENT, storage_path=str(out_dir.resolve()), verbose=0,
                                      callbacks=[SearchProgress(len(runs))],
                                      checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                                      failure_config=tune.FailureConfig(max_failures=args.max_failures)),
        )
    records = []
    for result in tuner.fit():
        cfg = TrialConfig.from_dict(result.config["trial"])
        df = result.metrics_dataframe
        rows = df.to_dict("records") if df is not None else []
        error = str(result.error).strip().splitlines()[-1] if result.error is not None else None
        records.append(run_record(cfg, rows, error))
    order = {(r.variant, r.config, r.lr, r.seed): i for i, r in enumerate(runs)}
    return sorted(records, key=lambda r: order.get((r["variant"], r["config"], r["lr"], r["seed"]), len(order)))
