"""Launch or resume one study as a Ray Tune experiment (the driver behind tune_scaling.py).

    run_sweep(options, trials): experiment dir -> every refusal it can make (sweep/experiment.py)
    -> start Ray -> take the experiment's lock (sweep/lock.py) -> launch or resume, decided again
    -> build or restore the Tuner -> fit -> report failures -> the fitting step.

Ray APIs from `ray.tune` only (ray.train.report / ray.air fail inside Tune). An existing
experiment directory is resumed with `Tuner.restore(..., resume_errored=True)` after checking
that it was launched with the same trials (Ray's restore silently ignores a changed grid). Ray
writes and reads the experiment's local storage through sweep/integrity.py's filesystem.
"""
from __future__ import annotations

import os
import signal
import sys
from contextlib import nullcontext

import ray
import ray.cloudpickle
from ray import tune

import search_spaces.vision_rule
import sweep.callbacks
import sweep.integrity
import sweep.relocation
import sweep.vision_watch
import sweep.wsd
from search_spaces import metric_names as M
from search_spaces.errors import ConfigError
from search_spaces.trial import TrialConfig
from search_spaces.wsd import wsd_families
from sweep.callbacks import LiveScalingPlot, live_plot_target
from sweep.cluster import gpu_refusal, start_ray, storage_warning, tensorboard_message
from sweep.experiment import RESUME, announce, check_storage, decide, is_finished, resume_hint, write_manifest
from sweep.lock import DriverLock
from sweep.options import SweepOptions
from sweep.schedule import longest_first, wsd_search
from trainables.memory import estimate_memory

# A trial's directory (and display) name. Ray pickles its name creators into the experiment
# state, so they are str.format bound methods (builtins, pickled by value): the experiment
# stays readable by plain Ray without this project (tests/test_integrity.py). WSD experiments
# add the phase (sweep.wsd.DIRNAME, which the searcher also uses to find fork checkpoints).
COSINE_DIRNAME = "{0.config[trial][variant]}_{0.config[trial][config]}_{0.config[trial][steps]}_s{0.config[trial][seed]}_{0.trial_id}"


def param_space(trials) -> dict:
    """The Tune search space: a grid_search over whole trial dicts (the Ray way to express
    per-config values such as the planner's micro-batch)."""
    return {"trial": tune.grid_search([t.to_dict() for t in trials])}


def portable_pickles() -> None:
    """Our callbacks, scheduler and WSD searcher live in tuner.pkl / the experiment state: pickle
    their classes by value (the modules import only Ray, the standard library and the leaf vision
    rule, itself pickled by value), so Ray can unpickle the experiment without this project."""
    for module in (sweep.callbacks, sweep.relocation, sweep.vision_watch, search_spaces.vision_rule, sweep.wsd):
        ray.cloudpickle.register_pickle_by_value(module)


def progress_reporter():
    return tune.CLIReporter(
        parameter_columns={"trial/variant": "variant", "trial/config": "config", "trial/steps": "steps"},
        metric_columns={M.STEP: "step", M.TRAIN_LOSS: "train loss", M.EVAL_LOSS: "eval loss",
                        M.SAMPLES_PER_S: "samples/s", M.FLOPS: "FLOPs"},
        max_report_frequency=30,
    )


def trial_gpus(args: SweepOptions, use_gpu: bool) -> float:
    return args.gpus_per_trial if args.gpus_per_trial is not None else (1.0 if use_gpu else 0.0)


def reuse_actors(args: SweepOptions, use_gpu: bool) -> bool:
    """--reuse-actors auto: reuse worker processes for CPU trials, where a fresh process's imports
    (~2 s) are a large share of a short trial (benchmarks/ray_overhead.py); never for GPU trials,
    which run minutes to hours and where a fresh process guarantees the previous trial's CUDA
    memory and DeepSpeed state are gone."""
    return args.reuse_actors == "on" or (args.reuse_actors == "auto" and trial_gpus(args, use_gpu) == 0)


def make_trainable(args: SweepOptions, use_gpu: bool, fn=None):
    """fn: the function trainable (default train_vlm; the LR search wraps it)."""
    if fn is None:
        from trainables.train import train_vlm as fn  # torch + DeepSpeed: imported by a launch only

    cpus, gpus = args.cpus_per_trial, trial_gpus(args, use_gpu)  # plain floats in the closure

    def resources(config: dict) -> dict:
        res = {"cpu": cpus, "gpu": gpus}
        if config["trial"].get("offload"):
            # ZeRO-Offload keeps fp32 master weights + Adam moments in host RAM: tell Ray, so it
            # never co-schedules two 1.7B offload trials on one host's memory.
            cfg = TrialConfig.from_dict(config["trial"])
            res["memory"] = int(estimate_memory(cfg, cfg.sizes[0].vocab_size).host)
        return res

    return tune.with_resources(fn, resources)


def check_resources(args: SweepOptions, use_gpu: bool, trials) -> None:
    """A trial asking for more CPUs or GPUs than the whole cluster has would stay PENDING forever;
    real-size trials on a cluster without GPUs would take weeks."""
    have = ray.cluster_resources()
    if not have.get("GPU", 0) and gpu_refusal(trials, "the Ray cluster"):
        raise ConfigError(gpu_refusal(trials, "the Ray cluster"))
    for flag, want, key in (("--gpus-per-trial", trial_gpus(args, use_gpu), "GPU"),
                            ("--cpus-per-trial", args.cpus_per_trial, "CPU")):
        if want > have.get(key, 0):
            raise ConfigError(f"{flag} {want:g}: the Ray cluster has {have.get(key, 0):g} {key}(s) in all, so no "
                              f"trial could ever start")


def new_tuner(args: SweepOptions, trials, families, trainable, storage: str, filesystem, use_gpu: bool):
    """A fresh Tuner: cosine trials as one grid_search, WSD families through their searcher."""
    name = args.experiment_name
    dirname = sweep.wsd.DIRNAME if families else COSINE_DIRNAME
    return tune.Tuner(
        trainable,
        param_space={} if families else param_space(longest_first(trials)),
        tune_config=tune.TuneConfig(
            max_concurrent_trials=args.max_concurrent or None,
            trial_name_creator=dirname.format, trial_dirname_creator=dirname.format,
            reuse_actors=reuse_actors(args, use_gpu),
            scheduler=sweep.relocation.FollowingScheduler(),  # FIFO; a moved experiment's new trials follow it
            **(wsd_search(families, dirname) if families else {}),
        ),
        run_config=tune.RunConfig(
            name=name, storage_path=storage, storage_filesystem=filesystem, verbose=1,
            progress_reporter=progress_reporter(),
            callbacks=[LiveScalingPlot(live_plot_target(storage, name), min_interval_s=args.plot_interval, title=name,
                                       configs=list(dict.fromkeys(t.config for t in trials))),
                       sweep.vision_watch.BlindRunWatch(sweep.vision_watch.steps_per_run(t.to_dict() for t in trials))],
            # WSD keeps every checkpoint: a fork point's must outlive the wait for its cooldown
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None if families else args.keep_checkpoints),
            failure_config=tune.FailureConfig(max_failures=args.max_failures),
        ),
    )


def sigterm_as_sigint(signum, frame) -> None:
    """SIGTERM (kill, a batch scheduler, systemd) stops the run like Ctrl-C: Ray's SIGINT handler
    (installed by Tuner.fit) saves the state, and the resume command is printed."""
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt


def fit(tuner, args: SweepOptions):
    """tuner.fit(); None when the run was interrupted (the resume hint is printed)."""
    try:
        results = tuner.fit()
    except KeyboardInterrupt:  # a second Ctrl-C: Ray skipped its last state snapshot
        print(resume_hint(args), file=sys.stderr, flush=True)
        return None
    if any(r.error is None and not is_finished(r.metrics or {}) for r in results):
        # Ray's SIGINT handler stops the run gracefully; fit() returns with trials that never
        # reached their last step (Ray's clean-up calls them TERMINATED, so status does not tell)
        print(resume_hint(args), file=sys.stderr, flush=True)
        return None
    return results


def finish(args: SweepOptions, results, exp_dir: str) -> int:
    """Name the failed trials, run the fitting step; 1 if any trial (or the fitting) failed."""
    errors = [r for r in results if r.error is not None]
    for r in errors:
        print(f"trial {r.path} failed: {str(r.error).strip().splitlines()[-1]}", file=sys.stderr)
    print("\n".join(sweep.vision_watch.summary(results)), flush=True)
    if not args.no_fit:
        from fitting import FitError, run_analysis  # pandas / scipy / matplotlib: only after a sweep

        print(f"fitting the results ({args.bootstrap:,} bootstrap resamples) ...", flush=True)
        try:
            fits = run_analysis(exp_dir, n_bootstrap=args.bootstrap)
        except FitError as e:  # the trials' results stay; `python -m fitting` can rerun this step
            print(f"error: fitting step: {e}", file=sys.stderr)
            return 1
        for arm, v in (fits.get("vision") or {}).items():
            print(f"vision at the end: {arm} {v['n_seeing']} of {v['n_runs']} runs see"
                  + (f" (blind: {v['reason']})" if not v["uses_frames"] else ""))
        print(f"analysis written to {os.path.join(exp_dir, 'analysis')}")
    return 1 if errors else 0


def prepare(args: SweepOptions, trials: list[TrialConfig]):
    """(storage, experiment dir, WSD families or None, the experiment's trials, study.json's grid)."""
    storage = check_storage(args.storage_path)
    families = None
    if args.schedule == "wsd":  # one stable trial + cooldowns per (variant, config)
        families = wsd_families(trials, args.cooldown_frac, args.cooldown_shape)
        trials = [t for f in families for t in f.trials()]
    manifest = {"grid": args.grid, "trials": [t.to_dict() for t in trials]}
    return storage, os.path.join(storage, args.experiment_name), families, trials, manifest


def drop_old_recorder(tuner) -> None:
    """Experiments launched before the storage layer kept the record carry a `Recorder` callback
    in tuner.pkl that rewrites study.json's record from its own cache, over the storage layer's
    entries. Tune has no public way to change a restored RunConfig: its TunerInternal's is used."""
    run_config = tuner._local_tuner.get_run_config()
    run_config.callbacks = [c for c in run_config.callbacks or [] if type(c).__name__ != "Recorder"]


def open_tuner(args: SweepOptions, plan: str, trials, families, storage: str, exp_dir: str, manifest: dict):
    """Restore the experiment (Ray reads its state through the verifying filesystem), or launch it."""
    use_gpu = bool(ray.cluster_resources().get("GPU", 0))
    trainable = make_trainable(args, use_gpu)
    fs = sweep.integrity.verified_filesystem(exp_dir) if "://" not in storage else None
    if plan == RESUME:
        # the RunConfig (callbacks included) comes back from tuner.pkl, and the live plot's
        # points from Tune's experiment checkpoint (LiveScalingPlot.get_state)
        tuner = tune.Tuner.restore(exp_dir, trainable, resume_errored=True, storage_filesystem=fs)
        drop_old_recorder(tuner)
        return tuner
    write_manifest(exp_dir, manifest)
    portable_pickles()
    return new_tuner(args, trials, families, trainable, storage, fs, use_gpu)


def run_locked(args: SweepOptions, storage: str, exp_dir: str, families, trials, manifest: dict) -> int:
    """The sweep itself, while this driver holds the experiment's lock."""
    plan = decide(args, storage, exp_dir, manifest, locked=True)  # again, now that no other driver can change it
    announce(args, exp_dir, plan)
    tuner = open_tuner(args, plan, trials, families, storage, exp_dir, manifest)
    print(f"experiment {args.experiment_name}: {len(trials)} trials -> {exp_dir}", flush=True)
    print(f"live plot: {live_plot_target(storage, args.experiment_name)}\n{tensorboard_message(exp_dir)}", flush=True)
    results = fit(tuner, args)
    return 130 if results is None else finish(args, results, exp_dir)


def run_sweep(args: SweepOptions, trials: list[TrialConfig]) -> int:
    if not isinstance(args, SweepOptions):  # an argparse Namespace would skip every check of options.py
        raise TypeError(f"run_sweep takes SweepOptions, got {type(args).__name__}")
    # the classic reporter: its columns can be chosen (the new engine prints every config key)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    storage, exp_dir, families, trials, manifest = prepare(args, trials)
    decide(args, storage, exp_dir, manifest)  # every refusal it can make before Ray starts
    start_ray(args)  # probes --address first: an unreachable cluster is a one-line error
    previous = signal.signal(signal.SIGTERM, sigterm_as_sigint)  # after ray.init, which sets its own
    try:
        if storage_warning(storage, args.address):
            print(storage_warning(storage, args.address), flush=True)
        check_resources(args, bool(ray.cluster_resources().get("GPU", 0)), trials)
        lock = DriverLock(exp_dir) if "://" not in storage else nullcontext()
        with lock:  # a second driver on this experiment stops here (one line, exit 2)
            if getattr(lock, "stale", None):
                print(f"note: the previous driver of {exp_dir} ({lock.stale}) ended without releasing it: "
                      f"taking over", flush=True)
            return run_locked(args, storage, exp_dir, families, trials, manifest)
    except sweep.integrity.StateRefused as e:  # a state file failed its check as Ray read it
        raise ConfigError(str(e)) from None
    except KeyboardInterrupt:  # Ctrl-C (or SIGTERM) before Tune's own handler was in place
        print(resume_hint(args), file=sys.stderr, flush=True)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
