#!/usr/bin/env python
"""Decode speed of the streaming data pipeline at phase size (8 frames x 224², micro-batch 32).

    python benchmarks/data_decode.py                        # synthetic, 0 and 2 loader workers
    python benchmarks/data_decode.py --dataset clips.parquet --frames-column frames --workers 0,4,8

Prints samples/s through the real train loader (what a trial sees) and, for 0 workers, the CPU
seconds per sample, which on a busy machine is the steadier number: W workers on W free cores
decode about W / cpu_s_per_sample samples/s.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="synthetic")
    p.add_argument("--frames-column")
    p.add_argument("--workers", default="0,2")
    p.add_argument("--batches", type=int, default=6)
    p.add_argument("--micro-batch", type=int, default=32)
    args = p.parse_args()

    from search_spaces.grids import expand
    from trainables.data.bundle import load_data
    from trainables.data.pipeline import train_loader

    overrides = {"init": "random", "dataset": args.dataset, "micro_batch": args.micro_batch}
    if args.frames_column:
        overrides["frames_column"] = args.frames_column
    cfg = expand("phase1", configs=["S-S"], variants=["baseline"], steps=[100], overrides=overrides)[0]
    data = load_data(cfg)
    for workers in (int(w) for w in args.workers.split(",")):
        _, loader = train_loader(data.train, cfg, workers=workers)
        it = iter(loader)
        next(it)  # worker start-up, not timed
        t0, c0, n = time.perf_counter(), time.process_time(), 0
        for _ in range(args.batches):
            n += next(it)["frames"].shape[0]
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        extra = f", {cpu / n * 1000:.1f} CPU ms/sample" if workers == 0 else ""
        print(f"{cfg.dataset}: {workers} workers: {n / wall:.1f} samples/s{extra} "
              f"({n} samples of {cfg.frames}x{cfg.image_size}², batch {cfg.micro_batch})", flush=True)
        del it, loader


if __name__ == "__main__":
    main()
