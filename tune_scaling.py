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

from search_spaces.errors import ConfigError
from search_spaces.grids import GRIDS, expand
from search_spaces.sizes import VARIANTS
from search_spaces.wsd import comparison_line, schedule_comparison, wsd_families
from sweep.cluster import check_local_gpu, token_auth_before_ray
from sweep.lr_search import run_lr_search, searched_table
from sweep.options import ABSURD_GPU_HOURS, SweepOptions, defaults
from trainables import learning_rates
from trainables.data import preflight
from trainables.planner import dry_run_rows, dry_run_totals, format_table, plan_grid

# Every default comes from SweepOptions (parser.set_defaults); a help text shows it as %(default)s.


def add_study_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--grid", help="named grid (see --list-grids); default: %(default)s")
    p.add_argument("--list-grids", action="store_true", help="print the grids and exit")
    p.add_argument("--name", help="experiment name (default: the grid's name)")
    p.add_argument("--storage-path", help="Ray storage path: a directory or s3:// / gs:// URI (default: %(default)s)")
    p.add_argument("--resume", action="store_true", help="require an existing experiment and continue it")
    p.add_argument("--trust-storage", action="store_true", help="resume even though the experiment's state "
                   "files differ from the SHA-256 record in its study.json (see docs/operations.md)")
    p.add_argument("--yes", action="store_true", help=f"launch even when the plan exceeds "
                   f"{ABSURD_GPU_HOURS:,.0f} GPU-hours")


def add_grid_args(g) -> None:
    g.add_argument("--configs", help="comma-separated config ids, e.g. S-S,M-S")
    g.add_argument("--variants", help=f"comma-separated, from {','.join(VARIANTS)} (default: the grid's)")
    g.add_argument("--steps", help="comma-separated step counts, e.g. 100,300")
    g.add_argument("--init", choices=("random", "pretrained"), help="backbone initialisation (default: the grid's)")
    g.add_argument("--vit-position-std", type=float, help="random init: draw the ViT's position embeddings "
                   "with this std (default: DINOv2's 0.02; docs/ladder.md says why a study might not)")
    g.add_argument("--dataset", help="'synthetic', a hub id, a save_to_disk directory or parquet files")
    g.add_argument("--image-column")
    g.add_argument("--frames-column")
    g.add_argument("--text-column")
    g.add_argument("--seed", type=int, help="first model-init / data-order seed (default: the grid's first, 0)")
    g.add_argument("--seeds", type=int, help="replicates of every (variant, config, steps) cell, seeds "
                   "seed .. seed+K-1, the same for every variant (default: the grid's, see --list-grids)")
    g.add_argument("--schedule", choices=("cosine", "wsd"),
                   help="cosine: one trial per step count; wsd: one stable run per (variant, config, seed) "
                   "+ a cooldown trial per step count forked from its checkpoints (default: the grid's)")
    g.add_argument("--cooldown-frac", type=float, help="wsd: share of each step count spent decaying "
                   "(default %(default)s)")
    g.add_argument("--cooldown-shape", choices=("linear", "1-sqrt"), help="wsd: decay shape (default %(default)s)")
    g.add_argument("--milestones", help="comma-separated steps at which every trial also evaluates and "
                   "checkpoints (each trial uses those below its step count), e.g. 100,300")
    g.add_argument("--deterministic", action="store_true",
                   help="deterministic kernels: a resumed trial continues bit-identically (slower on GPU)")


def add_plan_args(g) -> None:
    g.add_argument("--dry-run", action="store_true", help="print the per-trial cost/memory plan; start nothing")
    g.add_argument("--check-data", action="store_true", help="preflight: open the grid's data set as the trials "
                   "would, decode a few batches, check weights and columns, print a report; start nothing")
    g.add_argument("--gpu-mem", type=float, help="GPU memory budget in GiB (default %(default)s)")
    g.add_argument("--gpu-name", help="GPU for the GPU-hours estimate (default: %(default)s)")
    g.add_argument("--mfu", type=float, help="assumed model FLOPs utilisation for GPU-hours "
                   "(default: the measured MFU per size class, trainables/measured_mfu.py)")
    g.add_argument("--format", choices=("table", "json"), help="--dry-run output (default: %(default)s)")


def add_ray_args(g) -> None:
    g.add_argument("--address", help="join a Ray cluster: 'auto', HEAD_IP:6379 or ray://host:10001 "
                   "(an unreachable address is an error after a 5 s probe)")
    g.add_argument("--gpus-per-trial", type=float, help="default: 1 with CUDA, else 0")
    g.add_argument("--cpus-per-trial", type=float, help="default: %(default)s")
    g.add_argument("--max-concurrent", type=int, help="0: as many as resources allow (default %(default)s)")
    g.add_argument("--max-failures", type=int, help="retries of a failed trial from its last checkpoint "
                   "(default %(default)s)")
    g.add_argument("--keep-checkpoints", type=int, help="checkpoints kept per trial (default %(default)s)")
    g.add_argument("--reuse-actors", nargs="?", const="on", choices=("auto", "on", "off"),
                   help="run successive trials in one worker process, saving each trial's ~2 s of "
                   "torch/DeepSpeed imports. auto: on for CPU trials (short), off for GPU "
                   "trials (a fresh process returns all GPU memory). Fixed at launch: a resume keeps it "
                   "(default %(default)s)")
    g.add_argument("--no-fit", action="store_true", help="skip the fitting step after the sweep")
    g.add_argument("--bootstrap", type=int, help="bootstrap resamples in the fitting step (default %(default)s)")


def add_monitor_args(g) -> None:
    g.add_argument("--dashboard", action="store_true",
                   help="start Ray's dashboard (token auth on: `ray get-auth-token`); local Ray only")
    g.add_argument("--dashboard-host", help="address the dashboard binds to (default %(default)s: loopback only)")
    g.add_argument("--plot-interval", type=float, help="seconds between live_scaling.png redraws (always "
                   "redrawn when a trial ends; default %(default)s)")


def add_lr_args(g) -> None:
    g.add_argument("--lr", type=float, help="connector / new-parameter learning rate for every trial")
    g.add_argument("--lr-backbone", type=float, help="LLM and ViT learning rate for every trial")
    g.add_argument("--lr-from", metavar="FILE", help="the rates of an lr_table.json (default: the one "
                   "--lr-search wrote for this --name, if any)")
    g.add_argument("--lr-search", action="store_true", help="search a rate per (variant, config) with seeds, "
                   "write <storage>/<name>_lr_search/lr_table.json (which the sweep then uses) and exit")
    g.add_argument("--lr-grid", help="comma-separated connector rates to try (default: each pair's current "
                   "rate x 1/4, 1/2, 1, 2); the backbone rate keeps its ratio")
    g.add_argument("--lr-seeds", type=int, help="seeds per rate (default %(default)s)")
    g.add_argument("--lr-steps", type=int, help="steps per search run (default: the grid's search horizon)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    add_study_args(p)
    add_grid_args(p.add_argument_group("narrow or change the grid"))
    add_plan_args(p.add_argument_group("planning"))
    add_ray_args(p.add_argument_group("ray"))
    add_monitor_args(p.add_argument_group("monitoring"))
    add_lr_args(p.add_argument_group("learning rates (default: the grid's searched table, else its size rule; "
                                     "--dry-run shows which)"))
    p.set_defaults(**defaults())
    return p


def parse_args(argv: list[str] | None = None) -> SweepOptions:
    """The validated options (ConfigError on a bad value; argparse itself exits 2 on syntax)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return SweepOptions.from_namespace(parser().parse_args(argv), argv)


def build_trials(args: SweepOptions):
    return build_plan(args)[0]


def build_plan(args: SweepOptions):
    """(the trials to run, one line saying where their learning rates come from)."""
    overrides = {k: v for k, v in {
        "init": args.init, "vit_position_std": args.vit_position_std, "dataset": args.dataset,
        "image_column": args.image_column, "frames_column": args.frames_column, "text_column": args.text_column,
        "seed": args.seed,
    }.items() if v is not None}
    if args.deterministic:
        overrides["deterministic"] = True
    trials = expand(args.spec, args.configs, args.variants, args.steps, overrides, seeds=args.seeds)
    trials = plan_grid(args.spec, trials, args.gpu_mem)  # micro-batch etc. for --gpu-mem
    if args.milestones:
        trials = [t.replace(milestones=tuple(m for m in args.milestones if m < t.steps)) for t in trials]
    return learning_rates.assign(args.spec, trials, searched_table(args), args.lr, args.lr_backbone,
                                 searching=args.lr_search, strict=bool(args.lr_from))


def plan(args: SweepOptions, trials):
    """(rows of the chosen schedule's trials, schedule comparison, its line or None)."""
    def rows_of(ts):
        return dry_run_rows(ts, gpu_mem_gib=args.gpu_mem, gpu_name=args.gpu_name, mfu_assumption=args.mfu)

    rows = cosine_rows = rows_of(trials)
    try:  # the table is the chosen schedule's trials; the last line compares both schedules' compute
        wsd_rows = rows_of([t for f in wsd_families(trials, args.cooldown_frac, args.cooldown_shape) for t in f.trials()])
        comparison, line = schedule_comparison(cosine_rows, wsd_rows, args.cooldown_frac), None
    except ConfigError as e:
        if args.schedule == "wsd":
            raise
        comparison, line = {"wsd_error": str(e)}, f"wsd: not applicable to this grid ({e})"
    if args.schedule == "wsd":
        rows = wsd_rows
    return rows, comparison, line


def dry_run(args: SweepOptions, trials, lr_source: str) -> int:
    rows, comparison, line = plan(args, trials)
    totals = dry_run_totals(rows, args.gpu_mem, args.gpu_name)
    if args.format == "json":
        print(json.dumps({"grid": args.grid, "schedule": args.schedule, "trials": rows, "totals": totals,
                          "schedules": comparison, "learning_rates": lr_source}, indent=2))
    else:
        print(format_table(rows, totals))
        print(line or comparison_line(comparison))
        print(f"learning rates: {lr_source}")
    return 0


def check_not_absurd(args: SweepOptions, trials) -> None:
    """A launch planned above ABSURD_GPU_HOURS needs --yes (a typo in --steps can cost a fortune)."""
    if args.yes:
        return
    rows, _, _ = plan(args, trials)
    hours = sum(r["gpu_hours"] for r in rows)
    if hours > ABSURD_GPU_HOURS:
        raise ConfigError(f"this launch is planned at {hours:,.0f} {args.gpu_name} GPU-hours ({len(rows)} trials; "
                          f"see --dry-run); add --yes to launch it anyway")


def list_grids() -> int:
    for g in GRIDS.values():
        per_family = [len(g.steps_for(c)) + (g.schedule == "wsd") for c in g.configs]  # wsd: + the stable trial
        n = len(g.variants) * sum(per_family) * g.seeds
        steps = ",".join(map(str, g.steps)) if not g.steps_by_config else "per size (see --dry-run)"
        print(f"{g.name:8s} {n:3d} trials  configs {','.join(g.configs)}  steps {steps}  "
              f"seeds {g.seeds}  {g.schedule}  - {g.description}")
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        if args.list_grids:
            return list_grids()
        trials, lr_source = build_plan(args)
        if args.check_data:
            return preflight.check_data(trials)
        if args.dry_run:
            preflight.check_names(trials)  # the cheap part: a missing --dataset path
            return dry_run(args, trials, lr_source)
        print(f"learning rates: {lr_source}", flush=True)
        preflight.validate_launch(trials)  # weights, data set, columns: before Ray starts
        if not args.lr_search:
            check_not_absurd(args, trials)
        check_local_gpu(args, trials)  # real-size models on a machine without a GPU: say so now
        token_auth_before_ray(args.address)
        if args.lr_search:
            return run_lr_search(args, trials)
        from sweep.launch import run_sweep  # Ray: imported by a launch, never by --dry-run or an error

        return run_sweep(args, trials)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
