"""Inputs -> one tidy table: a Ray Tune experiment directory, or a CSV of (N, D|C, loss) points.

The Ray loader reads the files Ray writes (experiment_state-*.json for trial status, each
trial dir's result.json + params.json) instead of importing Ray: it is fast, needs no cluster,
and still reads trials that died in ERROR state (which ExperimentAnalysis may not load).
Every trial or row left out is returned in `dropped` with its reason, so the report can list
it: nothing is excluded silently.
"""
from __future__ import annotations

import glob
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

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
        reports = _read_reports(tdir / "result.json")
        run_id = next((r["trial_id"] for r in reports if "trial_id" in r), tdir.name)
        st = status.get(tdir.name) or ("ERROR" if (tdir / "error.txt").exists() else "UNKNOWN")
        if st == "ERROR":
            why = ""
            if (tdir / "error.txt").exists():
                lines = [s for s in (tdir / "error.txt").read_text(errors="replace").splitlines() if s.strip()]
                why = f": {lines[-1].strip()[:160]}" if lines else ""
            dropped.append({"run_id": run_id, "reason": f"trial status ERROR{why}"})
            continue
        if not reports:
            dropped.append({"run_id": run_id, "reason": "no reports in result.json"})
            continue
        _check_types(reports, tdir / "result.json")
        df = pd.DataFrame(reports)
        seen_keys.update(df.columns)
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
        df["run_id"] = run_id
        if M.MILESTONE in df.columns:
            df = df[df[M.MILESTONE].fillna(False).astype(bool)]
        if df.empty:
            dropped.append({"run_id": run_id, "reason": "no milestone reports"})
            continue
        missing = [c for c in REQUIRED if c not in df.columns]
        if missing:
            dropped.append({"run_id": run_id, "reason": f"reports lack {', '.join(missing)}"})
            continue
        # A diverged run (NaN/inf loss at any milestone) says nothing about its size's law.
        losses = df[M.EVAL_LOSS].tolist() + (df[M.TRAIN_LOSS].tolist() if M.TRAIN_LOSS in df else [])
        n_bad = sum(_is_bad_loss(v) for v in losses)
        if n_bad:
            dropped.append({"run_id": run_id, "reason": f"{n_bad} non-finite or non-positive loss value(s)"})
            continue
        # A resumed trial re-reports steps it already reported: the last report wins.
        frames.append(df.drop_duplicates(M.STEP, keep="last"))
    if not frames:
        missing = [c for c in REQUIRED if c not in seen_keys]
        if missing and seen_keys:
            raise FitError(f"reports in {exp_dir} lack required key(s): {', '.join(missing)}")
        reasons = "; ".join(f"{d['run_id']}: {d['reason']}" for d in dropped[:5])
        raise FitError(f"no usable trials in {exp_dir} ({reasons})")
    raw = pd.concat(_drop_duplicates(frames, dropped), ignore_index=True)
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
    return pts.sort_values(["variant", "config", "run_id", "step"]).reset_index(drop=True), dropped


def fit_frame(points: pd.DataFrame, d_col: str = "samples") -> pd.DataFrame:
    """Tidy experiment points -> the frame the fits use (N, D, C, loss, group, run_id, ...).

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
    # one column per optional key, NaN when absent (tables written before seeds / shuffled frames)
    opt = {c: (p[c].to_numpy(float) if c in p else np.full(len(p), np.nan))
           for c in ("seed", M.EVAL_LOSS_SHUFFLED, M.EVAL_LOSS_SHUFFLED_SE, M.VISION_GAP, M.VISION_GAP_SE,
                     "trial_steps", *CONFIG_LRS)}
    # per-field losses as field_<name> (the field plot); none for other data sets
    fields = {f"field_{c[len(M.EVAL_FIELD_PREFIX):]}": p[c].to_numpy(float)
              for c in p.columns if str(c).startswith(M.EVAL_FIELD_PREFIX)}
    return pd.DataFrame({
        "N": p["n_params"].to_numpy(float), "D": p[d_col].to_numpy(float),
        "C": p["flops"].to_numpy(float), "loss": p["eval_loss"].to_numpy(float),
        "loss_se": p["eval_loss_se"].to_numpy(float), "group": p["variant"].to_numpy(str),
        "config": p["config"].to_numpy(str), "run_id": _independent_run(p, opt["seed"]),
        "n_llm": p["n_params_llm"].to_numpy(float), "n_vision": p["n_params_vision"].to_numpy(float),
        "seed": opt["seed"], "steps": opt["trial_steps"], "loss_shuffled": opt[M.EVAL_LOSS_SHUFFLED],
        "loss_shuffled_se": opt[M.EVAL_LOSS_SHUFFLED_SE], "vision_gap": opt[M.VISION_GAP],
        "vision_gap_se": opt[M.VISION_GAP_SE], "lr": opt["lr"], "lr_backbone": opt["lr_backbone"], **fields,
    }).sort_values(["group", "run_id", "D"], kind="stable").reset_index(drop=True)  # row order: not Ray's trial ids


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


def load_csv(path, n_col: str, loss_col: str, d_col: str | None = None, c_col: str | None = None,
             group_col: str | None = None, drop_top_loss: int = 0,
             run_col: str | None = None) -> tuple[pd.DataFrame, list[dict]]:
    """CSV of points -> (fit frame, dropped rows). D = C/(6N) without --d; C = 6ND without --c.
    run_col names the run each row belongs to (the bootstrap's unit); without it each row is a run."""
    path = Path(path)
    if not path.is_file():
        raise FitError(f"CSV file not found: {path}")
    if d_col is None and c_col is None:
        raise FitError("need a data column (--d) or a compute column (--c) to know D")
    try:
        raw = pd.read_csv(path)
    except (ValueError, OSError) as e:
        raise FitError(f"cannot read {path}: {str(e).splitlines()[0]}") from None
    wanted = [c for c in (n_col, loss_col, d_col, c_col, group_col, run_col) if c is not None]
    missing = [c for c in wanted if c not in raw.columns]
    if missing:
        have = ", ".join(repr(c) for c in raw.columns[:12])
        raise FitError(f"{path.name} lacks column(s) {', '.join(map(repr, missing))} (has {have})")
    for flag, col in (("--group", group_col), ("--run", run_col)):
        empty = int((raw[col].isna() | (raw[col].astype(str).str.strip() == "")).sum()) if col else 0
        if empty:  # an empty label would become an arm (or a run) of its own, named "nan"
            raise FitError(f"{path.name}: column {col!r} ({flag}) is empty in {empty} of {len(raw)} rows")
    num = {c: pd.to_numeric(raw[c], errors="coerce").to_numpy(float) for c in wanted if c not in (group_col, run_col)}
    if n_col is None:  # one model size, unknown: L(D) and L(C) only
        num[None] = np.ones(len(raw))
        if d_col is None:
            raise FitError("without --n, give the data column (--d): D = C/(6N) needs N")
    N, loss = num[n_col], num[loss_col]
    D = num[d_col] if d_col else num[c_col] / (6.0 * N)
    C = num[c_col] if c_col else 6.0 * N * D
    frame = pd.DataFrame({
        "N": N, "D": D, "C": C, "loss": loss, "loss_se": np.nan,
        "group": raw[group_col].astype(str).to_numpy() if group_col else "all",
        "config": [f"N={v:.3g}" for v in N],
        "run_id": raw[run_col].astype(str).to_numpy() if run_col else [f"row{i}" for i in range(len(raw))],
        "n_llm": np.nan, "n_vision": np.nan, "seed": np.nan, "steps": np.nan,
        "loss_shuffled": np.nan, "loss_shuffled_se": np.nan, "vision_gap": np.nan, "vision_gap_se": np.nan,
        "lr": np.nan, "lr_backbone": np.nan,
    })
    dropped = []
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(frame[["N", "D", "C", "loss"]].to_numpy()).all(axis=1)
        ok &= (frame[["N", "D", "C", "loss"]].to_numpy() > 0).all(axis=1)
    for i in np.flatnonzero(~ok):
        dropped.append({"run_id": f"row{i}", "reason": f"non-finite or non-positive value (loss={loss[i]})"})
    frame = frame[ok]
    if frame.empty:
        raise FitError(f"{path.name}: no rows with finite, positive N, D, C and loss")
    if drop_top_loss:
        if drop_top_loss >= len(frame):
            raise FitError(f"--drop-top-loss {drop_top_loss} would drop all {len(frame)} usable rows")
        top = frame.sort_values("loss", ascending=False, kind="stable").index[:drop_top_loss]
        for i in top:
            dropped.append({"run_id": f"row{i}", "reason": f"among the {drop_top_loss} highest losses (--drop-top-loss)"})
        frame = frame.drop(top)
    return frame.reset_index(drop=True), dropped
