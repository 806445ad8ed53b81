"""The Ray Tune function trainable: one trial = one real training run of one VLM.

    tune.Tuner(tune.with_resources(train_vlm, {...}), param_space={"trial": grid_search([...])})

Each trial: validate its config -> data + tokenizer -> model -> DeepSpeed engine -> restore
from `tune.get_checkpoint()` if Ray hands one back -> train, evaluating and checkpointing at
its milestones through `tune.report(metrics, checkpoint=...)`.
"""
from __future__ import annotations

import math
import os
import random
import signal
import tempfile

import numpy as np
import torch

from search_spaces.trial import TrialConfig
from trainables import checkpoint as ckpt
from trainables.data.pipeline import derangement, eval_batches, load_data, normalise_frames, train_loader
from trainables.hot_loop import DevicePrefetcher, NonFiniteWatch
from trainables.metrics import ThroughputMeter, memory_metrics
from trainables.planner import plan_trial

EVAL_BATCH = 32
EVAL_SHUFFLE_SEED = 1234  # the shuffled-frames pairing: the same for every trial
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
    visual = cfg.frames if cfg.variant == "foveated" else 16 * cfg.frames
    return visual + cfg.text_len


def _to_device(batch: dict, device, dtype) -> dict:
    out = {k: v.to(device, non_blocking=True) for k, v in batch.items() if k != "n_bad_rows"}
    out["frames"] = normalise_frames(out["frames"], dtype)  # uint8 on the host, normalised here
    return out


@torch.no_grad()
def _eval_pass(engine, eval_set, dtype, frames_from: torch.Tensor | None = None) -> list[tuple[float, int]]:
    """(caption loss sum, caption tokens) per eval batch, in order."""
    engine.eval()
    out = []
    for batch in eval_batches(eval_set, EVAL_BATCH, frames_from=frames_from):
        res = engine(**_to_device(batch, engine.device, dtype))
        out.append((float(res["loss_sum"]), int(res["n_tokens"])))
    engine.train()
    return out


def _se(values: list[float]) -> float:
    return float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else float("nan")


def evaluate(engine, eval_set, dtype, shuffle_frames: bool = True) -> dict[str, float]:
    """Mean caption loss over the held-out split and its standard error over eval batches.

    With shuffle_frames, also the loss with every caption paired with another clip's frames
    (a derangement of the whole split, fixed by EVAL_SHUFFLE_SEED, so no clip keeps its own
    and every run is scored on the same pairs) and the vision gap, shuffled - true; the gap's
    standard error is over the per-batch paired differences (same captions in both passes).
    """
    true = _eval_pass(engine, eval_set, dtype)
    sums, counts = sum(s for s, _ in true), sum(n for _, n in true)
    means = [s / max(n, 1) for s, n in true]
    out = {"eval_loss": sums / max(counts, 1), "eval_loss_se": _se(means)}
    if shuffle_frames and len(eval_set) >= 2:
        perm = derangement(len(eval_set), torch.Generator().manual_seed(EVAL_SHUFFLE_SEED))
        shuf = _eval_pass(engine, eval_set, dtype, perm)
        s_sums, s_counts = sum(s for s, _ in shuf), sum(n for _, n in shuf)
        s_means = [s / max(n, 1) for s, n in shuf]
        out["eval_loss_shuffled_frames"] = s_sums / max(s_counts, 1)
        out["eval_loss_shuffled_frames_se"] = _se(s_means)
        out["eval_vision_gap"] = out["eval_loss_shuffled_frames"] - out["eval_loss"]
        out["eval_vision_gap_se"] = _se([b - a for a, b in zip(means, s_means)])
    return out


def _trial_storage() -> tuple:
    """(trial dir, pyarrow filesystem) of this trial's storage, or (None, None) outside Tune."""
    try:
        from ray.train._internal.session import get_session

        storage = get_session().storage
        return storage.trial_fs_path, storage.storage_filesystem
    except Exception:  # noqa: BLE001 - private Ray API: without it only Ray's own checkpoint is used
        return None, None


def train_vlm(config: dict) -> None:
    """Ray Tune entry point. `config` is {"trial": <TrialConfig dict>}; or the dict itself."""
    from ray import tune

    from trainables.engine import build_engine
    from trainables.flops import peak_flops, trial_flops_per_sample
    from trainables.models import build_vlm, param_counts

    cfg = TrialConfig.from_dict(config.get("trial", config))
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
    peak = peak_flops(device_name)

    state = {"step": 0, "samples": 0, "flops": 0.0, "data": None, "history": [], "n_bad_rows": 0}
    # Ray hands back the newest checkpoint its experiment state knows; the trial's storage dir
    # may hold a newer one (driver killed before its next snapshot) or that one may be damaged:
    # continue from the newest loadable one (checkpoint.restore_newest).
    handed = tune.get_checkpoint()
    loaded, restored = ckpt.restore_newest(engine, cfg, handed, *_trial_storage(),
                                           log=lambda m: print(m, flush=True))
    if loaded is not None:
        state = loaded
        print(f"[{cfg.trial_name}] resumed at step {state['step']} (samples {state['samples']}) "
              f"from {restored}", flush=True)
        if state["history"]:
            # Ray can lose reports around a failure or a killed driver although their
            # checkpoints survive (the last report before a crash; or, when it restores with no
            # registered checkpoint, the whole result file). Re-send the full history: it is
            # small, and the fitting and the live plot keep one row per (trial, step).
            for m in state["history"][:-1]:
                tune.report({**m, "re_reported": True, "resumed_from_step": state["step"]})
            # resumed_checkpoint: a WSD stable trial resumed from a checkpoint the driver never
            # saw (restore_newest) must still fork there (sweep/wsd.py)
            tune.report({**state["history"][-1], "re_reported": True, "resumed_from_step": state["step"],
                         "resumed_checkpoint": os.path.basename(str(restored).rstrip("/"))})
    elif cfg.fork_from:
        # A WSD cooldown's first start: continue the stable trial from its fork checkpoint,
        # counters included (C = the shared stable FLOPs + this cooldown's). No re-report: the
        # last report in that history is the stable trial's, not a point of this trial.
        with tune.Checkpoint(cfg.fork_from).as_directory() as d:
            state = ckpt.load(d, engine, cfg, fork=True)
        print(f"[{cfg.trial_name}] forked at step {state['step']} from {cfg.fork_from}", flush=True)

    # one-shot faults fire only in a fresh start (a retry from a checkpoint must get past them);
    # a non-finite loss is injected every time, as a real divergence would recur
    fault = cfg.fault_at if cfg.fault_at and (restored is None or cfg.fault_at[0] == "nan") else None
    cursor, loader = train_loader(data.train, cfg, state["data"])
    batches = DevicePrefetcher(loader, engine.device, dtype)  # next batch copied during this step
    meter = ThroughputMeter(state["samples"])
    loss_sum = torch.zeros((), device=engine.device)
    loss_n = 0
    watch = NonFiniteWatch(engine.device)
    tokens_per_sample = llm_tokens_per_sample(cfg)
    start = state["step"]
    print(f"[{cfg.trial_name}] start: training from step {start}", flush=True)  # one line per (re)start
    engine.train()
    # The hot loop has no host sync of its own: losses stay on the device, the finiteness
    # check polls without waiting, and only report steps read values back.
    for step in range(start + 1, cfg.steps + 1):
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
            loss_n += 1
            state["samples"] += n
            state["flops"] += flops_per_sample * n
        state["step"] = step
        is_milestone = step in cfg.milestones
        is_ckpt = is_milestone or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0)
        bad = watch.check() if is_ckpt else watch.poll() if step % FINITE_CHECK_EVERY == 0 else -1
        if bad >= 0:
            raise NonFiniteLoss(f"{cfg.trial_name}: non-finite training loss at step {bad}")
        if not is_ckpt:
            continue
        meter.pause(state["samples"])
        metrics = {
            "variant": cfg.variant, "config_id": cfg.config, "trial_name": cfg.trial_name,
            "schedule": cfg.schedule, "wsd_phase": cfg.wsd_phase, "step": step, "trial_steps": cfg.steps,
            "samples": state["samples"], "tokens": state["samples"] * tokens_per_sample,
            "train_loss": float(loss_sum) / max(loss_n, 1), "lr": scheduler.get_last_lr()[0],
            "flops": state["flops"], "flops_per_sample": flops_per_sample,
            "n_params": counts["total"], "n_params_llm": counts["llm_non_embedding"],
            "n_params_vision": counts["vision"], "n_bad_rows": state["n_bad_rows"],
            "milestone": bool(is_milestone), "resumed_from_step": start, "master_port": int(os.environ["MASTER_PORT"]), **meter.rates(flops_per_sample, peak), **memory_metrics(),
        }
        loss_sum.zero_()
        loss_n = 0
        if is_milestone:
            metrics.update(evaluate(engine, data.eval, dtype))  # true and deranged frames
        state["history"].append(metrics)
        state["data"] = cursor.state_dict()
        with tempfile.TemporaryDirectory(prefix="vlm-ckpt-") as tmp:
            ckpt.save(tmp, engine, cfg, ds_config, state)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))
        meter.resume()
