"""Does every run use its frames? The vision check per run, per cell and per arm; the seed table.

The trainer evaluates every milestone twice: with the true frames, and with the frames of
another clip (a derangement: no clip keeps its own). The vision gap is shuffled - true, with the
trainer's paired standard error over evaluation batches (eval_vision_gap[_se]); for data
without it, shuffled - true with the two losses' SEs added in quadrature (an upper bound: the
two evaluations share their captions).

A run is the bootstrap's unit (a WSD family, or one cosine trial), judged at its most-trained
evaluation by the one rule in search_spaces/vision_rule.py (z above Z_MIN and an effect-size
floor). A run that does not see its frames is a failed training run, not a point of the arm's
law, so any blind run withholds every comparison that rests on its arm, naming the cells.
Per arm the gap of its runs at their size's largest step count is also pooled, with a 95% interval from
resampling those runs and each one's evaluation noise: a summary, not the verdict.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from search_spaces import vision_rule

SEED_SD_FACTOR = 3.0  # seed sd above this x the eval SE: seeds differ beyond evaluation noise
REPORTED, FALLBACK = "reported", "shuffled - true"
# seed-table flags
BIMODAL = "bimodal"  # some of the cell's runs see their frames, some do not
SEED_SPREAD = f"seed sd > {SEED_SD_FACTOR:g}x eval SE"


def rule() -> dict:
    """The seeing rule's thresholds and its sentence, for fits.json and the report."""
    return {"z_min": vision_rule.Z_MIN, "rel_floor": vision_rule.REL_FLOOR, "text": vision_rule.describe()}


def _gap(row) -> tuple[float, float, str]:
    """(gap, SE, where they come from) of one evaluation; NaN where not measured."""
    if np.isfinite(row["vision_gap"]):
        return float(row["vision_gap"]), float(row["vision_gap_se"]), REPORTED
    if np.isfinite(row["loss_shuffled"]):
        se = float(np.hypot(row["loss_se"], row["loss_shuffled_se"]))  # NaN if either SE is missing
        return float(row["loss_shuffled"] - row["loss"]), se, FALLBACK
    return float("nan"), float("nan"), ""


def run_checks(frame: pd.DataFrame) -> list[dict]:
    """One record per run at its most-trained evaluation (largest step count, else largest C);
    [] when no point carries a vision measurement (a CSV table)."""
    if not (frame["loss_shuffled"].notna().any() or frame["vision_gap"].notna().any()):
        return []
    out = []
    for run, s in frame.groupby("run_id", sort=True):
        key = ["steps", "C"] if s["steps"].notna().all() else ["C"]
        last = s.sort_values(key, kind="stable").iloc[-1]
        gap, se, source = _gap(last)
        shuffled = last["loss_shuffled"] if np.isfinite(last["loss_shuffled"]) else last["loss"] + gap
        reason = vision_rule.blind_reason(gap, se, shuffled)
        out.append({"group": last["group"], "config": last["config"], "seed": last["seed"], "run_id": run,
                    "steps": last["steps"], "C": last["C"], "loss": last["loss"], "gap": gap, "gap_se": se,
                    "gap_from": source, "sees": reason == "", "reason": reason,
                    "lr": last["lr"], "lr_backbone": last["lr_backbone"]})
    return sorted(out, key=lambda r: (r["group"], r["config"], *np.nan_to_num([r["seed"], r["steps"]], nan=-1)))


def _values(s: pd.Series) -> list:
    return sorted({float(v) for v in s if np.isfinite(v)})


def cells(runs: pd.DataFrame) -> dict:
    """config -> {"n_runs", "n_seeing", "lr", "lr_backbone"} of one arm's runs."""
    return {c: {"n_runs": int(len(s)), "n_seeing": int(s["sees"].sum()),
                "lr": _values(s["lr"]), "lr_backbone": _values(s["lr_backbone"])}
            for c, s in runs.groupby("config", sort=True)}


def _pooled(top: pd.DataFrame, rng, n: int) -> tuple[float, list | None]:
    gaps, se = top["gap"].to_numpy(float), np.nan_to_num(top["gap_se"].to_numpy(float))
    k = len(gaps)
    idx = rng.integers(0, k, (n, k))
    draws = (gaps[idx] + rng.normal(0.0, 1.0, (n, k)) * se[idx]).mean(axis=1)
    lo, hi = (float(v) for v in np.percentile(draws, [2.5, 97.5]))
    return float(gaps.mean()), (None if hi - lo <= 1e-12 * max(1.0, abs(gaps.mean())) else [lo, hi])


def vision_gaps(frame: pd.DataFrame, n: int = 1000, seed: int = 0) -> tuple[dict, list[dict]]:
    """(arm -> record, per-run records). An arm record: "uses_frames" (every run sees), "reason"
    and "blind_cells" naming the cells with blind runs, "n_runs", "n_seeing", "cells", and the
    pooled summary "gap", "ci95", "n_pooled", "points". ({}, []) without any vision measurement."""
    runs = run_checks(frame)
    if not runs:
        return {}, []
    rng = np.random.default_rng(seed)
    table = pd.DataFrame(runs)
    out = {}
    for g in sorted(frame["group"].unique()):
        s = table[table["group"] == g]
        per_cell = cells(s)
        blind = [f"{c}: {v['n_seeing']} of {v['n_runs']} runs see" for c, v in per_cell.items()
                 if v["n_seeing"] < v["n_runs"]]
        rec = {"uses_frames": bool(len(s)) and not blind, "n_runs": int(len(s)), "n_seeing": int(s["sees"].sum()),
               "blind_cells": blind, "cells": per_cell,
               "reason": "; ".join(blind) if blind else "" if len(s) else "no evaluation with shuffled frames"}
        measured = s[np.isfinite(s["gap"])]
        if measured.empty:
            out[g] = {**rec, "gap": None, "ci95": None, "n_pooled": 0, "points": ""}
            continue
        if measured["steps"].notna().all():
            # each size's most-trained runs (a grid may give each size its own step counts)
            top = measured[measured["steps"] == measured.groupby("config")["steps"].transform("max")]
            rule = "runs at their size's largest step count"
        else:
            top, rule = measured, "every run"
        gap, ci = _pooled(top, rng, n)
        out[g] = {**rec, "gap": gap, "ci95": ci, "n_pooled": int(len(top)), "points": rule}
    return out, runs


def seed_spread(frame: pd.DataFrame, runs: list[dict] = ()) -> dict:
    """Per (variant, config, steps) cell: runs, sd across seeds of the final loss, mean eval SE,
    and flags: seeds that disagree on seeing (some see, some do not: bimodal), or a seed sd
    above SEED_SD_FACTOR x the eval SE (seeds differ beyond evaluation noise)."""
    cells_out, n_multi = [], 0
    if frame["steps"].isna().all():
        return {"cells": [], "max_runs_per_cell": None, "note": "no step counts: cells not defined"}
    sees = {r["run_id"]: r["sees"] for r in runs}
    for (g, c, st), s in frame.groupby(["group", "config", "steps"]):
        k = s["run_id"].nunique()
        n_multi += k > 1
        sd = float(s["loss"].std(ddof=1)) if k > 1 else None
        se = float(s["loss_se"].mean()) if s["loss_se"].notna().any() else None
        judged = [sees[r] for r in s["run_id"].unique() if r in sees]
        ratio = sd / se if sd is not None and se else None
        flags = [f for f, on in ((BIMODAL, 0 < sum(judged) < len(judged)),
                                 (SEED_SPREAD, ratio is not None and ratio > SEED_SD_FACTOR)) if on]
        cells_out.append({"group": g, "config": c, "steps": float(st), "n_runs": int(k),
                          "n_seeds": int(s["seed"].nunique()) if s["seed"].notna().any() else None,
                          "mean_loss": float(s["loss"].mean()), "seed_sd": sd, "eval_se": se, "sd_over_se": ratio,
                          "n_judged": len(judged), "n_seeing": int(sum(judged)), "flags": flags})
    most = max((c["n_runs"] for c in cells_out), default=0)
    if most <= 1:
        note = ("One run per (variant, config, steps) cell: seed-to-seed spread is not measured. The "
                "bootstrap resamples runs across cells, so it sees seed noise only through the scatter of "
                "the cells around the fitted law; with a few cells (or a law that fits them exactly) the "
                "intervals understate the uncertainty. Rerun with --seeds K (K >= 3) for intervals that "
                "include it.")
    else:
        sds = [c["seed_sd"] for c in cells_out if c["seed_sd"] is not None]
        ses = [c["eval_se"] for c in cells_out if c["eval_se"] is not None and c["seed_sd"] is not None]
        ratio = (f"; median seed sd {np.median(sds):.3g} vs median eval SE {np.median(ses):.3g}" if ses else "")
        note = (f"Up to {most} runs (seeds) per cell, {n_multi} of {len(cells_out)} cells replicated; the bootstrap "
                f"resamples runs, so seed spread enters every interval{ratio}. Flags: \"{BIMODAL}\" when some of a "
                f"cell's runs see their frames and some do not; \"{SEED_SPREAD}\" when its "
                "seeds differ by more than the evaluation can resolve, so seed spread, not evaluation noise, sets "
                "that cell's uncertainty (a bimodal cell shows up this way too).")
    return {"cells": cells_out, "max_runs_per_cell": most, "note": note, "sd_factor": SEED_SD_FACTOR}
