"""Do two runs of a study reach the same verdicts? Compare their fits.json statuses.

    python benchmarks/compare_verdicts.py ray_results/smoke/analysis ray_results/smoke_1thread/analysis

Prints, side by side: each run's seeing verdict (arm, config, seed), each cell's seeing runs /
runs, each comparison's and each allocation's status, and every L(C) parameter's blocking flags.
Exit 0 when every one of those is the same in both, 1 otherwise. Numbers (losses, gaps,
multipliers) may differ in their last digits across CPUs and thread counts; the verdicts must not.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def verdicts(analysis: Path) -> dict[str, str]:
    """A flat {what: verdict} of one analysis directory's fits.json."""
    fits = json.loads((analysis / "fits.json").read_text())
    out = {}
    for r in fits.get("vision_runs", []):
        seed = "?" if r.get("seed") is None else int(r["seed"])
        out[f"run {r['group']} {r['config']} s{seed}"] = "sees" if r["sees"] else "BLIND"
    for arm, v in (fits.get("vision") or {}).items():
        for config, c in (v.get("cells") or {}).items():
            out[f"cell {arm} {config}"] = f"{c['n_seeing']}/{c['n_runs']} see"
    derived = fits.get("derived", {})
    for name, c in derived.get("comparisons", {}).items():
        out[f"comparison {name}"] = c["status"]
    for arm, a in derived.get("optimal_allocation", {}).items():
        out[f"allocation {arm}"] = a["status"]
    for arm, rec in fits.get("laws", {}).get("L(C)", {}).items():
        flags = rec.get("flags", {})
        out[f"L(C) {arm}"] = rec["status"] + "".join(f"; {k}: {', '.join(f)}" for k, f in sorted(flags.items()) if f)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a", type=Path, help="an analysis directory (holds fits.json)")
    p.add_argument("b", type=Path)
    args = p.parse_args()
    try:
        a, b = verdicts(args.a), verdicts(args.b)
    except (OSError, ValueError, KeyError) as e:
        print(f"error: cannot read the two fits.json ({e})", file=sys.stderr)
        return 2
    differ = 0
    for key in sorted(set(a) | set(b)):
        same = a.get(key) == b.get(key)
        differ += not same
        print(f"{'  ' if same else '!!'} {key}: {a.get(key, '-')}" + ("" if same else f"  |  {b.get(key, '-')}"))
    print(f"{len(set(a) | set(b)) - differ} of {len(set(a) | set(b))} verdicts agree"
          + ("" if not differ else f"; {differ} differ (marked !!)"))
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
