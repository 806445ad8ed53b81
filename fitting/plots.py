"""The five plots, each a PNG plus a CSV of exactly the data drawn, or a logged reason to skip.

The data plots (this file) draw one line per config through the seed means of its runs, with
a band of the seeds' range, and every run as a faint point: a line that joined different seeds
would zigzag by the seed noise and read as a trend. Runs that do not see their frames are
marked. The plots of derived quantities are in derived_plots.py; the shared look (legend beside
the axes, fitted curves solid with their band where measured, dashed where extrapolated) in
plot_style.py. matplotlib is imported inside `make_all` (Agg backend: no display on training
nodes or CI), so importing the fitting package stays cheap.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from fitting import derived, derived_plots, field_plot, isoflop
from fitting.honest import OK, SKIPPED, blocking_flags
from fitting.keys import CURVE, LawKey, StatKey
from fitting.plot_style import BAND_ALPHA, BLIND, Skip, fitted_curve, legend_beside, loglog, style

log = logging.getLogger("fitting")
MAX_LEGEND_CONFIGS = 12  # beyond this, colour by model size with a colour bar instead


def make_all(fs, ctx, fits, boot, out: Path) -> list[dict]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    jobs = [("loss_vs_flops", _loss_vs_flops), ("loss_vs_size", _loss_vs_size), ("iso_loss", _iso_loss),
            ("efficiency_ratio", derived_plots.efficiency_ratio), ("optimal_size", derived_plots.optimal_size)]
    done = []
    for name, fn in jobs:
        fig, ax = plt.subplots(figsize=(7, 5))
        try:
            data = fn(fig, ax, fs, ctx, fits, boot)
        except Skip as e:
            log.info("plot %s skipped: %s", name, e)
            done.append({"name": name, "status": SKIPPED, "reason": str(e)})
            plt.close(fig)
            continue
        fig.savefig(out / f"{name}.png", dpi=120, bbox_inches="tight")  # the box takes in the legend
        plt.close(fig)
        data.to_csv(out / f"{name}.csv", index=False)
        done.append({"name": name, "status": OK, "png": f"{name}.png", "csv": f"{name}.csv"})
    fields = field_plot.draw(fs.frame, out)  # a fixed-format caption's per-field losses, if reported
    return done + ([fields] if fields else [])


def seed_means(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (group, config, D): the seeds of one cell, their mean compute and loss, the
    lowest and highest loss among them, and how many runs there are."""
    return (frame.groupby(["group", "config", "D"], as_index=False)
            .agg(N=("N", "first"), C=("C", "mean"), loss=("loss", "mean"), lo=("loss", "min"), hi=("loss", "max"),
                 runs=("run_id", "nunique"))
            .sort_values(["group", "config", "C"], kind="stable").reset_index(drop=True))


def _config_colors(frame, many: bool):
    """config -> colour: by rank of model size, or (many configs) on a log model-size scale."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    cmap = plt.get_cmap("viridis")
    size = frame.groupby("config")["N"].first()
    if many:
        norm = LogNorm(size.min(), size.max() * 1.0001)
        return {c: cmap(norm(n)) for c, n in size.items()}, plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    configs = sorted(size.index, key=size.get)
    return {c: cmap(i / max(1, len(configs) - 1)) for i, c in enumerate(configs)}, None


def _blind(ax, frame: pd.DataFrame, fits: dict, x: str) -> list[dict]:
    """Mark the runs that do not see their frames (a law through them is not the arm's)."""
    blind_runs = {r["run_id"] for r in fits.get("vision_runs", []) if not r["sees"]}
    b = frame[frame["run_id"].isin(blind_runs)]
    if len(b):
        ax.scatter(b[x], b["loss"], label="blind run (does not see its frames)", **BLIND)
    return [{"kind": "blind run", "group": g, "config": c, "run_id": r, x: a, "loss": l}
            for g, c, r, a, l in zip(b["group"], b["config"], b["run_id"], b[x], b["loss"])]


def _lc_cells(ax, fs) -> list[dict]:
    """Ring the seed means of the cells each L(C) was fitted to (by default the frontier of cells:
    fitset.cell_frontier), so a reader sees which points the law describes and which it ignores."""
    f, rows = fs.frame, []
    for g in fs.groups:
        e = fs.entries.get(LawKey("L(C)", g))
        if e is None or e.rows is None or not len(e.rows):
            continue
        cells = seed_means(f.iloc[e.rows])
        ax.scatter(cells["C"], cells["loss"], s=70, facecolors="none", edgecolors="k", lw=0.9,
                   label=None if rows else "cells L(C) is fitted to")
        rows += [{"kind": "L(C) cell", "group": g, "config": c, "C": a, "loss": b}
                 for c, a, b in zip(cells["config"], cells["C"], cells["loss"])]
    return rows


def _loss_vs_flops(fig, ax, fs, ctx, fits, boot):
    f = fs.frame
    many = f["config"].nunique() > MAX_LEGEND_CONFIGS
    colors, scale = _config_colors(f, many)
    rows = []
    for g, s in f.groupby("group"):
        ax.scatter(s["C"], s["loss"], marker=style(g)[0], s=10, color=[colors[c] for c in s["config"]], alpha=0.35,
                   lw=0)
        rows += [{"kind": "run", "group": g, "config": c, "run_id": r, "C": a, "loss": b}
                 for c, r, a, b in zip(s["config"], s["run_id"], s["C"], s["loss"])]
    spread = False
    for (g, c), s in seed_means(f).groupby(["group", "config"], sort=False):
        m, ls, _ = style(g)
        ax.plot(s["C"], s["loss"], marker=m, ls=ls, ms=4, lw=1.2, color=colors[c], label=None if many else f"{g} {c}")
        if (s["runs"] > 1).any():
            spread = True
            ax.fill_between(s["C"], s["lo"], s["hi"], color=colors[c], alpha=BAND_ALPHA, lw=0)
        rows += [{"kind": "seed mean", "group": g, "config": c, "C": a, "loss": b, "lo": lo, "hi": hi, "runs": n}
                 for a, b, lo, hi, n in zip(s["C"], s["loss"], s["lo"], s["hi"], s["runs"])]
    rows += _lc_cells(ax, fs)
    rows += _blind(ax, f, fits, "C")
    blind_groups = {r["group"] for r in rows if r["kind"] == "blind run"}
    grid = ctx.C_grid
    drawn = False
    for g in fs.groups:
        fit = fs.ok("L(C)", g)
        if fit is None or not ctx.C_range[1] > ctx.C_range[0]:
            continue
        y = fit.predict(grid, group=g)
        p = fit.params(g)
        band = boot.ci95(StatKey(CURVE, g, "L(C)"))
        mark = " (rests on blind runs)" if g in blind_groups else ""
        flags = fits.get("laws", {}).get("L(C)", {}).get(g, {}).get("flags", {})
        flagged = blocking_flags(flags, flags)  # worded as the report's "not identified" reasons
        mark += f" (flagged: {'; '.join(flagged)})" if flagged else ""
        fitted_curve(ax, grid, y, ctx.measured_C[g], style(g)[2], band=band,
                     label=f"{g} fit: {p['E']:.3g} + {p['A']:.3g} C^-{p['alpha']:.3f}{mark}")
        drawn = True
        lo, hi = band if band is not None else (np.full(len(grid), np.nan),) * 2
        out = ~((grid >= ctx.measured_C[g][0]) & (grid <= ctx.measured_C[g][1]))
        rows += [{"kind": "fit L(C)", "group": g, "C": a, "loss": b, "lo": c, "hi": d, "extrapolated": bool(e)}
                 for a, b, c, d, e in zip(grid, y, lo, hi, out)]
    if scale is not None:
        fig.colorbar(scale, ax=ax, label="model size N (parameters)")
    loglog(ax, "training compute C (FLOPs)", "eval loss (nats/token)",
           "Loss vs compute: seed means per config" + (", band: seeds' range" if spread else ""))
    _key(ax, drawn, below=scale is not None)
    return pd.DataFrame(rows)


def _key(ax, fits_drawn: bool, below: bool = False) -> None:
    """The legend, with what the line styles of a fitted curve mean."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles, labels = ax.get_legend_handles_labels()
    if fits_drawn:
        handles += [Patch(color="gray", alpha=BAND_ALPHA * 2), Line2D([], [], color="gray", ls=(0, (4, 3)))]
        labels += ["fit's bootstrap 95% band (measured compute)", "fit extrapolated beyond its arm's data"]
    legend_beside(ax, handles, labels, below=below)


def _loss_vs_size(fig, ax, fs, ctx, fits, boot):
    f = fs.frame.assign(budget=isoflop.buckets(fs.frame["C"].to_numpy(float), 1.5))
    rows = []
    budgets = [(b, s) for b, s in f.groupby("budget") if s.groupby("group")["N"].nunique().max() >= 2]
    if not budgets:
        raise Skip("no compute budget (runs within a factor 1.5 of each other) has two model sizes")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    cmap = plt.get_cmap("plasma")
    mids = [float(np.exp(np.log(s["C"]).mean())) for _, s in budgets]
    norm = LogNorm(min(mids), max(mids) * 1.0001)
    for c_mid, (b, s) in zip(mids, budgets):
        col = cmap(norm(c_mid))
        for g, sg in s.groupby("group"):
            sg = sg.sort_values("N")
            m, ls, _ = style(g)
            ax.plot(sg["N"], sg["loss"], marker=m, ls="none", color=col)
            rows += [{"kind": "point", "group": g, "budget_C": c_mid, "N": n, "loss": l}
                     for n, l in zip(sg["N"], sg["loss"])]
            fit = fs.ok("L(N,D)", g)
            if fit is not None:
                n = np.geomspace(sg["N"].min() / 2, sg["N"].max() * 2, 60)
                y = fit.predict(n, c_mid / (ctx.flops_per_nd[g] * n), group=g)
                ax.plot(n, y, ls=ls, color=col, lw=1)
                rows += [{"kind": "fit L(N,D)", "group": g, "budget_C": c_mid, "N": a, "loss": v}
                         for a, v in zip(n, y)]
    rows += _blind(ax, f[f["budget"].isin([b for b, _ in budgets])], fits, "N")
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="compute budget C (FLOPs)")
    for g in fs.groups:
        fitted = " (lines: L(N,D) fit)" if fs.ok("L(N,D)", g) is not None else ""
        ax.plot([], [], color="gray", marker=style(g)[0], ls=style(g)[1], label=f"{g}{fitted}")
    loglog(ax, "model size N (parameters)", "eval loss (nats/token)", "Loss vs model size at fixed compute")
    legend_beside(ax, below=True)
    return pd.DataFrame(rows)


def _iso_loss(fig, ax, fs, ctx, fits, boot):
    iso = derived.iso_loss(seed_means(fs.frame))  # through seed means: seeds' noise is not a trade-off
    rows = []
    import matplotlib.pyplot as plt

    levels = sorted(iso["loss_level"].unique()) if len(iso) else []
    cmap = plt.get_cmap("coolwarm")
    colors = {lev: cmap(i / max(1, len(levels) - 1)) for i, lev in enumerate(levels)}
    for (g, lev), s in iso.groupby(["group", "loss_level"]):
        s = s.sort_values("N")
        m, ls, _ = style(g)
        ax.plot(s["N"], s["C"], marker=m, ls=ls, color=colors[lev], label=f"{g} L={lev:.3g} (data)")
        rows += [{"kind": "data", "group": g, "loss_level": lev, "N": a, "C": c} for a, c in zip(s["N"], s["C"])]
    for g in fs.groups:
        fit = fs.ok("L(N,D)", g)
        if fit is None or not levels:
            continue
        p = fit.params(g)
        if not p["beta"] > 0:  # data never helps: no iso-loss trade-off to draw
            continue
        n = np.geomspace(fs.frame["N"].min() / 3, fs.frame["N"].max() * 3, 200)
        for lev in levels:
            gap = lev - p["E"] - p["A"] * n ** -p["alpha"]
            ok = gap > 0  # below E + A N^-alpha no amount of data reaches this loss
            if not ok.any():
                continue
            d = (p["B"] / gap[ok]) ** (1.0 / p["beta"])
            c = ctx.flops_per_nd[g] * n[ok] * d
            ax.plot(n[ok], c, ls=":", color=colors[lev], lw=1)
            rows += [{"kind": "fit L(N,D)", "group": g, "loss_level": lev, "N": a, "C": b} for a, b in zip(n[ok], c)]
    if not rows:
        raise Skip("no config has two compute points spanning a common loss level")
    loglog(ax, "model size N (parameters)", "compute to reach the loss C (FLOPs)",
           "Iso-loss curves (seed means; dotted: L(N,D) fit)")
    legend_beside(ax, ncol=2)
    return pd.DataFrame(rows)
