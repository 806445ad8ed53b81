"""Does each arm use its frames? Train (variant, config, steps, seed) cells through the real
trainable outside Ray and print eval loss with true frames, with another clip's frames, and
the gap; or, with --init-share, how much of each visual token varies with the image at init.

    python benchmarks/vision_gap.py --configs T1-T1,T2-T2 --steps 600 --seeds 0,1 --jobs 2
    python benchmarks/vision_gap.py --init-share --configs T1-T1,T1-T2,T2-T2

Trials run in fresh processes (spawn), `--jobs` at a time, one torch thread each, with Tune's
`report` / `get_checkpoint` shimmed (the same trainable code path as a Ray trial). Settings
are the grid's (`--grid`, default smoke: its settings and its learning-rate table) unless
`--set key=value` overrides them.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _value(s: str):
    try:
        return json.loads(s)
    except json.JSONDecodeError:
        return s


def _trials(a) -> list[dict]:
    """The grid's trials at its own learning rates (its table), unless --set lr=... overrides."""
    from search_spaces.grids import expand, get_grid
    from trainables.learning_rates import assign

    overrides = {k: _value(v) for k, v in (kv.split("=", 1) for kv in a.set)}
    grid, out = get_grid(a.grid), []
    for seed in a.seeds:
        trials = expand(grid, a.configs, a.variants, a.steps, {**overrides, "seed": seed})
        trials, _ = assign(grid, trials, lr=overrides.get("lr"), lr_backbone=overrides.get("lr_backbone"))
        out += [t.to_dict() for t in trials]
    return out


def _run_one(trial: dict) -> dict:
    import ray.tune
    import torch

    torch.set_num_threads(1)
    reports: list[dict] = []
    ray.tune.report = lambda metrics, checkpoint=None: reports.append(dict(metrics))
    ray.tune.get_checkpoint = lambda: None
    from trainables.train import train_vlm

    t0, c0 = time.perf_counter(), time.process_time()
    train_vlm({"trial": trial})
    last = reports[-1]
    return {**{k: trial[k] for k in ("variant", "config", "steps", "seed")},
            "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
            **{k: last.get(k) for k in ("eval_loss", "eval_loss_se", "eval_loss_shuffled_frames",
                                        "eval_vision_gap", "eval_vision_gap_se", "train_loss")}}


def image_share(model, frames) -> float:
    """Mean over token slots of  sum_d Var_clips(x) / sum_d E_clips(x^2): the part of a visual
    token's energy that changes with the clip (the rest is the same for every clip, so it
    carries nothing about the frames). frames [B, T, 3, H, W]; tokens [B, n_vis, d]."""
    import torch

    with torch.no_grad():
        x = model.visual_tokens(frames).float()
    return float((x.var(0, unbiased=False).sum(-1) / x.pow(2).mean(0).sum(-1)).mean())


def init_shares(a) -> None:
    import torch

    from search_spaces.grids import expand
    from trainables.data.bundle import load_data
    from trainables.data.pipeline import eval_batches
    from trainables.models import build_vlm

    torch.set_num_threads(1)
    for config in a.configs or ["T1-T1", "T1-T2", "T2-T2"]:
        row = [config]
        for variant in a.variants:
            vals = []
            for seed in a.seeds:
                (cfg,) = expand("smoke", [config], [variant], [10], {"seed": seed, "eval_size": 64})
                data = load_data(cfg)
                torch.manual_seed(seed)
                model = build_vlm(cfg, data.vocab_size).eval()
                batch = next(eval_batches(data.eval, 64))
                vals.append(image_share(model, batch["frames"]))
            row.append(f"{variant} {sum(vals) / len(vals):.3g}")
        print("  ".join(row), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", default="smoke", help="the grid whose settings and learning rates the runs use")
    p.add_argument("--variants", default="foveated,baseline")
    p.add_argument("--configs", default="T1-T1,T1-T2,T2-T2")
    p.add_argument("--steps", default="600")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--set", action="append", default=[], help="TrialConfig override key=value (JSON value)")
    p.add_argument("--init-share", action="store_true", help="only the image-dependent share at init")
    a = p.parse_args()
    a.variants, a.configs = a.variants.split(","), a.configs.split(",")
    a.steps, a.seeds = [int(s) for s in a.steps.split(",")], [int(s) for s in a.seeds.split(",")]
    if a.init_share:
        init_shares(a)
        return
    trials = _trials(a)
    t0 = time.perf_counter()
    print("variant   config  steps seed  eval_loss  shuffled  gap (se)           wall_s  cpu_s", flush=True)
    with mp.get_context("spawn").Pool(a.jobs, maxtasksperchild=1) as pool:
        for r in pool.imap(_run_one, trials):
            gap = r["eval_vision_gap"]
            se = r["eval_vision_gap_se"]
            print(f"{r['variant']:9} {r['config']:6} {r['steps']:5} {r['seed']:4}  {r['eval_loss']:.4f}    "
                  f"{r['eval_loss_shuffled_frames']:.4f}    {gap:+.4f} ({se:.4f})   {r['wall_s']:.1f}  {r['cpu_s']:.1f}", flush=True)
    print(f"total wall {time.perf_counter() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
