"""Measured MFU of this trainer per (variant, config): what the dry-run's GPU-hours use.

Torch-free on purpose: the planner imports it on the planning path.

Each entry is the trainer's MFU (model FLOPs from trainables/flops.py against 989 TFLOP/s
dense bf16) measured by `benchmarks/trainer_throughput.py`, without offload (the planner adds
offload time itself). `benchmarks/gpu_checks.sh` prints an updated MEASURED_MFU for this file
(benchmarks/summarize_gpu_checks.py); paste it here with its log's name.

Lookup (`mfu_for`): the exact (variant, config); else the same variant and LLM size class
(first letter of the config, e.g. "M" for M-L); else the other variant of that class; else the
nearest measured class. A trial with nothing measured near it falls back to the assumption.
Numbers measured on one GPU are applied to others as an assumption (MFU, not samples/s).
"""
from __future__ import annotations

SOURCE = ("benchmarks/results/gpu_checks_h200_2026-11-26.log: NVIDIA H200, torch 2.11, DeepSpeed 0.19.8, "
          "micro-batch 8 x 1, 10 timed steps (taken while the CPU Adam op compiled in the background)")

# (variant, config) -> trainer MFU; see SOURCE
MEASURED_MFU: dict[tuple[str, str], float] = {
    ("baseline", "M-S"): 0.0154,
    ("foveated", "M-S"): 0.0080,
    ("baseline", "L-S"): 0.0701,
    ("baseline", "L-L"): 0.1291,
}

SIZE_ORDER = "TSML"  # LLM size classes, smallest first


def mfu_for(variant: str, config: str, table: dict | None = None) -> tuple[float, str] | None:
    """(MFU, which measurement it comes from) for a trial, or None when nothing is measured."""
    table = MEASURED_MFU if table is None else table
    if not table:
        return None
    if (variant, config) in table:
        return table[(variant, config)], f"{config} {variant}"
    cls = config.split("-")[0]
    for want_variant in (variant, None):
        same_class = sorted((c, v) for v, c in table if c.split("-")[0] == cls and want_variant in (None, v))
        if same_class:
            c, v = same_class[0]
            return table[(v, c)], f"{c} {v}"
    # nearest measured size class (ties: the smaller one); prefer this variant there
    rank = SIZE_ORDER.index(cls) if cls in SIZE_ORDER else 0
    def distance(key):
        v, c = key
        r = SIZE_ORDER.index(c[0]) if c[0] in SIZE_ORDER else 0
        return abs(r - rank), r, v != variant, c
    v, c = min(table, key=distance)
    return table[(v, c)], f"{c} {v}, nearest measured size"
