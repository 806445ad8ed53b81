#!/usr/bin/env python
"""Run a scaling-law study of foveated vs baseline VLMs as one Ray Tune experiment.

    python tune_scaling.py --grid smoke              # offline CPU check, end to end
    python tune_scaling.py --grid phase4 --dry-run   # cost and memory plan, no Ray
    python tune_scaling.py --grid phase4             # the full study (GPU=1 per trial)

An existing experiment of the same name and grid is resumed (finished trials are kept,
unfinished ones continue from their last checkpoint); a different grid under that name is
refused. After the sweep the fitting step writes ray_results/<name>/analysis/.
"""
from __future__ import annotations

import argparse
import json
import sys

from search_spaces.grids import GRIDS, expand, get_grid
from search_spaces.sizes import ConfigError

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", default="smoke", help="named grid (see --list-grids); default: smoke")
    p.add_argument("--list-grids", action="store_true", help="print the grids and exit")
    p.add_argument("--name", help="experiment name (default: the grid's name)")
    p.add_argument("--storage-path", default="ray_results", help="Ray storage path: a directory or s3:// / gs:// URI")
    p.add_argument("--resume", action="store_true", help="require an existing experiment and continue it")
    narrow = p.add_argument_group("narrow or change the grid")
    narrow.add_argument("--configs", help="comma-separated config ids, e.g. S-S,M-S")
    narrow.add_argument("--variants", help="comma-separated: foveated,baseline")
    narrow.add_argument("--steps", help="comma-separated step counts, e.g. 100,300")
    narrow.add_argument("--init", choices=("random", "pretrained"), help="backbone initialisation")
    narrow.add_argument("--dataset", help="'synthetic', a hub id, a save_to_disk directory or parquet files")
    narrow.add_argument("--image-column")
    narrow.add_argument("--frames-column")
    narrow.add_argument("--text-column")
    narrow.add_argument("--seed", type=int)
    plan = p.add_argument_group("planning")
    plan.add_argument("--dry-run", action="store_true", help="print the per-trial cost/memory plan; start nothing")
    plan.add_argument("--gpu-mem", type=float, default=24.0, help="GPU memory budget in GiB (default 24, an RTX 4090)")
    plan.add_argument("--gpu-name", default="RTX 4090", help="GPU for the GPU-hours estimate")
    plan.add_argument("--mfu", type=float, default=0.35, help="assumed model FLOPs utilisation for GPU-hours")
    plan.add_argument("--format", choices=("table", "json"), default="table")
    ray_ = p.add_argument_group("ray")
    ray_.add_argument("--address", help="join a Ray cluster: 'auto' or ray://host:10001")
    ray_.add_argument("--gpus-per-trial", type=float, help="default: 1 with CUDA, else 0")
    ray_.add_argument("--cpus-per-trial", type=float, default=1.0)
    ray_.add_argument("--max-concurrent", type=int, default=0, help="0: as many as resources allow")
    ray_.add_argument("--max-failures", type=int, default=2, help="retries of a failed trial from its last checkpoint")
    ray_.add_argument("--keep-checkpoints", type=int, default=2, help="checkpoints kept per trial")
    ray_.add_argument("--no-fit", action="store_true", help="skip the fitting step after the sweep")
    ray_.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples in the fitting step")
    return p.parse_args(argv)


def _csv(value: str | None, cast=str) -> list | None:
    if not value:
        return None
    try:
        return [cast(v.strip()) for v in value.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"cannot parse {value!r} as a comma-separated list") from None


def build_trials(args: argparse.Namespace):
    overrides = {k: v for k, v in {
        "init": args.init, "dataset": args.dataset, "image_column": args.image_column,
        "frames_column": args.frames_column, "text_column": args.text_column, "seed": args.seed,
    }.items() if v is not None}
    if args.gpu_mem <= 0:
        raise ConfigError(f"--gpu-mem must be positive, got {args.gpu_mem}")
    return expand(args.grid, _csv(args.configs), _csv(args.variants), _csv(args.steps, int), overrides, args.gpu_mem)


def dry_run(args, trials) -> int:
    from search_spaces.planner import dry_run_rows, dry_run_totals, format_table

    rows = dry_run_rows(trials, gpu_mem_gib=args.gpu_mem, gpu_name=args.gpu_name, mfu_assumption=args.mfu)
    totals = dry_run_totals(rows, args.gpu_mem, args.gpu_name)
    if args.format == "json":
        print(json.dumps({"grid": args.grid, "trials": rows, "totals": totals}, indent=2))
    else:
        print(format_table(rows, totals))
    return 0


def list_grids() -> int:
    for g in GRIDS.values():
        n = len(g.variants) * len(g.configs) * len(g.steps)
        print(f"{g.name:8s} {n:3d} trials  configs {','.join(g.configs)}  steps {','.join(map(str, g.steps))}  - {g.description}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.list_grids:
            return list_grids()
        get_grid(args.grid)
        trials = build_trials(args)
        if args.dry_run:
            return dry_run(args, trials)
        from sweep.launch import run_sweep

        return run_sweep(args, trials)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
