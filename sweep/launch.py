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

from search_spaces.errors import ConfigError

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


def param_space(trials) -> dict:
    """The Tune search space: a grid_search over whole trial dicts (the Ray way to express
    per-config values such as the planner's micro-batch)."""
    from ray import tune  # after run_sweep has set RAY_AIR_NEW_OUTPUT (read at Ray's import)

    return {"trial": tune.grid_search([t.to_dict() for t in trials])}


def longest_first(trials):
    """Start the most expensive trials first: with few slots the sweep ends sooner."""
    from trainables.flops import trial_flops_per_sample

    return sorted(trials, key=lambda t: -t.steps * t.global_batch * trial_flops_per_sample(t, t.sizes[0].vocab_size))


# A trial's directory (and display) name. Ray pickles its name creators into the experiment
# state, so they are str.format bound methods (builtins, pickled by value): the experiment
# stays readable by plain Ray without this project (tests/test_integrity.py). WSD experiments
# add the phase (sweep.wsd.DIRNAME, which the searcher also uses to find fork checkpoints).
COSINE_DIRNAME = "{0.config[trial][variant]}_{0.config[trial][config]}_{0.config[trial][steps]}_s{0.config[trial][seed]}_{0.trial_id}"


def portable_pickles() -> None:
    """Our callback and WSD searcher live in tuner.pkl / the experiment state: pickle their
    classes by value (the modules import only Ray and the standard library at run time), so
    Ray can unpickle the experiment without this project on sys.path."""
    import ray.cloudpickle

    import sweep.callbacks
    import sweep.integrity
    import sweep.wsd

    for module in (sweep.callbacks, sweep.integrity, sweep.wsd):
        ray.cloudpickle.register_pickle_by_value(module)


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
    return args.reuse_actors == "on" or (args.reuse_actors == "auto" and trial_gpus(args, use_gpu) == 0)


def make_trainable(args, use_gpu: bool, fn=None):
    """fn: the function trainable (default train_vlm; the LR search wraps it)."""
    from ray import tune

    from trainables.train import train_vlm

    cpus, gpus = args.cpus_per_trial, trial_gpus(args, use_gpu)  # plain floats in the closure

    def resources(config: dict) -> dict:
        res = {"cpu": cpus, "gpu": gpus}
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


def grid_of(saved: dict | None) -> dict | None:
    """The part of study.json a resume must match (not the integrity record)."""
    return None if saved is None else {"grid": saved.get("grid"), "trials": saved.get("trials")}


def grid_difference(saved: dict | None, manifest: dict) -> str:
    """What differs between a saved grid and this command's, in words (for the refusal)."""
    if saved is None:
        return "an unknown grid"
    parts = []
    if saved.get("grid") != manifest["grid"]:
        parts.append(f"grid {saved.get('grid')!r} (this command: {manifest['grid']!r})")
    old, new = saved.get("trials") or [], manifest["trials"]
    if len(old) != len(new):
        parts.append(f"{len(old)} trials (this command: {len(new)})")
    keys = sorted({k for t in old + new for k in t})
    fields = [k for k in keys if {repr(t.get(k)) for t in old} != {repr(t.get(k)) for t in new}]
    if fields:
        parts.append(f"other values of {', '.join(fields)}")
    elif old != new and len(old) == len(new):
        parts.append("the same values in other combinations")
    return "; ".join(parts) or "other trials"


def check_integrity(exp_dir: str, trust: bool) -> None:
    """Refuse to resume (unpickle) an experiment whose state files differ from study.json's record."""
    from sweep import integrity

    if trust:
        print(f"--trust-storage: accepting the experiment state in {exp_dir} as it is", flush=True)
        integrity.record(exp_dir)
        return
    found = integrity.problems(exp_dir)
    if found:
        more = f" (+{len(found) - 1} more)" if len(found) > 1 else ""
        raise ConfigError(f"experiment {exp_dir}: {found[0]}{more} since this tool recorded it in study.json; "
                          f"not resuming, a resume unpickles it. If everyone who can write there is trusted, "
                          f"rerun with --trust-storage")


def _finished(metrics: dict) -> bool:
    """A trial's last report is its final step. Not Ray's `done` flag alone: a restored
    experiment's state can hold a TERMINATED trial whose last saved result says done=False."""
    step, last = metrics.get("step"), metrics.get("trial_steps")
    return bool(metrics.get("done")) or (step is not None and last is not None and step >= last)


def resume_hint(args) -> str:
    """The command that continues this experiment (the user's own arguments plus --resume)."""
    import shlex

    argv = list(args.argv)
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
    if args.schedule == "wsd":  # one stable trial + cooldowns per (variant, config)
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
            if grid_of(saved) != manifest:
                raise ConfigError(f"{exp_dir} exists but is not a Ray Tune experiment; pick another --name")
            # our own launch, stopped (killed) before Ray saved any experiment state: nothing ran
            print(f"experiment {exp_dir} was stopped before it started: launching it", flush=True)
            exists, never_started = False, True
    if args.resume and not exists and not never_started:
        raise ConfigError(f"--resume: no experiment at {exp_dir}")
    if exists and grid_of(saved) != manifest:
        raise ConfigError(f"experiment {exp_dir} was launched with {grid_difference(saved, manifest)}; Ray cannot "
                          f"change a grid on resume: use a new --name")
    if exists:
        check_integrity(exp_dir, args.trust_storage)

    from sweep import integrity
    from sweep.callbacks import LiveScalingPlot, live_plot_target
    from sweep.cluster import start_ray, storage_warning, tensorboard_message
    from sweep.wsd import DIRNAME as wsd_dirname
    from sweep.wsd import wsd_search

    start_ray(args)  # probes --address first: an unreachable cluster is a one-line error
    if storage_warning(storage, args.address):
        print(storage_warning(storage, args.address), flush=True)
    use_gpu = bool(ray.cluster_resources().get("GPU", 0))
    local = "://" not in storage  # integrity records: local storage (a URI experiment is never resumed here)

    def record():
        if local:
            integrity.record(exp_dir)
    trainable = make_trainable(args, use_gpu)
    if exists:
        print(f"resuming experiment {exp_dir}: finished trials are kept, unfinished ones continue "
              f"from their last checkpoint", flush=True)
        # the RunConfig (callbacks included) comes back from tuner.pkl, and the live plot's
        # points from Tune's experiment checkpoint (LiveScalingPlot.get_state)
        tuner = tune.Tuner.restore(exp_dir, trainable, resume_errored=True)
        record()  # what the restore may have rewritten (verified just before)
    else:
        os.makedirs(exp_dir, exist_ok=True)
        Path(exp_dir, MANIFEST).write_text(json.dumps(manifest, indent=1))
        portable_pickles()
        dirname = wsd_dirname if families else COSINE_DIRNAME
        tuner = tune.Tuner(
            trainable,
            param_space={} if families else param_space(longest_first(trials)),
            tune_config=tune.TuneConfig(
                max_concurrent_trials=args.max_concurrent or None,
                trial_name_creator=dirname.format, trial_dirname_creator=dirname.format,
                reuse_actors=reuse_actors(args, use_gpu),
                **(wsd_search(families, exp_dir, dirname) if families else {}),
            ),
            run_config=tune.RunConfig(
                name=name, storage_path=storage, verbose=1, progress_reporter=progress_reporter(),
                callbacks=[LiveScalingPlot(live_plot_target(storage, name),
                                           min_interval_s=args.plot_interval, title=name,
                                           configs=list(dict.fromkeys(t.config for t in trials))),
                           *([integrity.Recorder(exp_dir)] if local else [])],
                # WSD keeps every checkpoint: a fork point's must outlive the wait for its cooldown
                checkpoint_config=tune.CheckpointConfig(num_to_keep=None if families else args.keep_checkpoints),
                failure_config=tune.FailureConfig(max_failures=args.max_failures),
            ),
        )
        record()  # tuner.pkl, as the Tuner just wrote it
    print(f"experiment {name}: {len(trials)} trials -> {exp_dir}", flush=True)
    print(f"live plot: {live_plot_target(storage, name)}\n{tensorboard_message(exp_dir)}", flush=True)
    try:
        results = tuner.fit()
    except KeyboardInterrupt:  # a second Ctrl-C: Ray skipped its last state snapshot
        print(resume_hint(args), file=sys.stderr, flush=True)
        return 130
    finally:
        record()  # the state Ray left on storage when the run ended or stopped
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


