"""fits.json (already JSON-safe) -> report.md: tables, plots, dropped rows, and a plain answer."""
from __future__ import annotations

import math

LAW_FORMS = {
    "L(N,D)": "L = E + A/N^alpha + B/D^beta",
    "L(N,D) joint": "L(N,D), alpha and beta shared by the variants",
    "L(C)": "L = E + A C^-alpha",
    "L(C) joint": "L(C), alpha shared by the variants",
    "power": "L = A C^-alpha",
    "isoflop": "IsoFLOP minima: N_opt = G C^a",
}
PARAM_ORDER = ["E", "A", "B", "alpha", "beta", "a", "G"]


def fmt(v, digits=4) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, str):
        return "∞" if v == "inf" else v
    if isinstance(v, float) and (math.isnan(v)):
        return "n/a"
    return f"{v:.{digits}g}"


def with_ci(v, ci) -> str:
    if not ci or ci[0] is None or ci[1] is None:
        return fmt(v)
    return f"{fmt(v)} [{fmt(ci[0])}, {fmt(ci[1])}]"


def _laws_table(laws: dict) -> list[str]:
    lines = ["| law | group | n | " + " | ".join(PARAM_ORDER) + " | objective |",
             "|---|---|---|" + "---|" * len(PARAM_ORDER) + "---|"]
    skipped = []
    for law, per in laws.items():
        for group, rec in per.items():
            if rec["status"] != "ok":
                skipped.append(f"- **{law}** [{group}]: {rec.get('reason', '')}")
                continue
            cells = [with_ci(rec["params"][k], rec.get("ci95", {}).get(k)) if k in rec["params"] else ""
                     for k in PARAM_ORDER]
            lines.append(f"| {law} | {group} | {rec['n_points']} | " + " | ".join(cells)
                         + f" | {fmt(rec.get('objective'))} |")
    return lines + ([""] + ["Not fitted:"] + skipped if skipped else [])


def _at(vec, i):
    return vec[i] if isinstance(vec, list) and vec else None


def _multiplier_lines(d: dict) -> list[str]:
    em, grid = d.get("efficiency_multiplier"), d["compute_grid"]
    if not em:
        return []
    t, r = em["treatment"], em["reference"]
    idx = [0, len(grid) // 2, len(grid) - 1]
    lines = [f"| C (FLOPs) | {r} compute to match {t} / C | {t} compute to match {r} / C | loss ratio {t}/{r} |",
             "|---|---|---|---|"]
    for i in idx:
        a, b, q = em["ref_to_match_treat"], em["treat_to_match_ref"], d["loss_ratio"]
        cell = [with_ci(_at(x["value"], i), [_at(x["ci95"][0], i), _at(x["ci95"][1], i)]) if x["ci95"] else
                fmt(_at(x["value"], i)) for x in (a, b, q)]
        lines.append(f"| {fmt(grid[i], 3)} | " + " | ".join(cell) + " |")
    return lines + ["", em["meaning"] + "."]


def _answer(fits: dict) -> str:
    d = fits["derived"]
    em, cr = d.get("efficiency_multiplier"), d.get("crossover", {})
    parts = []
    if em:
        t, r = em["treatment"], em["reference"]
        grid = d["compute_grid"]
        i = len(grid) // 2
        m = _at(em["ref_to_match_treat"]["value"], i)
        ci = em["ref_to_match_treat"]["ci95"]
        lo, hi = (_at(ci[0], i), _at(ci[1], i)) if ci else (None, None)
        num = lambda v: float("inf") if v == "inf" else v  # noqa: E731
        m, lo, hi = num(m), num(lo), num(hi)
        if m == float("inf"):
            parts.append(f"At the middle of the compute range ({fmt(grid[i], 3)} FLOPs) the {t} model reaches a loss "
                         f"that the {r}'s fitted curve never reaches (its floor E lies above it); 95% CI of the "
                         f"compute multiplier [{fmt(lo, 3)}, {fmt(hi, 3)}].")
        elif m is not None:
            verdict = ("needs the same compute for the same loss" if abs(math.log(m)) < 1e-3 else
                       "reaches the same loss for less compute" if m > 1 else "needs more compute for the same loss")
            if lo is not None and hi is not None:
                sure = (" and the 95% interval excludes 1" if (lo > 1 or hi < 1)
                        else "; the 95% interval includes 1, so the data cannot tell them apart")
            else:
                sure = " (no bootstrap interval: too few runs refit on resampling, so this is not a finding)"
            than = "as" if verdict.startswith("needs the same") else "than"
            parts.append(f"At the middle of the compute range ({fmt(grid[i], 3)} FLOPs) the {t} model {verdict} "
                         f"{than} the {r}: the {r} needs {fmt(m, 3)}x (95% CI [{fmt(lo, 3)}, {fmt(hi, 3)}]) the "
                         f"compute to match the {t} loss{sure}.")
        roots = cr.get("crossovers", [])
        if roots:
            first = cr["first"]
            share = (f" (a crossover exists in {first['n_resamples_ok']} of {first['n_resamples']} resamples)"
                     if first.get("n_resamples") else "")
            ext = " (extrapolated beyond the data)" if cr["extrapolated"][0] else ""
            parts.append(f"The fitted L(C) curves cross at C = {with_ci(first['value'], first['ci95'])} FLOPs"
                         f"{ext}{share}; below it the {cr['lower_loss_at_low_compute']} variant has the lower loss.")
        elif "search_range" in cr:
            parts.append(f"The fitted L(C) curves do not cross in [{fmt(cr['search_range'][0], 3)}, "
                         f"{fmt(cr['search_range'][1], 3)}] FLOPs; the {cr['lower_loss_at_data_max']} variant has "
                         "the lower loss throughout.")
        ex = d.get("scaling_exponent", {})
        if t in ex and r in ex:
            diff = d.get("exponent_difference", {})
            if _straddles(diff):
                trend = "does not clearly change with compute"
            else:  # a larger alpha means a loss that falls faster with compute
                trend = f"moves in {t if diff['value'] > 0 else r}'s favour as compute grows"
            parts.append(f"Loss falls with compute as C^-alpha with alpha = {with_ci(ex[t]['value'], ex[t]['ci95'])} "
                         f"({t}) vs {with_ci(ex[r]['value'], ex[r]['ci95'])} ({r}); the difference is "
                         f"{with_ci(diff.get('value'), diff.get('ci95'))}, so the gap {trend}.")
    else:
        parts.append(f"No two-variant comparison: {cr.get('reason', 'only one variant')}.")
    alloc = d.get("optimal_allocation", {})
    if alloc:
        parts.append("With model size: " + "; ".join(
            f"{g} puts N_opt ~ C^{with_ci(a['N_exponent']['value'], a['N_exponent']['ci95'])}"
            for g, a in alloc.items()) + ".")
    else:
        parts.append("How the comparison moves with model size cannot be said from these runs: L(N,D) was not "
                     "fitted (see the caveats).")
    return " ".join(parts)


def _straddles(v: dict) -> bool:
    ci = v.get("ci95")
    return not ci or ci[0] is None or ci[1] is None or (ci[0] <= 0 <= ci[1])


def render(fits: dict) -> str:
    d = fits["derived"]
    b = fits["bootstrap"]
    out = ["# Scaling-law analysis", "",
           f"Source: `{fits['source']}`. {fits['n_rows']} rows, {fits['n_fit_points']} fit points, groups: "
           f"{', '.join(fits['groups'])}. Uncertainty: {b['n']} bootstrap resamples of {b['unit']}, "
           f"{b['interval']} intervals shown as value [lo, hi].", "", "## Answer", "", _answer(fits), ""]
    if fits["notes"]:
        out += ["Caveats:", ""] + [f"- {n}" for n in fits["notes"]] + [""]
    out += ["## Fitted laws", ""] + [f"- {k}: {v}" for k, v in LAW_FORMS.items()] + [""]
    out += _laws_table(fits["laws"]) + [""]
    out += ["## Derived laws", "", "### Scaling exponent of L in C", ""]
    for g, v in d.get("scaling_exponent", {}).items():
        out.append(f"- {g}: alpha = {with_ci(v['value'], v['ci95'])}")
    out += ["", "### Crossover", ""]
    cr = d.get("crossover", {})
    if "crossovers" in cr:
        out.append(f"Data range {fmt(cr['data_range'][0], 3)}–{fmt(cr['data_range'][1], 3)} FLOPs; searched "
                   f"{fmt(cr['search_range'][0], 3)}–{fmt(cr['search_range'][1], 3)}. "
                   + (f"Crossings at {', '.join(fmt(c, 4) for c in cr['crossovers'])} FLOPs "
                      f"(first: {with_ci(cr['first']['value'], cr['first']['ci95'])})."
                      if cr["crossovers"] else "No crossover in range."))
    else:
        out.append(f"Skipped: {cr.get('reason', '')}")
    out += ["", "### Efficiency multiplier", ""] + (_multiplier_lines(d) or ["Skipped: needs L(C) for two variants."])
    out += ["", "### Optimal allocation (from L(N,D); C = k N D with k fitted per group)", ""]
    for g, a in d.get("optimal_allocation", {}).items():
        out.append(f"- {g}: N_opt ∝ C^{with_ci(a['N_exponent']['value'], a['N_exponent']['ci95'])}, "
                   f"D_opt ∝ C^{with_ci(a['D_exponent']['value'], a['D_exponent']['ci95'])}, "
                   f"G = {with_ci(a['G']['value'], a['G']['ci95'])}, k = {fmt(a['flops_per_nd'])}")
    if not d.get("optimal_allocation"):
        out.append("Skipped: no L(N,D) fit.")
    out += ["", "### Best config per compute budget (from the grid)", "",
            "| budget C | group | config | loss | N | N_llm | N_vision | vision share | configs compared |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in d.get("best_configs", []):
        out.append(f"| {fmt(r['budget_C'], 3)} | {r['group']} | {r['config']} | {fmt(r['loss'])} | {fmt(r['N'], 3)} | "
                   f"{fmt(r['N_llm'], 3)} | {fmt(r['N_vision'], 3)} | {fmt(r['vision_share'], 2)} | {r['n_candidates']} |")
    out += ["", "### Extrapolation check (refit without the largest-compute points)", "",
            "| law | group | held out | from C | mean abs rel. error | max abs rel. error |", "|---|---|---|---|---|---|"]
    for e in d.get("extrapolation", []):
        if e["status"] == "ok":
            out.append(f"| {e['law']} | {e['group']} | {e['n_holdout']} | {fmt(e['C_threshold'], 3)} | "
                       f"{fmt(e['mean_abs_rel_error'], 3)} | {fmt(e['max_abs_rel_error'], 3)} |")
        else:
            out.append(f"| {e['law']} | {e['group']} | {e['n_holdout']} | {fmt(e['C_threshold'], 3)} | "
                       f"skipped: {e['reason']} | |")
    out += ["", "## Plots", ""]
    for p in fits.get("plots", []):
        out.append(f"![{p['name']}]({p['png']}) (data: `{p['csv']}`)" if p["status"] == "ok"
                   else f"- {p['name']}: skipped — {p['reason']}")
    out += ["", "## Dropped trials and rows", ""]
    out += [f"- {x['run_id']}: {x['reason']}" for x in fits["dropped"]] or ["None."]
    return "\n".join(out) + "\n"
