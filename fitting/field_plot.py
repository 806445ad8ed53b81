"""What each arm learned when: the eval caption loss per caption field over training compute.

For a data set whose captions have a fixed format (the graded synthetic task: colour, shape,
motion, quadrant, tag) the trainer reports the loss on each field's token. One panel per arm;
a colour per field, a marker per config, one line per (field, config) through the seed means of
its final evaluations. A field whose loss stays at its prior was not learned at that compute;
one that falls late was learned late. The CSV holds exactly the points drawn.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from fitting.columns import FIELD_PREFIX
from fitting.honest import OK
from fitting.plot_style import plain_ticks

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def field_means(frame: pd.DataFrame) -> pd.DataFrame:
    """Long table: group, config, field, C (seed mean) and loss (seed mean, seed sd, runs)."""
    fields = [c for c in frame.columns if c.startswith(FIELD_PREFIX)]
    if not fields:
        return pd.DataFrame()
    long = frame.melt(id_vars=["group", "config", "N", "steps", "C", "run_id"], value_vars=fields,
                      var_name="field", value_name="field_loss").dropna(subset=["field_loss"])
    long["field"] = long["field"].str[len(FIELD_PREFIX):]
    return (long.groupby(["group", "config", "N", "steps", "field"], as_index=False)
            .agg(C=("C", "mean"), loss=("field_loss", "mean"), seed_sd=("field_loss", "std"),
                 runs=("run_id", "nunique"))
            .sort_values(["group", "field", "N", "C"], kind="stable"))


def draw(frame: pd.DataFrame, out: Path) -> dict | None:
    """field_losses.png + .csv; None when the data set reports no caption fields."""
    data = field_means(frame)
    if data.empty:
        return None
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys(data["group"]))
    fields = list(dict.fromkeys(data["field"]))
    configs = list(dict.fromkeys(data.sort_values("N")["config"]))
    colours = {f: plt.get_cmap("tab10")(i % 10) for i, f in enumerate(fields)}
    # constrained layout places the legend just outside the panels, sized to its text: no gap
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups) + 1.6, 4.2), sharey=True, squeeze=False,
                             layout="constrained")
    for ax, g in zip(axes[0], groups):
        for (f, c), s in data[data["group"] == g].groupby(["field", "config"], sort=False):
            ax.plot(s["C"], s["loss"], color=colours[f], marker=MARKERS[configs.index(c) % len(MARKERS)],
                    ms=4, lw=0.9, alpha=0.85)
        ax.set(xscale="log", yscale="log", title=g, xlabel="training compute C (FLOPs)")
        ax.grid(True, which="both", alpha=0.25)
    plain_ticks(axes[0][0].yaxis)  # shared y axis: one formatter serves every panel
    axes[0][0].set_ylabel("eval loss on the field's token (nats)")
    handles = [plt.Line2D([], [], color=colours[f], lw=2, label=f) for f in fields]
    handles += [plt.Line2D([], [], color="grey", marker=MARKERS[i % len(MARKERS)], ls="", label=c)
                for i, c in enumerate(configs)]
    fig.legend(handles=handles, loc="outside right center", fontsize=8, frameon=False)
    fig.suptitle("caption loss per field (seed means of final evaluations)", fontsize=10)
    fig.savefig(out / "field_losses.png", dpi=120)
    plt.close(fig)
    data.to_csv(out / "field_losses.csv", index=False)
    return {"name": "field_losses", "status": OK, "png": "field_losses.png", "csv": "field_losses.csv"}
