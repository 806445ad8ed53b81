"""Throughput / MFU / peak memory of this trainer vs a plain PyTorch + HF step, in one process.

    python benchmarks/trainer_throughput.py --config L-S --variant baseline --micro-batch 8
    python benchmarks/trainer_throughput.py --config L-L --micro-batch 4 --grad-accum 8 --offload
    python benchmarks/trainer_throughput.py --config T1-T1 --steps 3 --warmup 1   # CPU self-check

(a) the trainer's path: build_vlm + DeepSpeed ZeRO-2 engine (the same `build_engine` the Tune
    trials use), bf16 on CUDA, optional CPU optimizer offload and accumulation;
(b) the plain step: the same model, torch AdamW (fused on CUDA), bf16 autocast, no DeepSpeed.
Random-init real architectures and random batches (no data loading), 8 frames x 224 px and 64
text tokens by default, as in the targets of issue 5. No host sync inside the timed loop:
losses stay on the device and time is taken after a synchronize.
"""
from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search_spaces.trial import TrialConfig  # noqa: E402
from trainables.flops import peak_flops, trial_flops_per_sample  # noqa: E402


def random_batch(cfg: TrialConfig, vocab: int, device) -> dict:
    B, T, S, L = cfg.micro_batch, cfg.frames, cfg.image_size, cfg.text_len
    ids = torch.randint(4, vocab, (B, L), device=device)
    labels = ids.clone()
    labels[:, 0] = -100
    return {"frames": torch.randn(B, T, 3, S, S, device=device), "input_ids": ids,
            "attention_mask": torch.ones_like(ids), "labels": labels}


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed(step, n_warmup: int, n_steps: int) -> float:
    for _ in range(n_warmup):
        step()
    _sync()
    t0 = time.perf_counter()
    for _ in range(n_steps):
        step()
    _sync()
    return time.perf_counter() - t0


def _profile(step, name: str, args) -> None:
    """After the timed run: `--profile-steps` more steps under torch.profiler; print the ops that
    took the most device (CPU: host) time, and save a Chrome trace in --profile DIR."""
    from torch.profiler import ProfilerActivity, profile

    cuda = torch.cuda.is_available()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(args.profile_steps):
            step()
        _sync()
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    print(f"--- profile: {name}, {args.profile_steps} step(s), top ops by {key}")
    print(prof.key_averages().table(sort_by=key, row_limit=args.profile_rows))
    out = Path(args.profile)
    out.mkdir(parents=True, exist_ok=True)
    prof.export_chrome_trace(str(out / f"trace_{name}.json"))


def _reset() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib() -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")


def bench_plain(cfg: TrialConfig, vocab: int, args) -> dict:
    from trainables.models import build_vlm

    _reset()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = build_vlm(cfg, vocab).to(device)
    if cfg.grad_checkpointing:
        model.gradient_checkpointing_enable()
    opt = torch.optim.AdamW(model.param_groups(cfg.lr, cfg.lr_backbone, cfg.weight_decay),
                            fused=device == "cuda")
    fwd = torch.compile(model) if args.compile else model
    batch = random_batch(cfg, vocab, device)
    dtype = torch.bfloat16 if cfg.precision == "bf16" else torch.float32

    def step():
        for _ in range(cfg.grad_accum):
            with torch.autocast(device, dtype=dtype, enabled=dtype == torch.bfloat16):
                loss = fwd(**batch)["loss"] / cfg.grad_accum
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)

    seconds = _timed(step, args.warmup, args.steps)
    out = {"path": "plain", "seconds": seconds, "peak_gib": _peak_gib()}
    if args.profile:
        _profile(step, "plain", args)
    del model, opt, fwd
    return out


def bench_trainer(cfg: TrialConfig, vocab: int, args) -> dict:
    from trainables.engine import build_engine
    from trainables.models import build_vlm

    _reset()
    model = build_vlm(cfg, vocab)
    if cfg.grad_checkpointing:
        model.gradient_checkpointing_enable()
    engine, _, _ = build_engine(model, model.param_groups(cfg.lr, cfg.lr_backbone, cfg.weight_decay), cfg)
    dtype = torch.bfloat16 if cfg.precision == "bf16" else torch.float32
    batch = random_batch(cfg, vocab, engine.device)
    batch["frames"] = batch["frames"].to(dtype)

    losses = []  # device tensors: read once after the timed loop (no host sync inside it)

    def step():
        for _ in range(cfg.grad_accum):
            loss = engine(**batch)["loss"]
            engine.backward(loss)
            engine.step()
        losses.append(loss.detach().float())

    seconds = _timed(step, args.warmup, args.steps)
    # one fixed random batch: a falling loss shows the real-size model trains (it memorises it)
    out = {"path": "trainer", "seconds": seconds, "peak_gib": _peak_gib(),
           "first_loss": float(losses[0]), "last_loss": float(losses[-1]), "n_steps": len(losses)}
    if args.profile:
        _profile(step, "trainer", args)
    del engine, model
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="L-S")
    p.add_argument("--variant", default="baseline", choices=("baseline", "foveated"))
    p.add_argument("--micro-batch", type=int, default=8)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--text-len", type=int, default=64)
    p.add_argument("--image-size", type=int, default=None, help="default 224 (56 for tiny configs)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--offload", action="store_true")
    p.add_argument("--grad-checkpointing", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the plain step's model")
    p.add_argument("--only", choices=("plain", "trainer"))
    p.add_argument("--peak-tflops", type=float, help="override the device's peak bf16 TFLOP/s")
    p.add_argument("--profile", metavar="DIR", help="after timing, profile each path: top-ops table + "
                   "Chrome trace in DIR (timings above are taken without the profiler)")
    p.add_argument("--profile-steps", type=int, default=2)
    p.add_argument("--profile-rows", type=int, default=15)
    args = p.parse_args(argv)
    tiny = args.config.startswith("T")
    cuda = torch.cuda.is_available()
    cfg = TrialConfig(
        variant=args.variant, config=args.config, steps=max(1, args.steps), micro_batch=args.micro_batch,
        global_batch=args.micro_batch * args.grad_accum, frames=args.frames, text_len=args.text_len,
        image_size=args.image_size or (56 if tiny else 224), query_dim=32 if tiny else 384,
        precision="bf16" if cuda else "fp32", offload=args.offload, grad_checkpointing=args.grad_checkpointing,
    )
    vocab = 256 if tiny else 49152
    fps = trial_flops_per_sample(cfg, vocab)
    device = torch.cuda.get_device_name() if cuda else "cpu"
    peak = args.peak_tflops * 1e12 if args.peak_tflops else peak_flops(device)
    runs = []
    for fn, name in ((bench_plain, "plain"), (bench_trainer, "trainer")):
        if args.only in (None, name):
            if name == "plain" and args.offload:
                continue  # the plain step has no offload
            runs.append(fn(cfg, vocab, args))
    samples = args.steps * cfg.global_batch
    print(f"{device}: {cfg.variant} {cfg.config}, micro-batch {cfg.micro_batch} x accum {cfg.grad_accum}, "
          f"offload={cfg.offload}, {fps / 1e9:.1f} GFLOPs/sample")
    for r in runs:
        r["samples_per_s"] = samples / r["seconds"]
        r["tflops"] = r["samples_per_s"] * fps / 1e12
        r["mfu"] = r["tflops"] * 1e12 / peak if peak else float("nan")
        print(f"  {r['path']:8s} {r['samples_per_s']:8.2f} samples/s  {r['tflops']:7.2f} TFLOP/s  "
              f"MFU {r['mfu']:.1%}  peak {r['peak_gib']:.2f} GiB"
              + (f"  loss {r['first_loss']:.3f} -> {r['last_loss']:.3f} over {r['n_steps']} steps"
                 if "first_loss" in r else ""))
    if len(runs) == 2:
        print(f"  trainer / plain = {runs[1]['samples_per_s'] / runs[0]['samples_per_s']:.2f}x")
    print(json.dumps({"device": device, "config": cfg.config, "variant": cfg.variant, "micro_batch": cfg.micro_batch,
                      "grad_accum": cfg.grad_accum, "offload": cfg.offload, "flops_per_sample": fps, "runs": runs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
