"""The tables of docs/measurements.md from one gpu_checks.sh run: its log (trainer_throughput JSON lines) and
memory_check JSON files.

    python benchmarks/summarize_gpu_checks.py LOG [MEMORY_JSON ...]

Prints, as markdown: trainer vs plain per (config, variant) with MFU, peak / reserved and
planned GiB; offload vs no-offload at the same micro-batch x accumulation; the memory check's
measured vs planned memory; and an updated MEASURED_MFU for trainables/measured_mfu.py (the
trainer's MFU at the planner's choice, no offload, no compile, default ZeRO settings).
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path


def throughput_records(log: str) -> list[dict]:
    out = []
    for line in Path(log).read_text(errors="replace").splitlines():
        if line.startswith('{"device"'):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a time limit
    return out


def _gib(x) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


def _setting(r: dict) -> str:
    extra = [k for k, on in (("compile", r.get("compile")), ("ckpt", r.get("ckpt"))) if on]
    extra += [f"{k}={v}" for k, v in (r.get("zero") or {}).items()]
    return f"{r['micro_batch']} × {r['grad_accum']}" + ("".join(f", {e}" for e in extra))


def throughput_table(records: list[dict]) -> str:
    rows = ["| config | variant | micro-batch × accum | offload | plain samples/s (MFU) | trainer samples/s (MFU) "
            "| trainer / plain | trainer peak / reserved GiB | planned GiB |", "|" + "---|" * 9]
    for r in records:
        runs = {x["path"]: x for x in r["runs"]}
        plain, trainer = runs.get("plain"), runs.get("trainer")
        cell = lambda x: "–" if not x else f"{x['samples_per_s']:.1f}" + (  # noqa: E731
            f" ({x['mfu']:.1%})" if x["mfu"] == x["mfu"] else "")
        ratio = f"{trainer['samples_per_s'] / plain['samples_per_s']:.2f}×" if plain and trainer else "–"
        mem = f"{_gib(trainer['peak_gib'])} / {_gib(trainer['reserved_gib'])}" if trainer else "–"
        planned = _gib((r.get("plan") or {}).get("planned_gib"))
        rows.append(f"| {r['config']} | {r['variant']} | {_setting(r)} | {'CPU' if r['offload'] else 'no'} | "
                    f"{cell(plain)} | {cell(trainer)} | {ratio} | {mem} | {planned} |")
    return "\n".join(rows)


def offload_table(records: list[dict]) -> str:
    """Offloaded trainer vs the same config, micro-batch and accumulation without offload."""
    def key(r):
        return r["config"], r["variant"], r["micro_batch"], r["grad_accum"], r.get("compile"), json.dumps(r.get("zero"))

    no_off = {key(r): r for r in records if not r["offload"] and any(x["path"] == "trainer" for x in r["runs"])}
    rows = ["| config | variant | micro-batch × accum | offload samples/s | no-offload samples/s | ratio | "
            "offload peak / reserved GiB |", "|" + "---|" * 7]
    for r in records:
        if not r["offload"] or key(r) not in no_off:
            continue
        off = next(x for x in r["runs"] if x["path"] == "trainer")
        ref = next(x for x in no_off[key(r)]["runs"] if x["path"] == "trainer")
        rows.append(f"| {r['config']} | {r['variant']} | {r['micro_batch']} × {r['grad_accum']} | "
                    f"{off['samples_per_s']:.1f} | {ref['samples_per_s']:.1f} | "
                    f"{off['samples_per_s'] / ref['samples_per_s']:.0%} | {_gib(off['peak_gib'])} / {_gib(off['reserved_gib'])} |")
    return "\n".join(rows)


def memory_table(results: list[dict], budget: float = 24.0) -> str:
    rows = ["| config | variant | micro-batch × accum | offload | ckpt | measured peak GiB | planned peak GiB | "
            "model error | reserved GiB | ≤ budget |", "|" + "---|" * 10]
    for r in results:
        err = (r["pred_peak_alloc_gib"] - r["peak_alloc_gib"]) / r["peak_alloc_gib"] if r["peak_alloc_gib"] else float("nan")
        rows.append(f"| {r['config']} | {r['variant']} | {r['micro_batch']} × {r['grad_accum']} | "
                    f"{'yes' if r['offload'] else 'no'} | {'yes' if r['ckpt'] else 'no'} | {_gib(r['peak_alloc_gib'])} | "
                    f"{_gib(r['pred_peak_alloc_gib'])} | {err:+.1%} | {_gib(r['peak_reserved_gib'])} | "
                    f"{'yes' if r['peak_reserved_gib'] <= budget else '**no**'} |")
    return "\n".join(rows)


def measured_mfu(records: list[dict]) -> dict[tuple[str, str], float]:
    """Trainer MFU at the planner's choice (no offload / compile / ZeRO override), per (variant, config)."""
    out = {}
    for r in records:
        if r.get("plan") and not r["offload"] and not r.get("compile") and not r.get("zero"):
            for x in r["runs"]:
                if x["path"] == "trainer" and x["mfu"] == x["mfu"]:
                    out[(r["variant"], r["config"])] = round(x["mfu"], 4)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print("usage: summarize_gpu_checks.py LOG [MEMORY_JSON ...]", file=sys.stderr)
        return 2
    records = throughput_records(argv[0])
    print(f"## Trainer vs plain step ({len(records)} runs from {argv[0]})\n")
    print(throughput_table(records))
    print("\n## Offload vs no-offload (same micro-batch x accumulation)\n")
    print(offload_table(records))
    memory = []
    for path in argv[1:]:
        if Path(path).exists():
            memory += json.loads(Path(path).read_text() or "[]")
    print(f"\n## Planner's 24 GiB choices: measured vs planned ({len(memory)} plans)\n")
    print(memory_table(memory))
    table = measured_mfu(records)
    print("\n## Updated table for trainables/measured_mfu.py\n")
    print("MEASURED_MFU: dict[tuple[str, str], float] = {")
    for (variant, config), mfu in sorted(table.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        print(f'    ("{variant}", "{config}"): {mfu},')
    print("}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
