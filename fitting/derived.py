"""Quantities derived from fitted laws: crossover, efficiency multiplier, optimal allocation,
best config per budget, iso-loss curves, and the extrapolation check.

`summarize` returns a flat dict of numbers and arrays on a fixed compute grid (the Context),
keyed by StatKey, so the bootstrap can run it on every resample and take percentiles per key
(and per grid point).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy.optimize import brentq

from fitting import isoflop
from fitting.errors import FitError
from fitting.honest import OK, SKIPPED
from fitting.keys import (ALLOCATION, CROSSOVER, CROSSOVER_IN_DATA, CURVE, EXPONENT_DIFF, MULTIPLIER, RATIO, StatKey,
                          of_pair, pair_key)
from fitting.laws import LAWS, allocation_constant, fit_law, inverse_lc, optimal_allocation

# Arms in the order they are named in a comparison: the earlier one is the "treatment" (the
# design's question: foveated vs baseline, foveated vs pooled1, baseline vs pooled1); other
# group names follow alphabetically.
ARM_ORDER = ("foveated", "baseline", "pooled1")


def pairs(groups: list[str]) -> list[tuple[str, str]]:
    """Every (treatment, reference) pair of groups, in ARM_ORDER."""
    rank = {g: (ARM_ORDER.index(g) if g in ARM_ORDER else len(ARM_ORDER), g) for g in groups}
    ordered = sorted(groups, key=rank.get)
    return [(t, r) for i, t in enumerate(ordered) for r in ordered[i + 1:]]


@dataclass(frozen=True)
class Context:
    """Fixed grids shared by the full fit and every bootstrap resample (built by `context`)."""

    groups: list[str]
    pairs: list[tuple[str, str]]  # only the pairs allowed to be compared (both arms use their frames)
    C_range: tuple[float, float]  # the compute the data span
    C_grid: np.ndarray  # where curves (ratio, multiplier, N_opt) are evaluated
    # a crossover is looked for one decade beyond the data on each side; only one inside the
    # compute both arms measured can be found (honest.crossover_status)
    search_range: tuple[float, float]
    flops_per_nd: dict[str, float]  # k in C = k N D, per group
    measured_C: dict[str, tuple[float, float]]  # per group: its smallest and largest compute
    # pair -> the full fit's lower-loss arm at the search range's low end: a resample without a
    # crossing is read in that direction (crossover_value)
    leader: dict[str, str] = field(default_factory=dict)


def context(frame: pd.DataFrame, fits: dict | None = None, n_grid: int = 41, allowed_pairs=None) -> Context:
    """The grids for `frame`; `fits` (the full fit's laws) set each pair's leader."""
    C = frame["C"].to_numpy(float)
    lo, hi = float(C.min()), float(C.max())
    groups = sorted(frame["group"].astype(str).unique())
    # C = k N D: 6 for a dense LM; a VLM's vision encoder and the foveated double pass change it
    k = {g: float(np.median(s["C"] / (s["N"] * s["D"]))) for g, s in frame.groupby("group")}
    ctx = Context(
        groups=groups, pairs=pairs(groups) if allowed_pairs is None else list(allowed_pairs),
        C_range=(lo, hi), C_grid=np.geomspace(lo, hi, n_grid) if hi > lo else np.array([lo]),
        search_range=(lo / 10.0, hi * 10.0), flops_per_nd=k,
        measured_C={g: (float(s["C"].min()), float(s["C"].max())) for g, s in frame.groupby("group")})
    return ctx if fits is None else replace(ctx, leader=_leaders(ctx, fits))


def common_range(ctx: Context, t: str, r: str) -> list | None:
    """[lo, hi] of the compute both arms measured; None when their ranges do not overlap."""
    (a0, a1), (b0, b1) = ctx.measured_C[t], ctx.measured_C[r]
    lo, hi = max(a0, b0), min(a1, b1)
    return [lo, hi] if lo <= hi else None


def _leaders(ctx: Context, fits: dict) -> dict[str, str]:
    """Which arm of each pair has, in the full fit, the lower L(C) at the low end of the search range."""
    lo, out = ctx.search_range[0], {}
    for t, r in ctx.pairs:
        ft, fr = fits.get(("L(C)", t)), fits.get(("L(C)", r))
        if ft is not None and fr is not None:
            out[pair_key(t, r)] = t if _lc(ft.params(t), lo) < _lc(fr.params(r), lo) else r
    return out


def crossover_value(p_t: dict, p_r: dict, roots: list, ctx: Context, t: str, r: str) -> float:
    """The first crossing in the search range; without one, +inf when the full fit's low-compute
    leader stays ahead throughout (the crossing, if any, lies beyond the range) and -inf when it
    is behind throughout (it lies below). Every resample thus has an outcome, and the percentile
    interval opens up instead of describing only the resamples that happened to cross."""
    if roots:
        return roots[0]
    leader = ctx.leader.get(pair_key(t, r), t)
    lo = ctx.search_range[0]
    ahead = _lc(p_t, lo) < _lc(p_r, lo) if leader == t else _lc(p_r, lo) < _lc(p_t, lo)
    return math.inf if ahead else -math.inf


def crossovers(p_t: dict, p_r: dict, lo: float, hi: float) -> list[float]:
    """Compute budgets in [lo, hi] where two L(C) laws give the same loss."""
    def diff(logc):
        c = np.exp(logc)
        return np.log(_lc(p_t, c)) - np.log(_lc(p_r, c))

    grid = np.linspace(math.log(lo), math.log(hi), 801)
    # curves equal to rounding error (e.g. identical fits) do not cross: flip signs of such
    # differences are noise, so only sign changes between clearly separated points count
    d = diff(grid)
    s = np.sign(np.where(np.abs(d) < 1e-9, 0.0, d))
    nz = np.flatnonzero(s)
    roots = []
    for i, j in zip(nz[:-1], nz[1:]):
        if s[i] != s[j]:
            roots.append(float(np.exp(brentq(diff, grid[i], grid[j], xtol=1e-12))))
    return roots


def _lc(p: dict, C):
    return p.get("E", 0.0) + p["A"] * np.asarray(C, float) ** -p["alpha"]


def efficiency(p_t: dict, p_r: dict, C) -> tuple[np.ndarray, np.ndarray]:
    """(C_ref(L_t(C)) / C, C_t(L_ref(C)) / C): >1 in the first means the treatment reaches
    at C a loss the reference needs more compute for (inf where the reference never gets there)."""
    C = np.asarray(C, float)
    return inverse_lc(p_r, _lc(p_t, C)) / C, inverse_lc(p_t, _lc(p_r, C)) / C


def summarize(fits: dict, ctx: Context) -> dict[StatKey, float | np.ndarray]:
    """Every derived quantity (a number, or an array on ctx.C_grid) under its StatKey."""
    out = {}
    grid = ctx.C_grid
    for g in ctx.groups:
        lc = fits.get(("L(C)", g))
        if lc is not None:
            out[StatKey(CURVE, g, "L(C)")] = _lc(lc.params(g), grid)
        fit = fits.get(("L(N,D)", g))
        if fit is None:
            continue
        p = fit.params(g)
        a, b = p["alpha"], p["beta"]
        n_opt, d_opt = optimal_allocation(p, grid, ctx.flops_per_nd[g])
        out[StatKey(ALLOCATION, g, "N_exponent")] = b / (a + b) if a + b > 0 else float("nan")
        out[StatKey(ALLOCATION, g, "D_exponent")] = a / (a + b) if a + b > 0 else float("nan")
        out[StatKey(ALLOCATION, g, "G")] = allocation_constant(p)
        out[StatKey(ALLOCATION, g, "N_opt")] = n_opt
        out[StatKey(ALLOCATION, g, "D_opt")] = d_opt
    for t, r in ctx.pairs:
        ft, fr = fits.get(("L(C)", t)), fits.get(("L(C)", r))
        if ft is not None and fr is not None:
            p_t, p_r = ft.params(t), fr.params(r)
            roots = crossovers(p_t, p_r, *ctx.search_range)
            out[of_pair(CROSSOVER, t, r, "C")] = crossover_value(p_t, p_r, roots, ctx, t, r)
            common = common_range(ctx, t, r)
            out[of_pair(CROSSOVER_IN_DATA, t, r, "any")] = float(common is not None and any(
                common[0] <= c <= common[1] for c in roots))
            out[of_pair(RATIO, t, r, "loss")] = _lc(p_t, grid) / _lc(p_r, grid)
            m_t, m_r = efficiency(p_t, p_r, grid)
            out[of_pair(MULTIPLIER, t, r, "ref_to_match_treat")] = m_t
            out[of_pair(MULTIPLIER, t, r, "treat_to_match_ref")] = m_r
            out[of_pair(EXPONENT_DIFF, t, r, "alpha")] = p_t["alpha"] - p_r["alpha"]
    return out


def crossover_report(p_t: dict, p_r: dict, ctx: Context, t: str, r: str) -> dict:
    """Every crossing in the search range, which side wins where, and the ranges looked at
    ("common_range": the compute both arms measured, None when their ranges do not overlap)."""
    lo, hi = ctx.search_range
    roots = crossovers(p_t, p_r, lo, hi)
    c_lo = ctx.C_range[0]
    better_low = t if _lc(p_t, lo) < _lc(p_r, lo) else r
    common = common_range(ctx, t, r)
    return {
        "crossovers": roots, "search_range": [lo, hi], "data_range": list(ctx.C_range), "common_range": common,
        "extrapolated": [common is None or not common[0] <= c <= common[1] for c in roots],
        "lower_loss_at_low_compute": better_low,
        "lower_loss_at_data_min": t if _lc(p_t, c_lo) < _lc(p_r, c_lo) else r,
        "lower_loss_at_data_max": t if _lc(p_t, ctx.C_range[1]) < _lc(p_r, ctx.C_range[1]) else r,
    }


def best_configs(frame: pd.DataFrame, factor: float = 2.0) -> pd.DataFrame:
    """Per compute budget (runs within `factor` of each other) and group: the lowest-loss config
    and how its parameters split between LLM and vision encoder."""
    f = frame.assign(budget=isoflop.buckets(frame["C"].to_numpy(float), factor))
    rows = []
    for (b, g), s in f.groupby(["budget", "group"]):
        best = s.loc[s["loss"].idxmin()]
        vis = best["n_vision"] / best["N"] if np.isfinite(best["n_vision"]) else np.nan
        rows.append({
            "budget_C": float(np.exp(np.log(s["C"]).mean())), "group": g, "config": best["config"],
            "loss": float(best["loss"]), "N": float(best["N"]), "N_llm": float(best["n_llm"]),
            "N_vision": float(best["n_vision"]), "vision_share": float(vis),
            "n_candidates": int(s["config"].nunique()),
        })
    return pd.DataFrame(rows)


def iso_loss(frame: pd.DataFrame, n_levels: int = 4) -> pd.DataFrame:
    """Compute each (group, config) needs to reach a set of loss levels, by log-interpolating
    its loss-vs-compute curve. Levels are spread across the losses every config reaches."""
    f = frame.sort_values("C")
    curves = [(g, c, s) for (g, c), s in f.groupby(["group", "config"]) if len(s) >= 2]
    if not curves:
        return pd.DataFrame(columns=["group", "config", "N", "loss_level", "C"])
    hi = min(s["loss"].max() for *_, s in curves)
    lo = max(s["loss"].min() for *_, s in curves)
    if not lo < hi:  # configs' loss ranges do not overlap: spread over the union instead
        lo, hi = f["loss"].min(), f["loss"].max()
    levels = np.geomspace(lo, hi, n_levels + 2)[1:-1]
    rows = []
    for g, c, s in curves:
        # loss falls with compute; a running minimum makes the curve monotone, and np.interp
        # needs ascending x, so interpolate on the reversed (ascending-loss) arrays
        loss = np.minimum.accumulate(s["loss"].to_numpy(float))
        logc = np.log(s["C"].to_numpy(float))
        for lev in levels:
            if loss.min() <= lev <= loss.max():
                rows.append({"group": g, "config": c, "N": float(s["N"].iloc[0]), "loss_level": float(lev),
                             "C": float(np.exp(np.interp(lev, loss[::-1], logc[::-1])))})
    return pd.DataFrame(rows)


def extrapolation_check(frame: pd.DataFrame, fitset, holdout: float = 0.2) -> list[dict]:
    """Refit each per-group law without its largest-compute points (top `holdout` fraction,
    at least one) and report how well it predicts them."""
    out = []
    for (law, group), e in fitset.entries.items():
        if law not in ("L(C)", "L(N,D)", "L(D)") or e.status != OK:
            continue
        sub = frame.iloc[e.rows].sort_values("C")
        n_out = max(1, int(math.ceil(holdout * len(sub))))
        train, test = sub.iloc[:-n_out], sub.iloc[-n_out:]
        cols = list(LAWS[law][0])  # the law's features
        row = {"law": law, "group": group, "n_holdout": n_out, "C_threshold": float(test["C"].min())}
        try:
            fit = fit_law(law, train[cols].to_numpy(float), train["loss"].to_numpy(float),
                          np.full(len(train), group))
        except FitError as err:
            out.append({**row, "status": SKIPPED, "reason": str(err)})
            continue
        pred = fit.predict(*[test[c].to_numpy(float) for c in cols], group=group)
        rel = (pred - test["loss"].to_numpy(float)) / test["loss"].to_numpy(float)
        out.append({**row, "status": OK, "mean_abs_rel_error": float(np.mean(np.abs(rel))),
                    "max_abs_rel_error": float(np.max(np.abs(rel))), "mean_rel_error": float(np.mean(rel))})
    return out
