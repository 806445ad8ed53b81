"""Bootstrap: refit every law on resamples of whole runs, percentile 95% CIs for everything.

Points from one run (its milestones) share that run's noise, so the unit of resampling is the
run (run_id), drawn with replacement within each group so both variants keep their run count;
seed replicates of a cell are separate runs. A group with fewer than MIN_RUNS runs (e.g. a
published curve of checkpoints of one model) cannot be resampled by run: its points are
resampled within each run in circular blocks of consecutive points (ordered by D), the block
long enough for the residuals' lag-1 autocorrelation, so correlated noise widens the interval
instead of being counted as independent evidence.
A resample is a vector of integer weights on the points (a run drawn twice counts twice), so
each refit reuses the fitted law's arrays and starts at the full-data optimum; L-BFGS-B is then
free to move as far as the resample asks (tight tolerances: no early stop at the start).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fitting import derived
from fitting.fitset import FitSet, param_stats
from fitting.honest import OK
from fitting.keys import LawKey, StatKey
from fitting.threads import single_threaded, single_threaded_blas


MIN_OK = 0.5  # fraction of resamples that must refit for an interval to be reported
MIN_RUNS = 3  # fewer runs in a group than this: block-resample within runs instead
MIN_BLOCK_POINTS = 6  # a run needs this many points to be block-resampled


BLOCK_FACTOR = 2.0  # x the variance-MSE-optimal block: an interval needs less bias, not less noise


def block_length(n: int, rho: float) -> int:
    """Moving-block length for an AR(1)-like series of n points with lag-1 autocorrelation rho:
    BLOCK_FACTOR x the rule b ~ (2 rho / (1 - rho^2))^(2/3) (3n/2)^(1/3), which minimises the
    mean squared error of the variance estimate; too short a block biases the variance down,
    and that bias (not its noise) is what makes a 95% interval cover less. 1 for rho <= 0."""
    rho = min(max(rho, 0.0), 0.95)
    if rho == 0.0:
        return 1
    b = BLOCK_FACTOR * (2 * rho / (1 - rho * rho)) ** (2 / 3) * (1.5 * n) ** (1 / 3)
    return int(min(max(1, round(b)), max(1, n // 3)))


def lag1_autocorrelation(r: np.ndarray) -> float:
    r = np.asarray(r, float) - np.mean(r)
    den = float(r @ r)
    return float(r[1:] @ r[:-1] / den) if den > 0 and len(r) > 2 else 0.0


def plan(frame: pd.DataFrame, residuals: np.ndarray | None = None) -> dict:
    """group -> {"mode": "runs" | "blocks" | "points", ...}: how each group is resampled.

    residuals: log residuals per frame row of a fitted law (NaN where none), ordered as frame."""
    out = {}
    for grp, s in frame.groupby("group"):
        runs = s["run_id"].astype(str)
        if runs.nunique() >= MIN_RUNS or (runs.value_counts() < MIN_BLOCK_POINTS).all():
            out[grp] = {"mode": "runs", "n_runs": int(runs.nunique())}
            continue
        blocks = {}
        for run, r in s.groupby("run_id"):
            order = r.sort_values(["D", "C"]).index.to_numpy()
            res = residuals[order] if residuals is not None else np.zeros(len(order))
            ok = np.isfinite(res)
            rho = lag1_autocorrelation(res[ok]) if ok.sum() > 2 else 0.0
            # residuals of a fitted curve understate the noise's autocorrelation: Kendall's
            # small-sample bias (1 + 3 rho) / n plus the ~3 fitted parameters per n points
            rho = rho + (1 + 3 * rho + 3) / ok.sum() if rho > 0 else rho
            blocks[str(run)] = {"rows": order, "rho": rho, "block": block_length(len(order), rho)}
        out[grp] = {"mode": "blocks", "n_runs": int(runs.nunique()), "runs": blocks}
    return out


def describe(p: dict) -> str:
    parts = []
    for grp, m in p.items():
        if m["mode"] == "runs":
            parts.append(f"{grp}: {m['n_runs']} runs resampled whole")
        else:
            desc = ", ".join(f"{len(b['rows'])} points, lag-1 residual autocorrelation {b['rho']:.2f}, block {b['block']}"
                             for b in m["runs"].values())
            parts.append(f"{grp}: {m['n_runs']} run(s), circular blocks of consecutive points within each run ({desc})")
    return "; ".join(parts)


def run_weights(frame: pd.DataFrame, rng: np.random.Generator, p: dict | None = None) -> np.ndarray:
    """Integer weight per point: runs drawn with replacement within each group, or (groups in
    "blocks" mode) circular blocks of consecutive points drawn within each run."""
    w = np.zeros(len(frame))
    for grp, s in frame.groupby("group"):
        m = (p or {}).get(grp, {"mode": "runs"})
        if m["mode"] == "runs":
            runs, inverse = np.unique(s["run_id"].to_numpy(str), return_inverse=True)
            counts = np.bincount(rng.integers(0, len(runs), len(runs)), minlength=len(runs))
            w[s.index.to_numpy()] = counts[inverse]
            continue
        for b in m["runs"].values():
            n, L = len(b["rows"]), b["block"]
            starts = rng.integers(0, n, -(-n // L))
            idx = ((starts[:, None] + np.arange(L)[None]) % n).ravel()[:n]
            w[b["rows"]] += np.bincount(idx, minlength=n)
    return w


def stats(fits: dict, ctx: derived.Context) -> dict[StatKey, float | np.ndarray]:
    return {**param_stats(fits), **derived.summarize(fits, ctx)}


@dataclass(frozen=True)
class Spread:
    """One statistic over the resamples (arrays: per point of the compute grid)."""

    ci95: list  # [lo, hi] percentile 95%; NaN where fewer than MIN_OK of the resamples gave a value
    sd: float | np.ndarray
    n_ok: int | np.ndarray  # resamples that gave a value
    n: int  # resamples drawn
    n_true: int | None = None  # an indicator (keys.INDICATORS): resamples in which it held


@dataclass(frozen=True)
class Resamples:
    """What the bootstrap found: each statistic's Spread, and per law how many of its refits
    stopped at their evaluation budget (empty without resamples)."""

    stats: dict[StatKey, Spread] = field(default_factory=dict)
    not_converged: dict[LawKey, int] = field(default_factory=dict)

    def get(self, key: StatKey) -> Spread | None:
        return self.stats.get(key)

    def ci95(self, key: StatKey) -> list | None:
        """[lo, hi] of a statistic, or None when the bootstrap has none."""
        s = self.stats.get(key)
        return None if s is None else [s.ci95[0], s.ci95[1]]


_SHARED: dict = {}  # the FitSet and weights, inherited by forked workers (never pickled)
BATCHES = 20  # resamples are refitted in this many batches, so progress can be shown between them


def default_workers() -> int:
    return min(2, os.cpu_count() or 1)


def _refit_keys(keys, start: int, stop: int) -> list[dict]:
    with single_threaded_blas():
        fs, weights = _SHARED["fitset"], _SHARED["weights"]
        return [fs.refit(w, keys) for w in weights[start:stop]]


def _parts(fitset: FitSet, keys: list, workers: int) -> list[list]:
    """The laws split into `workers` parts of about equal cost (points x parameters): largest
    first, each to the least-loaded part."""
    cost = {k: len(fitset.entries[k].rows) * fitset.entries[k].fit.refit_cost for k in keys}
    parts, load = [[] for _ in range(workers)], [0.0] * workers
    for k in sorted(keys, key=cost.get, reverse=True):
        i = int(np.argmin(load))
        parts[i].append(k)
        load[i] += cost[k]
    return parts


def refit_all(fitset: FitSet, weights: list, workers: int | None = None, progress=None) -> list[dict]:
    """Refit every law on every weight vector; laws are split between `workers` forked
    processes (default: min(2, CPUs); 1 = in this process). Same results either way.
    progress(done) is called after each batch of resamples."""
    workers = default_workers() if workers is None else workers
    keys = [k for k, e in fitset.entries.items() if e.status == OK]
    step = max(1, -(-len(weights) // BATCHES))
    batches = [(a, min(a + step, len(weights))) for a in range(0, len(weights), step)]
    out: list[dict] = []
    if workers <= 1 or len(keys) < 2 or "fork" not in mp.get_all_start_methods():
        for a, b in batches:
            out += [fitset.refit(w) for w in weights[a:b]]
            if progress:
                progress(b)
        return out
    parts = _parts(fitset, keys, workers)
    _SHARED.update(fitset=fitset, weights=weights)
    try:
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
            # every (batch, part) queued at once; results are taken batch by batch, in order
            pending = [(b, [pool.submit(_refit_keys, part, a, b) for part in parts]) for a, b in batches]
            for b, futures in pending:
                results = [f.result() for f in futures]
                out += [{k: v for r in results for k, v in r[i].items()} for i in range(len(results[0]))]
                if progress:
                    progress(b)
    finally:
        _SHARED.clear()
    return out


def _spread(draws: list, n: int, indicator: bool) -> Spread:
    a = np.asarray(draws, float)  # (n,) or (n, grid)
    n_ok = (~np.isnan(a)).sum(axis=0)
    # +-inf is an answer ("never reaches that loss", "no crossing in the searched range"),
    # not a failure: keep it through the percentiles via finite stand-ins, which
    # np.percentile's interpolation can handle
    big = np.clip(a, -1e300, 1e300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = (np.nanpercentile(big, q, axis=0) for q in (2.5, 97.5))
        sd = np.nanstd(np.where(np.isinf(a), np.nan, a), axis=0, ddof=1)
    lo, hi = (np.where(v >= 1e299, np.inf, np.where(v <= -1e299, -np.inf, v)) for v in (lo, hi))
    # when most resamples cannot even identify the law, an interval from the few that
    # can is not a 95% interval of anything: report none
    lo, hi = (np.where(n_ok >= MIN_OK * n, v, np.nan) for v in (lo, hi))
    return Spread([lo, hi], sd, n_ok, n, int(np.nansum(a)) if indicator else None)


@single_threaded
def bootstrap(fitset: FitSet, ctx: derived.Context, n: int = 1000, seed: int = 0, p: dict | None = None,
              workers: int | None = None, progress=None) -> Resamples:
    """Every statistic's Spread over `n` resamples, and the refits that did not converge.
    progress(done): called as the resamples are refitted (e.g. progress.Progress.update)."""
    full = stats(fitset.current(), ctx)
    if n <= 0 or not full:
        return Resamples()
    rng = np.random.default_rng(seed)
    weights = [run_weights(fitset.frame, rng, p) for _ in range(n)]
    draws = {k: [] for k in full}
    stuck: dict[LawKey, int] = {}
    for refits in refit_all(fitset, weights, workers, progress):
        for key, f in refits.items():
            if f is not None and not f.converged:
                stuck[key] = stuck.get(key, 0) + 1
        s = stats(refits, ctx)
        for k, v in full.items():
            draws[k].append(s.get(k, np.full(np.shape(v), np.nan)))
    return Resamples({k: _spread(v, n, k.is_indicator) for k, v in draws.items()}, stuck)
