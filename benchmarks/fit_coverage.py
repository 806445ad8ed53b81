"""Coverage of the block bootstrap on checkpoint curves with AR(1) noise (prints; asserts nothing).

    python benchmarks/fit_coverage.py [--curves 50] [--points 80] [--rho 0.7] [--bootstrap 300]

Each curve: one run, L(D) = E + B D^-beta at `points` log-spaced D, times exp(AR(1) noise) with
lag-1 correlation rho and stationary sd `--sigma`. Each is fitted the way `python -m fitting csv
--d D --loss loss --run run` fits it (one run: circular blocks of consecutive points) and, for
contrast, as if every row were its own run (no --run). Prints, per parameter, how often the
true value lies inside the 95% interval (target: >= 90% with --run) and the median CI width.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fitting import bootstrap, derived  # noqa: E402
from fitting.analysis import _residuals  # noqa: E402
from fitting.fitset import FitSet  # noqa: E402
from fitting.keys import StatKey  # noqa: E402
from fitting.threads import single_threaded_blas  # noqa: E402

TRUE = {"E": 1.8, "B": 400.0, "beta": 0.3}


def ar1_curve(rng, n, rho, sigma, true=TRUE) -> pd.DataFrame:
    D = np.geomspace(1e7, 1e10, n)
    eps = np.empty(n)
    eps[0] = rng.normal(0, sigma)
    for i in range(1, n):
        eps[i] = rho * eps[i - 1] + rng.normal(0, sigma * np.sqrt(1 - rho * rho))
    loss = (true["E"] + true["B"] * D ** -true["beta"]) * np.exp(eps)
    return pd.DataFrame({"N": 1.0, "D": D, "C": 6 * D, "loss": loss, "loss_se": np.nan, "group": "all",
                         "config": "one", "run_id": "run0", "n_llm": np.nan, "n_vision": np.nan,
                         "seed": np.nan, "steps": np.nan, "loss_shuffled": np.nan, "loss_shuffled_se": np.nan})


def intervals(frame: pd.DataFrame, by_run: bool, n_boot: int, seed: int) -> dict:
    if not by_run:
        frame = frame.assign(run_id=[f"row{i}" for i in range(len(frame))])
    fs = FitSet(frame, strict=True)
    fs.entries = {k: e for k, e in fs.entries.items() if k[0] == "L(D)"}  # the law under test only
    ctx = derived.context(fs.frame)
    boot = bootstrap.bootstrap(fs, ctx, n_boot, seed, bootstrap.plan(fs.frame, _residuals(fs)), workers=1)
    return {k: boot.ci95(StatKey("L(D)", "all", k)) for k in TRUE}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--curves", type=int, default=50)
    ap.add_argument("--points", type=int, default=80)
    ap.add_argument("--rho", type=float, default=0.7)
    ap.add_argument("--sigma", type=float, default=0.01)
    ap.add_argument("--bootstrap", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--modes", default="run,rows", help="run: with --run (blocks); rows: each row a run")
    a = ap.parse_args(argv)
    modes = a.modes.split(",")
    rng = np.random.default_rng(a.seed)
    hits = {m: {k: 0 for k in TRUE} for m in ("run", "rows")}
    width = {m: {k: [] for k in TRUE} for m in ("run", "rows")}
    t0 = time.perf_counter()
    with single_threaded_blas():
        for c in range(a.curves):
            frame = ar1_curve(rng, a.points, a.rho, a.sigma)
            for mode in modes:
                ci = intervals(frame, mode == "run", a.bootstrap, a.seed + c)
                for k, v in TRUE.items():
                    lo, hi = ci[k]
                    hits[mode][k] += bool(np.isfinite(lo) and lo <= v <= hi)
                    width[mode][k].append(hi - lo)
    print(f"{a.curves} curves x {a.points} points, AR(1) rho={a.rho}, sigma={a.sigma}, {a.bootstrap} resamples "
          f"({time.perf_counter() - t0:.0f} s)")
    for mode, label in (("run", "--run (blocks)"), ("rows", "no --run (rows)")):
        if mode not in modes:
            continue
        print(label + ": " + ", ".join(
            f"{k} coverage {hits[mode][k] / a.curves:.0%} (median CI width {np.median(width[mode][k]):.3g})" for k in TRUE))


if __name__ == "__main__":
    main()
