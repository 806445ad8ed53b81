"""What an interval may claim: per-parameter flags, and whether a comparison is identified.

- A parameter at (or within 1e-6 relative of) a bound has no interval: the bootstrap holds it
  there, so any "interval" would be the bound twice. E -> 0 and a vanishing power term count
  as bounds (below 1e-4 of the lowest loss at every point; their log-coefficient runs to -inf).
- A zero-width interval (every resample gave the same value, to 0.1%) is not a 95% interval.
- A coefficient whose exponent sits at 0 multiplies a constant: it cannot be told from E.
- E above the lowest loss the law was fitted to is flagged: the law's floor is not a floor.
- An interval that ends on an exponent's box bound (or E's at 0) is kept but flagged: the box cut
  it, so the real uncertainty on that side is larger than printed.
- A verdict (an interval excluding 1 or 0) needs MIN_RUNS independent runs in each arm.
"""
from __future__ import annotations

import math

from fitting.engine import BOUND_RTOL, at_exponent_bound

MIN_RUNS = 3
# An interval narrower than 0.1% of its value is not a 95% interval: resampling runs whose
# seed-to-seed spread is percent-level cannot pin a parameter that tightly, so such a width
# means the resamples did not move it (a frozen or flat direction of the fit).
ZERO_WIDTH_RTOL = 1e-3


def ci95(boot: dict, key: str) -> list | None:
    """[lo, hi] of a bootstrap statistic, or None when the bootstrap has none."""
    b = boot.get(key)
    return None if b is None else [b["ci95"][0], b["ci95"][1]]


def zero_width(value, ci) -> bool:
    if not ci or ci[0] is None or ci[1] is None:
        return False
    lo, hi = float(ci[0]), float(ci[1])
    scale = max(abs(lo), abs(hi), abs(value) if value is not None and math.isfinite(value) else 0.0, 1e-300)
    return math.isfinite(lo) and math.isfinite(hi) and hi - lo <= ZERO_WIDTH_RTOL * scale


def param_flags(fit, group: str, params: dict, ci: dict, min_loss: float) -> tuple[dict, dict]:
    """(flags {param: [str]}, ci95 with every flagged parameter's interval removed)."""
    at_bound = fit.params_at_bound(group)
    flags, clean = {}, {}
    for k, v in params.items():
        f = []
        if at_bound.get(k):
            f.append("E at lower bound (0)" if k == "E" else "at bound")
        exp = getattr(fit, "coefficient_exponents", {}).get(k)
        if not f and exp and at_bound.get(exp) and abs(params.get(exp, 1.0)) <= BOUND_RTOL:
            f.append(f"not identified ({exp} = 0: a constant, indistinguishable from E)")
        if not f and zero_width(v, ci.get(k)):
            f.append("zero-width CI")
        if k == "E" and v > min_loss:
            f.append(f"E above the lowest fitted loss ({min_loss:.4g})")
        if ci.get(k) is None and not f:
            f.append("no CI")
        elif not f and _ci_end_at_bound(k, ci.get(k), getattr(fit, "exponent_names", ())):
            f.append("CI ends at the exponent bound" if k != "E" else "CI reaches E = 0")
        flags[k] = f
        clean[k] = None if any(map(_blocks, f)) else ci.get(k)
    return flags, clean


def _ci_end_at_bound(name: str, ci, exponents: tuple) -> bool:
    if not ci or ci[0] is None or ci[1] is None:
        return False
    lo, hi = float(ci[0]), float(ci[1])
    if name == "E":
        return lo <= BOUND_RTOL * max(abs(hi), 1e-300)
    if name not in exponents:  # coefficients are unbounded (fitted in log space)
        return False
    return at_exponent_bound(lo) or at_exponent_bound(hi)  # a CI lies inside the box


def _blocks(flag: str) -> bool:
    """A flag that leaves a parameter without an interval and blocks any verdict resting on it."""
    return flag in ("at bound", "E at lower bound (0)", "zero-width CI") or flag.startswith("not identified")


def runs_per_group(frame) -> dict:
    return {g: int(s["run_id"].nunique()) for g, s in frame.groupby("group")}


def blocking_flags(flags: dict, names) -> list[str]:
    """'alpha at bound'-style strings for the named parameters that cannot support a verdict."""
    out = []
    for k in names:
        for f in flags.get(k, []):
            if _blocks(f):
                out.append(f"{k} {f}" if not f.startswith("E ") else f)
    return out


def comparison_status(arms, vision: dict, require_vision: bool, runs: dict, law_flags: dict) -> tuple[str, str]:
    """("ok" | "withheld" | "not identified", reason) for a comparison between `arms`.

    law_flags: arm -> flags of the law the comparison uses (None: that law was not fitted)."""
    for a in arms:
        v = vision.get(a)
        if v is None and require_vision:
            return "withheld", f"{a}: vision use not measured (no eval_loss_shuffled_frames)"
        if v is not None and not v["uses_frames"]:
            return "withheld", f"{a} does not use its frames ({v['reason']})"
    for a in arms:
        if law_flags.get(a) is None:
            return "withheld", f"{a}: law not fitted"
    few = [f"{a} has {runs.get(a, 0)}" for a in arms if runs.get(a, 0) < MIN_RUNS]
    if few:
        return "not identified", f"needs >= {MIN_RUNS} independent runs per arm ({', '.join(few)})"
    stuck = [f"{a}: {', '.join(b)}" for a in arms if (b := blocking_flags(law_flags[a], law_flags[a]))]
    if stuck:
        return "not identified", "parameters at a bound or without interval (" + "; ".join(stuck) + ")"
    return "ok", ""
