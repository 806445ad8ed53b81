"""The plots of quantities derived from the laws: the efficiency ratio and the optimal model size.

They obey the report's rules: a comparison or an allocation the report does not state (withheld,
or not identified) gets no interval here either, a compute multiplier is drawn only for a stated
comparison and only where the matched compute lies in the arm's measured range (elsewhere the
bound the data give is drawn, as the report states it), and a curve is dashed where extrapolated.
"""
from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd

from fitting import derived, isoflop
from fitting.honest import OK, WITHHELD
from fitting.keys import ALLOCATION, MULTIPLIER, RATIO, StatKey, of_pair, pair_key
from fitting.plot_style import BAND_ALPHA, Skip, fitted_curve, legend_beside, loglog, style

NOWHERE = (np.inf, -np.inf)  # a measured range that holds no compute: everything extrapolated


def _note(ax, text: str) -> None:
    """A line under the axes saying what the plot leaves out, and why."""
    ax.text(0.0, -0.16, "\n".join(textwrap.wrap(text, 95)), transform=ax.transAxes, va="top", fontsize=7)


def _multiplier(ax2, grid, m, ci, measured: tuple, r: str) -> pd.DataFrame:
    """The fitted compute multiplier where its matched compute m*C lies in the reference's measured
    range (with its band); elsewhere the data's bound lo/C or hi/C, dotted."""
    finite = np.isfinite(m)
    inside = finite & (m * grid >= measured[0]) & (m * grid <= measured[1])
    bound = np.where(finite & (m * grid < measured[0]), measured[0] / grid,
                     np.where(finite & (m * grid > measured[1]), measured[1] / grid, np.nan))
    ax2.plot(grid, np.where(inside, m, np.nan), color="C3", lw=1.5, label=f"compute multiplier C_{r}(L(C))/C")
    if ci is not None:
        lo, hi = (np.asarray(v, float) for v in ci)
        ok = inside & np.isfinite(lo) & np.isfinite(hi)
        ax2.fill_between(grid[ok], lo[ok], hi[ok], color="C3", alpha=BAND_ALPHA, lw=0)
    else:
        lo = hi = np.full(len(grid), np.nan)
    if np.isfinite(bound).any():
        ax2.plot(grid, bound, color="C3", ls=":", lw=1.2,
                 label=f"multiplier bound from the data (matched compute outside {r}'s measured range)")
    if np.isfinite(np.where(inside, m, bound)).any():
        ax2.set_yscale("log")  # (a log axis with nothing finite on it cannot be drawn: infinite multiplier)
    ax2.set_ylabel(f"compute {r} needs / C (log)")
    return pd.DataFrame({"C": grid, "multiplier": np.where(inside, m, np.nan), "ci_lo": np.where(inside, lo, np.nan),
                         "ci_hi": np.where(inside, hi, np.nan), "bound": bound, "kind": "multiplier"})


def efficiency_ratio(fig, ax, fs, ctx, fits, boot):
    full = derived.summarize(fs.current(), ctx)
    # the first comparison that was computed (withheld pairs never are): foveated vs baseline
    done = [(t, r) for t, r in ctx.pairs if of_pair(RATIO, t, r, "loss") in full]
    if not done:
        raise Skip("needs L(C) fits of two variants that both use their frames")
    t, r = done[0]
    comp = fits["derived"]["comparisons"].get(pair_key(t, r), {})
    stated = comp.get("status") == OK
    grid = ctx.C_grid
    ratio = of_pair(RATIO, t, r, "loss")
    common = derived.common_range(ctx, t, r) or NOWHERE
    band = boot.ci95(ratio) if stated else None
    label = f"L_{t}(C) / L_{r}(C), fits" + ("" if stated else " (estimate, not a finding)")
    fitted_curve(ax, grid, full[ratio], common, "C0", label, band=band, lw=1.5)
    lo, hi = band if band is not None else (np.full(len(grid), np.nan),) * 2
    data = pd.DataFrame({"C": grid, "ratio": full[ratio], "ci_lo": lo, "ci_hi": hi, "kind": "fit",
                         "extrapolated": ~((grid >= common[0]) & (grid <= common[1]))})
    # observed ratios of runs that match exactly (same config, same samples seen), seed means
    f = fs.frame
    a = f[f["group"] == t].groupby(["config", "D"])[["C", "loss"]].mean()
    b = f[f["group"] == r].groupby(["config", "D"])[["C", "loss"]].mean()
    both = a.merge(b, left_index=True, right_index=True, suffixes=("_t", "_r"))
    if len(both):
        ax.plot(both["C_r"], both["loss_t"] / both["loss_r"], "kx", label="matched configs, seed means (at reference C)")
        obs = pd.DataFrame({"C": both["C_r"].to_numpy(), "ratio": (both["loss_t"] / both["loss_r"]).to_numpy(),
                            "kind": "matched runs"})
        data = pd.concat([data, obs], ignore_index=True)
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("training compute C (FLOPs)")
    ax.set_ylabel(f"loss ratio {t} / {r}")
    ax.set_title(f"Efficiency ratio ({t} better below 1)")
    ax.grid(True, which="both", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if stated:
        ax2 = ax.twinx()
        m = np.asarray(full[of_pair(MULTIPLIER, t, r, "ref_to_match_treat")], float)
        ci = boot.ci95(of_pair(MULTIPLIER, t, r, "ref_to_match_treat"))
        data = pd.concat([data, _multiplier(ax2, grid, m, ci, ctx.measured_C[r], r)], ignore_index=True)
        if not np.isfinite(m).any():
            _note(ax, f"Compute multiplier infinite throughout: {r}'s fit never reaches {t}'s loss.")
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    else:
        _note(ax, f"No compute multiplier and no interval are drawn: the comparison is {comp.get('status', '?')}"
                  f" ({comp.get('reason', '')}).")
    legend_beside(ax, handles, labels, right_axis=stated)
    return data


def optimal_size(fig, ax, fs, ctx, fits, boot):
    rows = []
    grid = ctx.C_grid
    full = derived.summarize(fs.current(), ctx)
    alloc = fits["derived"].get("optimal_allocation", {})
    for i, g in enumerate(fs.groups):
        key = StatKey(ALLOCATION, g, "N_opt")
        status = alloc.get(g, {}).get("status", OK)
        if key in full and status != WITHHELD:  # a withheld allocation has no numbers in the report
            stated = status == OK
            band = boot.ci95(key) if stated else None
            label = f"{g} N_opt(C) from L(N,D)" + ("" if stated else f" ({status}: estimate)")
            fitted_curve(ax, grid, full[key], ctx.measured_C[g], f"C{i}", label, band=band, lw=1.5)
            lo, hi = band if band is not None else (np.full(len(grid), np.nan),) * 2
            rows += [{"kind": "L(N,D) N_opt", "group": g, "C": c, "N": n, "ci_lo": a, "ci_hi": b}
                     for c, n, a, b in zip(grid, full[key], lo, hi)]
        iso = fs.ok(isoflop.NAME, g)
        if iso is not None:
            bc = [b["C"] for b in iso.budgets]
            bn = [b["N_opt"] for b in iso.budgets]
            ax.plot(bc, bn, marker="D", ls="none", color=f"C{i}", label=f"{g} IsoFLOP minima")
            rows += [{"kind": "isoflop N_opt", "group": g, "C": c, "N": n} for c, n in zip(bc, bn)]
    best = derived.best_configs(fs.frame)
    if rows and len(best):  # grid winners only next to a law: alone they are not an optimum
        for i, g in enumerate(fs.groups):
            s = best[best["group"] == g]
            ax.plot(s["budget_C"], s["N"], marker=style(g)[0], ls="none", mfc="none", color=f"C{i}",
                    label=f"{g} best config in grid")
            rows += [{"kind": "best config", "group": g, "C": c, "N": n} for c, n in zip(s["budget_C"], s["N"])]
    if not rows:
        withheld = [g for g, a in alloc.items() if a.get("status") == WITHHELD]
        raise Skip(f"the allocation is withheld ({', '.join(withheld)}; see the report) and there is no IsoFLOP "
                   "fit (>= 3 model sizes)" if withheld else "needs an L(N,D) fit or an IsoFLOP fit (>= 3 model sizes)")
    loglog(ax, "compute budget C (FLOPs)", "optimal model size N (parameters)", "Compute-optimal model size")
    legend_beside(ax)
    return pd.DataFrame(rows)
