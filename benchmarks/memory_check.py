"""Validate the memory model on a GPU: measured vs predicted peak memory of real training steps.

    python benchmarks/memory_check.py --configs S-S,S-B --variants foveated,baseline --gpu-mem 24
    python benchmarks/memory_check.py --configs L-L --micro-batch 2 --offload   # force a plan
    python benchmarks/memory_check.py --grid phase4 --gpu-mem 24 [--list]     # every distinct plan

With --grid, every distinct planner choice (variant, config, micro-batch, accumulation,
offload, checkpointing) of that grid's trials at --gpu-mem is measured (random init: the same
architecture and memory as the grid's pretrained backbones); --list only prints the choices
and their predicted memory (no torch, no GPU).

Each (variant, config) runs in its own subprocess (a DeepSpeed engine cannot be torn down
cleanly inside one process): build the model exactly as the trainable does (build_vlm ->
trainables.engine.build_engine: ZeRO-2, offload per plan), enable checkpointing if planned, run
`--steps` optimizer steps of `grad_accum` micro-batches each, and compare

* torch.cuda.max_memory_allocated  vs  MemoryEstimate.peak_allocated,
* allocated after the forward minus before (last micro-batch)  vs  Activations.saved,
* device memory in use at the end (mem_get_info; includes context and allocator cache)
  vs  MemoryEstimate.gpu_total,
* host RSS (peak, ru_maxrss)  vs  MemoryEstimate.host.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GIB = 2**30


def measure_peak_memory(cfg, plan, vocab_size: int = 49152, steps: int = 2) -> dict:
    """Run `steps` optimizer steps of `plan.apply(cfg)` on CUDA; measured and predicted GiB."""
    import torch

    from trainables.engine import build_engine
    from trainables.models import IGNORE_INDEX, build_vlm

    if not torch.cuda.is_available():
        raise RuntimeError("measure_peak_memory needs a CUDA device")
    cfg = plan.apply(cfg)
    torch.manual_seed(cfg.seed)
    model = build_vlm(cfg, vocab_size)
    if cfg.grad_checkpointing:
        model.gradient_checkpointing_enable()
    groups = model.param_groups(cfg.lr, cfg.lr_backbone, cfg.weight_decay)
    engine, _, _ = build_engine(model, groups, cfg)
    engine.train()
    dtype = torch.bfloat16 if cfg.precision == "bf16" else torch.float32
    dev = engine.device
    B, T, s, L = cfg.micro_batch, cfg.frames, cfg.image_size, cfg.text_len

    def batch() -> dict:
        ids = torch.randint(0, vocab_size, (B, L), device=dev)
        labels = ids.clone()
        labels[:, 0] = IGNORE_INDEX
        return {"frames": torch.randn(B, T, 3, s, s, device=dev, dtype=dtype), "input_ids": ids,
                "attention_mask": torch.ones_like(ids), "labels": labels}

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    act_bytes = 0
    for _ in range(steps):
        for _ in range(cfg.grad_accum):
            inputs = batch()
            before = torch.cuda.memory_allocated()
            out = engine(**inputs)
            act_bytes = torch.cuda.memory_allocated() - before
            engine.backward(out["loss"])
            engine.step()
            del out, inputs
    torch.cuda.synchronize()
    free, total = torch.cuda.mem_get_info()
    est = plan.memory
    return {
        "variant": cfg.variant, "config": cfg.config, "micro_batch": cfg.micro_batch,
        "grad_accum": cfg.grad_accum, "offload": cfg.offload, "ckpt": cfg.grad_checkpointing,
        "device": torch.cuda.get_device_name(),
        "peak_alloc_gib": torch.cuda.max_memory_allocated() / GIB, "pred_peak_alloc_gib": est.peak_allocated / GIB,
        "act_gib": act_bytes / GIB, "pred_act_gib": est.activations.saved / GIB,
        "peak_reserved_gib": torch.cuda.max_memory_reserved() / GIB,
        "device_used_gib": (total - free) / GIB, "pred_gpu_total_gib": est.gpu_total / GIB,
        "host_peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB,  # KiB on Linux
        "pred_host_gib": est.host / GIB,
    }


def _one(args) -> dict:
    from trainables.planner import Plan, plan_trial
    from search_spaces.trial import TrialConfig
    from trainables.memory import estimate_memory

    cfg = TrialConfig(variant=args.variant, config=args.config, steps=args.steps, frames=args.frames,
                      text_len=args.text_len, global_batch=args.global_batch, micro_batch=args.global_batch)
    if args.micro_batch:  # forced plan: evaluate the model at exactly these settings
        mb = args.micro_batch
        est = estimate_memory(cfg, args.vocab, mb, args.offload, args.ckpt)
        plan = Plan(mb, cfg.global_batch // mb, args.offload, args.ckpt, args.gpu_mem, est)
    else:
        plan = plan_trial(cfg, args.gpu_mem, args.vocab)
    r = measure_peak_memory(cfg, plan, args.vocab, args.steps)
    if args.shared_gpu:
        r["device_used_gib"] = float("nan")
    return r


def grid_choices(grid: str, gpu_mem: float, configs: list[str] | None = None,
                 variants: list[str] | None = None) -> list[dict]:
    """The distinct planner choices of a grid's trials at `gpu_mem` GiB, in grid order."""
    from search_spaces.grids import expand, get_grid
    from trainables.planner import plan_grid, plan_trial

    seen: dict[tuple, dict] = {}
    spec = get_grid(grid)
    for t in plan_grid(spec, expand(spec, configs, variants), gpu_mem):
        key = (t.variant, t.config, t.micro_batch, t.grad_accum, t.offload, t.grad_checkpointing)
        if key not in seen:
            est = plan_trial(t, gpu_mem).memory
            seen[key] = {"variant": t.variant, "config": t.config, "micro_batch": t.micro_batch,
                         "grad_accum": t.grad_accum, "offload": t.offload, "ckpt": t.grad_checkpointing,
                         "global_batch": t.global_batch, "frames": t.frames, "text_len": t.text_len,
                         "pred_peak_alloc_gib": est.peak_allocated / GIB, "pred_gpu_total_gib": est.gpu_total / GIB}
    return list(seen.values())


def _print_result(r: dict, gpu_mem: float) -> None:
    fits = r["peak_reserved_gib"] <= gpu_mem
    print(f"{r['variant']:8s} {r['config']}  mb {r['micro_batch']:2d} x {r['grad_accum']:2d}  offload {r['offload']!s:5s} "
          f"ckpt {r['ckpt']!s:5s} | peak alloc {r['peak_alloc_gib']:6.2f} vs pred {r['pred_peak_alloc_gib']:6.2f} GiB"
          f" | reserved {r['peak_reserved_gib']:6.2f} ({'fits' if fits else 'OVER'} {gpu_mem:g})"
          f" | act {r['act_gib']:6.2f} vs {r['pred_act_gib']:6.2f} | used {r['device_used_gib']:6.2f} vs "
          f"{r['pred_gpu_total_gib']:6.2f} | host {r['host_peak_gib']:5.1f} vs {r['pred_host_gib']:5.1f}", flush=True)


def _measure_in_subprocess(extra: list[str], label: str) -> dict | None:
    proc = subprocess.run([sys.executable, __file__, *extra], capture_output=True, text=True)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    if proc.returncode or not lines:
        err = proc.stderr.strip().splitlines() or ["?"]
        tail = ([line for line in err if "Error" in line] or err)[-1]  # not a shutdown warning
        print(f"{label}: failed ({tail})", flush=True)
        return None
    return json.loads(lines[-1][7:])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", help="comma-separated (default S-S; with --grid: the grid's)")
    p.add_argument("--variants", help="comma-separated (default both)")
    p.add_argument("--gpu-mem", type=float, default=None, help="plan for this budget (default: this GPU's memory)")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--text-len", type=int, default=64)
    p.add_argument("--global-batch", type=int, default=16)
    p.add_argument("--vocab", type=int, default=49152)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--micro-batch", type=int, default=0, help="force this micro-batch (with --offload/--ckpt)")
    p.add_argument("--offload", action="store_true")
    p.add_argument("--ckpt", action="store_true")
    p.add_argument("--grid", help="measure every distinct planner choice of this grid (e.g. phase4)")
    p.add_argument("--list", action="store_true", help="with --grid: print the choices only (no GPU needed)")
    p.add_argument("--plans", choices=("all", "no-offload", "offload"), default="all", help="with --grid: which plans")
    p.add_argument("--parallel", type=int, default=1, help="with --grid: measure this many plans at once on one GPU")
    p.add_argument("--shared-gpu", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "memory_check.json"))
    p.add_argument("--one", nargs=2, metavar=("VARIANT", "CONFIG"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.gpu_mem is None:
        import torch

        args.gpu_mem = torch.cuda.get_device_properties(0).total_memory / GIB if torch.cuda.is_available() else 24.0
    if args.one:
        args.variant, args.config = args.one
        print("RESULT " + json.dumps(_one(args)), flush=True)
        return
    results = []
    out = Path(args.out)

    def record(r: dict | None) -> None:
        if r:  # written after every plan: a time limit that cuts the run keeps what was measured
            results.append(r)
            _print_result(r, args.gpu_mem)
            out.write_text(json.dumps(results, indent=2))

    if args.grid:
        choices = grid_choices(args.grid, args.gpu_mem, _csv(args.configs) or None, _csv(args.variants) or None)
        if args.plans != "all":  # offloaded plans need ~22 B/param of host memory each: run them apart
            choices = [c for c in choices if c["offload"] == (args.plans == "offload")]
        print(f"{len(choices)} distinct planner choices of {args.grid} at {args.gpu_mem:g} GiB"
              + (f" ({args.plans} plans)" if args.plans != "all" else ""), flush=True)
        for c in choices:
            print(f"  {c['variant']:8s} {c['config']}  mb {c['micro_batch']:2d} x {c['grad_accum']:2d}  offload "
                  f"{c['offload']!s:5s} ckpt {c['ckpt']!s:5s}  planned {c['pred_gpu_total_gib']:6.2f} GiB", flush=True)
        if args.list:
            return
        jobs = []
        for c in choices:
            extra = ["--one", c["variant"], c["config"], "--gpu-mem", str(args.gpu_mem), "--steps", str(args.steps),
                     "--micro-batch", str(c["micro_batch"]), "--global-batch", str(c["global_batch"]),
                     "--frames", str(c["frames"]), "--text-len", str(c["text_len"]), "--vocab", str(args.vocab)]
            extra += ["--offload"] * c["offload"] + ["--ckpt"] * c["ckpt"] + ["--shared-gpu"] * (args.parallel > 1)
            jobs.append((extra, f"{c['variant']} {c['config']}"))
        # --parallel: several plans share the GPU at once (each process's own allocator stats
        # stay exact; device-wide "used" memory then includes the others, so it is not reported)
        with ThreadPoolExecutor(max(1, args.parallel)) as pool:
            for r in pool.map(lambda job: _measure_in_subprocess(*job), jobs):
                record(r)
    else:
        passthrough = [a for a in (argv if argv is not None else sys.argv[1:])] + ["--gpu-mem", str(args.gpu_mem)]
        for config in _csv(args.configs or "S-S"):
            for variant in _csv(args.variants or "foveated,baseline"):
                record(_measure_in_subprocess([*passthrough, "--one", variant, config], f"{variant} {config}"))
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


def _csv(s: str | None) -> list[str]:
    return [x for x in (s or "").split(",") if x]


if __name__ == "__main__":
    main()
