"""Launch or resume one study as a Ray Tune experiment (the driver behind tune_scaling.py).

Ray APIs from `ray.tune` only (ray.train.report / ray.air fail inside Tune). An existing
experiment directory is resumed with `Tuner.restore(..., resume_errored=True)` after checking
that it was launched with the same trials (Ray's restore silently ignores a changed grid).
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from search_spaces.grids import param_space
from search_spaces.sizes import ConfigError

MANIFEST = "study.json"  # the grid an experiment was launched with; a resume must match it


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
        raise ConfigError(f"storage path {path} is not writable ({e.strerror or e})") from None
    return str(path)


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
        raise ConfigError(f"--resume: no experiment at {exp_dir}")
    if exists:
        from ray.tune import Tuner

        if not Tuner.can_restore(exp_dir):
            raise ConfigError(f"{exp_dir} exists but is not a Ray Tune experiment; pick another --name")
        saved = json.loads(Path(exp_dir, MANIFEST).read_text()) if Path(exp_dir, MANIFEST).exists() else None
        if saved != manifest:
            what = f"grid {saved['grid']!r}" if saved else "an unknown grid"
            raise ConfigError(f"experiment {exp_dir} was launched with {what} and other trials; Ray cannot change "
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


