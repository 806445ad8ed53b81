"""Short-horizon learning-rate search per (variant, config) with Optuna, before the real grid.

    python tune_scaling.py --grid smoke --lr-search --lr-trials 8        # -> <storage>/<name>_lr_search/
    python tune_scaling.py --grid smoke --lr-from ray_results/smoke_lr_search/best_lr.json

One Tuner per (variant, config): Ray's OptunaSearch cannot share a Tuner with the grid's
grid_search, and a separate Optuna study per pair keeps each pair's optimum its own. Each study
samples the connector `lr` log-uniformly; the backbone rate follows at the grid's fixed ratio
`lr_backbone / lr`, so the search is one-dimensional and the grid's fairness rules (same
optimizer and schedule for both variants) still hold, only the rate is tuned per pair.

The studies live in one sqlite file (`optuna.db`), so an interrupted search resumes: a pair whose
study already holds `--lr-trials` finished trials is not searched again, a partial one gets the
rest. `best_lr.json` is rewritten from the studies after every pair.
"""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

from search_spaces.errors import ConfigError
from search_spaces.metric_names import EVAL_LOSS
from search_spaces.trial import TrialConfig
from sweep.cluster import start_ray
from sweep.options import SweepOptions

BEST_FILE = "best_lr.json"
STUDY_DB = "optuna.db"
METRIC = EVAL_LOSS


def lr_trial(config: dict) -> None:
    """Tune trainable: the pair's base trial with `lr` from Optuna and the backbone rate tied to it."""
    from trainables.train import train_vlm  # torch + DeepSpeed: in the trial worker only

    trial = dict(config["trial"], lr=config["lr"], lr_backbone=config["lr"] * config["lr_backbone_ratio"])
    train_vlm({"trial": trial})


def search_targets(trials: list[TrialConfig], steps: int | None = None) -> dict[tuple[str, str], TrialConfig]:
    """Per (variant, config): its shortest grid trial, cut to `steps` (default: the grid's smallest
    step count), evaluated only at its end so every report carries the searched metric."""
    if steps is not None and steps <= 0:
        raise ConfigError(f"--lr-steps must be positive, got {steps}")
    horizon = steps or min(t.steps for t in trials)
    targets: dict[tuple[str, str], TrialConfig] = {}
    for t in sorted(trials, key=lambda t: t.steps):
        key = (t.variant, t.config)
        if key not in targets:
            # a standalone run: no WSD fork (its family does not exist in the search)
            wsd = {"wsd_phase": "", "fork_from": ""} if t.wsd_phase else {}
            targets[key] = t.replace(steps=horizon, milestones=(), checkpoint_every=0, tag="lrsearch", **wsd)
    return targets


def study_name(variant: str, config: str, steps: int) -> str:
    return f"{variant}_{config}_{steps}"


def _finished(study) -> list:
    import optuna

    return [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]


def best_entry(study, ratio: float) -> dict | None:
    done = _finished(study)
    if not done:
        return None
    best = min(done, key=lambda t: t.value)
    lr = best.params["lr"]
    return {"lr": lr, "lr_backbone": lr * ratio, "eval_loss": best.value, "n_trials": len(done)}


def search_pair(args: SweepOptions, base: TrialConfig, name: str, db, trainable, out_dir: Path, todo: int) -> int:
    """`todo` more Optuna trials of one (variant, config) study; the number that failed."""
    import optuna
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    ratio = base.lr_backbone / base.lr
    searcher = OptunaSearch(
        metric=METRIC, mode="min", study_name=name, storage=db,
        # seeded, and TPE after half the budget of random start-up trials
        sampler=optuna.samplers.TPESampler(seed=base.seed, n_startup_trials=max(2, args.lr_trials // 2)),
    )
    tuner = tune.Tuner(
        trainable,
        param_space={"trial": base.to_dict(), "lr_backbone_ratio": ratio,
                     "lr": tune.loguniform(args.lr_min, args.lr_max)},
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=todo,
                                    max_concurrent_trials=args.max_concurrent or None,
                                    trial_dirname_creator="lr_{0.trial_id}".format),
        run_config=tune.RunConfig(name=name, storage_path=str(out_dir), verbose=0,
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                                  failure_config=tune.FailureConfig(max_failures=args.max_failures)),
    )
    errors = [r for r in tuner.fit() if r.error is not None]
    for r in errors:
        print(f"lr trial {r.path} failed: {str(r.error).strip().splitlines()[-1]}", file=sys.stderr)
    return len(errors)


def run_lr_search(args: SweepOptions, trials: list[TrialConfig]) -> int:
    # Optuna and Ray: only when a search runs (this module's apply_lrs also serves --dry-run)
    import optuna

    from sweep.experiment import check_storage  # Ray, as sweep.launch
    from sweep.launch import make_trainable

    # the classic, quiet reporter; and no warning about the forced experiment snapshots that
    # num_to_keep=1 causes (short trials checkpoint often, keeping one is all a search needs)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    storage = check_storage(args.storage_path)
    if "://" in storage:
        raise ConfigError("--lr-search keeps its Optuna study in a sqlite file: give a local --storage-path")
    lo, hi = args.lr_min, args.lr_max  # SweepOptions checked 0 < lo < hi and lr_trials >= 1
    targets = search_targets(trials, args.lr_steps)
    out_dir = Path(storage, f"{args.name or args.grid}_lr_search")
    out_dir.mkdir(parents=True, exist_ok=True)
    db = optuna.storages.RDBStorage(f"sqlite:///{out_dir / STUDY_DB}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    studies = {key: optuna.create_study(study_name=study_name(*key, base.steps), storage=db,
                                        direction="minimize", load_if_exists=True)
               for key, base in targets.items()}
    trainable = None
    if any(len(_finished(s)) < args.lr_trials for s in studies.values()):  # else: nothing to run
        start_ray(args)
        trainable = make_trainable(args, use_gpu=_cluster_has_gpu(), fn=lr_trial)
    best_path = out_dir / BEST_FILE
    lrs = load_lrs(best_path)["lrs"] if best_path.exists() else {}
    failed = 0
    for (variant, config), base in targets.items():
        name = study_name(variant, config, base.steps)
        study = studies[(variant, config)]
        todo = args.lr_trials - len(_finished(study))
        ratio = base.lr_backbone / base.lr
        print(f"lr search {variant} {config}: {max(todo, 0)} of {args.lr_trials} trials at {base.steps} steps, "
              f"lr in [{lo:g}, {hi:g}], lr_backbone = {ratio:g} x lr", flush=True)
        if todo > 0:
            failed += search_pair(args, base, name, db, trainable, out_dir, todo)
        entry = best_entry(study, ratio)
        if entry is None:
            print(f"lr search {variant} {config}: no trial finished", file=sys.stderr)
            continue
        lrs.setdefault(variant, {})[config] = entry
        write_lrs(best_path, args.grid, base.steps, (lo, hi), lrs)
        print(f"  best lr {entry['lr']:.3g} (backbone {entry['lr_backbone']:.3g}): eval loss "
              f"{entry['eval_loss']:.4f} over {entry['n_trials']} trials", flush=True)
    print(f"best learning rates: {best_path}\nuse them: python tune_scaling.py --grid {args.grid} "
          f"--lr-from {best_path}", flush=True)
    return 1 if failed else 0


def _cluster_has_gpu() -> bool:
    import ray

    return bool(ray.cluster_resources().get("GPU", 0))


def write_lrs(path: Path, grid: str, steps: int, lr_range: tuple[float, float], lrs: dict) -> None:
    doc = {"grid": grid, "search_steps": steps, "lr_range": list(lr_range), "metric": METRIC, "lrs": lrs}
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True))
    os.replace(tmp, path)


def load_lrs(path) -> dict:
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"--lr-from: no such file {path}") from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"--lr-from: cannot read {path} as JSON ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("lrs"), dict):
        raise ConfigError(f"--lr-from: {path} is not a best_lr.json (no 'lrs' table)")
    return doc


def apply_lrs(trials: list[TrialConfig], path) -> list[TrialConfig]:
    """Each trial with its (variant, config)'s searched learning rates; a missing pair is an error."""
    lrs = load_lrs(path)["lrs"]
    out = []
    for t in trials:
        entry = lrs.get(t.variant, {}).get(t.config)
        if entry is None:
            raise ConfigError(f"--lr-from {path} has no learning rate for {t.variant} {t.config}; "
                              f"run --lr-search for it (--variants {t.variant} --configs {t.config})")
        lr, lr_bb = entry.get("lr"), entry.get("lr_backbone")
        if not all(isinstance(x, (int, float)) and math.isfinite(x) and x > 0 for x in (lr, lr_bb)):
            raise ConfigError(f"--lr-from {path}: bad learning rates for {t.variant} {t.config}: {entry}")
        out.append(t.replace(lr=float(lr), lr_backbone=float(lr_bb)))
    return out
