"""A Ray Tune experiment directory -> one tidy table of points, and its fit frame.

The Ray loader reads the files Ray writes (experiment_state-*.json for trial status, each
trial dir's result.json + params.json) instead of importing Ray: it is fast, needs no cluster,
and still reads trials that died in ERROR state (which ExperimentAnalysis may not load).
Every trial left out is returned in `dropped` with its reason, so the report can list
it: nothing is excluded silently.
"""
from __future__ import annotations

import glob
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from fitting import columns
from fitting.errors import FitError
from search_spaces import metric_names as M  # the trainer's report keys (a leaf module: no imports)

# "config" (the config id), "run_id", "group" and "seed" come from the trial's config / dir
POINT_COLUMNS = [
    M.VARIANT, "config", M.N_PARAMS, M.N_PARAMS_LLM, M.N_PARAMS_VISION, M.SAMPLES, M.TOKENS,
    M.FLOPS, M.EVAL_LOSS, M.EVAL_LOSS_SE, M.STEP, M.TRIAL_STEPS, M.SCHEDULE, "run_id", "group", M.WSD_PHASE,
    "seed", M.EVAL_LOSS_SHUFFLED, M.EVAL_LOSS_SHUFFLED_SE, M.VISION_GAP, M.VISION_GAP_SE, "lr", "lr_backbone",
]
# Without these a trial cannot become fit points; the rest are filled with NaN / "unknown".
REQUIRED = [M.VARIANT, "config", M.STEP, M.SAMPLES, M.FLOPS, M.EVAL_LOSS, M.N_PARAMS]
# Keys a report row may lack but the trial's config (params.json) knows.
FROM_CONFIG = {"variant": "variant", "config": "config", "trial_steps": "steps", "schedule": "schedule",
               "wsd_phase": "wsd_phase", "seed": "seed"}
# The trial's configured peak learning rates (new parameters, backbones). A report's own "lr" is
# the scheduled value at that step, so these always come from the config.
CONFIG_LRS = ("lr", "lr_backbone")
TEXT_COLUMNS = ("variant", "config", "schedule", "run_id", "group", "wsd_phase")
# The type each key must have where a report (or the trial's config) gives it: a number given as
# text would become NaN and its trial would drop out of the fits unnoticed; a label given as a
# number or a list would become an arm of its own.
KEY_TYPES = {**dict.fromkeys((M.VARIANT, M.CONFIG_ID, M.SCHEDULE, M.WSD_PHASE, "trial_id", "config"), str),
             **dict.fromkeys((M.STEP, M.TRIAL_STEPS, M.SAMPLES, M.TOKENS, M.FLOPS, M.N_PARAMS, M.N_PARAMS_LLM,
                              M.N_PARAMS_VISION, M.EVAL_LOSS, M.EVAL_LOSS_SE, M.TRAIN_LOSS, M.EVAL_LOSS_SHUFFLED,
                              M.EVAL_LOSS_SHUFFLED_SE, "seed", "steps"), float),
             M.MILESTONE: bool}
# what a trial is: two trial directories with the same identity are the same run, done twice
IDENTITY = ("schedule", "variant", "config", "trial_steps", "seed", "wsd_phase", "tag")


def _trial_status(exp_dir: Path) -> dict[str, str]:
    """trial dir name -> last status recorded by Tune (newest experiment_state file wins).

    Newest by name (the timestamp in it), as Ray's own restore does: after a resume Ray may
    re-upload an older state file, whose mtime is then the newest."""
    states = sorted(glob.glob(str(exp_dir / "experiment_state-*.json")))
    if not states:
        return {}
    try:
        with open(states[-1]) as f:
            trial_data = json.load(f).get("trial_data", [])
    except (OSError, ValueError):
        return {}
    status = {}
    for entry in trial_data:
        try:
            meta = json.loads(entry[0]) if isinstance(entry, list) else entry
            status[meta["relative_logdir"]] = meta["status"]
        except (KeyError, TypeError, ValueError, IndexError):
            continue
    return status


def _read_reports(result_json: Path) -> list[dict]:
    rows = []
    with open(result_json) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue  # a half-written last line from a killed trial
    return rows


def _trial_config(cfg: dict) -> dict:
    """The trial's own settings: flat, or one level down (tune_scaling's {"trial": {...}})."""
    if isinstance(cfg.get("config"), str) or "variant" in cfg:
        return cfg
    inner = [v for v in cfg.values() if isinstance(v, dict) and ("variant" in v or "config" in v)]
    return inner[0] if len(inner) == 1 else cfg


def _check_types(rows: list[dict], where: Path) -> None:
    """FitError naming the first value whose type is not what its key needs (KEY_TYPES)."""
    names = {str: "text", float: "a number", bool: "true or false"}
    for i, row in enumerate(rows, 1):
        for key, want in KEY_TYPES.items():
            if key not in row or (key == "config" and isinstance(row[key], dict)):  # Ray's own "config"
                continue
            v = row[key]
            ok = isinstance(v, bool) if want is bool else (
                isinstance(v, (int, float)) and not isinstance(v, bool) if want is float else isinstance(v, str))
            if not ok:
                raise FitError(f"{where}: {'row ' + str(i) + ': ' if len(rows) > 1 else ''}{key!r} is {v!r}, "
                               f"not {names[want]}: a damaged or hand-edited file")


def _drop_duplicates(frames: list[pd.DataFrame], dropped: list[dict]) -> list[pd.DataFrame]:
    """One trial per identity (IDENTITY): a run trained twice (two drivers on one experiment) would
    count twice in the fits. The kept one has the most milestones (then the first trial id); each
    other is listed as dropped, naming the one kept."""
    def identity(f):
        return tuple(str(f[c].iloc[0]) if c in f else "" for c in IDENTITY)

    kept: dict[tuple, pd.DataFrame] = {}
    for f in sorted(frames, key=lambda f: (-len(f), str(f["run_id"].iloc[0]))):
        key = identity(f)
        if key in kept:
            dropped.append({"run_id": str(f["run_id"].iloc[0]),
                            "reason": f"duplicate of trial {kept[key]['run_id'].iloc[0]} (same variant, config, steps, "
                                      f"seed, schedule): the same run trained twice"})
            continue
        kept[key] = f
    return [f for f in frames if any(f is k for k in kept.values())]


def _is_bad_loss(v) -> bool:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return True
    return not math.isfinite(v) or v <= 0


def _error_reason(tdir: Path) -> str:
    """The last line of a failed trial's error.txt, for the dropped list."""
    if not (tdir / "error.txt").exists():
        return ""
    lines = [s for s in (tdir / "error.txt").read_text(errors="replace").splitlines() if s.strip()]
    return f": {lines[-1].strip()[:160]}" if lines else ""


def _with_config(tdir: Path, df: pd.DataFrame) -> pd.DataFrame:
    """The trial's reports with what its config (params.json) knows and the reports lack."""
    cfg = {}
    if (tdir / "params.json").exists():
        try:
            cfg = json.loads((tdir / "params.json").read_text())
        except ValueError:
            cfg = {}
    if "config" in df.columns and df["config"].map(lambda v: isinstance(v, dict)).any():
        # Ray writes the trial's config dict under "config" in every result row, over the
        # config id the trainable reported; the id is recovered from that dict below.
        cfg = cfg or next(v for v in df["config"] if isinstance(v, dict))
        df = df.drop(columns="config")
    cfg = _trial_config(cfg) if isinstance(cfg, dict) else {}
    _check_types([{k: v for k, v in cfg.items() if k in FROM_CONFIG.values()}], tdir / "params.json")
    if "tag" in cfg:
        df["tag"] = str(cfg["tag"])
    for col, key in FROM_CONFIG.items():
        if col not in df.columns and key in cfg:
            df[col] = cfg[key]
    for col in CONFIG_LRS:
        df[col] = cfg.get(col, np.nan)
    return df


def _read_trial(tdir: Path, status: str, seen_keys: set) -> tuple[str, pd.DataFrame | str]:
    """(run id, the trial's milestone reports, or the reason it cannot become fit points)."""
    reports = _read_reports(tdir / "result.json")
    run_id = next((r["trial_id"] for r in reports if "trial_id" in r), tdir.name)
    if status == "ERROR":
        return run_id, f"trial status ERROR{_error_reason(tdir)}"
    if not reports:
        return run_id, "no reports in result.json"
    _check_types(reports, tdir / "result.json")
    df = pd.DataFrame(reports)
    seen_keys.update(df.columns)
    df = _with_config(tdir, df)
    df["run_id"] = run_id
    if M.MILESTONE in df.columns:
        df = df[df[M.MILESTONE].fillna(False).astype(bool)]
    if df.empty:
        return run_id, "no milestone reports"
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        return run_id, f"reports lack {', '.join(missing)}"
    # A diverged run (NaN/inf loss at any milestone) says nothing about its size's law.
    losses = df[M.EVAL_LOSS].tolist() + (df[M.TRAIN_LOSS].tolist() if M.TRAIN_LOSS in df else [])
    n_bad = sum(_is_bad_loss(v) for v in losses)
    if n_bad:
        return run_id, f"{n_bad} non-finite or non-positive loss value(s)"
    # A resumed trial re-reports steps it already reported: the last report wins.
    return run_id, df.drop_duplicates(M.STEP, keep="last")


def load_experiment(exp_dir: str | Path) -> tuple[pd.DataFrame, list[dict]]:
    """Ray Tune experiment dir -> (points table, dropped trials [{run_id, reason}])."""
    exp_dir = Path(exp_dir)
    if not exp_dir.is_dir():
        raise FitError(f"experiment directory not found: {exp_dir}")
    status = _trial_status(exp_dir)
    trial_dirs = sorted(p.parent for p in exp_dir.glob("*/result.json"))
    if not trial_dirs:
        raise FitError(f"no trials (*/result.json) in {exp_dir}: is this a Ray Tune experiment directory?")
    frames, dropped = [], []
    seen_keys: set[str] = set()
    for tdir in trial_dirs:
        st = status.get(tdir.name) or ("ERROR" if (tdir / "error.txt").exists() else "UNKNOWN")
        run_id, got = _read_trial(tdir, st, seen_keys)
        if isinstance(got, str):
            dropped.append({"run_id": run_id, "reason": got})
        else:
            frames.append(got)
    if not frames:
        missing = [c for c in REQUIRED if c not in seen_keys]
        if missing and seen_keys:
            raise FitError(f"reports in {exp_dir} lack required key(s): {', '.join(missing)}")
        reasons = "; ".join(f"{d['run_id']}: {d['reason']}" for d in dropped[:5])
        raise FitError(f"no usable trials in {exp_dir} ({reasons})")
    return _points(pd.concat(_drop_duplicates(frames, dropped), ignore_index=True)), dropped


def _points(raw: pd.DataFrame) -> pd.DataFrame:
    """Every trial's reports -> the points table: POINT_COLUMNS (+ per-field losses), typed."""
    for col in POINT_COLUMNS:
        if col not in raw.columns:
            raw[col] = {"schedule": "unknown", "wsd_phase": ""}.get(col, np.nan)
    raw["group"] = raw["variant"]
    raw["wsd_phase"] = raw["wsd_phase"].fillna("")
    # a fixed-format caption's per-field eval losses (trainables/evaluation.py), when reported
    fields = sorted(c for c in raw.columns if str(c).startswith(M.EVAL_FIELD_PREFIX))
    pts = raw[POINT_COLUMNS + fields].copy()
    for col in TEXT_COLUMNS:
        pts[col] = pts[col].astype(str)
    for col in set(POINT_COLUMNS + fields) - set(TEXT_COLUMNS):
        pts[col] = pd.to_numeric(pts[col], errors="coerce").astype(float)
    pts["trial_steps"] = pts["trial_steps"].fillna(pts.groupby("run_id")["step"].transform("max"))
    return pts.sort_values(["variant", "config", "run_id", "step"]).reset_index(drop=True)


# fit-frame column -> the points-table key it comes from, where a table may lack it (older
# tables: before seeds, shuffled frames, learning rates in the config)
OPTIONAL_KEYS = {"seed": "seed", "steps": "trial_steps", "loss_shuffled": M.EVAL_LOSS_SHUFFLED,
                 "loss_shuffled_se": M.EVAL_LOSS_SHUFFLED_SE, "vision_gap": M.VISION_GAP,
                 "vision_gap_se": M.VISION_GAP_SE, "lr": "lr", "lr_backbone": "lr_backbone"}


def fit_frame(points: pd.DataFrame, d_col: str = "samples") -> pd.DataFrame:
    """Tidy experiment points -> the frame the fits use (columns.build: N, D, C, loss, group, ...).

    Only end-of-schedule evaluations are fit points: under a decaying (cosine, WSD) schedule an
    intermediate milestone has not had its learning-rate decay and sits above the loss that a
    run planned for that many steps would reach. With a constant schedule every milestone counts.
    A WSD stable trial's rows are never points, its last one included (step == its own
    trial_steps, but its LR never decayed): each step count's point is the end of its cooldown
    trial (schedule "wsd", wsd_phase "cooldown").
    D defaults to samples: both variants see the same samples, while their token counts differ
    by design (1 vs 16 visual tokens per frame), so samples compare like with like.
    """
    final = (points["step"] >= points["trial_steps"]) | (points["schedule"] == "constant")
    if "wsd_phase" in points:  # tables written before WSD have no such column
        final &= points["wsd_phase"] != "stable"
    p = points[final]
    optional = {col: p[key].to_numpy(float) for col, key in OPTIONAL_KEYS.items() if key in p}
    # per-field losses as field_<name> (the field plot); none for other data sets
    fields = {f"{columns.FIELD_PREFIX}{c[len(M.EVAL_FIELD_PREFIX):]}": p[c].to_numpy(float)
              for c in p.columns if str(c).startswith(M.EVAL_FIELD_PREFIX)}
    seed = optional.get("seed", np.full(len(p), np.nan))
    return columns.build(
        N=p[M.N_PARAMS].to_numpy(float), D=p[d_col].to_numpy(float), C=p[M.FLOPS].to_numpy(float),
        loss=p[M.EVAL_LOSS].to_numpy(float), loss_se=p[M.EVAL_LOSS_SE].to_numpy(float),
        group=p[M.VARIANT].to_numpy(str), config=p["config"].to_numpy(str), run_id=_independent_run(p, seed),
        n_llm=p[M.N_PARAMS_LLM].to_numpy(float), n_vision=p[M.N_PARAMS_VISION].to_numpy(float),
        **optional, **fields,
    ).sort_values(["group", "run_id", "D"], kind="stable").reset_index(drop=True)  # row order: not Ray's trial ids


def _independent_run(p: pd.DataFrame, seed: np.ndarray) -> np.ndarray:
    """The bootstrap's unit for each point, named by what the trial is rather than by Ray's
    random trial id, so that re-running an experiment (same data) gives the same fits and
    intervals: (schedule, variant, config, steps, seed). A WSD family's cooldown trials share
    one stable run (its noise and data order up to the fork), so they are one unit:
    (variant, config, seed). Without a seed column each trial keeps its trial id."""
    run = p["run_id"].to_numpy(str).astype(object)
    known = np.isfinite(seed)
    v, c, sched = p["variant"].to_numpy(str), p["config"].to_numpy(str), p["schedule"].to_numpy(str)
    steps = p["trial_steps"].to_numpy(float)
    for i in np.flatnonzero(known):
        s = int(seed[i])
        run[i] = f"wsd:{v[i]}:{c[i]}:s{s}" if sched[i] == "wsd" else f"{sched[i]}:{v[i]}:{c[i]}:{int(steps[i])}:s{s}"
    return run.astype(str)
