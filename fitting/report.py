"""fits.json (already JSON-safe) -> report.md: tables, plots, dropped rows, and a plain answer."""
from __future__ import annotations

import math

from fitting import honest, isoflop, laws
from fitting.honest import OK, WITHHELD
from fitting.text import fmt, with_ci
from fitting.vision_report import blind_arms, seed_lines, vision_lines

LAW_FORMS = {**laws.FORMS, isoflop.NAME: isoflop.FORM}  # each law's form, from its own module
PARAM_ORDER = ["E", "A", "B", "alpha", "beta", "a", "G"]


BLIND_MARK = " (rests on blind runs)"


def _shown_flags(flags, rec: dict) -> list[str]:
    """A law's parameter flags as printed: E above the lowest loss says which loss."""
    return [f"{f} ({fmt(rec['min_loss'])})" if f == honest.E_ABOVE_MIN and "min_loss" in rec else f for f in flags]


def _laws_table(laws: dict, blind: list[str] = ()) -> list[str]:
    lines = ["| law | group | points used | " + " | ".join(PARAM_ORDER) + " | objective |",
             "|---|---|---|" + "---|" * len(PARAM_ORDER) + "---|"]
    skipped, rules = [], {}
    for law, per in laws.items():
        # a joint fit shares its exponents across arms: one arm's blind runs move every arm's row
        joint_blind = any("shared" in rec for rec in per.values()) and bool(set(per) & set(blind))
        for group, rec in per.items():
            if rec["status"] != OK:
                skipped.append(f"- **{law}** [{group}]: {rec.get('reason', '')}")
                continue
            flags = rec.get("flags", {})
            cells = [with_ci(rec["params"][k], rec.get("ci95", {}).get(k), _shown_flags(flags.get(k, ()), rec))
                     if k in rec["params"] else "" for k in PARAM_ORDER]
            rules.setdefault(rec.get("selection", ""), []).append(f"{law} [{group}]")
            stuck = f", {rec['refits_not_converged']} refits hit their budget" if rec.get("refits_not_converged") else ""
            lines.append(f"| {law} | {group}{BLIND_MARK if group in blind or joint_blind else ''} | {rec['n_points']} of "
                         f"{rec.get('n_available', '?')}{stuck} | " + " | ".join(cells) + f" | {fmt(rec.get('objective'))} |")
    lines += ["", "Points each law used: " + "; ".join(f"{', '.join(v)}: {k}" for k, v in rules.items()) + "."]
    if blind:
        lines += ["", f"Laws marked{BLIND_MARK} are fitted through runs that do not all see their frames "
                  f"({', '.join(blind)}; a joint fit shares its exponents with them): they describe that recipe's "
                  "training, not the arm, and no verdict uses them."]
    lines += _isoflop_budgets(laws.get(isoflop.NAME, {}))
    return lines + ([""] + ["Not fitted:"] + skipped if skipped else [])


def _isoflop_budgets(per_group: dict) -> list[str]:
    """Which budgets each IsoFLOP exponent rests on: a reader can see it is two or nine."""
    out = [f"- {g}: " + "; ".join(f"C {fmt(b['C'], 3)}: N_opt {fmt(b['N_opt'], 3)} ({b['n_sizes']} sizes)"
                                  for b in rec["budgets"])
           for g, rec in per_group.items() if rec.get("status") == OK and rec.get("budgets")]
    return ["", "IsoFLOP budgets with a bracketed minimum (runs within "
            f"{isoflop.BUCKET_FACTOR - 1:.0%} in compute share a budget):", ""] + out if out else []


def _at(vec, i):
    return vec[i] if isinstance(vec, list) and vec else None


def _num(v):
    return {"inf": float("inf"), "-inf": float("-inf")}.get(v, v) if isinstance(v, str) else v


def _data_bound(m, c: float, lo_hi) -> tuple[str, float] | None:
    """("<", lo/C) or (">", hi/C) when the matched compute m*C lies outside the matched arm's
    measured range [lo, hi] (the fitted multiplier is then an extrapolation); else None."""
    if not lo_hi or m is None or not math.isfinite(m):
        return None
    if m * c < lo_hi[0]:
        return "<", lo_hi[0] / c
    if m * c > lo_hi[1]:
        return ">", lo_hi[1] / c
    return None


def _extrapolated_match(em: dict, c: float, m, t: str, r: str) -> str | None:
    """The data's bound on the multiplier in words, when the fitted value is an extrapolation."""
    lo_hi = (em.get("measured_C") or {}).get(r)
    bound = _data_bound(m, c, lo_hi)
    if bound is None:
        return None
    side, x = bound
    where = (f"already reaches the {t} loss below its smallest measured compute ({fmt(lo_hi[0], 3)} FLOPs)"
             if side == "<" else
             f"does not reach the {t} loss within its largest measured compute ({fmt(lo_hi[1], 3)} FLOPs)")
    return (f"at {fmt(c, 3)} FLOPs the {r} {where}: it needs {side} {fmt(x, 3)}x the compute, a bound from the "
            f"data (the fitted curve's extrapolation, {fmt(m, 3)}x, is not a measurement)")


def _table_cell(v, ci, c: float, measured: dict, arm: str | None, arms: tuple) -> str:
    """A multiplier (arm: the arm whose compute is matched) or a loss ratio (arm None) at C."""
    if arm is None:
        outside = [a for a in arms if a in measured and not measured[a][0] <= c <= measured[a][1]]
        return with_ci(v, ci) + (" (extrapolated)" if outside else "")
    bound = _data_bound(v, c, measured.get(arm))
    return with_ci(v, ci) if bound is None else f"{bound[0]} {fmt(bound[1], 3)} (data bound)"


def _bound_text(v, search: list) -> str:
    """A crossover interval's end: +-inf means no crossing in the searched range on that side."""
    v = _num(v)
    if v == float("inf"):
        return f"> {fmt(search[1], 3)}"
    if v == float("-inf"):
        return f"< {fmt(search[0], 3)}"
    return fmt(v)


def _crossover_text(cr: dict) -> str:
    """The crossover as a finding (status found / none in the data); "" when it is neither."""
    common, seen = cr.get("common_range"), cr.get("resamples_crossing_in_data") or {}
    if cr.get("status") not in (honest.FOUND, honest.NONE_IN_DATA) or not common:
        return ""
    span = f"the compute both arms measured ([{fmt(common[0], 3)}, {fmt(common[1], 3)}] FLOPs)"
    share = f"{seen.get('n')} of {seen.get('of')} resamples cross there"
    if cr["status"] == honest.NONE_IN_DATA:
        return (f"the L(C) curves do not cross within {span}; {share}; the {cr['lower_loss_at_data_max']} has the "
                "lower loss throughout")
    first = cr["first"]
    ci = first.get("ci95")
    interval = f" [{_bound_text(ci[0], cr['search_range'])}, {_bound_text(ci[1], cr['search_range'])}]" if ci else ""
    return (f"the L(C) curves cross at C = {fmt(first['value'])}{interval} FLOPs, inside {span}; {share}; "
            f"below it the {cr['lower_loss_at_low_compute']} has the lower loss")


def _comparison_answer(name: str, c: dict, grid: list) -> str:
    t, r = c["treatment"], c["reference"]
    if c["status"] == WITHHELD:
        return f"**{name}: withheld** — {c['reason']}."
    em = c.get("efficiency_multiplier")
    i = len(grid) // 2
    if c["status"] != OK:
        # a multiplier or crossover read off fits that cannot carry a verdict is not a finding:
        # no number here (the detail table shows those fits' estimates, marked as such)
        est = (" No multiplier or crossover is stated; the comparison table below shows the flagged fits' "
               "estimates, which are not findings." if em else "")
        return f"**{name}: not identified** — {c['reason']}.{est}{_identify(c)}{_in_data(c)}"
    m = _num(_at(em["ref_to_match_treat"]["value"], i))
    ci = em["ref_to_match_treat"]["ci95"]
    lo, hi = (_num(_at(ci[0], i)), _num(_at(ci[1], i))) if ci else (None, None)
    parts = []
    bound = _extrapolated_match(em, grid[i], m, t, r)
    if bound:
        parts.append(bound)
    elif m == float("inf"):
        parts.append(f"at {fmt(grid[i], 3)} FLOPs the {t} reaches a loss the {r}'s fitted curve never reaches "
                     f"(its floor E lies above it)")
    elif m is not None:
        if lo is None or hi is None or lo == hi:
            sure = " (no bootstrap interval, so this is not a finding)"
        elif lo > 1 or hi < 1:
            sure = ", and the 95% interval excludes 1"
        else:
            sure = "; the 95% interval includes 1, so the data cannot tell them apart"
        parts.append(f"at {fmt(grid[i], 3)} FLOPs the {r} needs {fmt(m, 3)}x (95% CI [{fmt(lo, 3)}, {fmt(hi, 3)}]) "
                     f"the compute to match the {t} loss{sure}")
    crossing = _crossover_text(c.get("crossover", {}))
    if crossing:
        parts.append(crossing)
    diff = c.get("exponent_difference", {})
    if diff.get("ci95") and diff["ci95"][0] is not None:
        moves = ("does not clearly change with compute" if diff["ci95"][0] <= 0 <= diff["ci95"][1] else
                 f"moves in {t if diff['value'] > 0 else r}'s favour as compute grows")
        parts.append(f"alpha_{t} − alpha_{r} = {with_ci(diff['value'], diff['ci95'])}, so the gap {moves}")
    return f"**{name}:** " + "; ".join(parts) + "."


def _in_data(c: dict) -> str:
    d = c.get("in_data")
    if not d:
        return ""
    known = d.get("steps") is not None and not math.isnan(d["steps"])  # None (fits.json) / NaN: unknown
    steps = f" at {d['steps']:.0f} steps" if known else ""
    return (f" In the data, without a law: every one of the {d['runs']} runs of {d['winner']} {d['config']}{steps} "
            f"({fmt(d['C'], 3)} FLOPs) has a lower loss (worst {fmt(d['worst_loss'])}), by more than twice the evaluations' "
            f"SE, than the best run of "
            f"{d['loser']} ({fmt(d['loser_best_loss'])}, {d['loser_best_config']} at {fmt(d['loser_best_C'], 3)} FLOPs), "
            f"whose runs spent up to {fmt(d['compute_ratio'], 3)}x that compute: a fact about this grid, not a "
            "multiplier.")


def _identify(verdict: dict) -> str:
    return f" What would identify it: {verdict['identify']}." if verdict.get("identify") else ""


def _answer(fits: dict) -> list[str]:
    d = fits["derived"]
    comps = d.get("comparisons", {})
    asks = [f"- {k}: {c['question']}" for k, c in comps.items() if c.get("question")]
    out = ["Which comparison answers which question:", ""] + asks + [""] if asks else []
    out += [f"- {_comparison_answer(k, c, d['compute_grid'])}" for k, c in comps.items()]
    if not comps:
        out.append("- No comparison between arms: one group only.")
    for g, a in d.get("optimal_allocation", {}).items():
        if a["status"] == OK:
            out.append(f"- Allocation, {g}: N_opt ∝ C^{with_ci(a['N_exponent']['value'], a['N_exponent']['ci95'])}.")
        else:
            out.append(f"- Allocation, {g}: {a['status']} — {a['reason']}.{_identify(a)}")
    if not d.get("optimal_allocation"):
        out.append("- Allocation: L(N,D) not fitted (see the caveats), so nothing is said about model size.")
    return out


def _comparison_tables(d: dict) -> list[str]:
    """Per comparison: its status, and the multipliers and loss ratio at three computes."""
    out, grid = [], d["compute_grid"]
    for name, c in d.get("comparisons", {}).items():
        em = c.get("efficiency_multiplier")
        asks = f" — question: {c['question']}" if c.get("question") else ""
        if not em:
            out += [f"- {name}: {c['status']} — {c['reason']}{asks}", ""]
            continue
        t, r = c["treatment"], c["reference"]
        show = c["status"] == OK  # a comparison that is not identified shows estimates only
        caveat = [] if show else ["Estimates of fits that cannot carry a verdict (see the reason): not findings.", ""]
        out += [f"**{name}** ({c['status']}{': ' + c['reason'] if c['reason'] else ''}){asks}", "", *caveat,
                f"| C (FLOPs) | {r} compute to match {t} / C | {t} compute to match {r} / C | loss ratio {t}/{r} |",
                "|---|---|---|---|"]
        measured = em.get("measured_C") or {}
        for i in (0, len(grid) // 2, len(grid) - 1):
            cells = []
            for x, arm in ((em["ref_to_match_treat"], r), (em["treat_to_match_ref"], t), (c["loss_ratio"], None)):
                ci = [_at(x["ci95"][0], i), _at(x["ci95"][1], i)] if (x["ci95"] and show) else None
                cells.append(_table_cell(_num(_at(x["value"], i)), ci, grid[i], measured, arm, (t, r)))
            out.append(f"| {fmt(grid[i], 3)} | " + " | ".join(cells) + " |")
        out += ["", em["meaning"] + ". A matched compute outside the matching arm's measured range is "
                "shown as the bound the data give, and a loss ratio at a C where an arm has no data as "
                "extrapolated.", ""]
    return out


def _allocation_lines(d: dict) -> list[str]:
    out = []
    for g, a in d.get("optimal_allocation", {}).items():
        if a["status"] == WITHHELD:
            out.append(f"- {g}: withheld — {a['reason']}")
            continue
        ok = a["status"] == OK
        ci = (lambda k: a[k]["ci95"] if ok else None)  # noqa: E731
        note = "" if ok else f" ({a['status']}: {a['reason']}; estimates only)"
        out.append(f"- {g}: N_opt ∝ C^{with_ci(a['N_exponent']['value'], ci('N_exponent'))}, "
                   f"D_opt ∝ C^{with_ci(a['D_exponent']['value'], ci('D_exponent'))}, "
                   f"G = {with_ci(a['G']['value'], ci('G'))}, k = {fmt(a['flops_per_nd'])}{note}")
    if not d.get("optimal_allocation"):
        out.append("Skipped: no L(N,D) fit.")
    return out


def _grid_lines(d: dict) -> list[str]:
    """The best config per budget, and how well each law predicts its largest-compute points."""
    out = ["### Best config per compute budget (from the grid)", "",
           "| budget C | group | config | loss | N | N_llm | N_vision | vision share | configs compared |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in d.get("best_configs", []):
        out.append(f"| {fmt(r['budget_C'], 3)} | {r['group']} | {r['config']} | {fmt(r['loss'])} | {fmt(r['N'], 3)} | "
                   f"{fmt(r['N_llm'], 3)} | {fmt(r['N_vision'], 3)} | {fmt(r['vision_share'], 2)} | {r['n_candidates']} |")
    out += ["", "### Extrapolation check (refit without the largest-compute points)", "",
            "| law | group | held out | from C | mean abs rel. error | max abs rel. error |", "|---|---|---|---|---|---|"]
    for e in d.get("extrapolation", []):
        tail = (f"{fmt(e['mean_abs_rel_error'], 3)} | {fmt(e['max_abs_rel_error'], 3)} |" if e["status"] == OK
                else f"skipped: {e['reason']} | |")
        out.append(f"| {e['law']} | {e['group']} | {e['n_holdout']} | {fmt(e['C_threshold'], 3)} | " + tail)
    return out


def render(fits: dict) -> str:
    d = fits["derived"]
    b = fits["bootstrap"]
    runs = ", ".join(f"{g} {n}" for g, n in fits.get("runs_per_group", {}).items())
    out = ["# Scaling-law analysis", "",
           f"Source: `{fits['source']}`. The fits use {fits['n_fit_points']} points ({fits['selection']}) of "
           f"{fits['n_rows']} rows; runs per group: {runs}. Uncertainty: {b['n']} bootstrap resamples "
           f"({b.get('resampling', b['unit'])}), {b['interval']} intervals shown as value [lo, hi]; a parameter "
           "at a bound or with a zero-width interval is shown without one.", ""]
    out += vision_lines(fits)
    out += ["## Answer", ""] + _answer(fits) + [""]
    out += seed_lines(fits.get("seeds", {}))
    if fits["notes"]:
        out += ["Caveats:", ""] + [f"- {n}" for n in fits["notes"]] + [""]
    out += ["## Fitted laws", ""] + [f"- {k}: {v}" for k, v in LAW_FORMS.items()] + [""]
    out += _laws_table(fits["laws"], blind_arms(fits)) + [""]
    out += ["## Derived laws", "", "### Scaling exponent of L in C", ""]
    for g, v in d.get("scaling_exponent", {}).items():
        mark = BLIND_MARK if g in blind_arms(fits) else ""
        out.append(f"- {g}: alpha = {with_ci(v['value'], v['ci95'], v.get('flags', ()))}{mark}")
    out += ["", "### Comparisons (crossover, efficiency multiplier)", ""] + _comparison_tables(d)
    out += ["### Optimal allocation (from L(N,D); C = k N D with k fitted per group)", ""] + _allocation_lines(d)
    out += [""] + _grid_lines(d) + ["", "## Plots", ""]
    for p in fits.get("plots", []):
        out.append(f"![{p['name']}]({p['png']}) (data: `{p['csv']}`)" if p["status"] == OK
                   else f"- {p['name']}: skipped — {p['reason']}")
    out += ["", "## Dropped trials and rows", ""]
    out += [f"- {x['run_id']}: {x['reason']}" for x in fits["dropped"]] or ["None."]
    return "\n".join(out) + "\n"
