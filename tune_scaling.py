#!/usr/bin/env python
"""Run a scaling-law study of foveated vs baseline VLMs as one Ray Tune experiment.

    python tune_scaling.py --grid smoke              # offline CPU check, end to end
    python tune_scaling.py --grid phase4 --dry-run   # cost and memory plan, no Ray
    python tune_scaling.py --grid phase4             # the full study (GPU=1 per trial)

An existing experiment of the same name and grid is resumed (finished trials are kept,
unfinished ones continue from their last checkpoint); a different grid under that name is
refused. After the sweep the fitting step writes ray_results/<name>/analysis/.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from search_spaces.grids import GRIDS, expand, get_grid, param_space
from search_spaces.sizes import ConfigError

MANIFEST = "study.json"  # the grid an experiment was launched with; a resume must match it


class UsageError(ConfigError):
    pass


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", default="smoke", help="named grid (see --list-grids); default: smoke")
    p.add_argument("--list-grids", action="store_true", help="print the grids and exit")
    p.add_argument("--name", help="experiment name (default: the grid's name)")
    p.add_argument("--storage-path", default="ray_results", help="Ray storage path: a directory or s3:// / gs:// URI")
    p.add_argument("--resume", action="store_true", help="require an existing experiment and continue it")
    narrow = p.add_argument_group("narrow or change the grid")
    narrow.add_argument("--configs", help="comma-separated config ids, e.g. S-S,M-S")
    narrow.add_argument("--variants", help="comma-separated: foveated,baseline")
    narrow.add_argument("--steps", help="comma-separated step counts, e.g. 100,300")
    narrow.add_argument("--init", choices=("random", "pretrained"), help="backbone initialisation")
    narrow.add_argument("--dataset", help="'synthetic', a hub id, a save_to_disk directory or parquet files")
    narrow.add_argument("--image-column")
    narrow.add_argument("--frames-column")
    narrow.add_argument("--text-column")
    narrow.add_argument("--seed", type=int)
    plan = p.add_argument_group("planning")
    plan.add_argument("--dry-run", action="store_true", help="print the per-trial cost/memory plan; start nothing")
    plan.add_argument("--gpu-mem", type=float, default=24.0, help="GPU memory budget in GiB (default 24, an RTX 4090)")
    plan.add_argument("--gpu-name", default="RTX 4090", help="GPU for the GPU-hours estimate")
    plan.add_argument("--mfu", type=float, default=0.35, help="assumed model FLOPs utilisation for GPU-hours")
    plan.add_argument("--format", choices=("table", "json"), default="table")
    ray_ = p.add_argument_group("ray")
    ray_.add_argument("--address", help="join a Ray cluster: 'auto' or ray://host:10001")
    ray_.add_argument("--gpus-per-trial", type=float, help="default: 1 with CUDA, else 0")
    ray_.add_argument("--cpus-per-trial", type=float, default=1.0)
    ray_.add_argument("--max-concurrent", type=int, default=0, help="0: as many as resources allow")
    ray_.add_argument("--max-failures", type=int, default=2, help="retries of a failed trial from its last checkpoint")
    ray_.add_argument("--keep-checkpoints", type=int, default=2, help="checkpoints kept per trial")
    ray_.add_argument("--no-fit", action="store_true", help="skip the fitting step after the sweep")
    ray_.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples in the fitting step")
    return p.parse_args(argv)


def _csv(value: str | None, cast=str) -> list | None:
    if not value:
        return None
    try:
        return [cast(v.strip()) for v in value.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"cannot parse {value!r} as a comma-separated list") from None


def build_trials(args: argparse.Namespace):
    overrides = {k: v for k, v in {
        "init": args.init, "dataset": args.dataset, "image_column": args.image_column,
        "frames_column": args.frames_column, "text_column": args.text_column, "seed": args.seed,
    }.items() if v is not None}
    if args.gpu_mem <= 0:
        raise UsageError(f"--gpu-mem must be positive, got {args.gpu_mem}")
    return expand(args.grid, _csv(args.configs), _csv(args.variants), _csv(args.steps, int), overrides, args.gpu_mem)


def check_storage(storage: str) -> str:
    """Absolute local path (created) or a URI; unwritable -> one-line error before any trial."""
    if "://" in storage:
        return storage
    path = Path(storage).expanduser().resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as e:
        raise UsageError(f"storage path {path} is not writable ({e.strerror or e})") from None
    return str(path)


def dry_run(args, trials) -> int:
    from search_spaces.planner import dry_run_rows, dry_run_totals, format_table

    rows = dry_run_rows(trials, gpu_mem_gib=args.gpu_mem, gpu_name=args.gpu_name, mfu_assumption=args.mfu)
    totals = dry_run_totals(rows, args.gpu_mem, args.gpu_name)
    if args.format == "json":
        print(json.dumps({"grid": args.grid, "trials": rows, "totals": totals}, indent=2))
    else:
        print(format_table(rows, totals))
    return 0


def list_grids() -> int:
    for g in GRIDS.values():
        n = len(g.variants) * len(g.configs) * len(g.steps)
        print(f"{g.name:8s} {n:3d} trials  configs {','.join(g.configs)}  steps {','.join(map(str, g.steps))}  - {g.description}")
    return 0


def longest_first(trials):
    """Start the most expensive trials first: with few slots the sweep ends sooner."""
    from trainables.flops import trial_flops_per_sample

    return sorted(trials, key=lambda t: -t.steps * t.global_batch * trial_flops_per_sample(t, t.sizes[0].vocab_size))


def _trial_dirname(trial) -> str:
    t = trial.config["trial"]
    return f"{t['variant']}_{t['config']}_{t['steps']}_{trial.trial_id}"


def progress_reporter():
    from ray import tune

    return tune.CLIReporter(
        parameter_columns={"trial/variant": "variant", "trial/config": "config", "trial/steps": "steps"},
        metric_columns={"step": "step", "train_loss": "train loss", "eval_loss": "eval loss",
                        "samples_per_s": "samples/s", "flops": "FLOPs"},
        max_report_frequency=30,
    )


def make_trainable(args, use_gpu: bool):
    from ray import tune

    from trainables.train import train_vlm

    gpus = args.gpus_per_trial if args.gpus_per_trial is not None else (1.0 if use_gpu else 0.0)

    def resources(config: dict) -> dict:
        res = {"cpu": args.cpus_per_trial, "gpu": gpus}
        if config["trial"].get("offload"):
            from search_spaces.trial import TrialConfig
            from trainables.memory import estimate_memory

            # ZeRO-Offload keeps fp32 master weights + Adam moments in host RAM: tell Ray, so it
            # never co-schedules two 1.7B offload trials on one host's memory.
            cfg = TrialConfig.from_dict(config["trial"])
            res["memory"] = int(estimate_memory(cfg, cfg.sizes[0].vocab_size).host)
        return res

    return tune.with_resources(train_vlm, resources)


def run_sweep(args, trials) -> int:
    # the classic reporter: its columns can be chosen (the new engine prints every config key)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    import ray
    from ray import tune

    storage = check_storage(args.storage_path)
    name = args.name or args.grid
    exp_dir = os.path.join(storage, name)
    manifest = {"grid": args.grid, "trials": [t.to_dict() for t in trials]}
    exists = "://" not in storage and os.path.isdir(exp_dir) and any(os.scandir(exp_dir))
    if args.resume and not exists:
        raise UsageError(f"--resume: no experiment at {exp_dir}")
    if exists:
        from ray.tune import Tuner

        if not Tuner.can_restore(exp_dir):
            raise UsageError(f"{exp_dir} exists but is not a Ray Tune experiment; pick another --name")
        saved = json.loads(Path(exp_dir, MANIFEST).read_text()) if Path(exp_dir, MANIFEST).exists() else None
        if saved != manifest:
            what = f"grid {saved['grid']!r}" if saved else "an unknown grid"
            raise UsageError(f"experiment {exp_dir} was launched with {what} and other trials; Ray cannot change "
                             f"a grid on resume: use a new --name")

    ray.init(address=args.address, include_dashboard=False, log_to_driver=False,
             configure_logging=True, logging_level="WARNING")
    use_gpu = bool(ray.cluster_resources().get("GPU", 0))
    trainable = make_trainable(args, use_gpu)
    if exists:
        print(f"resuming experiment {exp_dir}: finished trials are kept, unfinished ones continue "
              f"from their last checkpoint", flush=True)
        tuner = tune.Tuner.restore(exp_dir, trainable, resume_errored=True)
    else:
        os.makedirs(exp_dir, exist_ok=True)
        Path(exp_dir, MANIFEST).write_text(json.dumps(manifest, indent=1))
        tuner = tune.Tuner(
            trainable,
            param_space=param_space(longest_first(trials)),
            tune_config=tune.TuneConfig(
                max_concurrent_trials=args.max_concurrent or None,
                trial_name_creator=_trial_dirname, trial_dirname_creator=_trial_dirname,
            ),
            run_config=tune.RunConfig(
                name=name, storage_path=storage, verbose=1, progress_reporter=progress_reporter(),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=args.keep_checkpoints),
                failure_config=tune.FailureConfig(max_failures=args.max_failures),
            ),
        )
    print(f"experiment {name}: {len(trials)} trials -> {exp_dir}", flush=True)
    results = tuner.fit()
    errors = [r for r in results if r.error is not None]
    for r in errors:
        print(f"trial {r.path} failed: {str(r.error).strip().splitlines()[-1]}", file=sys.stderr)
    if not args.no_fit:
        from fitting import run_analysis

        out = run_analysis(exp_dir, n_bootstrap=args.bootstrap)
        print(f"analysis written to {out['out_dir'] if isinstance(out, dict) and 'out_dir' in out else os.path.join(exp_dir, 'analysis')}")
    return 1 if errors else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.list_grids:
            return list_grids()
        get_grid(args.grid)
        trials = build_trials(args)
        if args.dry_run:
            return dry_run(args, trials)
        return run_sweep(args, trials)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
