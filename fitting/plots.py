"""The five plots, each a PNG plus a CSV of exactly the data drawn, or a logged reason to skip.

matplotlib is imported inside `make_all` (Agg backend: no display on training nodes or CI),
so importing the fitting package stays cheap.
"""
from __future__ import annotations

import logging
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from fitting import derived, field_plot, isoflop
from fitting.keys import ALLOCATION, MULTIPLIER, RATIO, StatKey, of_pair

log = logging.getLogger("fitting")
# (marker, line style) per arm: fixed for the study's arms, any other group name gets one of
# OTHER_STYLES by a stable hash of its name (the same in every plot), never a KeyError
STYLES = {"foveated": ("o", "-"), "baseline": ("s", "--"), "pooled1": ("D", "-.")}
OTHER_STYLES = tuple((m, ls) for ls in (":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1))) for m in ("^", "v", "P", "X"))
MAX_LEGEND_CONFIGS = 12  # beyond this, colour by model size with a colour bar instead


class Skip(Exception):
    """Not enough data for this plot; the message says why."""


def make_all(fs, ctx, fits, boot, out: Path) -> list[dict]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    jobs = [("loss_vs_flops", _loss_vs_flops), ("loss_vs_size", _loss_vs_size), ("iso_loss", _iso_loss),
            ("efficiency_ratio", _efficiency_ratio), ("optimal_size", _optimal_size)]
    done = []
    for name, fn in jobs:
        fig, ax = plt.subplots(figsize=(7, 5))
        try:
            data = fn(fig, ax, fs, ctx, fits, boot)
        except Skip as e:
            log.info("plot %s skipped: %s", name, e)
            done.append({"name": name, "status": "skipped", "reason": str(e)})
            plt.close(fig)
            continue
        fig.tight_layout()
        fig.savefig(out / f"{name}.png", dpi=120)
        plt.close(fig)
        data.to_csv(out / f"{name}.csv", index=False)
        done.append({"name": name, "status": "ok", "png": f"{name}.png", "csv": f"{name}.csv"})
    fields = field_plot.draw(fs.frame, out)  # a fixed-format caption's per-field losses, if reported
    return done + ([fields] if fields else [])


def _style(g) -> tuple:
    """(marker, line style) of group g."""
    if g in STYLES:
        return STYLES[g]
    return OTHER_STYLES[zlib.crc32(str(g).encode()) % len(OTHER_STYLES)]


def _config_colors(frame):
    import matplotlib.pyplot as plt

    configs = sorted(frame["config"].unique(), key=lambda c: frame.loc[frame["config"] == c, "N"].iloc[0])
    cmap = plt.get_cmap("viridis")
    return {c: cmap(i / max(1, len(configs) - 1)) for i, c in enumerate(configs)}


def _loglog(ax, xlabel, ylabel, title):
    from matplotlib.ticker import FuncFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    if ylabel.startswith("eval loss"):  # losses span < 1 decade: plain numbers, not 3x10^0
        plain = FuncFormatter(lambda v, _: f"{v:g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)


def _loss_vs_flops(fig, ax, fs, ctx, fits, boot):
    f = fs.frame
    rows = []
    many = f["config"].nunique() > MAX_LEGEND_CONFIGS
    colors = _config_colors(f)
    for (g, c), s in f.sort_values("C").groupby(["group", "config"]):
        m, ls = _style(g)
        if many:
            ax.scatter(s["C"], s["loss"], c=np.log10(s["N"]), cmap="viridis", marker=m, s=14,
                       vmin=np.log10(f["N"].min()), vmax=np.log10(f["N"].max()))
        else:
            ax.plot(s["C"], s["loss"], marker=m, ls=ls, color=colors[c], alpha=0.8, label=f"{g} {c}")
        rows += [{"kind": "point", "group": g, "config": c, "C": a, "loss": b} for a, b in zip(s["C"], s["loss"])]
    # runs that do not see their frames are drawn but marked: a law through them is not the arm's
    blind_runs = {r["run_id"] for r in fits.get("vision_runs", []) if not r["sees"]}
    blind = f[f["run_id"].isin(blind_runs)]
    if len(blind):
        ax.scatter(blind["C"], blind["loss"], marker="x", s=60, color="red", zorder=5,
                   label="blind run (does not see its frames)")
        rows += [{"kind": "blind run", "group": g, "config": c, "C": a, "loss": b}
                 for g, c, a, b in zip(blind["group"], blind["config"], blind["C"], blind["loss"])]
    if many:
        sm = ax.collections[0] if ax.collections else None
        if sm is not None:
            fig.colorbar(sm, ax=ax, label="log10 model size N (parameters)")
    grid = np.geomspace(*ctx.C_range, 200) if ctx.C_range[1] > ctx.C_range[0] else None
    for g in fs.groups:
        fit = fs.ok("L(C)", g)
        if fit is None or grid is None:
            continue
        y = fit.predict(grid, group=g)
        p = fit.params(g)
        mark = " (rests on blind runs)" if g in set(blind["group"]) else ""
        ax.plot(grid, y, color="k", ls=_style(g)[1], lw=2,
                label=f"{g} fit: {p['E']:.3g} + {p['A']:.3g} C^-{p['alpha']:.3f}{mark}")
        rows += [{"kind": "fit L(C)", "group": g, "config": "", "C": a, "loss": b} for a, b in zip(grid, y)]
    _loglog(ax, "training compute C (FLOPs)", "eval loss (nats/token)", "Loss vs compute")
    ax.legend(fontsize=7, ncol=2)
    return pd.DataFrame(rows)


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
            m, ls = _style(g)
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
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="compute budget C (FLOPs)")
    for g in fs.groups:
        fitted = " (lines: L(N,D) fit)" if fs.ok("L(N,D)", g) is not None else ""
        ax.plot([], [], color="gray", marker=_style(g)[0], ls=_style(g)[1], label=f"{g}{fitted}")
    _loglog(ax, "model size N (parameters)", "eval loss (nats/token)", "Loss vs model size at fixed compute")
    ax.legend(fontsize=7)
    return pd.DataFrame(rows)


def _iso_loss(fig, ax, fs, ctx, fits, boot):
    iso = derived.iso_loss(fs.frame)
    rows = []
    import matplotlib.pyplot as plt

    levels = sorted(iso["loss_level"].unique()) if len(iso) else []
    cmap = plt.get_cmap("coolwarm")
    colors = {lev: cmap(i / max(1, len(levels) - 1)) for i, lev in enumerate(levels)}
    for (g, lev), s in iso.groupby(["group", "loss_level"]):
        s = s.sort_values("N")
        m, ls = _style(g)
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
    _loglog(ax, "model size N (parameters)", "compute to reach the loss C (FLOPs)",
            "Iso-loss curves (dotted: L(N,D) fit)")
    ax.legend(fontsize=7, ncol=2)
    return pd.DataFrame(rows)


def _band(ax, x, key, boot, color):
    ci = boot.ci95(key)
    if ci is None:
        return None, None
    lo, hi = (np.asarray(v, float) for v in ci)
    ok = np.isfinite(lo) & np.isfinite(hi)
    if ok.any():
        ax.fill_between(x[ok], lo[ok], hi[ok], color=color, alpha=0.2, label="bootstrap 95% CI")
    return lo, hi


def _efficiency_ratio(fig, ax, fs, ctx, fits, boot):
    full = derived.summarize(fs.current(), ctx)
    # the first comparison that was computed (withheld pairs never are): foveated vs baseline
    done = [(t, r) for t, r in ctx.pairs if of_pair(RATIO, t, r, "loss") in full]
    if not done:
        raise Skip("needs L(C) fits of two variants that both use their frames")
    t, r = done[0]
    grid = ctx.C_grid
    ratio = of_pair(RATIO, t, r, "loss")
    ax.plot(grid, full[ratio], color="C0", label=f"L_{t}(C) / L_{r}(C), fits")
    lo, hi = _band(ax, grid, ratio, boot, "C0")
    data = pd.DataFrame({"C": grid, "ratio": full[ratio], "ci_lo": lo, "ci_hi": hi, "kind": "fit"})
    # observed ratios of runs that match exactly (same config, same samples seen)
    f = fs.frame
    a = f[f["group"] == t].groupby(["config", "D"])[["C", "loss"]].mean()
    b = f[f["group"] == r].groupby(["config", "D"])[["C", "loss"]].mean()
    both = a.merge(b, left_index=True, right_index=True, suffixes=("_t", "_r"))
    if len(both):
        ax.plot(both["C_r"], both["loss_t"] / both["loss_r"], "kx", label="matched runs (x at reference C)")
        obs = pd.DataFrame({"C": both["C_r"].to_numpy(), "ratio": (both["loss_t"] / both["loss_r"]).to_numpy(),
                            "kind": "matched runs"})
        data = pd.concat([data, obs], ignore_index=True)
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("training compute C (FLOPs)")
    ax.set_ylabel(f"loss ratio {t} / {r}")
    ax.set_title(f"Efficiency ratio ({t} better below 1)")
    ax.grid(True, which="both", alpha=0.3)
    ax2 = ax.twinx()
    m = full[of_pair(MULTIPLIER, t, r, "ref_to_match_treat")]
    shown = np.where(np.isfinite(m), m, np.nan)
    never = "" if np.isfinite(m).any() else f" (infinite: {r}'s fit never reaches {t}'s loss)"
    ax2.plot(grid, shown, color="C3", ls="--", label=f"compute multiplier C_{r}(L_{t}(C))/C{never}")
    ax2.set_yscale("log")
    ax2.set_ylabel(f"compute {r} needs / C (log)")
    data = pd.concat([data, pd.DataFrame({"C": grid, "multiplier": m, "kind": "multiplier"})], ignore_index=True)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7)
    return data


def _optimal_size(fig, ax, fs, ctx, fits, boot):
    rows = []
    grid = ctx.C_grid
    full = derived.summarize(fs.current(), ctx)
    for i, g in enumerate(fs.groups):
        key = StatKey(ALLOCATION, g, "N_opt")
        if key in full:
            ax.plot(grid, full[key], ls=_style(g)[1], color=f"C{i}", label=f"{g} N_opt(C) from L(N,D)")
            lo, hi = _band(ax, grid, key, boot, f"C{i}")
            if lo is None:
                lo = hi = np.full(len(grid), np.nan)
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
            ax.plot(s["budget_C"], s["N"], marker=_style(g)[0], ls="none", mfc="none", color=f"C{i}",
                    label=f"{g} best config in grid")
            rows += [{"kind": "best config", "group": g, "C": c, "N": n} for c, n in zip(s["budget_C"], s["N"])]
    if not rows:
        raise Skip("needs an L(N,D) fit or an IsoFLOP fit (>= 3 model sizes)")
    _loglog(ax, "compute budget C (FLOPs)", "optimal model size N (parameters)", "Compute-optimal model size")
    ax.legend(fontsize=7)
    return pd.DataFrame(rows)
