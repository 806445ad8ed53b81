"""Does each arm use its frames? The vision gap, and the per-cell seed spread.

The trainer evaluates every run's final checkpoint twice: with the true frames, and with the
frames of another clip (a derangement: no clip keeps its own). The vision gap of a run is
shuffled - true; an arm that reads its frames has a gap above zero. Per variant the gap is
averaged over its runs at the largest step count (the most-trained point of every config),
with a 95% interval from resampling those runs and, inside each resampled run, its
evaluation noise (normal, with the two evaluations' standard errors; none when not reported).
An arm whose interval does not exclude 0 does not demonstrably use its frames, and every
comparison involving it is withheld: a crossover or multiplier between a model that looks and
one that does not says nothing about foveation.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

SHUFFLED = "loss_shuffled"


def _top_points(s: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """A variant's largest-compute points: its runs at the largest step count, or (step counts
    unknown) the top third by compute, at least 3 points."""
    if s["steps"].notna().all():
        top = s["steps"].max()
        return s[s["steps"] == top], f"final evaluation of each run at the largest step count ({top:g})"
    k = max(3, int(np.ceil(len(s) / 3)))
    return s.nlargest(k, "C"), f"the {k} largest-compute points"


def vision_gaps(frame: pd.DataFrame, n: int = 1000, seed: int = 0) -> dict:
    """variant -> {"gap", "ci95", "uses_frames", "n_runs", "points", "reason"}; {} when no
    point carries a shuffled-frames loss (a CSV table, or a trainer that did not report it)."""
    if SHUFFLED not in frame or not frame[SHUFFLED].notna().any():
        return {}
    rng = np.random.default_rng(seed)
    out = {}
    for g, s in frame.groupby("group"):
        s = s[s[SHUFFLED].notna()]
        if s.empty:
            out[g] = {"gap": None, "ci95": None, "uses_frames": False, "n_runs": 0, "points": "",
                      "reason": "no evaluation with shuffled frames"}
            continue
        top, rule = _top_points(s)
        per_run = top.groupby("run_id").agg(gap=(SHUFFLED, "mean"), true=("loss", "mean"),
                                            se_t=("loss_se", "mean"), se_s=("loss_shuffled_se", "mean"))
        gaps = (per_run["gap"] - per_run["true"]).to_numpy(float)
        # evaluation noise of the difference; the two evaluations share their clips, so the
        # quadrature sum is an upper bound on its standard error
        se = np.sqrt(np.nan_to_num(per_run["se_t"].to_numpy(float)) ** 2
                     + np.nan_to_num(per_run["se_s"].to_numpy(float)) ** 2)
        k = len(gaps)
        idx = rng.integers(0, k, (n, k))
        draws = (gaps[idx] + rng.normal(0.0, 1.0, (n, k)) * se[idx]).mean(axis=1)
        lo, hi = (float(v) for v in np.percentile(draws, [2.5, 97.5]))
        rec = {"gap": float(gaps.mean()), "ci95": [lo, hi], "n_runs": k, "points": rule,
               "per_run_sd": float(gaps.std(ddof=1)) if k > 1 else None,
               "noise": "runs resampled" + (" + evaluation SE" if se.any() else " (no evaluation SE reported)")}
        if hi - lo <= 1e-12 * max(1.0, abs(rec["gap"])):
            rec.update(ci95=None, uses_frames=False,
                       reason=f"zero-width interval ({k} run(s), no evaluation SE): not identified")
        elif lo > 0:
            rec.update(uses_frames=True, reason="")
        else:
            rec.update(uses_frames=False, reason=f"vision gap 95% CI [{lo:.3g}, {hi:.3g}] does not exclude 0")
        out[g] = rec
    return out


def seed_spread(frame: pd.DataFrame) -> dict:
    """Per (variant, config, steps) cell: runs, sd across seeds of the final loss, mean eval SE."""
    cells, n_multi = [], 0
    if frame["steps"].isna().all():
        return {"cells": [], "max_runs_per_cell": None, "note": "no step counts: cells not defined"}
    for (g, c, st), s in frame.groupby(["group", "config", "steps"]):
        k = s["run_id"].nunique()
        n_multi += k > 1
        cells.append({"group": g, "config": c, "steps": float(st), "n_runs": int(k),
                      "n_seeds": int(s["seed"].nunique()) if s["seed"].notna().any() else None,
                      "mean_loss": float(s["loss"].mean()),
                      "seed_sd": float(s["loss"].std(ddof=1)) if k > 1 else None,
                      "eval_se": float(s["loss_se"].mean()) if s["loss_se"].notna().any() else None})
    most = max((c["n_runs"] for c in cells), default=0)
    if most <= 1:
        note = ("One run per (variant, config, steps) cell: seed-to-seed spread is not measured. The "
                "bootstrap resamples runs across cells, so it sees seed noise only through the scatter of "
                "the cells around the fitted law; with a few cells (or a law that fits them exactly) the "
                "intervals understate the uncertainty. Rerun with --seeds K (K >= 3) for intervals that "
                "include it.")
    else:
        sds = [c["seed_sd"] for c in cells if c["seed_sd"] is not None]
        ses = [c["eval_se"] for c in cells if c["eval_se"] is not None and c["seed_sd"] is not None]
        ratio = (f"; median seed sd {np.median(sds):.3g} vs median eval SE {np.median(ses):.3g}" if ses else "")
        note = (f"Up to {most} runs (seeds) per cell, {n_multi} of {len(cells)} cells replicated; the bootstrap "
                f"resamples runs, so seed spread enters every interval{ratio}.")
    return {"cells": cells, "max_runs_per_cell": most, "note": note}
