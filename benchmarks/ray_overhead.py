"""What does running the study through Ray Tune cost over calling the trainable in a plain loop?

    python benchmarks/ray_overhead.py                       # smoke grid, T1-T1, both variants, 150 steps
    python benchmarks/ray_overhead.py --configs T1-T1,T2-T2 --steps 150 --concurrency 2

Both sides run the same trials through the same function (`trainables.train.train_vlm`, with
`ray.tune.report` / `get_checkpoint` shimmed in the plain loop) at the same concurrency and the
same torch thread count:

  plain  a spawn pool of `--concurrency` fresh processes (each imports torch/DeepSpeed once and
         takes trials off a shared queue, as Tune's scheduler hands them out);
  ray    ray.init (timed separately: Ray's start-up) + the product's Tuner set-up
         (sweep.launch: with_resources, the live-plot callback, checkpoints, experiment state),
         max_concurrent_trials = --concurrency, once with reuse_actors=True (one worker process
         per slot, like the pool; the product's default for CPU trials, `--reuse-actors auto`)
         and once with Tune's default (a fresh actor per trial: every trial pays the
         torch/DeepSpeed import again; the product's choice for GPU trials).

The synthetic data set is built before any timing. Prints a table; target: ray/plain <= 1.05
(fit time, excluding Ray's start-up). "outside trainable" = wall time minus the time spent inside
the trainable function: Ray's own per-trial cost, and the number least disturbed by other load
on a shared machine. Asserts nothing.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--grid", default="smoke")
    p.add_argument("--configs", default="T1-T1", help="comma-separated; default T1-T1")
    p.add_argument("--variants", default=None, help="default: both")
    p.add_argument("--steps", default="150", help="comma-separated step counts; default 150")
    p.add_argument("--concurrency", type=int, default=1,
                   help="trials at once on both sides (default 1: fair on a shared 2-core box)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per trial (Ray: OMP_NUM_THREADS = CPUs)")
    p.add_argument("--no-plot", action="store_true", help="Ray side without the live-plot callback")
    p.add_argument("--repeat", type=int, default=2, help="rounds, alternating the order of the modes (default 2)")
    p.add_argument("--modes", default="plain,ray-reuse,ray",
                   help="which to run, in this order (default: plain,ray-reuse,ray)")
    return p.parse_args(argv)


def trial_dicts(a) -> list[dict]:
    from search_spaces.grids import expand

    def csv(s, f=str):
        return [f(x) for x in s.split(",")] if s else None

    return [t.to_dict() for t in expand(a.grid, csv(a.configs), csv(a.variants), csv(a.steps, int))]


# -- the trainable both sides run ------------------------------------------------------------
def timed_trial(config: dict) -> None:
    """train_vlm at a fixed torch thread count (Ray would set it from the trial's CPUs anyway)."""
    import torch

    from trainables.train import train_vlm

    torch.set_num_threads(int(config.get("threads", 1)))
    train_vlm({"trial": config["trial"]})


# -- plain side --------------------------------------------------------------------------
_REPORTS: list = []


def _plain_init(barrier) -> None:
    """Pool worker start-up = a Ray worker's state when ray.init has prestarted it: an interpreter
    with ray imported. torch / DeepSpeed are imported inside the timed trial on both sides."""
    import ray.tune

    # the shim for Tune's session API: reports are counted, there is never a checkpoint to resume
    ray.tune.report = lambda metrics, checkpoint=None: _REPORTS.append(dict(metrics))
    ray.tune.get_checkpoint = lambda: None
    barrier.wait()


def _plain_run(config: dict) -> tuple[int, float]:
    _REPORTS.clear()
    t0 = time.perf_counter()
    timed_trial(config)
    return len(_REPORTS), time.perf_counter() - t0


def run_plain(trials: list[dict], a) -> dict:
    ctx = mp.get_context("spawn")  # fresh interpreters, like Ray's workers (no forked torch state)
    barrier = ctx.Barrier(a.concurrency + 1)
    with ctx.Pool(a.concurrency, initializer=_plain_init, initargs=(barrier,)) as pool:
        barrier.wait()  # every worker is up (Ray's equivalent is inside ray.init, timed apart)
        t0 = time.perf_counter()
        out = list(pool.imap_unordered(_plain_run, [{"trial": t, "threads": a.threads} for t in trials]))
        wall = time.perf_counter() - t0
    return {"wall_s": wall, "reports": sum(n for n, _ in out), "trial_s": sum(s for _, s in out)}


# -- Ray side ----------------------------------------------------------------------------
def run_ray(trials: list[dict], a, reuse: bool, storage: str) -> dict:
    from ray import tune

    from sweep.callbacks import LiveScalingPlot, live_plot_target
    from sweep.launch import make_trainable
    from sweep.options import SweepOptions

    name = f"overhead_{'reuse' if reuse else 'fresh'}_{int(time.time())}"
    args = SweepOptions(gpus_per_trial=0.0, cpus_per_trial=1.0)
    trainable = make_trainable(args, use_gpu=False, fn=timed_trial)
    tuner = tune.Tuner(
        trainable,
        param_space={"trial": tune.grid_search(trials), "threads": a.threads},
        tune_config=tune.TuneConfig(max_concurrent_trials=a.concurrency, reuse_actors=reuse),
        run_config=tune.RunConfig(
            name=name, storage_path=storage, verbose=0,
            callbacks=[] if a.no_plot else [LiveScalingPlot(live_plot_target(storage, name), min_interval_s=15.0)],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            failure_config=tune.FailureConfig(max_failures=0),
        ),
    )
    t0 = time.perf_counter()
    results = tuner.fit()
    wall = time.perf_counter() - t0
    errors = [r.error for r in results if r.error is not None]
    if errors:
        raise RuntimeError(f"Ray trial failed: {errors[0]}")
    reports = sum(len(r.metrics_dataframe) for r in results)
    # time_total_s: Tune's clock inside the trainable, the counterpart of the plain side's trial_s
    return {"wall_s": wall, "reports": reports, "trial_s": sum(r.metrics["time_total_s"] for r in results)}


def warm_data(trials: list[dict]) -> None:
    """Build (or load) every synthetic data set once, so neither side times its generation."""
    from search_spaces.trial import TrialConfig
    from trainables.data.bundle import load_data

    for t in trials:
        load_data(TrialConfig.from_dict(t))


def main(argv=None) -> int:
    import statistics

    a = parse_args(argv)
    trials = trial_dicts(a)
    modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    bad = set(modes) - {"plain", "ray", "ray-reuse"}
    if bad:
        raise SystemExit(f"unknown mode(s) {sorted(bad)}: choose from plain, ray, ray-reuse")
    print(f"{len(trials)} trials ({a.grid}: configs {a.configs}, steps {a.steps}), concurrency {a.concurrency}, "
          f"{a.threads} torch thread(s) per trial, {os.cpu_count()} CPUs visible, load {os.getloadavg()[0]:.1f}, "
          f"{a.repeat} round(s)", flush=True)
    warm_data(trials)
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    storage = tempfile.mkdtemp(prefix="ray-overhead-")
    ray_init_s = None
    if any(m.startswith("ray") for m in modes):
        import ray

        t0 = time.perf_counter()
        ray.init(num_cpus=a.concurrency, include_dashboard=False, log_to_driver=False,
                 configure_logging=True, logging_level="WARNING")
        ray_init_s = time.perf_counter() - t0
    try:
        for rnd in range(a.repeat):
            # alternate the order: a machine shared with other work drifts, and drift must not
            # always favour the same side
            for mode in modes if rnd % 2 == 0 else modes[::-1]:
                r = run_plain(trials, a) if mode == "plain" else run_ray(trials, a, mode == "ray-reuse", storage)
                runs[mode].append(r)
                print(f"  round {rnd + 1} {mode}: {r['wall_s']:.1f} s wall, {r['trial_s']:.1f} s in the trainable, "
                      f"{r['reports']} reports", flush=True)
    finally:
        if ray_init_s is not None:
            import ray

            ray.shutdown()
    med = {m: statistics.median(r["wall_s"] for r in rs) for m, rs in runs.items()}
    base = med.get("plain")
    # min over rounds: the least-disturbed run of each side (other work only ever adds time)
    best = {m: min(r["wall_s"] for r in rs) for m, rs in runs.items()}
    print("\n| mode | median wall s | min wall s | outside trainable s | median vs plain | min vs plain "
          "| median incl. ray.init |")
    print("|---|---|---|---|---|---|---|")
    for mode, rs in runs.items():
        outside = statistics.median(r["wall_s"] - r["trial_s"] / a.concurrency for r in rs)
        ratio = f"{med[mode] / base:.3f}x" if base else "-"
        ratio_min = f"{best[mode] / best['plain']:.3f}x" if base else "-"
        with_init = f"{(med[mode] + ray_init_s) / base:.3f}x" if base and mode != "plain" else "-"
        print(f"| {mode} | {med[mode]:.1f} | {best[mode]:.1f} | {outside:.1f} | {ratio} | {ratio_min} | {with_init} |")
    if ray_init_s is not None:
        print(f"\nRay start-up (ray.init, num_cpus={a.concurrency}): {ray_init_s:.1f} s (once, before all rounds)")
    print(f"Ray storage used: {storage}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
