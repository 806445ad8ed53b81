"""What every plot shares: each arm's marker, line style and colour, log axes with plain loss
ticks, the legend beside the axes (never on the data), and the fitted-curve convention.

A fitted curve is solid over the compute its arm measured, with its bootstrap 95% band there,
and dashed where it is extrapolated (no band: a band outside the data would claim to know it).
"""
from __future__ import annotations

import zlib

import numpy as np

# (marker, line style, fit colour) per arm: fixed for the study's arms, any other group name
# gets one of OTHER_STYLES by a stable hash of its name (the same in every plot), never a KeyError
STYLES = {"foveated": ("o", "-", "black"), "baseline": ("s", "--", "tab:brown"),
          "pooled1": ("D", "-.", "tab:purple")}
OTHER_STYLES = tuple((m, ls, c) for ls, c in ((":", "tab:olive"), ((0, (5, 1)), "tab:cyan"),
                                              ((0, (3, 1, 1, 1, 1, 1)), "tab:pink"))
                     for m in ("^", "v", "P", "X"))
BLIND = {"marker": "x", "s": 70, "color": "magenta", "linewidths": 1.8, "zorder": 6}  # a run blind to its frames
BAND_ALPHA = 0.18


class Skip(Exception):
    """Not enough data for a plot; the message says why."""


def style(g) -> tuple:
    """(marker, line style, fit colour) of group g."""
    if g in STYLES:
        return STYLES[g]
    return OTHER_STYLES[zlib.crc32(str(g).encode()) % len(OTHER_STYLES)]


def plain_ticks(axis) -> None:
    """Decimal tick labels on a log axis (2.5, 3, 4; 0.05), never 3.2x10^0. The minor ticks
    (2..9 x a power of ten) are labelled only while the axis spans under a decade: over more,
    they would crowd it with digits."""
    import math

    from matplotlib.ticker import FuncFormatter, LogLocator

    def minor(v, _):
        lo, hi = sorted(axis.get_view_interval())
        return f"{v:g}" if lo > 0 and math.log10(hi / lo) < 1 else ""

    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_locator(LogLocator(subs=(2, 3, 4, 5, 6, 7, 8, 9)))
    axis.set_minor_formatter(FuncFormatter(minor))


def loglog(ax, xlabel, ylabel, title) -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")
    if ylabel.startswith("eval loss"):  # losses span < 1 decade
        plain_ticks(ax.yaxis)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)


def legend_beside(ax, handles=None, labels=None, below: bool = False, right_axis: bool = False, **kw) -> None:
    """The legend right of the axes (past a second y axis's labels with right_axis; below the
    axes where a colour bar holds the right side); the figure is saved with a tight box, so it
    grows to fit."""
    if handles is None:
        handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    if below:
        kw.setdefault("ncol", 2)
        ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.13), fontsize=7, frameon=False, **kw)
    else:
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.18 if right_axis else 1.02, 1.0),
                  borderaxespad=0.0, fontsize=7, frameon=False, **kw)


def split_measured(x: np.ndarray, measured: tuple[float, float]) -> np.ndarray:
    """Boolean mask of the points of `x` inside the measured range [lo, hi]."""
    return (x >= measured[0] * (1 - 1e-9)) & (x <= measured[1] * (1 + 1e-9))


def fitted_curve(ax, x, y, measured, color, label, band=None, lw=2.0) -> None:
    """A fitted curve: solid with its 95% band (lo, hi arrays on x) inside `measured`, dashed
    outside it (extrapolated)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    inside = split_measured(x, measured)
    ax.plot(np.where(inside, x, np.nan), y, color=color, ls="-", lw=lw, label=label)
    out = ~inside
    if out.any():  # dashed, joined to the solid part at the range's ends
        joined = out | np.r_[out[1:], False] | np.r_[False, out[:-1]]
        ax.plot(np.where(joined, x, np.nan), y, color=color, ls=(0, (4, 3)), lw=lw * 0.75)
    if band is not None:
        lo, hi = (np.asarray(v, float) for v in band)
        ok = inside & np.isfinite(lo) & np.isfinite(hi)
        if ok.any():
            ax.fill_between(x[ok], lo[ok], hi[ok], color=color, alpha=BAND_ALPHA, lw=0)
