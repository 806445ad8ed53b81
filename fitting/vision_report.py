"""report.md's vision section (per cell, per arm, per run) and seed table, from fits.json."""
from __future__ import annotations

from fitting.text import fmt
from fitting.vision import BIMODAL, FALLBACK, SEED_SPREAD


def blind_arms(fits: dict) -> list[str]:
    """Arms with a vision measurement and at least one run that does not see."""
    return [g for g, r in (fits.get("vision") or {}).items() if not r["uses_frames"]]


def _lrs(values: list) -> str:
    return " / ".join(fmt(v, 3) for v in values) or "n/a"


def _cell_lines(v: dict) -> list[str]:
    out = ["| arm | config | seeing runs / runs | lr (new parameters) | lr_backbone |", "|---|---|---|---|---|"]
    for g, r in v.items():
        for c, cell in r.get("cells", {}).items():
            seen = f"{cell['n_seeing']} / {cell['n_runs']}"
            if cell["n_seeing"] < cell["n_runs"]:
                seen = f"**{seen}**"
            out.append(f"| {g} | {c} | {seen} | {_lrs(cell['lr'])} | {_lrs(cell['lr_backbone'])} |")
    return out


def _arm_lines(v: dict) -> list[str]:
    out = ["| arm | pooled vision gap | 95% CI | runs pooled | seeing runs / runs | every run sees |",
           "|---|---|---|---|---|---|"]
    for g, r in v.items():
        ci = f"[{fmt(r['ci95'][0], 3)}, {fmt(r['ci95'][1], 3)}]" if r.get("ci95") else "none"
        verdict = "yes" if r["uses_frames"] else f"**no** — {r['reason']}"
        out.append(f"| {g} | {fmt(r['gap'], 3)} | {ci} | {r['n_pooled']} | {r['n_seeing']} / {r['n_runs']} | "
                   f"{verdict} |")
    return out


def _run_lines(runs: list[dict]) -> list[str]:
    out = ["| arm | config | seed | steps | true loss | vision gap ± SE | z | sees |", "|---|---|---|---|---|---|---|---|"]
    for r in runs:
        se = r["gap_se"]
        z = fmt(r["gap"] / se, 3) if r["gap"] is not None and se else "n/a"
        gap = f"{fmt(r['gap'], 3)} ± {fmt(se, 2)}" + (" ¹" if r["gap_from"] == FALLBACK else "")
        sees = "yes" if r["sees"] else f"**no**: {r['reason']}"
        out.append(f"| {r['group']} | {r['config']} | {fmt(r['seed'])} | {fmt(r['steps'])} | {fmt(r['loss'])} | "
                   f"{gap} | {z} | {sees} |")
    if any(r["gap_from"] == FALLBACK for r in runs):
        out += ["", "¹ no paired gap reported: shuffled − true, the two losses' SEs added in quadrature (an upper "
                "bound on the SE: both evaluations score the same captions)."]
    return out


def vision_lines(fits: dict) -> list[str]:
    v = fits.get("vision") or {}
    out = ["## Do the runs use their frames?", ""]
    if not v:
        out.append("Not measured: no evaluation with shuffled frames (`eval_loss_shuffled_frames`) in the data"
                   + (", so every comparison between arms is withheld." if fits.get("vision_required") else "."))
        return out + [""]
    rule = fits.get("vision_rule", {})
    out += [f"Vision gap = eval loss with another clip's frames − eval loss with the clip's own frames. A run (the "
            "bootstrap's unit: a WSD family of one seed, or one cosine trial) is judged at its most-trained "
            f"evaluation: {rule.get('text', '')}. The floor is an effect size, because a z-test alone calls a "
            "gap of 1e-4 nats seeing. A comparison, multiplier or allocation resting on an arm with a blind run "
            "is withheld: a run that never learned to look is a failed training run, not a point of the arm's "
            "law.", ""]
    out += _cell_lines(v) + [""]
    out += ["Per arm, the mean gap of its runs at their size's largest step count (95% CI from resampling those runs and "
            "each one's evaluation noise) is a summary; the verdict is per run.", ""]
    out += _arm_lines(v) + ["", "Per run:", ""] + _run_lines(fits.get("vision_runs", [])) + [""]
    for g in blind_arms(fits):
        out.append(f"- **{g}**: not every run sees its frames ({v[g]['reason']}): every comparison resting on "
                   f"{g} is withheld, and its fitted laws below are marked as resting on blind runs.")
    return out + [""]


def _flag_text(c: dict) -> str:
    out = []
    for f in c.get("flags", []):
        if f == BIMODAL:
            out.append(f"**{BIMODAL}** ({c['n_seeing']} of {c['n_judged']} runs see)")
        elif f == SEED_SPREAD:
            out.append(f"{SEED_SPREAD} ({fmt(c['sd_over_se'], 2)}x)")
    return "; ".join(out)


def seed_lines(seeds: dict) -> list[str]:
    out = ["## Seeds", "", seeds.get("note", ""), ""]
    cells = seeds.get("cells", [])
    if cells and seeds.get("max_runs_per_cell", 0) > 1:
        out += ["| arm | config | steps | runs | mean final loss | seed sd | eval SE | flags |",
                "|---|---|---|---|---|---|---|---|"]
        out += [f"| {c['group']} | {c['config']} | {fmt(c['steps'])} | {c['n_runs']} | {fmt(c['mean_loss'])} | "
                f"{fmt(c['seed_sd'], 3)} | {fmt(c['eval_se'], 3)} | {_flag_text(c)} |" for c in cells] + [""]
    return out
