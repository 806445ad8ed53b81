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


def trial_dirname(t: dict, trial_id: str) -> str:
    """A trial's directory (and display) name; sweep/wsd.py rebuilds fork checkpoint paths with it."""
    phase = f"_{t['wsd_phase']}" if t.get("wsd_phase") else ""
    return f"{t['variant']}_{t['config']}_{t['steps']}{phase}_{trial_id}"


def _trial_dirname(trial) -> str:
    return trial_dirname(trial.config["trial"], trial.trial_id)


def progress_reporter():
    from ray import tune

    return tune.CLIReporter(
        parameter_columns={"trial/variant": "variant", "trial/config": "config", "trial/steps": "steps"},
        metric_columns={"step": "step", "train_loss": "train loss", "eval_loss": "eval loss",
                        "samples_per_s": "samples/s", "flops": "FLOPs"},
        max_report_frequency=30,
    )


def trial_gpus(args, use_gpu: bool) -> float:
    return args.gpus_per_trial if args.gpus_per_trial is not None else (1.0 if use_gpu else 0.0)


def reuse_actors(args, use_gpu: bool) -> bool:
    """--reuse-actors auto: reuse worker processes for CPU trials, where a fresh process's imports
    (~2 s) are a large share of a short trial (benchmarks/ray_overhead.py); never for GPU trials,
    which run minutes to hours and where a fresh process guarantees the previous trial's CUDA
    memory and DeepSpeed state are gone."""
    mode = getattr(args, "reuse_actors", "auto")
    return mode == "on" or (mode == "auto" and trial_gpus(args, use_gpu) == 0)


def make_trainable(args, use_gpu: bool, fn=None):
    """fn: the function trainable (default train_vlm; the LR search wraps it)."""
    from ray import tune

    from trainables.train import train_vlm

    gpus = trial_gpus(args, use_gpu)

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

    return tune.with_resources(fn or train_vlm, resources)


def read_manifest(exp_dir: str) -> dict | None:
    path = Path(exp_dir, MANIFEST)
    if not path.exists():
        return None
    try:
        saved = json.loads(path.read_text())
    except (ValueError, OSError) as e:
        raise ConfigError(f"{path} is unreadable ({type(e).__name__}); pick another --name") from None
    try:  # fill in fields added to TrialConfig since the launch (with their defaults)
        from search_spaces.trial import TrialConfig

        trials = [TrialConfig.from_dict(t).to_dict() for t in saved["trials"]]
    except Exception:  # noqa: BLE001 - a removed or invalid field: compare as written
        return saved
    return {**saved, "trials": trials}


def _finished(metrics: dict) -> bool:
    """A trial's last report is its final step. Not Ray's `done` flag alone: a restored
    experiment's state can hold a TERMINATED trial whose last saved result says done=False."""
    step, last = metrics.get("step"), metrics.get("trial_steps")
    return bool(metrics.get("done")) or (step is not None and last is not None and step >= last)


def resume_hint(args) -> str:
    """The command that continues this experiment (the user's own arguments plus --resume)."""
    import shlex

    argv = list(getattr(args, "argv", None) or [])
    if "--resume" not in argv:
        argv.append("--resume")
    return f"interrupted: resume with: python tune_scaling.py {shlex.join(argv)}"


def run_sweep(args, trials) -> int:
    # the classic reporter: its columns can be chosen (the new engine prints every config key)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    import ray
    from ray import tune

    storage = check_storage(args.storage_path)
    name = args.name or args.grid
    exp_dir = os.path.join(storage, name)
    families = None
    if getattr(args, "schedule", "cosine") == "wsd":  # one stable trial + cooldowns per (variant, config)
        from search_spaces.wsd import wsd_families

        families = wsd_families(trials, args.cooldown_frac, args.cooldown_shape)
        trials = [t for f in families for t in f.trials()]
    manifest = {"grid": args.grid, "trials": [t.to_dict() for t in trials]}
    exists = "://" not in storage and os.path.isdir(exp_dir) and any(os.scandir(exp_dir))
    saved = read_manifest(exp_dir) if exists else None
    never_started = False
    if exists:
        from ray.tune import Tuner

        if not Tuner.can_restore(exp_dir):
            if saved != manifest:
                raise ConfigError(f"{exp_dir} exists but is not a Ray Tune experiment; pick another --name")
            # our own launch, stopped (killed) before Ray saved any experiment state: nothing ran
            print(f"experiment {exp_dir} was stopped before it started: launching it", flush=True)
            exists, never_started = False, True
    if args.resume and not exists and not never_started:
        raise ConfigError(f"--resume: no experiment at {exp_dir}")
    if exists and saved != manifest:
        what = f"grid {saved['grid']!r}" if saved else "an unknown grid"
        raise ConfigError(f"experiment {exp_dir} was launched with {what} and other trials; Ray cannot change "
                          f"a grid on resume: use a new --name")

    from sweep.callbacks import LiveScalingPlot, live_plot_target
    from sweep.cluster import start_ray, storage_warning, tensorboard_message
    from sweep.wsd import wsd_search

    start_ray(args)  # probes --address first: an unreachable cluster is a one-line error
    if storage_warning(storage, args.address):
        print(storage_warning(storage, args.address), flush=True)
    use_gpu = bool(ray.cluster_resources().get("GPU", 0))
    trainable = make_trainable(args, use_gpu)
    if exists:
        print(f"resuming experiment {exp_dir}: finished trials are kept, unfinished ones continue "
              f"from their last checkpoint", flush=True)
        # the RunConfig (callbacks included) comes back from tuner.pkl, and the live plot's
        # points from Tune's experiment checkpoint (LiveScalingPlot.get_state)
        tuner = tune.Tuner.restore(exp_dir, trainable, resume_errored=True)
    else:
        os.makedirs(exp_dir, exist_ok=True)
        Path(exp_dir, MANIFEST).write_text(json.dumps(manifest, indent=1))
        tuner = tune.Tuner(
            trainable,
            param_space={} if families else param_space(longest_first(trials)),
            tune_config=tune.TuneConfig(
                max_concurrent_trials=args.max_concurrent or None,
                trial_name_creator=_trial_dirname, trial_dirname_creator=_trial_dirname,
                reuse_actors=reuse_actors(args, use_gpu),
                **(wsd_search(families, exp_dir) if families else {}),
            ),
            run_config=tune.RunConfig(
                name=name, storage_path=storage, verbose=1, progress_reporter=progress_reporter(),
                callbacks=[LiveScalingPlot(live_plot_target(storage, name),
                                           min_interval_s=getattr(args, "plot_interval", 15.0), title=name,
                                           configs=list(dict.fromkeys(t.config for t in trials)))],
                # WSD keeps every checkpoint: a fork point's must outlive the wait for its cooldown
                checkpoint_config=tune.CheckpointConfig(num_to_keep=None if families else args.keep_checkpoints),
                failure_config=tune.FailureConfig(max_failures=args.max_failures),
            ),
        )
    print(f"experiment {name}: {len(trials)} trials -> {exp_dir}", flush=True)
    print(f"live plot: {live_plot_target(storage, name)}\n{tensorboard_message(exp_dir)}", flush=True)
    try:
        results = tuner.fit()
    except KeyboardInterrupt:  # a second Ctrl-C: Ray skipped its last state snapshot
        print(resume_hint(args), file=sys.stderr, flush=True)
        return 130
    if any(r.error is None and not _finished(r.metrics or {}) for r in results):
        # Ray's SIGINT handler stops the run gracefully; fit() returns with trials that never
        # reached their last step (Ray's clean-up calls them TERMINATED, so status does not tell)
        print(resume_hint(args), file=sys.stderr, flush=True)
        return 130
    errors = [r for r in results if r.error is not None]
    for r in errors:
        print(f"trial {r.path} failed: {str(r.error).strip().splitlines()[-1]}", file=sys.stderr)
    if not args.no_fit:
        from fitting import run_analysis

        run_analysis(exp_dir, n_bootstrap=args.bootstrap)
        print(f"analysis written to {os.path.join(exp_dir, 'analysis')}")
    return 1 if errors else 0


