"""Per-trial execution plan (micro-batch, accumulation, offload, checkpointing) and the dry run.

`plan_trial` fits a trial into one GPU with trainables/memory.py's model. Search order, cheapest
first - a memory saver is used only when the trial cannot run without it:

    1. no offload, no checkpointing   3. offload, no checkpointing
    2. no offload, checkpointing      4. offload + checkpointing

and within the first mode that fits, the largest micro-batch (a power of two dividing the
global batch, or one of the caller's candidates). Checkpointing (~+33% compute) comes before
offload because ZeRO-Offload's host Adam + PCIe copies cost more per step at these sizes.
Accumulation = global_batch / micro_batch, so the optimisation (the fairness rules' "same
samples, same optimizer") never depends on the card.

Against the original experiment plan's hand-made table (RTX 4090, 24 GiB, 8 frames x 224^2,
~64 text tokens; predicted GPU memory includes a 10% fragmentation margin and 1 GiB of CUDA
context); see `python -m trainables.planner 24` for the numbers:
* S-S, S-B: 16, no savers - agrees. M-S: 16, M-B: 16 (foveated) / 8 (baseline) - the plan's
  8-12 band or above (12 is not a power of two dividing 16).
* S-L and M-L: micro-batch 4 x 4 accumulation, both variants - the plan had 16 for S-L and
  4-8 for M-L. Here every parameter trains, and DINOv2-L over 8 x 257 tokens saves ~1.6 GiB
  of activations per sample in bf16; 16 fits only with checkpointing (or a frozen ViT, which
  the plan may have assumed). We prefer accumulation: it costs no compute, and a micro-batch of
  4 clips is still 8k ViT tokens, enough to keep a GPU busy.
* L-*: need offload at 24 GiB, as the plan says (fp32 master + Adam moments alone are
  12 B/param = 19 GiB). Once offloaded only bf16 weights + gradient staging (~2 B/param)
  stay on the GPU, so micro-batches of 4-16 fit, not the plan's 1-2. The plan cannot have
  kept fp32 master + AdamW state on the card at all; its 1-2 fits e.g. pure-bf16 AdamW
  (8 B/param = 13 GiB on the GPU). These numbers assume engine.py's ZeRO-2 CPU offload.
* Not monotone across memory modes: L-L foveated (offloaded) gets 8 while M-L (not
  offloaded, 16 B/param of state on the GPU) gets 4. Within one mode larger configs never
  get a larger micro-batch (tests/test_planner.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from search_spaces.errors import ConfigError
from search_spaces.grids import Grid
from search_spaces.sizes import REAL_CONFIGS, VARIANTS
from search_spaces.trial import TrialConfig
from search_spaces.wsd import trained_steps
from trainables.data.tokenizer import planning_vocab_size
from trainables.flops import PEAK_FLOPS, peak_flops, trial_flops_per_sample
from trainables.measured_mfu import mfu_for
from trainables.memory import GIB, MemoryEstimate, estimate_memory
from trainables.parameters import param_counts_for

MODES: tuple[tuple[bool, bool], ...] = ((False, False), (False, True), (True, False), (True, True))
# Checkpointing recomputes each layer's forward in backward: fwd+bwd = 3 units, +1.
RECOMPUTE_TIME = 4 / 3
# ZeRO-Offload per optimizer step: DeepSpeed CPU Adam over P fp32 params plus the PCIe copies
# (grads down, bf16 params up) - order 1 s per 1e9 params on a ~16-core host. A rough,
# documented assumption; pass measured samples_per_s to replace the whole time model.
OFFLOAD_S_PER_PARAM = 1e-9
DEFAULT_MFU = 0.35  # only where trainables/measured_mfu.py has nothing measured (and no --mfu)


@dataclass(frozen=True)
class Plan:
    micro_batch: int
    grad_accum: int
    offload: bool
    grad_checkpointing: bool
    gpu_mem_gib: float  # the budget it was planned for
    memory: MemoryEstimate

    def apply(self, cfg: TrialConfig) -> TrialConfig:
        """cfg with this plan's micro_batch / offload / grad_checkpointing."""
        return cfg.replace(micro_batch=self.micro_batch, offload=self.offload, grad_checkpointing=self.grad_checkpointing)


def plan_grid(grid: Grid, trials: list[TrialConfig], gpu_mem_gib: float) -> list[TrialConfig]:
    """The grid's trials with the planner's micro-batch / offload / checkpointing for one GPU of
    `gpu_mem_gib` GiB; unchanged for a grid that fixes its own (Grid.plan_batches False)."""
    if not grid.plan_batches:
        return list(trials)
    return [plan_trial(t, gpu_mem_gib).apply(t) for t in trials]


def _candidates(global_batch: int, micro_batches: tuple[int, ...] | None) -> list[int]:
    if micro_batches is None:
        micro_batches = tuple(2**i for i in range(global_batch.bit_length()))
    ok = sorted({m for m in micro_batches if m > 0 and global_batch % m == 0}, reverse=True)
    if not ok:
        raise ConfigError(
            f"global_batch {global_batch} is not divisible by any candidate micro-batch {sorted(micro_batches)}"
        )
    return ok


def plan_trial(
    cfg: TrialConfig,
    gpu_mem_gib: float = 24.0,
    vocab_size: int = 49152,
    micro_batches: tuple[int, ...] | None = None,
) -> Plan:
    """The cheapest plan that fits `cfg` into one GPU of `gpu_mem_gib` GiB (see module doc).

    micro_batches: candidate sizes (default: powers of two up to the global batch); only the
    ones dividing cfg.global_batch are used. Raises ConfigError (one line) for a non-positive
    budget, no candidate dividing the global batch, or nothing fitting at all.
    """
    if not gpu_mem_gib > 0:
        raise ConfigError(f"gpu memory must be positive, got {gpu_mem_gib} GiB")
    return _plan(cfg, float(gpu_mem_gib), int(vocab_size), None if micro_batches is None else tuple(micro_batches))


@lru_cache(maxsize=4096)
def _plan(cfg: TrialConfig, gpu_mem_gib: float, vocab_size: int, micro_batches: tuple[int, ...] | None) -> Plan:
    sizes = _candidates(cfg.global_batch, micro_batches)
    budget = gpu_mem_gib * GIB
    for offload, ckpt in MODES:
        for mb in sizes:  # largest first; memory grows with mb, so the first fit is the best
            est = estimate_memory(cfg, vocab_size, mb, offload, ckpt)
            if est.gpu_total <= budget:
                return Plan(mb, cfg.global_batch // mb, offload, ckpt, gpu_mem_gib, est)
    least = estimate_memory(cfg, vocab_size, sizes[-1], True, True)
    raise ConfigError(
        f"{cfg.variant} {cfg.config} does not fit in {gpu_mem_gib:g} GiB even at micro-batch {sizes[-1]} "
        f"with offload + checkpointing (needs ~{least.gpu_gib:.1f} GiB)"
    )


# -- dry run ------------------------------------------------------------------------------
def _peak_flops(gpu_name: str) -> float:
    peak = peak_flops(gpu_name)
    if not peak:
        known = ", ".join(name for name, _ in PEAK_FLOPS)
        raise ConfigError(f"unknown GPU {gpu_name!r}: no peak FLOP/s known; set PEAK_FLOPS=<FLOP/s> or name one of {known}")
    return float(peak)


@lru_cache(maxsize=None)
def _flops_per_sample(key: tuple, vocab_size: int) -> float:
    variant, config, frames, text_len, image_size, query_dim = key
    cfg = TrialConfig(variant=variant, config=config, steps=1, frames=frames, text_len=text_len,
                      image_size=image_size, query_dim=query_dim)
    return trial_flops_per_sample(cfg, vocab_size)


def _measured_rate(samples_per_s: dict | None, cfg: TrialConfig) -> float | None:
    """samples/s for this trial from a dict keyed by (variant, config), "variant_config" or config."""
    if not samples_per_s:
        return None
    for key in ((cfg.variant, cfg.config), f"{cfg.variant}_{cfg.config}", cfg.config):
        if key in samples_per_s:
            rate = float(samples_per_s[key])
            if rate <= 0:
                raise ConfigError(f"samples_per_s for {cfg.variant} {cfg.config} must be positive, got {rate}")
            return rate
    return None


def dry_run_rows(
    trials: list[TrialConfig],
    gpu_mem_gib: float,
    gpu_name: str = "H100",
    samples_per_s: dict | None = None,
    mfu_assumption: float | None = None,
    vocab_size: int | None = None,
) -> list[dict]:
    """One row per trial: its plan, N, FLOPs and predicted memory / GPU-hours (no GPU needed).

    GPU-hours: measured `samples_per_s` for the trial when given, else total FLOPs / (peak x
    MFU), x 4/3 with checkpointing (recompute; C itself stays model FLOPs), + the offload
    step time (OFFLOAD_S_PER_PARAM). MFU: `mfu_assumption` when given, else the measured MFU
    of the nearest measured config (trainables/measured_mfu.py), else DEFAULT_MFU.
    """
    if mfu_assumption is not None and not 0 < mfu_assumption <= 1:
        raise ConfigError(f"mfu assumption must lie in (0, 1], got {mfu_assumption}")
    peak = _peak_flops(gpu_name)
    rows = []
    for cfg in trials:
        vocab = vocab_size or planning_vocab_size(cfg)
        plan = plan_trial(cfg, gpu_mem_gib, vocab)
        n = param_counts_for(cfg, vocab)
        fps = _flops_per_sample((cfg.variant, cfg.config, cfg.frames, cfg.text_len, cfg.image_size, cfg.query_dim), vocab)
        steps = trained_steps(cfg)  # a WSD cooldown trains only from its fork on
        samples = steps * cfg.global_batch
        rate = _measured_rate(samples_per_s, cfg)
        if rate is not None:
            seconds = samples / rate
        else:
            found = None if mfu_assumption is not None else mfu_for(cfg.variant, cfg.config)
            mfu = found[0] if found else mfu_assumption or DEFAULT_MFU
            time_from = f"mfu={mfu:g}" + (f" (measured {found[1]})" if found else "")
            seconds = samples * fps / (peak * mfu)
            seconds *= RECOMPUTE_TIME if plan.grad_checkpointing else 1.0
            seconds += steps * n.total * OFFLOAD_S_PER_PARAM if plan.offload else 0.0
        rows.append({
            "trial": cfg.trial_name, "variant": cfg.variant, "config": cfg.config, "steps": cfg.steps,
            "seed": cfg.seed, "lr": cfg.lr, "lr_backbone": cfg.lr_backbone,
            "wsd_phase": cfg.wsd_phase, "trained_steps": steps,
            "global_batch": cfg.global_batch, "micro_batch": plan.micro_batch, "grad_accum": plan.grad_accum,
            "offload": plan.offload, "grad_checkpointing": plan.grad_checkpointing,
            "n_params": n.total, "n_params_llm": n.llm_non_embedding, "n_params_vision": n.vision,
            "flops_per_sample": fps, "total_flops": samples * fps,
            "gpu_mem_gib": plan.memory.gpu_gib, "host_mem_gib": plan.memory.host_gib,
            "gpu_hours": seconds / 3600, "time_from": "measured" if rate is not None else time_from,
        })
    return rows


def dry_run_totals(rows: list[dict], gpu_mem_gib: float | None = None, gpu_name: str = "H100") -> dict:
    seeds = len({r["seed"] for r in rows})
    return {
        "trials": len(rows), "seeds": seeds, "cells": len(rows) // max(seeds, 1),
        "gpu": gpu_name, "gpu_mem_budget_gib": gpu_mem_gib,
        "total_flops": sum(r["total_flops"] for r in rows), "gpu_hours": sum(r["gpu_hours"] for r in rows),
        "max_gpu_mem_gib": max((r["gpu_mem_gib"] for r in rows), default=0.0),
        "max_host_mem_gib": max((r["host_mem_gib"] for r in rows), default=0.0),
    }


def _si(x: float) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.1f}{unit}"
    return f"{x:g}"


_COLUMNS = (  # header, row key, formatter
    ("variant", "variant", str), ("config", "config", str),
    ("steps", None, lambda r: f"{r['steps']}" + (f" {r['wsd_phase']}" if r.get("wsd_phase") else "")),
    ("seed", "seed", str), ("lr / backbone", None, lambda r: f"{r['lr']:.3g} / {r['lr_backbone']:.3g}"),
    ("GB", "global_batch", str), ("mb x acc", None, lambda r: f"{r['micro_batch']} x {r['grad_accum']}"),
    ("offload", "offload", lambda v: "yes" if v else "-"), ("ckpt", "grad_checkpointing", lambda v: "yes" if v else "-"),
    ("N", "n_params", _si), ("N_llm", "n_params_llm", _si), ("N_vit", "n_params_vision", _si),
    ("FLOPs/sample", "flops_per_sample", lambda v: f"{v:.3g}"), ("FLOPs", "total_flops", lambda v: f"{v:.3g}"),
    ("GPU GiB", "gpu_mem_gib", lambda v: f"{v:.1f}"), ("host GiB", "host_mem_gib", lambda v: f"{v:.1f}"),
    ("GPU-h", "gpu_hours", lambda v: f"{v:.3g}"),
)


def format_table(rows: list[dict], totals: dict) -> str:
    """Aligned text table + a totals line."""
    cells = [[h for h, _, _ in _COLUMNS]]
    for r in rows:
        cells.append([fmt(r) if key is None else fmt(r[key]) for _, key, fmt in _COLUMNS])
    widths = [max(len(row[i]) for row in cells) for i in range(len(_COLUMNS))]
    lines = ["  ".join(c.rjust(w) if i >= 2 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    budget = f" at {totals['gpu_mem_budget_gib']:g} GiB" if totals.get("gpu_mem_budget_gib") else ""
    replicates = f" ({totals['cells']} cells x {totals['seeds']} seeds)" if totals.get("seeds", 1) > 1 else ""
    lines.append(
        f"total: {totals['trials']} trials{replicates}, {totals['total_flops']:.3g} FLOPs, {totals['gpu_hours']:.1f} "
        f"{totals['gpu']} GPU-hours{budget}; peak GPU {totals['max_gpu_mem_gib']:.1f} GiB, "
        f"host {totals['max_host_mem_gib']:.1f} GiB"
    )
    return "\n".join(lines)


def main() -> None:  # pragma: no cover - a quick look: python -m trainables.planner [GiB]
    import sys

    gib = float(sys.argv[1]) if len(sys.argv) > 1 else 24.0
    trials = [TrialConfig(variant=v, config=c, steps=1000, frames=8, text_len=64) for c in REAL_CONFIGS for v in VARIANTS]
    rows = dry_run_rows(trials, gib)
    print(format_table(rows, dry_run_totals(rows, gib)))


if __name__ == "__main__":
    main()
