"""What an interval may claim: per-parameter flags, and the rules that decide every status.

Parameter flags (each a named constant below):
- AT_BOUND / E_AT_ZERO: a parameter at (or within 1e-6 relative of) a bound has no interval: the
  bootstrap holds it there, so any "interval" would be the bound twice. E -> 0 and a vanishing
  power term count as bounds (below 1e-4 of the lowest loss at every point).
- ZERO_WIDTH: every resample gave the same value (to 0.1%): not a 95% interval.
- CONSTANT_TERM[exponent]: a coefficient whose exponent sits at 0 multiplies a constant: it
  cannot be told from E.
- E_ABOVE_MIN: E above the lowest loss the law was fitted to: the law's floor is not a floor.
- CI_AT_EXPONENT_BOUND / CI_AT_E_ZERO: the box cut the interval, so the real uncertainty on
  that side is larger than printed (the interval is kept, flagged).
- NO_CI: no bootstrap interval (no resamples, or too few refits).
- REFITS_STOPPED: on a law's exponents when most of its bootstrap refits stopped at their
  evaluation budget (the interval is then mostly warm starts: too narrow; kept, flagged).
Flags in NO_INTERVAL remove the interval; every flag blocks a verdict resting on that law.

Status of a comparison (crossover, multiplier) or an allocation, first rule that applies:
1. WITHHELD: an arm does not use its frames in every run (names the cells), its vision was
   not measured where required, or its law was not fitted;
2. NOT_IDENTIFIED: an arm has fewer than MIN_RUNS independent runs;
3. NOT_IDENTIFIED: a parameter of a law it rests on carries a flag;
4. NOT_IDENTIFIED (comparisons): the crossover is neither found nor ruled out in the data
   (crossover_status);
5. OK.
"""
from __future__ import annotations

import math

from fitting.engine import BOUND_RTOL, at_exponent_bound

MIN_RUNS = 3
# An interval narrower than 0.1% of its value is not a 95% interval: resampling runs whose
# seed-to-seed spread is percent-level cannot pin a parameter that tightly, so such a width
# means the resamples did not move it (a frozen or flat direction of the fit).
ZERO_WIDTH_RTOL = 1e-3
# A crossover is stated only when this share of resamples puts one inside the compute both arms
# measured; ruled out only when at most 1 - this share does.
CROSSOVER_SHARE = 0.95

# parameter flags
AT_BOUND = "at bound"
E_AT_ZERO = "E at lower bound (0)"
ZERO_WIDTH = "zero-width CI"
E_ABOVE_MIN = "E above the lowest fitted loss"
CI_AT_EXPONENT_BOUND = "CI ends at the exponent bound"
CI_AT_E_ZERO = "CI reaches E = 0"
NO_CI = "no CI"
# Bootstrap refits that stop at their evaluation budget stay near the full fit (their warm start),
# which narrows the interval. Above NOTED_SHARE of a law's refits the report notes it; above
# STOPPED_SHARE (most of them) the interval is mostly warm starts: its exponents are flagged and no
# verdict rests on the law. (A well-posed synthetic law stops ~12% of its refits: tests.)
NOTED_SHARE, STOPPED_SHARE = 0.1, 0.5
REFITS_STOPPED = "CI too narrow (most bootstrap refits stopped at their budget)"
# IsoFLOP's exponent from two budgets' minima: a line through two points, the power law untested
TWO_BUDGETS = "fitted through two budgets (a line through two points)"
# L(C) on a grid whose sizes never bracket the best size of a shared budget: the frontier's cells
# past where the winning (smallest) size stops are the only sizes run there, not the best allocation,
# so the frontier is an upper bound on L(C) there and its curvature is the grid's (isoflop.unbracketed_side)
UNBRACKETED = {side: f"frontier not bracketed by the grid's sizes (its {side} size wins every shared budget)"
               for side in ("smallest", "largest")}
EXPONENT_NAMES = ("alpha", "beta", "a")
# exponent -> the flag of a coefficient whose term that exponent has flattened into a constant
CONSTANT_TERM = {e: f"not identified ({e} = 0: a constant, indistinguishable from E)" for e in EXPONENT_NAMES}
NO_INTERVAL = frozenset({AT_BOUND, E_AT_ZERO, ZERO_WIDTH, *CONSTANT_TERM.values()})
BLOCKS_VERDICT = NO_INTERVAL | {E_ABOVE_MIN, CI_AT_EXPONENT_BOUND, CI_AT_E_ZERO, NO_CI, REFITS_STOPPED, TWO_BUDGETS,
                                 *UNBRACKETED.values()}
PARAM_FLAGS = BLOCKS_VERDICT  # every flag a parameter can carry (each blocks a verdict)
# flags that name their parameter already (or concern the whole law)
NAMES_E = frozenset({E_AT_ZERO, E_ABOVE_MIN, CI_AT_E_ZERO, *UNBRACKETED.values()})

# status of a law, plot or check (OK | SKIPPED) and of a verdict (OK | WITHHELD | NOT_IDENTIFIED)
OK, SKIPPED, WITHHELD, NOT_IDENTIFIED = "ok", "skipped", "withheld", "not identified"
# crossover_status outcomes
FOUND, NONE_IN_DATA, UNRESOLVED = "found", "none in the data", NOT_IDENTIFIED


def zero_width(value, ci) -> bool:
    if not ci or ci[0] is None or ci[1] is None:
        return False
    lo, hi = float(ci[0]), float(ci[1])
    scale = max(abs(lo), abs(hi), abs(value) if value is not None and math.isfinite(value) else 0.0, 1e-300)
    return math.isfinite(lo) and math.isfinite(hi) and hi - lo <= ZERO_WIDTH_RTOL * scale


def param_flags(fit, group: str, params: dict, ci: dict, min_loss: float) -> tuple[dict, dict]:
    """(flags {param: [flag]}, ci95 with the interval of every NO_INTERVAL-flagged parameter removed).

    fit: a laws.LawFit (its bounds, exponents and which coefficient each exponent scales)."""
    at_bound = fit.params_at_bound(group)
    term_exponent = fit.coefficient_exponents
    flags, clean = {}, {}
    for k, v in params.items():
        f = []
        if at_bound.get(k):
            f.append(E_AT_ZERO if k == "E" else AT_BOUND)
        exp = term_exponent.get(k)
        if not f and exp and at_bound.get(exp) and abs(params.get(exp, 1.0)) <= BOUND_RTOL:
            f.append(CONSTANT_TERM[exp])
        if not f and zero_width(v, ci.get(k)):
            f.append(ZERO_WIDTH)
        if k == "E" and v > min_loss:
            f.append(E_ABOVE_MIN)
        if ci.get(k) is None and not f:
            f.append(NO_CI)
        elif not f and _ci_end_at_bound(k, ci.get(k), fit.exponent_names):
            f.append(CI_AT_EXPONENT_BOUND if k != "E" else CI_AT_E_ZERO)
        flags[k] = f
        clean[k] = None if NO_INTERVAL.intersection(f) else ci.get(k)
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


def flag_stopped_refits(rec: dict, n_stopped: int, n_resamples: int) -> None:
    """Flag a law's exponents when more than STOPPED_SHARE of its refits stopped at their budget
    (the interval is kept, and the verdicts resting on the law are blocked)."""
    if n_resamples and n_stopped > STOPPED_SHARE * n_resamples:
        for k in EXPONENT_NAMES:
            if k in rec["flags"] and REFITS_STOPPED not in rec["flags"][k]:
                rec["flags"][k].append(REFITS_STOPPED)


def flag_unbracketed_frontier(rec: dict, side: str | None) -> None:
    """Flag an L(C) fit's exponent when its grid never brackets a budget's best size (side: from
    isoflop.unbracketed_side); the interval stays, the verdicts resting on the law are blocked."""
    if side and "alpha" in rec.get("flags", {}) and UNBRACKETED[side] not in rec["flags"]["alpha"]:
        rec["flags"]["alpha"].append(UNBRACKETED[side])


def runs_per_group(frame) -> dict:
    return {g: int(s["run_id"].nunique()) for g, s in frame.groupby("group")}


def blocking_flags(flags: dict, names) -> list[str]:
    """'alpha at bound'-style strings for the named parameters that cannot support a verdict."""
    out = []
    for k in names:
        for f in flags.get(k, []):
            if f in BLOCKS_VERDICT:
                out.append(f if f in NAMES_E else f"{k} {f}")
    return out


# What more data would lift each flag: the report says it beside a "not identified", so the
# reader knows what to run next rather than only what went wrong.
_FLOOR = "compute beyond the largest measured, until the loss bends towards its floor"
_ABOVE = ("points that show where the loss levels off (the fitted floor lies above a measured loss, as a plateau "
          "followed by a drop makes it): more compute past the lowest point, or a task whose loss falls smoothly")
_SEEDS = "more independent runs (seeds) per cell, so that resampling them moves the fit"
_SPAN = "a wider span of {x}"
_FLAT = "more runs or a wider span of {x}, so the fit has no flat direction"
REMEDIES = {
    E_AT_ZERO: _FLOOR, CI_AT_E_ZERO: _FLOOR, E_ABOVE_MIN: _ABOVE, ZERO_WIDTH: _SEEDS, NO_CI: _SEEDS,
    AT_BOUND: _SPAN, CI_AT_EXPONENT_BOUND: _SPAN, REFITS_STOPPED: _FLAT, **{f: _SPAN for f in CONSTANT_TERM.values()},
    TWO_BUDGETS: "a third compute budget on which >= 3 sizes meet with the loss minimum between them",
    UNBRACKETED["smallest"]: "smaller sizes, or the smaller sizes trained longer, until a shared budget has its "
                             "loss minimum between sizes",
    UNBRACKETED["largest"]: "larger sizes, until a shared budget has its loss minimum between sizes",
}
# what each law's exponents scale (the span a bounded exponent asks for)
EXPONENT_OF = {"L(C)": {"alpha": "compute"}, "L(N,D)": {"alpha": "model sizes", "beta": "step counts"}}


def remedies(law: str, law_flags: dict) -> str:
    """What more data would identify the `law` fits in `law_flags` (arm -> {param: [flag]}): per
    arm, one clause per distinct remedy; '' when nothing blocks."""
    arms_by_clause: dict[str, list[str]] = {}  # arms that need the same data are named together
    for arm, flags in law_flags.items():
        said: list[str] = []
        for k, fs in (flags or {}).items():
            x = EXPONENT_OF.get(law, {}).get(k, f"what {k} is the exponent of")
            said += [r for f in fs if f in BLOCKS_VERDICT and (r := REMEDIES[f].format(x=x)) not in said]
        if said:
            arms_by_clause.setdefault(", and ".join(said), []).append(arm)
    return "; ".join(f"{' and '.join(arms)}: {clause}" for clause, arms in arms_by_clause.items())


def comparison_status(arms, vision: dict, require_vision: bool, runs: dict, law_flags: dict) -> tuple[str, str]:
    """(OK | WITHHELD | NOT_IDENTIFIED, reason) for a verdict resting on `arms` (rules 1-3).

    law_flags: arm -> flags of the law the verdict uses (None: that law was not fitted)."""
    for a in arms:
        v = vision.get(a)
        if v is None and require_vision:
            return WITHHELD, f"{a}: vision use not measured (no eval_loss_shuffled_frames)"
        if v is not None and not v["uses_frames"]:
            cells = "; ".join(f"{a} {c}" for c in v.get("blind_cells", ())) or v["reason"]
            return WITHHELD, f"{a} does not use its frames in every run ({cells})"
    for a in arms:
        if law_flags.get(a) is None:
            return WITHHELD, f"{a}: law not fitted"
    few = [f"{a} has {runs.get(a, 0)}" for a in arms if runs.get(a, 0) < MIN_RUNS]
    if few:
        return NOT_IDENTIFIED, f"needs >= {MIN_RUNS} independent runs per arm ({', '.join(few)})"
    stuck = [f"{a}: {', '.join(b)}" for a in arms if (b := blocking_flags(law_flags[a], law_flags[a]))]
    if stuck:
        return NOT_IDENTIFIED, "fitted parameters that cannot carry a verdict (" + "; ".join(stuck) + ")"
    return OK, ""


def _c(x: float) -> str:
    return f"{x:.3g}"


def crossover_status(roots: list, common: list | None, n_inside: int | None, n: int | None) -> tuple[str, str]:
    """(FOUND | NONE_IN_DATA | UNRESOLVED, reason) for the full fit's crossings `roots`, the compute
    range both arms measured `common` ([lo, hi], None when they do not overlap), and the number of
    resamples (of n) whose curves cross inside it. FOUND: the first crossing lies inside `common`
    and >= CROSSOVER_SHARE of resamples cross there; NONE_IN_DATA: the fitted curves do not cross
    anywhere in the searched range and <= 1 - CROSSOVER_SHARE of resamples cross inside the data."""
    if common is None:
        return UNRESOLVED, "the arms' measured compute ranges do not overlap, so no crossover can be measured"
    where = f"the compute both arms measured ([{_c(common[0])}, {_c(common[1])}] FLOPs)"
    if not n:
        return UNRESOLVED, f"no bootstrap resamples to tell whether the L(C) curves cross inside {where}"
    share = n_inside / n
    if roots and not common[0] <= roots[0] <= common[1]:
        side = "beyond" if roots[0] > common[1] else "below"
        return UNRESOLVED, (f"the fitted L(C) curves cross at C = {_c(roots[0])} FLOPs, {side} {where}: an "
                            f"extrapolation, not a finding; {n_inside} of {n} resamples cross inside the data")
    if roots and share >= CROSSOVER_SHARE:
        return FOUND, ""
    if not roots and share <= 1 - CROSSOVER_SHARE:
        return NONE_IN_DATA, ""
    need = f"needs >= {CROSSOVER_SHARE:.0%} to state a crossover, <= {1 - CROSSOVER_SHARE:.0%} to rule one out"
    fitted = (f"the fitted L(C) curves cross at C = {_c(roots[0])} FLOPs, inside {where}, but only"
              if roots else f"the fitted L(C) curves do not cross, but inside {where}")
    return UNRESOLVED, f"{fitted} {n_inside} of {n} resamples cross there ({need})"
