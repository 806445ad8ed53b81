"""Cosine vs WSD on the same grid (docs/schedules.md): training compute, per-point loss, fitted exponents.

    python benchmarks/compare_schedules.py ray_results/smoke_cos ray_results/smoke_wsd

Compute is what each experiment trained: a cosine trial all its steps; a WSD stable trial all
its steps, a cooldown only from its fork (its final FLOPs minus the stable trial's at the fork).
Points are the fits' end-of-schedule rows (fitting.table.fit_frame) averaged over seeds and matched
on (variant, config, steps), with each cell's vision gap (shuffled-frames loss − loss); exponents come from each experiment's analysis/fits.json (law, group, alpha / beta).
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _family(points, row):
    """The rows of `row`'s WSD family: same variant, config and seed (when recorded)."""
    same = (points["variant"] == row["variant"]) & (points["config"] == row["config"])
    if "seed" in points and row.get("seed") == row.get("seed"):  # seed present and not NaN
        same &= points["seed"] == row["seed"]
    return points[same]


def trained_flops(points) -> float:
    """Σ over trials of the FLOPs each trained itself (cosine rows or a WSD family)."""
    total = 0.0
    for _, run in points.groupby("run_id"):
        last = run.sort_values("step").iloc[-1]
        total += float(last["flops"])
        if last["wsd_phase"] == "cooldown":  # minus the stable trial's FLOPs at this fork
            fam = _family(points, last)
            stable = fam[fam["wsd_phase"] == "stable"].sort_values("step")
            cools = sorted(fam[fam["wsd_phase"] == "cooldown"]["trial_steps"].unique())
            total -= float(stable["flops"].iloc[cools.index(last["trial_steps"])])
    return total


def end_points(points):
    """The fit points (fitting.table.fit_frame's rule) averaged over seeds, keyed by (variant,
    config, steps): mean loss, its standard error over seeds (eval SE with one seed), runs, gap."""
    keep = (points["step"] >= points["trial_steps"]) & (points["wsd_phase"] != "stable")
    p = points[keep].assign(gap=lambda f: f["eval_loss_shuffled_frames"] - f["eval_loss"]
                            if "eval_loss_shuffled_frames" in f else float("nan"))
    g = p.groupby(["variant", "config", "trial_steps"])
    out = g.agg(loss=("eval_loss", "mean"), sd=("eval_loss", "std"), runs=("eval_loss", "size"),
                eval_se=("eval_loss_se", "mean"), gap=("gap", "mean"))
    out["se"] = [sd / math.sqrt(n) if n > 1 else e for sd, n, e in zip(out["sd"], out["runs"], out["eval_se"])]
    return out


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
    print("| variant | config | steps | runs | cosine loss ± se | wsd loss ± se | wsd − cosine | in se units "
          "| vision gap cosine / wsd |")
    print("|---|---|---|---|---|---|---|---|---|")
    diffs = []
    for key in sorted(set(a.index) & set(b.index)):
        ra, rb = a.loc[key], b.loc[key]
        d = rb["loss"] - ra["loss"]
        se = math.hypot(ra["se"], rb["se"])
        diffs.append((d, se))
        print(f"| {key[0]} | {key[1]} | {int(key[2])} | {int(ra['runs'])} / {int(rb['runs'])} | "
              f"{ra['loss']:.4f} ± {ra['se']:.4f} | {rb['loss']:.4f} ± {rb['se']:.4f} | {d:+.4f} | {d / se:+.2f} | "
              f"{ra['gap']:.3f} / {rb['gap']:.3f} |")
    if diffs:
        mean = sum(d for d, _ in diffs) / len(diffs)
        within = sum(abs(d) <= se for d, se in diffs)
        print(f"\nmean wsd − cosine: {mean:+.4f}; |diff| ≤ 1 combined se at {within}/{len(diffs)} points; "
              f"wsd lower at {sum(d < 0 for d, _ in diffs)}/{len(diffs)} (se: over seeds where a cell has several)")
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
