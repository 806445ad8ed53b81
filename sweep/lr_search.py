"""Learning-rate search per (variant, config), with seeds, scored on loss *and* vision.

    python tune_scaling.py --grid phase1 --lr-search          # -> <storage>/phase1_lr_search/lr_table.json
    python tune_scaling.py --grid phase1                      # the sweep then uses that table

Every (variant, config) of the (narrowed) grid trains one standalone run per (rate, seed) to the
grid's search horizon (`Grid.lr_search_steps`, else its largest step count; `--lr-steps`),
evaluating at half the horizon and at its end, with seeds 1000, 1001, ... (`--lr-seeds`; not
the study's own seeds). The rates (`--lr-grid`, default the pair's current rate x 1/4, 1/2, 1,
2) scale the connector rate; the backbone rate keeps the pair's backbone/connector ratio, so the
search is one-dimensional and both arms get the same treatment.

A search grows: only runs not yet in the search directory are trained (one Ray Tune grid,
continued if interrupted), and the table holds every pair, rate and seed ever run there with the
same settings and horizon. So a choice at the grid's edge is settled by running the command
again with `--lr-grid` set to the rates beyond it (narrowed to that pair if you like).

A rate qualifies for a pair only if every seed's run finished and sees its frames at the
horizon (search_spaces/vision_rule.py: the rule the fits use). Among qualifying rates the
choice is the one-standard-error rule: the *smallest* rate whose mean eval loss over seeds lies
within one standard error of the best rate's (that SE, from a few seeds, is floored at the
median SE of the pair's qualifying rates, so seeds that agree by chance do not pin the choice). A rate at the edge of stability is where rounding
decides which seeds escape the caption prior (and the verdict then changes with the CPU), so
of rates the data cannot tell apart the calmer one is taken. A choice at the grid's edge is
flagged: widen the grid. A pair with no qualifying rate has no entry, and the command exits 1.

The table (lr_table.json: the choice per pair, every run's numbers, the settings searched
with) and a readable lr_search.md are rewritten when the search ends. Each run's record is read
from its own files (params.json, result.json), so the table never depends on a driver's memory.
"""
from __future__ import annotations

import json
import math
import os
import statistics
import sys
from pathlib import Path

from search_spaces import metric_names as M
from search_spaces.errors import ConfigError
from search_spaces.trial import TrialConfig
from search_spaces.vision_rule import sees
from sweep.options import SweepOptions
from trainables.learning_rates import TABLE_FORMAT, LrTable, load_table, settings_of

TABLE_FILE = "lr_table.json"
SUMMARY_FILE = "lr_search.md"
DEFAULT_FACTORS = (0.25, 0.5, 1.0, 2.0)
# The search's seeds start here (+ --seed): apart from a study's seeds 0..K-1, so a rate is not
# chosen on the very runs it is then judged by.
SEARCH_SEED0 = 1000


def search_dir(args: SweepOptions, storage: str) -> Path:
    return Path(storage, f"{args.experiment_name}_lr_search")


def searched_table(args: SweepOptions) -> LrTable | None:
    """--lr-from's table (strict: every trial must be covered), else the one --lr-search wrote for
    this name on this (local) storage."""
    if args.lr_from:
        return load_table(args.lr_from)
    if "://" in args.storage_path:
        return None
    path = Path(args.storage_path, f"{args.experiment_name}_lr_search", TABLE_FILE)
    return load_table(path) if path.exists() else None


def horizon(args: SweepOptions, trials: list[TrialConfig]) -> int:
    return args.lr_steps or args.spec.lr_search_steps or max(t.steps for t in trials)


def search_runs(args: SweepOptions, trials: list[TrialConfig]) -> list[TrialConfig]:
    """One standalone run per (variant, config, rate, seed), in that order."""
    steps = horizon(args, trials)
    bases: dict[tuple[str, str], TrialConfig] = {}
    for t in trials:
        bases.setdefault((t.variant, t.config), t)
    first = SEARCH_SEED0 + (args.seed or 0)
    seeds = [first + i for i in range(args.lr_seeds)]
    runs = []
    for (variant, config), base in bases.items():
        rates = args.lr_grid or tuple(base.lr * f for f in DEFAULT_FACTORS)
        ratio = base.lr_backbone / base.lr
        # the study's schedule, standalone: a WSD run decays at its own end (no family exists here)
        common = dict(steps=steps, milestones=(max(1, steps // 2),), checkpoint_every=0, wsd_phase="", fork_from="",
                      schedule=args.schedule, cooldown_frac=args.cooldown_frac, cooldown_shape=args.cooldown_shape)
        for lr in rates:
            for seed in seeds:
                runs.append(base.replace(lr=float(lr), lr_backbone=float(lr) * ratio, seed=seed,
                                         tag=f"lr{lr:.3g}", **common))
    return runs


def run_record(cfg: TrialConfig, rows: list[dict], error: str | None) -> dict:
    """One search run's numbers at half its horizon and at its end (None where it has none)."""
    by_step = {r.get(M.STEP): r for r in rows if r.get(M.EVAL_LOSS) is not None}
    rec = {"variant": cfg.variant, "config": cfg.config, "lr": cfg.lr, "lr_backbone": cfg.lr_backbone,
           "seed": cfg.seed, "steps": cfg.steps, "status": "error" if error else "ok", "error": error}
    for where, step in (("half", cfg.milestones[0]), ("end", cfg.steps)):
        r = by_step.get(step, {})
        gap, se, shuffled = r.get(M.VISION_GAP), r.get(M.VISION_GAP_SE), r.get(M.EVAL_LOSS_SHUFFLED)
        rec[where] = {"step": step, "eval_loss": r.get(M.EVAL_LOSS), "eval_loss_se": r.get(M.EVAL_LOSS_SE),
                      "gap": gap, "gap_se": se, "sees": bool(r) and sees(gap, se, shuffled)}
    if rec["end"]["eval_loss"] is None and not error:
        rec.update(status="error", error="no evaluation at the horizon")
    return rec



def _key(trial: dict, without=()) -> str:
    return json.dumps({k: v for k, v in trial.items() if k not in without}, sort_keys=True)


# What a search run is apart from its pair, its rate and the planner's memory settings: the
# records that belong in one table (the same grid settings, horizon, schedule and seed).
PAIR_FIELDS = ("variant", "config", "lr", "lr_backbone", "tag", "micro_batch", "offload", "grad_checkpointing")


def _setting(trial: dict) -> str:
    return _key(trial, PAIR_FIELDS)


def collect(out_dir: Path) -> dict[str, dict]:
    """Every run in the search directory: its trial (as json) -> {"trial", "record"}. A run is read
    from its own params.json and result.json; an unfinished one (no end evaluation, no error
    file: interrupted) is left out, so it is trained again."""
    found: dict[str, dict] = {}
    for params in sorted(out_dir.glob("runs*/*/params.json")):
        try:
            cfg = TrialConfig.from_dict(json.loads(params.read_text())["trial"])
        except (ValueError, KeyError, TypeError, ConfigError):
            continue  # not a run of this project's trial format (or of an older one)
        rows = []
        result = params.with_name("result.json")
        for line in (result.read_text(errors="replace").splitlines() if result.exists() else []):
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue  # a half-written last line
        error_file = params.with_name("error.txt")
        error = error_file.read_text(errors="replace").strip().splitlines()[-1:] if error_file.exists() else None
        rec = run_record(cfg, rows, error[0] if error else None)
        if rec["end"]["eval_loss"] is None and not error:
            continue
        key = _key(cfg.to_dict())
        if key not in found or found[key]["record"]["status"] != "ok":
            found[key] = {"trial": cfg.to_dict(), "record": rec}
    return found


def choose(records: list[dict]) -> dict:
    """variant -> config -> the chosen rate and why, or {"lr": None, "reason"} (module doc's rule)."""
    pairs: dict[tuple[str, str], dict[float, list[dict]]] = {}
    for r in records:
        pairs.setdefault((r["variant"], r["config"]), {}).setdefault(r["lr"], []).append(r)
    chosen: dict = {}
    for (variant, config), by_lr in pairs.items():
        stats = {}
        for lr, rs in by_lr.items():
            ok = [r for r in rs if r["status"] == "ok"]
            losses = [r["end"]["eval_loss"] for r in ok]
            k = len(losses)
            mean = sum(losses) / k if k else math.inf
            sd = math.sqrt(sum((x - mean) ** 2 for x in losses) / (k - 1)) if k > 1 else math.inf
            stats[lr] = {"mean_eval_loss": mean, "se": sd / math.sqrt(k) if k else math.inf,
                         "seeing": sum(r["end"]["sees"] for r in ok), "runs": len(rs),
                         "qualifies": k == len(rs) and all(r["end"]["sees"] for r in ok),
                         "lr_backbone": rs[0]["lr_backbone"]}
        good = {lr: s for lr, s in stats.items() if s["qualifies"]}
        grid = sorted(by_lr)
        if not good:
            entry = {"lr": None, "reason": "no rate in the grid made every seed see its frames at the horizon"}
        else:
            best = min(good, key=lambda lr: good[lr]["mean_eval_loss"])
            # two or three seeds that happen to agree give a tiny SE; the pair's median SE floors it
            typical_se = statistics.median(s["se"] for s in good.values())
            limit = good[best]["mean_eval_loss"] + max(good[best]["se"], typical_se)
            pick = min(lr for lr, s in good.items() if s["mean_eval_loss"] <= limit)
            entry = {"lr": pick, "lr_backbone": good[pick]["lr_backbone"], "best_mean_lr": best,
                     "mean_eval_loss": good[pick]["mean_eval_loss"], "seeing": f"{good[pick]['seeing']}/"
                     f"{good[pick]['runs']}", "at_grid_edge": pick in (grid[0], grid[-1]) or best == grid[-1]}
        entry["by_rate"] = {f"{lr:.6g}": stats[lr] for lr in grid}
        chosen.setdefault(variant, {})[config] = entry
    return chosen


def write_outputs(out_dir: Path, args: SweepOptions, runs: list[TrialConfig], records: list[dict]) -> dict:
    chosen = choose(records)
    doc = {"format": TABLE_FORMAT, "grid": args.grid, "horizon": runs[0].steps, "schedule": runs[0].schedule,
           "seeds": sorted({r["seed"] for r in records}), "lr_grid": sorted({r["lr"] for r in records}),
           "rule": choice_rule(), "settings": settings_of(runs[0]),
           "chosen": {v: {c: e for c, e in per.items() if e["lr"] is not None} for v, per in chosen.items()},
           "unresolved": {f"{v} {c}": e["reason"] for v, per in chosen.items() for c, e in per.items()
                          if e["lr"] is None},
           "runs": records}
    tmp = out_dir / f"{TABLE_FILE}.tmp"
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True, default=float))
    os.replace(tmp, out_dir / TABLE_FILE)
    (out_dir / SUMMARY_FILE).write_text(summary_markdown(doc))
    return doc


def choice_rule() -> str:
    """The module doc's paragraph on how a rate is chosen (written into every table)."""
    (para,) = [p for p in __doc__.split("\n\n") if p.startswith("A rate qualifies")]
    return para.replace("\n", " ")


def _f(v, spec=".4g") -> str:
    return "-" if v is None else format(v, spec)


def summary_markdown(doc: dict) -> str:
    lines = [f"# Learning-rate search: grid {doc['grid']}, {doc['horizon']} steps, seeds {doc['seeds']}", "",
             doc["rule"], "", "| variant | config | lr | mean eval loss | SE | seeing at end | chosen |",
             "|---|---|---|---|---|---|---|"]
    for v, per in doc["chosen"].items():
        for c, e in per.items():
            for lr, s in e["by_rate"].items():
                mark = "**yes**" + (" (grid edge)" if e.get("at_grid_edge") else "") if float(lr) == e["lr"] else ""
                lines.append(f"| {v} | {c} | {lr} | {_f(s['mean_eval_loss'])} | {_f(s['se'], '.2g')} | "
                             f"{s['seeing']}/{s['runs']} | {mark} |")
    for pair, why in doc["unresolved"].items():
        lines.append(f"| {pair.replace(' ', ' | ')} | - | - | - | - | none: {why} |")
    lines += ["", "Every run (eval loss and vision gap ± SE at half the horizon and at its end):", "",
              "| variant | config | lr | seed | loss @half | gap @half | loss @end | gap @end | sees |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in doc["runs"]:
        h, e = r["half"], r["end"]
        gap = (lambda x: "-" if x["gap"] is None else f"{x['gap']:.3g} ± {_f(x['gap_se'], '.2g')}")  # noqa: E731
        lines.append(f"| {r['variant']} | {r['config']} | {r['lr']:.3g} | {r['seed']} | {_f(h['eval_loss'])} | "
                     f"{gap(h)} | {_f(e['eval_loss'])} | {gap(e)} | "
                     f"{'yes' if e['sees'] else 'no' if r['status'] == 'ok' else r['status']} |")
    return "\n".join(lines) + "\n"


def print_choice(doc: dict, path: Path) -> None:
    for v, per in doc["chosen"].items():
        for c, e in per.items():
            edge = "  (at the grid's edge: widen --lr-grid)" if e["at_grid_edge"] else ""
            print(f"  {v} {c}: lr {e['lr']:.3g} (backbone {e['lr_backbone']:.3g}), mean eval loss "
                  f"{e['mean_eval_loss']:.4f}, {e['seeing']} seeds see{edge}", flush=True)
    for pair, why in doc["unresolved"].items():
        print(f"  {pair}: no rate chosen - {why}", file=sys.stderr, flush=True)
    print(f"learning-rate table: {path}", flush=True)
    if any(doc["chosen"].values()):
        print(f"the sweep of this grid and --name on this storage now uses it (elsewhere: --lr-from {path})",
              flush=True)


def run_lr_search(args: SweepOptions, trials: list[TrialConfig]) -> int:
    from sweep.experiment import check_storage

    # short runs checkpoint at every evaluation and keep one: no warning about frequent saves
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    storage = check_storage(args.storage_path)
    if "://" in storage:
        raise ConfigError("--lr-search writes its table next to the experiment: give a local --storage-path")
    runs = search_runs(args, trials)
    out_dir = search_dir(args, storage)
    out_dir.mkdir(parents=True, exist_ok=True)
    done = collect(out_dir)
    todo = [r for r in runs if _key(r.to_dict()) not in done]
    n_pairs = len({(r.variant, r.config) for r in runs})
    print(f"lr search: {len(runs)} {runs[0].schedule} runs ({n_pairs} (variant, config) pairs x "
          f"{len(runs) // n_pairs // args.lr_seeds} rates x {args.lr_seeds} seeds) of {runs[0].steps} steps, "
          f"{len(runs) - len(todo)} already done -> {out_dir}", flush=True)
    if todo:
        from sweep.lr_tuner import train  # Ray: only when something is to be trained

        train(args, todo, out_dir)
        done = collect(out_dir)
    # the table holds every pair searched here with these settings, not only this command's
    settings = {_setting(r.to_dict()) for r in runs}
    records = [d["record"] for d in done.values() if _setting(d["trial"]) in settings]
    records.sort(key=lambda r: (r["variant"], r["config"], r["lr"], r["seed"]))
    missing = len(runs) - sum(_key(r.to_dict()) in done for r in runs)
    doc = write_outputs(out_dir, args, runs, records)
    print_choice(doc, out_dir / TABLE_FILE)
    if missing:
        print(f"lr search: {missing} run(s) did not finish; run the same command again to continue",
              file=sys.stderr, flush=True)
    failed = missing or any(r["status"] != "ok" for r in records)
    return 1 if failed or doc["unresolved"] else 0
