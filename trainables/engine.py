"""DeepSpeed set-up for one trial: process-group environment, config, engine.

Every trial runs through this one code path (ZeRO stage 2, optional CPU optimizer offload,
gradient accumulation to the grid's global batch, clipping, per-group learning rates, warmup
+ cosine decay from transformers). On a CPU-only machine DeepSpeed selects its CPU
accelerator and the gloo backend, so CI exercises the same path as a GPU box.
"""
from __future__ import annotations

import os
import socket

import torch

from search_spaces.trial import TrialConfig
from trainables.memory import ZERO_BUCKET_ELEMENTS


def free_port() -> int:
    """An unused TCP port on loopback (two concurrent trials must not share a rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def set_single_process_env() -> int:
    """DeepSpeed reads its rank and rendezvous from the environment; a Tune trial is world size 1.

    Returns the port. Set freshly per trial: Ray reuses worker processes between trials.
    """
    port = free_port()
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    return port


def skip_shared_memory_allreduce() -> None:
    """DeepSpeed's CPU backend JIT-loads a shared-memory all-reduce op at every initialize. A
    world-size-1 trial never all-reduces across processes, and the load takes a file lock in
    TORCH_EXTENSIONS_DIR: a process killed while holding it (a SIGKILLed sweep) leaves the lock
    behind and every later trial on the machine waits on it forever. Marking the op unavailable
    makes DeepSpeed fall back to torch.distributed's own (gloo) collectives."""
    if torch.cuda.is_available():
        return
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


def deepspeed_config(cfg: TrialConfig, zero_overrides: dict | None = None) -> dict:
    """zero_overrides: ZeRO keys to replace (benchmarks/trainer_throughput.py --zero tries
    other bucket / overlap settings on a GPU; the study itself always uses the defaults here)."""
    on_cuda = torch.cuda.is_available()
    # World size 1: no gradient leaves the GPU, so ZeRO-2's "communication" per bucket is a
    # copy of param.grad into the contiguous partition plus an all-reduce over one rank.
    # contiguous_gradients keeps that partition one flat buffer (no fragmentation, one fused
    # clip/step over it); overlap_comm runs each bucket's reduction on DeepSpeed's reduction
    # stream with two alternating buffers. Whether either helps at world size 1 is for the GPU
    # run to say (gpu_checks.sh times --zero overlap_comm=false and bigger buckets against
    # these). The 5e7-element buckets are what trainables/memory.py budgets (x2,
    # double-buffered); bigger buckets mean fewer flushes but more memory in every plan.
    zero: dict = {
        "stage": 2,
        "contiguous_gradients": True,
        "overlap_comm": on_cuda,
        "reduce_bucket_size": ZERO_BUCKET_ELEMENTS,  # the memory model's staging term uses it too
        "allgather_bucket_size": ZERO_BUCKET_ELEMENTS,
        **(zero_overrides or {}),
    }
    if cfg.offload:
        # pinned host memory makes the per-step grad/param copies asynchronous DMA transfers
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": on_cuda}
    return {
        "train_batch_size": cfg.global_batch,
        "train_micro_batch_size_per_gpu": cfg.micro_batch,
        "gradient_accumulation_steps": cfg.grad_accum,
        "gradient_clipping": cfg.grad_clip,
        "bf16": {"enabled": cfg.precision == "bf16"},
        "zero_optimization": zero,
        # our client optimizer (AdamW / DeepSpeedCPUAdam) is what ZeRO wraps
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def make_optimizer(param_groups: list[dict], cfg: TrialConfig):
    if cfg.offload:
        # ZeRO-Offload steps the optimizer on the host: DeepSpeed's vectorised CPU Adam
        # (compiled on first use, cached in TORCH_EXTENSIONS_DIR).
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        return DeepSpeedCPUAdam(param_groups, lr=cfg.lr, betas=(0.9, 0.95), adamw_mode=True)
    fused = torch.cuda.is_available()
    return torch.optim.AdamW(param_groups, lr=cfg.lr, betas=(0.9, 0.95), fused=fused)


def make_scheduler(optimizer, cfg: TrialConfig):
    from transformers import get_constant_schedule_with_warmup, get_cosine_with_min_lr_schedule_with_warmup

    if cfg.schedule == "constant":
        return get_constant_schedule_with_warmup(optimizer, cfg.warmup)
    if cfg.schedule == "wsd":
        return make_wsd_scheduler(optimizer, cfg)
    return get_cosine_with_min_lr_schedule_with_warmup(
        optimizer, cfg.warmup, cfg.steps, min_lr_rate=cfg.min_lr_ratio
    )


def make_wsd_scheduler(optimizer, cfg: TrialConfig):
    """transformers' WSD LambdaLR for both phases, so LR(t) is the same function before a fork.

    Stable trial: no decay before its end (stable phase longer than the trial). Cooldown (or a
    standalone WSD run): stable until fork_step, then `cooldown_shape` decay to min_lr_ratio at
    `steps`. A cooldown restores the stable trial's scheduler state through DeepSpeed's
    load_checkpoint: LambdaLR.load_state_dict restores last_epoch / base_lrs but keeps the lambda
    built here (a functools.partial saves an empty __dict__), so from the fork on this trial's own
    decay applies (tests/test_wsd.py tabulates it). Note transformers' warmup starts at
    min_lr_ratio x lr, the cosine schedule's at 0.
    """
    from transformers import get_wsd_schedule

    if cfg.wsd_phase == "stable":
        return get_wsd_schedule(optimizer, cfg.warmup, num_decay_steps=0, num_stable_steps=cfg.steps,
                                min_lr_ratio=cfg.min_lr_ratio)
    return get_wsd_schedule(optimizer, cfg.warmup, num_decay_steps=cfg.steps - cfg.fork_step,
                            num_stable_steps=cfg.fork_step - cfg.warmup, decay_type=cfg.cooldown_shape,
                            min_lr_ratio=cfg.min_lr_ratio)


def build_engine(model: torch.nn.Module, param_groups: list[dict], cfg: TrialConfig,
                 zero_overrides: dict | None = None):
    """-> (engine, scheduler, ds_config). The scheduler is stepped by the engine at each optimizer step."""
    import deepspeed

    set_single_process_env()
    skip_shared_memory_allreduce()
    ds_config = deepspeed_config(cfg, zero_overrides)
    optimizer = make_optimizer(param_groups, cfg)
    engine, _, _, scheduler = deepspeed.initialize(
        model=model,
        optimizer=optimizer,
        lr_scheduler=lambda opt: make_scheduler(opt, cfg),
        config=ds_config,
        dist_init_required=True,
    )
    return engine, scheduler, ds_config
