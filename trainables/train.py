"""The Ray Tune function trainable: one trial = one real training run of one VLM.

    tune.Tuner(tune.with_resources(train_vlm, {...}), param_space={"trial": grid_search([...])})

Each trial, as `train_vlm` reads: validate its config -> `build_trial` (seeds, data + tokenizer,
model, DeepSpeed engine, in that order: the RNG draws follow it) -> `starting_state` (restore
from `tune.get_checkpoint()` if Ray hands one back, or a WSD cooldown's fork) -> `train_steps`,
evaluating and checkpointing at its milestones through `tune.report(metrics, checkpoint=...)`.
"""
from __future__ import annotations

import os
import random
import signal
import tempfile
from dataclasses import dataclass

import numpy as np
import torch

from search_spaces import metric_names as M
from search_spaces.trial import TrialConfig
from trainables import checkpoint as ckpt
from trainables import storage
from trainables.data.bundle import DataBundle, load_data
from trainables.data.pipeline import train_loader
from trainables.evaluation import evaluate
from trainables.flops import peak_flops, trial_flops_per_sample
from trainables.hot_loop import DevicePrefetcher, NonFiniteWatch
from trainables.metrics import ThroughputMeter, memory_metrics
from trainables.planner import plan_trial
from trainables.variants import get_variant

FINITE_CHECK_EVERY = 10  # steps between non-blocking loss-finiteness polls (hot_loop.NonFiniteWatch)


class NonFiniteLoss(RuntimeError):
    pass


class TrialOutOfMemory(RuntimeError):
    pass


def oom_message(cfg: TrialConfig, step: int) -> str:
    """Name the config, the micro-batch and what the planner would choose instead."""
    try:
        plan = plan_trial(cfg)
        hint = (f"the planner suggests micro-batch {plan.micro_batch}, offload={plan.offload}, "
                f"activation checkpointing={plan.grad_checkpointing}")
    except Exception as e:  # noqa: BLE001 - a hint must never mask the OOM itself
        hint = f"the planner has no suggestion ({e})"
    return (f"{cfg.trial_name}: out of memory at step {step} with config {cfg.config}, micro-batch "
            f"{cfg.micro_batch}, offload={cfg.offload}; {hint} (see: tune_scaling.py --dry-run)")


def inject_fault(kind: str, step: int, loss: torch.Tensor) -> torch.Tensor:
    """Reliability-suite hooks (TrialConfig.fault); never active unless a test asks."""
    if kind == "raise":
        raise RuntimeError(f"injected failure at step {step}")
    if kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "oom":
        raise torch.OutOfMemoryError(f"injected out-of-memory at step {step}")
    return loss * float("nan")  # "nan"


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=False)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def llm_tokens_per_sample(cfg: TrialConfig) -> int:
    """Tokens the LLM reads per sample in its caption pass (visual + text)."""
    return get_variant(cfg.variant).tokens_per_frame * cfg.frames + cfg.text_len


@dataclass
class Trial:
    """What one trial builds once before its first step."""
    cfg: TrialConfig
    data: DataBundle
    engine: object  # the DeepSpeed engine
    scheduler: object
    ds_config: dict
    dtype: torch.dtype
    counts: dict  # parameter counts: total, llm_non_embedding, vision
    flops_per_sample: float
    peak: float | None  # the device's peak FLOP/s (None: unknown, MFU NaN)


def build_trial(cfg: TrialConfig) -> Trial:
    """Seeds -> data -> model -> engine, in this order (the RNG draws depend on it)."""
    # DeepSpeed and transformers: the driver imports this module only to hand train_vlm to Ray
    from trainables.engine import build_engine
    from trainables.models import build_vlm, param_counts

    seed_everything(cfg.seed, cfg.deterministic)
    data = load_data(cfg)
    model = build_vlm(cfg, data.vocab_size)
    counts = param_counts(model)
    if cfg.grad_checkpointing:
        model.gradient_checkpointing_enable()  # memory for recompute; reported FLOPs unchanged
    if cfg.compile:
        model.compile_blocks()
    groups = model.param_groups(cfg.lr, cfg.lr_backbone, cfg.weight_decay)
    engine, scheduler, ds_config = build_engine(model, groups, cfg)
    dtype = torch.bfloat16 if cfg.precision == "bf16" else torch.float32
    flops_per_sample = trial_flops_per_sample(cfg, data.vocab_size)
    device_name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return Trial(cfg, data, engine, scheduler, ds_config, dtype, counts, flops_per_sample, peak_flops(device_name))


def starting_state(t: Trial) -> tuple[dict, str | None]:
    """(trainer state, the checkpoint it was restored from or None): fresh, restored, or forked."""
    from ray import tune

    cfg = t.cfg
    state = {"step": 0, "samples": 0, "flops": 0.0, "data": None, "history": [], "n_bad_rows": 0}
    # Ray hands back the newest checkpoint its experiment state knows; the trial's storage dir
    # may hold a newer one (driver killed before its next snapshot) or that one may be damaged:
    # continue from the newest loadable one (checkpoint.restore_newest).
    handed = tune.get_checkpoint()
    loaded, restored = ckpt.restore_newest(t.engine, cfg, handed, *storage.trial_dir_and_fs(),
                                           log=lambda m: print(m, flush=True))
    storage.skip_existing_checkpoints()  # never overwrite a checkpoint the driver did not know of
    if loaded is not None:
        state = loaded
        print(f"[{cfg.trial_name}] resumed at step {state['step']} (samples {state['samples']}) "
              f"from {restored}", flush=True)
        report_history(state)
    elif cfg.fork_from:
        # A WSD cooldown's first start: continue the stable trial from its checkpoint at the fork
        # step, counters included (C = the shared stable FLOPs + this cooldown's). No re-report:
        # the last report in that history is the stable trial's, not a point of this trial.
        state, source = storage.load_fork(t.engine, cfg, log=lambda m: print(m, flush=True))
        print(f"[{cfg.trial_name}] forked at step {state['step']} from {source}", flush=True)
    return state, restored


def report_history(state: dict) -> None:
    """Ray can lose reports around a failure or a killed driver although their checkpoints
    survive (the last report before a crash; or, when it restores with no registered
    checkpoint, the whole result file). Re-send the full history: it is small, and the fitting
    and the live plot keep one row per (trial, step); a WSD stable trial's milestones queue
    their cooldowns (sweep/wsd.py)."""
    from ray import tune

    for m in state["history"]:
        tune.report({**m, M.RE_REPORTED: True, M.RESUMED_FROM_STEP: state["step"]})


def step_metrics(t: Trial, state: dict, start: int, train_loss: float, milestone: bool, rates: dict) -> dict:
    """One report's metrics (the evaluation's are added at milestones); names: metric_names."""
    cfg, counts = t.cfg, t.counts
    return {
        M.VARIANT: cfg.variant, M.CONFIG_ID: cfg.config, "trial_name": cfg.trial_name,
        M.SCHEDULE: cfg.schedule, M.WSD_PHASE: cfg.wsd_phase, M.STEP: state["step"], M.TRIAL_STEPS: cfg.steps,
        M.SAMPLES: state["samples"], M.TOKENS: state["samples"] * llm_tokens_per_sample(cfg),
        M.TRAIN_LOSS: train_loss, "lr": t.scheduler.get_last_lr()[0],
        M.FLOPS: state["flops"], "flops_per_sample": t.flops_per_sample,
        M.N_PARAMS: counts["total"], M.N_PARAMS_LLM: counts["llm_non_embedding"],
        M.N_PARAMS_VISION: counts["vision"], "n_bad_rows": state["n_bad_rows"],
        M.MILESTONE: bool(milestone), M.RESUMED_FROM_STEP: start, "master_port": int(os.environ["MASTER_PORT"]),
        # CPU numerics differ with the thread count and the vector kernels (AVX2 vs AVX-512)
        "torch_threads": torch.get_num_threads(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        **rates, **memory_metrics(),
    }


def save_and_report(t: Trial, state: dict, metrics: dict) -> None:
    """Checkpoint (model, optimizer, scheduler, data cursor, RNG, history) and report with it."""
    from ray import tune

    with tempfile.TemporaryDirectory(prefix="vlm-ckpt-") as tmp:
        ckpt.save(tmp, t.engine, t.cfg, t.ds_config, state)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))


def train_step(t: Trial, batches, cursor, state: dict, step: int, fault, watch, loss_sum: torch.Tensor) -> None:
    """One optimizer step over grad_accum micro-batches, each loss added to loss_sum (on the device)."""
    cfg, engine = t.cfg, t.engine
    for _ in range(cfg.grad_accum):
        n_bad_rows, batch = next(batches)
        cursor.advance()
        state["n_bad_rows"] += n_bad_rows
        n = batch["frames"].shape[0]
        try:
            out = engine(**batch)
            loss = out["loss"]
            if fault and fault[1] == step:
                loss = inject_fault(fault[0], step, loss)
            engine.backward(loss)
            engine.step()
        except torch.OutOfMemoryError:
            raise TrialOutOfMemory(oom_message(cfg, step)) from None
        loss = loss.detach().float()
        watch.update(step, loss)
        loss_sum += loss
        state["samples"] += n
        state["flops"] += t.flops_per_sample * n


def train_steps(t: Trial, state: dict, restored: str | None) -> None:
    """From state["step"] to cfg.steps; evaluate, checkpoint and report at milestones."""
    cfg, engine = t.cfg, t.engine
    # one-shot faults fire only in a fresh start (a retry from a checkpoint must get past them);
    # a non-finite loss is injected every time, as a real divergence would recur
    fault = cfg.fault_at if cfg.fault_at and (restored is None or cfg.fault_at[0] == "nan") else None
    cursor, loader = train_loader(t.data.train, cfg, state["data"])
    batches = DevicePrefetcher(loader, engine.device, t.dtype)  # next batch copied during this step
    meter = ThroughputMeter(state["samples"])
    loss_sum = torch.zeros((), device=engine.device)
    loss_n = 0
    watch = NonFiniteWatch(engine.device)
    start = state["step"]
    print(f"[{cfg.trial_name}] start: training from step {start}", flush=True)  # one line per (re)start
    engine.train()
    # The hot loop has no host sync of its own: losses stay on the device, the finiteness
    # check polls without waiting, and only report steps read values back.
    for step in range(start + 1, cfg.steps + 1):
        train_step(t, batches, cursor, state, step, fault, watch, loss_sum)
        loss_n += cfg.grad_accum
        state["step"] = step
        is_milestone = step in cfg.milestones
        is_ckpt = is_milestone or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0)
        bad = watch.check() if is_ckpt else watch.poll() if step % FINITE_CHECK_EVERY == 0 else -1
        if bad >= 0:
            raise NonFiniteLoss(f"{cfg.trial_name}: non-finite training loss at step {bad}")
        if not is_ckpt:
            continue
        meter.pause(state["samples"])
        rates = meter.rates(t.flops_per_sample, t.peak)
        metrics = step_metrics(t, state, start, float(loss_sum) / max(loss_n, 1), is_milestone, rates)
        loss_sum.zero_()
        loss_n = 0
        if is_milestone:
            metrics.update(evaluate(engine, t.data.eval, t.dtype, fields=t.data.caption_fields))  # true and deranged frames
        state["history"].append(metrics)
        state["data"] = cursor.state_dict()
        save_and_report(t, state, metrics)
        meter.resume()


def train_vlm(config: dict) -> None:
    """Ray Tune entry point. `config` is {"trial": <TrialConfig dict>}; or the dict itself."""
    cfg = TrialConfig.from_dict(config.get("trial", config))
    trial = build_trial(cfg)
    state, restored = starting_state(trial)
    train_steps(trial, state, restored)
