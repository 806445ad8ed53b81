"""fits.json "derived": every pair of arms compared (or withheld, with the reason), allocation.

A comparison (crossover, loss ratio, efficiency multiplier, exponent difference) is computed
only for pairs whose arms use their frames in every run; a withheld pair carries its reason and
no numbers. A computed pair whose arms have too few runs, whose L(C) parameters carry a flag, or
whose crossover is neither found nor ruled out inside the data is "not identified": its numbers
are kept in fits.json but the report states no verdict (the rules: fitting/honest.py).
"""
from __future__ import annotations

import numpy as np

from fitting import derived as dv
from fitting import dominance
from fitting import honest
from fitting.bootstrap import Resamples
from fitting.keys import (ALLOCATION, CROSSOVER, CROSSOVER_IN_DATA, EXPONENT_DIFF, MULTIPLIER, RATIO, StatKey, of_pair,
                          pair_key)

# What each comparison of the study's arms answers (design notes); a pair of other arms gets "".
QUESTIONS = {
    frozenset(("foveated", "baseline")): ("the headline: does 1 token per frame, placed where the LLM asks to "
                                          "look, beat 16 pooled tokens per frame?"),
    frozenset(("foveated", "pooled1")): "does looking in the right place pay, at equal token count (1 per frame)?",
    frozenset(("baseline", "pooled1")): "what does token count alone buy (16 vs 1 mean-pooled token per frame)?",
}


def question(t: str, r: str) -> str:
    return QUESTIONS.get(frozenset((t, r)), "")


def _value(full: dict, boot: Resamples, key: StatKey) -> dict:
    b = boot.get(key)
    return {"value": full.get(key, np.nan), "ci95": boot.ci95(key),
            "n_resamples_ok": b.n_ok if b else None, "n_resamples": b.n if b else None}


def _law_flags(laws, law, g):
    rec = laws.get(law, {}).get(g)
    return rec["flags"] if rec and rec["status"] == honest.OK else None


def _identify(status: str, law: str, law_flags: dict) -> str:
    """What more data would identify a verdict that flagged fits left not identified ('' otherwise:
    a withheld verdict's remedy is training, and an unresolved crossover's reason says it)."""
    return honest.remedies(law, law_flags) if status == honest.NOT_IDENTIFIED else ""


def _pair(fs, ctx: dv.Context, full: dict, boot: Resamples, t: str, r: str) -> dict:
    p_t, p_r = fs.ok("L(C)", t).params(t), fs.ok("L(C)", r).params(r)
    cr = dv.crossover_report(p_t, p_r, ctx, t, r)
    cr["first"] = _value(full, boot, of_pair(CROSSOVER, t, r, "C"))
    inside = boot.get(of_pair(CROSSOVER_IN_DATA, t, r, "any"))
    n_in, n = (inside.n_true, inside.n) if inside else (None, None)
    cr["resamples_crossing_in_data"] = {"n": n_in, "of": n}
    cr["status"], cr["reason"] = honest.crossover_status(cr["crossovers"], cr["common_range"], n_in, n)
    out = {"crossover": cr}
    out["loss_ratio"] = _value(full, boot, of_pair(RATIO, t, r, "loss"))
    out["efficiency_multiplier"] = {
        "ref_to_match_treat": _value(full, boot, of_pair(MULTIPLIER, t, r, "ref_to_match_treat")),
        "treat_to_match_ref": _value(full, boot, of_pair(MULTIPLIER, t, r, "treat_to_match_ref")),
        "meaning": (f"ref_to_match_treat(C) = C_{r}(L_{t}(C)) / C: how many times C the {r} needs to reach "
                    f"the loss the {t} reaches with C (>1: {t} is more compute-efficient); "
                    "treat_to_match_ref is the reverse"),
        # a matched compute outside the other arm's measured range is the fitted curve's
        # extrapolation, not a measurement: the report then states only the bound the data give
        "measured_C": {a: [float(s["C"].min()), float(s["C"].max())]
                       for a, s in fs.frame.groupby("group") if a in (t, r)},
    }
    out["exponent_difference"] = _value(full, boot, of_pair(EXPONENT_DIFF, t, r, "alpha"))
    return out


def derived(fs, ctx: dv.Context, full: dict, boot: Resamples, laws, vision, require_vision, runs) -> dict:
    d = {"compute_grid": ctx.C_grid, "flops_per_nd": ctx.flops_per_nd}
    d["scaling_exponent"] = {}
    for g in fs.groups:
        rec = laws.get("L(C)", {}).get(g)
        if rec and rec["status"] == honest.OK:
            d["scaling_exponent"][g] = {"value": rec["params"]["alpha"], "ci95": rec["ci95"]["alpha"],
                                        "flags": rec["flags"]["alpha"]}
    alloc = {}
    for g in fs.groups:
        if StatKey(ALLOCATION, g, "G") not in full:
            continue
        a = {k: _value(full, boot, StatKey(ALLOCATION, g, k)) for k in ("N_exponent", "D_exponent", "G", "N_opt", "D_opt")}
        a["flops_per_nd"] = ctx.flops_per_nd[g]
        flags = _law_flags(laws, "L(N,D)", g)
        status, reason = honest.comparison_status([g], vision, require_vision, runs, {g: flags})
        if status == honest.OK:
            for k in ("N_exponent", "D_exponent", "G"):
                if honest.zero_width(a[k]["value"], a[k]["ci95"]):
                    status, reason = honest.NOT_IDENTIFIED, f"{k} has a zero-width interval"
        if status == honest.WITHHELD:
            a = {"flops_per_nd": ctx.flops_per_nd[g]}
        a.update(status=status, reason=reason, identify=_identify(status, "L(N,D)", {g: flags}))
        alloc[g] = a
    d["optimal_allocation"] = alloc
    comps = {}
    computed = set(map(tuple, ctx.pairs))
    for t, r in dv.pairs(fs.groups):
        rec = {"treatment": t, "reference": r, "question": question(t, r)}
        flags = {a: _law_flags(laws, "L(C)", a) for a in (t, r)}
        status, reason = honest.comparison_status([t, r], vision, require_vision, runs, flags)
        if (t, r) in computed and status != honest.WITHHELD:
            rec.update(_pair(fs, ctx, full, boot, t, r))
            if status == honest.OK and rec["crossover"]["status"] == honest.UNRESOLVED:
                status, reason = honest.NOT_IDENTIFIED, rec["crossover"]["reason"]
        rec.update(status=status, reason=reason, identify=_identify(status, "L(C)", flags))
        if status != honest.WITHHELD:  # a blind arm's runs are failed runs: nothing is read off them
            rec["in_data"] = dominance.between(fs.frame, t, r)
        comps[pair_key(t, r)] = rec
    d["comparisons"] = comps
    d["best_configs"] = dv.best_configs(fs.frame).to_dict("records")
    d["extrapolation"] = dv.extrapolation_check(fs.frame, fs)
    return d
