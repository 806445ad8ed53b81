"""Throughput / MFU / peak memory of this trainer vs a plain PyTorch + HF step, in one process.

    python benchmarks/trainer_throughput.py --config L-S --variant baseline --micro-batch 8
    python benchmarks/trainer_throughput.py --config L-L --plan-gpu-mem 139 --global-batch 32
    python benchmarks/trainer_throughput.py --config L-L --micro-batch 4 --grad-accum 8 --offload
    python benchmarks/trainer_throughput.py --device cpu --config T2-T2 --repeats 7   # CPU overhead

(a) the trainer's path: build_vlm + DeepSpeed ZeRO-2 engine (the same `build_engine` the Tune
    trials use), bf16 on CUDA, optional CPU optimizer offload and accumulation;
(b) the plain step: the same model, torch AdamW (fused on CUDA), bf16 autocast, no DeepSpeed.
Random-init real architectures and random batches (no data loading), 8 frames x 224 px and 64
text tokens by default. No host sync inside a timed window: losses stay on the device and the
window is bounded by synchronizes. `--repeats N` builds both paths, then alternates N timed
windows per path (plain, trainer, plain, ...) and reports each path's median window: on a
shared machine load drifts, and alternating spreads it over both paths alike.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search_spaces.sizes import VARIANTS  # noqa: E402
from search_spaces.trial import TrialConfig  # noqa: E402
from trainables.flops import peak_flops, trial_flops_per_sample  # noqa: E402

GIB = 2**30


def random_batch(cfg: TrialConfig, vocab: int, device) -> dict:
    B, T, S, L = cfg.micro_batch, cfg.frames, cfg.image_size, cfg.text_len
    ids = torch.randint(4, vocab, (B, L), device=device)
    labels = ids.clone()
    labels[:, 0] = -100
    return {"frames": torch.randn(B, T, 3, S, S, device=device), "input_ids": ids,
            "attention_mask": torch.ones_like(ids), "labels": labels}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _window(step, n_steps: int, device: str) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) of n_steps steps. On a shared CPU the CPU
    seconds are the steadier measure of work (other processes' load stretches the wall clock)."""
    _sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n_steps):
        step()
    _sync(device)
    return time.perf_counter() - t0, time.process_time() - c0


def _profile(step, name: str, args) -> None:
    """`--profile-steps` more steps under torch.profiler: the ops that took the most device (CPU:
    host) time, and how busy the device was over those steps (the rest: host gaps)."""
    from torch.profiler import ProfilerActivity, profile

    cuda = args.device == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    _sync(args.device)
    t0 = time.perf_counter()
    with profile(activities=activities) as prof:
        for _ in range(args.profile_steps):
            step()
        _sync(args.device)
    wall_us = (time.perf_counter() - t0) * 1e6
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    averages = prof.key_averages()
    print(f"--- profile: {name}, {args.profile_steps} step(s), top ops by {key}")
    print(averages.table(sort_by=key, row_limit=args.profile_rows))
    if cuda:
        busy = sum(e.self_device_time_total for e in averages)  # kernels on all streams, summed
        print(f"--- profile: {name}: device busy {busy / wall_us:.1%} of {wall_us / 1e3:.0f} ms wall "
              f"(summed kernel time; < 100%: the GPU waited on the host)")
    if args.trace:
        out = Path(args.profile)
        out.mkdir(parents=True, exist_ok=True)
        prof.export_chrome_trace(str(out / f"trace_{name}.json"))


def _reset(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _memory(device: str) -> dict:
    if device != "cuda":
        return {"peak_gib": float("nan"), "reserved_gib": float("nan")}
    return {"peak_gib": torch.cuda.max_memory_allocated() / GIB, "reserved_gib": torch.cuda.max_memory_reserved() / GIB}


def _model(cfg: TrialConfig, vocab: int, device: str, args):
    from trainables.models import build_vlm

    torch.manual_seed(args.seed)  # both paths (and runs with other settings) start from the same weights
    with torch.device(device):  # random init straight on the device: seconds, not minutes, at L-L
        model = build_vlm(cfg, vocab)
    if cfg.grad_checkpointing:
        model.gradient_checkpointing_enable()
    if args.compile:
        model.compile_blocks()
    return model


def build_plain(cfg: TrialConfig, vocab: int, args):
    """-> (step, state): the hand-written step a user would write."""
    device = args.device
    model = _model(cfg, vocab, device, args)
    opt = torch.optim.AdamW(model.param_groups(cfg.lr, cfg.lr_backbone, cfg.weight_decay),
                            betas=(0.9, 0.95), fused=device == "cuda")
    batch = random_batch(cfg, vocab, device)
    dtype = torch.bfloat16 if cfg.precision == "bf16" else torch.float32

    def step():
        for _ in range(cfg.grad_accum):
            with torch.autocast(device, dtype=dtype, enabled=dtype == torch.bfloat16):
                loss = model(**batch)["loss"] / cfg.grad_accum
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step, {"model": model, "opt": opt}


def build_trainer(cfg: TrialConfig, vocab: int, args):
    """-> (step, state): the trial's path (build_engine), fed like train.py feeds it."""
    from trainables.engine import build_engine

    model = _model(cfg, vocab, args.device, args)
    groups = model.param_groups(cfg.lr, cfg.lr_backbone, cfg.weight_decay)
    engine, _, _ = build_engine(model, groups, cfg, zero_overrides=args.zero or None)
    dtype = torch.bfloat16 if cfg.precision == "bf16" else torch.float32
    batch = random_batch(cfg, vocab, engine.device)
    batch["frames"] = batch["frames"].to(dtype)
    losses: list[torch.Tensor] = []  # device tensors: read after the timed windows

    def step():
        for _ in range(cfg.grad_accum):
            loss = engine(**batch)["loss"]
            engine.backward(loss)
            engine.step()
        losses.append(loss.detach().float())

    return step, {"engine": engine, "model": model, "losses": losses}


def bench(cfg: TrialConfig, vocab: int, args, paths: list[str]) -> list[dict]:
    builders = {"plain": build_plain, "trainer": build_trainer}
    times: dict[str, list[tuple[float, float]]] = {p: [] for p in paths}
    out: dict[str, dict] = {}
    if args.repeats == 1:  # one path at a time: both models never share the device's memory
        for p in paths:
            _reset(args.device)
            step, state = builders[p](cfg, vocab, args)
            _reset(args.device)  # peaks of training, not of building in fp32
            _window(step, args.warmup, args.device)
            times[p].append(_window(step, args.steps, args.device))
            out[p] = {**_memory(args.device), **_losses(state)}
            if args.profile:
                _profile(step, p, args)
            del step, state
    else:
        built = {p: builders[p](cfg, vocab, args) for p in paths}
        for p in paths:
            _window(built[p][0], args.warmup, args.device)
        for r in range(args.repeats):
            for p in paths if r % 2 == 0 else paths[::-1]:  # ABBA: neither path always goes first
                times[p].append(_window(built[p][0], args.steps, args.device))
        for p in paths:
            out[p] = {**_memory(args.device), **_losses(built[p][1])}
            if args.profile:
                _profile(built[p][0], p, args)
    return [{"path": p, "seconds": statistics.median(w for w, _ in times[p]), "windows_s": [w for w, _ in times[p]],
             "cpu_seconds": statistics.median(c for _, c in times[p]), "windows_cpu_s": [c for _, c in times[p]],
             **out[p]} for p in paths]


def _losses(state: dict) -> dict:
    losses = state.get("losses")
    if not losses:
        return {}
    # one fixed random batch: a falling loss shows the real-size model trains (it memorises it)
    return {"first_loss": float(losses[0]), "last_loss": float(losses[-1]), "n_steps": len(losses)}


def _zero_override(text: str) -> tuple[str, object]:
    key, _, value = text.partition("=")
    return key, json.loads(value.lower())  # true/false, ints (stage=1), floats (2e8)


def make_config(args) -> tuple[TrialConfig, dict | None]:
    """The benchmark's TrialConfig; with --plan-gpu-mem the planner's choice for that budget."""
    tiny = args.config.startswith("T")
    gb = args.global_batch or args.micro_batch * args.grad_accum
    cfg = TrialConfig(
        variant=args.variant, config=args.config, steps=max(1, args.steps), micro_batch=args.micro_batch if
        not args.plan_gpu_mem else gb, global_batch=gb, frames=args.frames, text_len=args.text_len,
        image_size=args.image_size or (56 if tiny else 224), query_dim=32 if tiny else 384,
        precision="bf16" if args.device == "cuda" else "fp32", offload=args.offload,
        grad_checkpointing=args.grad_checkpointing, compile=args.compile,
    )
    if not args.plan_gpu_mem:
        return cfg, None
    from trainables.planner import plan_trial

    plan = plan_trial(cfg, args.plan_gpu_mem, args.vocab)
    return plan.apply(cfg), {"gpu_mem_gib": args.plan_gpu_mem, "planned_gib": plan.memory.gpu_gib,
                             "planned_peak_alloc_gib": plan.memory.peak_allocated / GIB}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="L-S")
    p.add_argument("--variant", default="baseline", choices=VARIANTS)
    p.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    p.add_argument("--micro-batch", type=int, default=8)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--global-batch", type=int, default=0, help="default micro-batch x grad-accum")
    p.add_argument("--plan-gpu-mem", type=float, help="micro-batch / offload / checkpointing from the planner "
                   "for this many GiB (at --global-batch)")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--text-len", type=int, default=64)
    p.add_argument("--image-size", type=int, default=None, help="default 224 (56 for tiny configs)")
    p.add_argument("--vocab", type=int, default=None, help="default 49152 (256 for tiny configs)")
    p.add_argument("--steps", type=int, default=20, help="timed optimizer steps per window")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=1, help="alternating timed windows per path (median reported)")
    p.add_argument("--offload", action="store_true")
    p.add_argument("--grad-checkpointing", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the model's blocks, both paths")
    p.add_argument("--zero", action="append", type=_zero_override, default=[], metavar="KEY=VALUE",
                   help="override a ZeRO setting of the trainer (e.g. overlap_comm=false, reduce_bucket_size=2e8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch.set_num_threads (CPU runs on a shared machine: 1)")
    p.add_argument("--only", choices=("plain", "trainer"))
    p.add_argument("--peak-tflops", type=float, help="override the device's peak bf16 TFLOP/s")
    p.add_argument("--profile", metavar="DIR", help="after timing, profile each path (top-ops table; "
                   "timings above are taken without the profiler)")
    p.add_argument("--trace", action="store_true", help="with --profile: also write a Chrome trace per path")
    p.add_argument("--profile-steps", type=int, default=2)
    p.add_argument("--profile-rows", type=int, default=15)
    args = p.parse_args(argv)
    args.zero = dict(args.zero)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.vocab = args.vocab or (256 if args.config.startswith("T") else 49152)
    cfg, plan = make_config(args)
    fps = trial_flops_per_sample(cfg, args.vocab)
    device = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    peak = args.peak_tflops * 1e12 if args.peak_tflops else peak_flops(device)
    paths = [x for x in ("plain", "trainer") if args.only in (None, x) and not (x == "plain" and cfg.offload)]
    load = os.getloadavg()
    runs = bench(cfg, args.vocab, args, paths)
    load_after = os.getloadavg()
    samples = args.steps * cfg.global_batch
    print(f"{device}: {cfg.variant} {cfg.config}, micro-batch {cfg.micro_batch} x accum {cfg.grad_accum}, "
          f"offload={cfg.offload}, ckpt={cfg.grad_checkpointing}, compile={args.compile}, "
          f"{fps / 1e9:.1f} GFLOPs/sample, {args.steps} timed steps x {args.repeats} window(s)"
          + (f", zero {args.zero}" if args.zero else "")
          + (f"; planned {plan['planned_gib']:.2f} GiB for {plan['gpu_mem_gib']:g}" if plan else ""))
    for r in runs:
        r["samples_per_s"] = samples / r["seconds"]
        r["tflops"] = r["samples_per_s"] * fps / 1e12
        r["mfu"] = r["tflops"] * 1e12 / peak if peak else float("nan")
        print(f"  {r['path']:8s} {r['samples_per_s']:8.2f} samples/s  {r['tflops']:7.3f} TFLOP/s  "
              f"MFU {r['mfu']:.1%}  peak {r['peak_gib']:.2f} GiB  reserved {r['reserved_gib']:.2f} GiB"
              + (f"  loss {r['first_loss']:.3f} -> {r['last_loss']:.3f} over {r['n_steps']} steps"
                 if "first_loss" in r else "")
              + (f"  windows {', '.join(f'{w:.3f}' for w in r['windows_s'])} s" if args.repeats > 1 else ""))
        if args.device == "cpu":
            print(f"           process CPU time per step {r['cpu_seconds'] / args.steps:.3f} s (median window; "
                  f"windows {', '.join(f'{c:.2f}' for c in r['windows_cpu_s'])} s)")
    if len(runs) == 2:
        print(f"  trainer / plain = {runs[1]['samples_per_s'] / runs[0]['samples_per_s']:.3f}x (samples/s)"
              + (f"; CPU time trainer / plain = {runs[1]['cpu_seconds'] / runs[0]['cpu_seconds']:.3f}x"
                 if args.device == "cpu" else ""))
    print(f"  load average (1 min) {load[0]:.2f} before, {load_after[0]:.2f} after; {os.cpu_count()} CPUs")
    print(json.dumps({"device": device, "config": cfg.config, "variant": cfg.variant, "micro_batch": cfg.micro_batch,
                      "grad_accum": cfg.grad_accum, "offload": cfg.offload, "ckpt": cfg.grad_checkpointing,
                      "compile": args.compile, "zero": args.zero, "plan": plan, "flops_per_sample": fps,
                      "load_avg": [load[0], load_after[0]], "runs": runs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
