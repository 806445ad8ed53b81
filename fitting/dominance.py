"""What the points alone say about two arms, when the laws cannot say more.

A multiplier is a statement about two fitted laws; when those are not identified, the report
still has the runs. One statement needs no law and no interval: a cell (config, step count) of
arm A whose every run has a lower loss than the best run of arm B anywhere in the data, by more
than twice the two evaluations' combined standard error (so a fresh eval set would not flip it). It is
reported for the cheapest such cell, with how much more compute B's runs spent without reaching
it. It is a fact about this grid (these sizes, steps and task), not a compute multiplier: nothing
is said about compute outside the runs, and an arm that would catch up later is not ruled out.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from fitting.honest import MIN_RUNS

NOISE_SE = 2.0  # a "lower loss" must clear the two evaluations' combined SE this many times


def _cheapest_beating(frame: pd.DataFrame, a: str, b: str) -> dict | None:
    frame = frame.assign(loss_se=frame["loss_se"].fillna(0.0))  # no evaluation SE known: no noise margin
    fa, fb = frame[frame["group"] == a], frame[frame["group"] == b]
    if fa.empty or fb.empty:
        return None
    best_b = fb.loc[fb["loss"].idxmin()]
    # a cell's runs share one compute (same config and step count, FLOPs per sample are fixed)
    cells = fa.groupby(["config", "C"]).agg(
        worst=("loss", "max"), worst_se=("loss_se", "max"), runs=("loss", "size"), steps=("steps", "first"))
    # beaten by more than the evaluations can blur: NOISE_SE x their combined standard error
    margin = NOISE_SE * np.hypot(cells["worst_se"], best_b["loss_se"])
    cells = cells[(cells["runs"] >= MIN_RUNS) & (cells["worst"] < best_b["loss"] - margin)].reset_index()
    if cells.empty:
        return None
    cell = cells.sort_values("C").iloc[0]
    max_c_b = float(fb["C"].max())
    if max_c_b <= cell["C"]:
        return None  # b never spent more: "it did not reach it" would say nothing
    return {"winner": a, "loser": b, "config": str(cell["config"]), "steps": float(cell["steps"]),
            "C": float(cell["C"]), "runs": int(cell["runs"]), "worst_loss": float(cell["worst"]),
            "loser_best_loss": float(best_b["loss"]), "loser_best_config": str(best_b["config"]),
            "loser_best_C": float(best_b["C"]), "loser_max_C": max_c_b, "compute_ratio": max_c_b / float(cell["C"])}


def between(frame: pd.DataFrame, t: str, r: str) -> dict | None:
    """The cheapest cell of either arm whose every run (>= MIN_RUNS of them) beats every run of
    the other, which spent more compute; None when neither arm has one (at most one can)."""
    return _cheapest_beating(frame, t, r) or _cheapest_beating(frame, r, t)
