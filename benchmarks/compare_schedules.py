"""Cosine vs WSD on the same grid (issue 9): training compute, per-point loss, fitted exponents.

    python benchmarks/compare_schedules.py ray_results/smoke_cos ray_results/smoke_wsd

Compute is what each experiment trained: a cosine trial all its steps; a WSD stable trial all
its steps, a cooldown only from its fork (its final FLOPs minus the stable trial's at the fork).
Points are the fits' end-of-schedule rows (fitting.table.fit_frame) matched on (variant, config,
steps); exponents come from each experiment's analysis/fits.json (law, group, alpha / beta).
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def trained_flops(points) -> float:
    """Σ over trials of the FLOPs each trained itself (cosine rows or a WSD family)."""
    total = 0.0
    for _, run in points.groupby("run_id"):
        last = run.sort_values("step").iloc[-1]
        total += float(last["flops"])
        if last["wsd_phase"] == "cooldown":  # minus the stable trial's FLOPs at this fork
            stable = points[(points["wsd_phase"] == "stable") & (points["variant"] == last["variant"])
                            & (points["config"] == last["config"])].sort_values("step")
            cools = sorted(points[(points["wsd_phase"] == "cooldown") & (points["variant"] == last["variant"])
                                  & (points["config"] == last["config"])]["trial_steps"].unique())
            total -= float(stable["flops"].iloc[cools.index(last["trial_steps"])])
    return total


def end_points(points):
    """The fit points (fitting.table.fit_frame's rule), keyed by (variant, config, steps)."""
    keep = (points["step"] >= points["trial_steps"]) & (points["wsd_phase"] != "stable")
    return points[keep].set_index(["variant", "config", "trial_steps"])


def exponents(exp_dir: Path) -> dict:
    path = exp_dir / "analysis" / "fits.json"
    if not path.exists():
        return {}
    laws = json.loads(path.read_text()).get("laws", {})
    out = {}
    for law, groups in laws.items():
        for group, rec in groups.items():
            if rec.get("status") != "ok":
                continue
            for k in ("alpha", "beta"):
                if k in rec.get("params", {}):
                    out[(law, group, k)] = (rec["params"][k], (rec.get("ci95") or {}).get(k))
    return out


def _fmt(value: float, ci) -> str:
    return f"{value:.3g} [{ci[0]:.3g}, {ci[1]:.3g}]" if ci else f"{value:.3g}"


def main(argv: list[str]) -> int:
    from fitting.table import load_experiment

    cos_dir, wsd_dir = Path(argv[0]), Path(argv[1])
    cos, _ = load_experiment(cos_dir)
    wsd, _ = load_experiment(wsd_dir)
    c_cos, c_wsd = trained_flops(cos), trained_flops(wsd)
    print(f"training compute: cosine {c_cos:.4g} FLOPs, wsd {c_wsd:.4g} FLOPs = {c_wsd / c_cos:.1%}\n")
    a, b = end_points(cos), end_points(wsd)
    print("| variant | config | steps | cosine loss ± se | wsd loss ± se | wsd − cosine | in se units |")
    print("|---|---|---|---|---|---|---|")
    diffs = []
    for key in sorted(set(a.index) & set(b.index)):
        ra, rb = a.loc[key], b.loc[key]
        d = rb["eval_loss"] - ra["eval_loss"]
        se = math.hypot(ra["eval_loss_se"], rb["eval_loss_se"])
        diffs.append((d, se))
        print(f"| {key[0]} | {key[1]} | {int(key[2])} | {ra['eval_loss']:.4f} ± {ra['eval_loss_se']:.4f} | "
              f"{rb['eval_loss']:.4f} ± {rb['eval_loss_se']:.4f} | {d:+.4f} | {d / se:+.2f} |")
    if diffs:
        mean = sum(d for d, _ in diffs) / len(diffs)
        within = sum(abs(d) <= se for d, se in diffs)
        print(f"\nmean wsd − cosine: {mean:+.4f}; |diff| ≤ 1 combined se at {within}/{len(diffs)} points; "
              f"wsd lower at {sum(d < 0 for d, _ in diffs)}/{len(diffs)}")
    ea, eb = exponents(cos_dir), exponents(wsd_dir)
    if ea or eb:
        print("\n| law | group | exponent | cosine (95% CI) | wsd (95% CI) | CIs overlap |")
        print("|---|---|---|---|---|---|")
    for key in sorted(set(ea) & set(eb)):
        (va, ca), (vb, cb) = ea[key], eb[key]
        overlap = "-" if not (ca and cb) else ("yes" if ca[0] <= cb[1] and cb[0] <= ca[1] else "no")
        print(f"| {key[0]} | {key[1]} | {key[2]} | {_fmt(va, ca)} | {_fmt(vb, cb)} | {overlap} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
