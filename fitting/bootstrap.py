"""Bootstrap: refit every law on resamples of whole runs, percentile 95% CIs for everything.

Points from one run (its milestones) share that run's noise, so the unit of resampling is the
run (run_id), drawn with replacement within each group so both variants keep their run count.
A resample is a vector of integer weights on the points (a run drawn twice counts twice), so
each refit reuses the fitted law's arrays and starts at the full-data optimum; L-BFGS-B is then
free to move as far as the resample asks (tight tolerances: no early stop at the start).
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from fitting import derived
from fitting.fitset import FitSet, param_stats
from fitting.threads import single_threaded


MIN_OK = 0.5  # fraction of resamples that must refit for an interval to be reported
MAY_BE_ABSENT = {"crossover|C"}  # NaN there is an answer ("no crossover"), not a failed refit


def run_weights(frame: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """Integer weight per point from resampling run_ids with replacement within each group."""
    w = np.zeros(len(frame))
    for _, s in frame.groupby("group"):
        runs, inverse = np.unique(s["run_id"].to_numpy(str), return_inverse=True)
        counts = np.bincount(rng.integers(0, len(runs), len(runs)), minlength=len(runs))
        w[s.index.to_numpy()] = counts[inverse]
    return w


def stats(fits: dict, ctx: dict) -> dict:
    return {**param_stats(fits), **derived.summarize(fits, ctx)}


@single_threaded
def bootstrap(fitset: FitSet, ctx: dict, n: int = 1000, seed: int = 0) -> dict:
    """key -> {"ci95": [lo, hi] (or per-grid-point arrays), "sd", "n_ok"} over `n` resamples."""
    full = stats(fitset.current(), ctx)
    if n <= 0 or not full:
        return {}
    rng = np.random.default_rng(seed)
    draws = {k: [] for k in full}
    for _ in range(n):
        s = stats(fitset.refit(run_weights(fitset.frame, rng)), ctx)
        for k, v in full.items():
            draws[k].append(s.get(k, np.full(np.shape(v), np.nan)))
    out = {}
    for k, vals in draws.items():
        a = np.asarray(vals, float)  # (n,) or (n, grid)
        n_ok = (~np.isnan(a)).sum(axis=0)
        # inf is an answer ("never reaches that loss"), not a failure: keep it through the
        # percentiles via a finite stand-in, which np.percentile's interpolation can handle
        big = np.where(np.isposinf(a), 1e300, a)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            lo, hi = (np.nanpercentile(big, q, axis=0) for q in (2.5, 97.5))
            sd = np.nanstd(np.where(np.isinf(a), np.nan, a), axis=0, ddof=1)
        lo, hi = (np.where(v >= 1e299, np.inf, v) for v in (lo, hi))
        if k not in MAY_BE_ABSENT:
            # when most resamples cannot even identify the law, an interval from the few that
            # can is not a 95% interval of anything: report none
            lo, hi = (np.where(n_ok >= MIN_OK * n, v, np.nan) for v in (lo, hi))
        out[k] = {"ci95": [lo, hi], "sd": sd, "n_ok": n_ok, "n": n}
    return out
