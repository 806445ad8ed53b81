"""The pipeline: points -> fits -> bootstrap -> derived laws -> fits.json, plots, report.md."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fitting import bootstrap, columns, comparisons, derived, engine, honest, isoflop, plots, report
from fitting.csv_table import load_csv
from fitting.errors import FitError
from fitting.fitset import JOINT, LC_POINTS, FitSet
from fitting.keys import LawKey
from fitting.progress import Progress, say
from fitting.table import fit_frame, load_experiment
from fitting.threads import single_threaded
from fitting.vision import rule as vision_rule
from fitting.vision import seed_spread, vision_gaps


FINAL_POINTS = "final evaluation of each run (end of its LR schedule)"


@dataclass(frozen=True)
class AnalysisOptions:
    """How analyze_frame fits a frame and describes it (run_analysis and run_csv fill it in).
    A misspelt option is a TypeError and an impossible value a FitError, never ignored."""

    n_bootstrap: int = 1000  # resamples (0: no intervals)
    seed: int = 0  # of the resampling
    source: str = ""  # where the points came from, as report.md names it
    dropped: tuple = ()  # trials or rows left out, each {"run_id", "reason"}
    notes: tuple = ()  # caveats report.md lists first
    strict: bool = False  # a law the data cannot support is a FitError, not skipped with its reason
    n_rows: int | None = None  # rows of the input (default: the frame's)
    selection: str = "every point"  # which rows are fit points, in words
    require_vision: bool = False  # withhold a comparison whose arms' use of their frames was not measured
    lc_points: str = "frontier"  # L(C)'s points: each group's compute-efficient "frontier" of cells, or "all"

    def __post_init__(self):
        if self.n_bootstrap < 0 or self.seed < 0:
            raise FitError(f"bootstrap resamples and seed must be >= 0, got {self.n_bootstrap} and {self.seed}")
        if self.lc_points not in LC_POINTS:
            raise FitError(f"lc_points must be one of {', '.join(LC_POINTS)}, got {self.lc_points!r}")
        object.__setattr__(self, "dropped", tuple(self.dropped))
        object.__setattr__(self, "notes", tuple(self.notes))


@single_threaded
def run_analysis(experiment_dir, out_dir=None, n_bootstrap: int = 1000, seed: int = 0,
                 lc_points: str = "frontier") -> dict:
    """Analyse a Ray Tune experiment dir; write outputs to out_dir (default <dir>/analysis).

    Never fails for lack of points: a law the data cannot identify is skipped, with the reason
    recorded in fits.json and report.md. Raises FitError only when nothing is usable.
    """
    experiment_dir = Path(experiment_dir)
    out = Path(out_dir) if out_dir is not None else experiment_dir / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    points, dropped = load_experiment(experiment_dir)
    points.to_parquet(out / "points.parquet", index=False)
    frame = fit_frame(points)
    n_mid = len(points) - len(frame)
    notes = [f"{n_mid} intermediate milestone evaluation(s) of decaying-schedule runs are kept in "
             "points.parquet but not fitted (their learning rate had not decayed)."] if n_mid else []
    return analyze_frame(frame, out, AnalysisOptions(
        n_bootstrap, seed, source=str(experiment_dir), dropped=dropped, notes=notes, n_rows=len(points),
        selection=FINAL_POINTS, require_vision=True, lc_points=lc_points))


@single_threaded
def run_csv(path, n_col, loss_col, d_col=None, c_col=None, group_col=None, out_dir=None,
            n_bootstrap: int = 1000, seed: int = 0, drop_top_loss: int = 0, run_col=None,
            lc_points: str = "frontier") -> dict:
    """Analyse a CSV of points. Strict: a law the data cannot support is a FitError (one model
    size is supported: L(D) and L(C) instead of L(N,D))."""
    frame, dropped = load_csv(path, n_col, loss_col, d_col, c_col, group_col, drop_top_loss, run_col)
    out = Path(out_dir) if out_dir is not None else Path(path).parent / f"{Path(path).stem}_analysis"
    notes = [] if d_col else ["No data column given: D = C / (6 N)."]
    if not c_col:
        notes.append("No compute column given: C = 6 N D" + (" with N unknown (set to 1): C is D up to a constant."
                                                              if n_col is None else "."))
    if run_col:
        notes.append(f"Runs from column {run_col!r}: the bootstrap resamples whole runs (or blocks of consecutive "
                     "points within a run, where a group has fewer than 3 runs).")
    else:
        notes.append("No --run column: every row is treated as its own run, so the bootstrap assumes independent "
                     "rows; for checkpoints of one training run (autocorrelated) the intervals are too narrow.")
    return analyze_frame(frame, out, AnalysisOptions(
        n_bootstrap, seed, source=str(path), dropped=dropped, notes=notes, strict=True,
        n_rows=len(frame) + len(dropped), selection="every row" + (" kept" if dropped else ""), lc_points=lc_points))


@single_threaded
def analyze_frame(frame: pd.DataFrame, out: Path, options: AnalysisOptions = AnalysisOptions()) -> dict:
    """Fit a fit frame (columns.py) and write fits.json, report.md and the plots to `out`."""
    o = options
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fs = FitSet(columns.complete(frame), strict=o.strict, base_selection=o.selection, lc_points=o.lc_points)
    # said once the full fits stand (a strict fit's FitError stays the only line), before the bootstrap
    say(f"fitting {o.source or 'a table'}: {len(fs.frame)} points, {len(fs.current())} laws fitted; "
        + (f"{o.n_bootstrap} bootstrap resamples on {bootstrap.default_workers()} process(es)"
           if o.n_bootstrap else "no bootstrap (no intervals)"))
    vision, vision_runs = vision_gaps(fs.frame, max(o.n_bootstrap, 200), o.seed)
    sees = {g: (vision[g]["uses_frames"] if g in vision else not o.require_vision) for g in fs.groups}
    allowed = [(t, r) for t, r in derived.pairs(fs.groups) if sees[t] and sees[r]]
    ctx = derived.context(fs.frame, fs.current(), allowed_pairs=allowed)
    how = bootstrap.plan(fs.frame, _residuals(fs))
    full = bootstrap.stats(fs.current(), ctx)
    boot = bootstrap.bootstrap(fs, ctx, o.n_bootstrap, o.seed, how, progress=Progress(o.n_bootstrap).update)
    runs = honest.runs_per_group(fs.frame)
    laws = _laws(fs, boot, o.n_bootstrap)
    used = np.unique(np.concatenate([e.rows for e in fs.entries.values() if e.status == honest.OK]
                                    or [np.array([], int)]))
    fits = {
        "source": o.source, "n_rows": o.n_rows if o.n_rows is not None else len(frame),
        "n_fit_points": int(len(used)), "n_candidate_points": len(fs.frame), "selection": o.selection,
        "groups": fs.groups, "runs_per_group": runs,
        "bootstrap": {"n": o.n_bootstrap, "seed": o.seed, "unit": "run_id (resampled within group)",
                      "resampling": bootstrap.describe(how), "interval": "percentile 95%",
                      "not_converged": {k.label(): v for k, v in boot.not_converged.items()}},
        "vision": vision, "vision_required": o.require_vision, "vision_runs": vision_runs,
        "vision_rule": vision_rule(),
        "seeds": seed_spread(fs.frame, vision_runs),
        "dropped": list(o.dropped), "laws": laws,
        "derived": comparisons.derived(fs, ctx, full, boot, laws, vision, o.require_vision, runs),
        "notes": list(o.notes) + _caveats(fs) + _budget_notes(boot, o.n_bootstrap),
    }
    fits["plots"] = plots.make_all(fs, ctx, fits, boot, out)
    fits = _jsonable(fits)
    (out / "fits.json").write_text(json.dumps(fits, indent=2))
    (out / "report.md").write_text(report.render(fits))
    return fits


# -- assembling fits.json ------------------------------------------------------------------------


def _residuals(fs: FitSet) -> np.ndarray:
    """Log residual per frame row of its group's L(N,D) / L(D) fit (else L(C)); NaN elsewhere."""
    r = np.full(len(fs.frame), np.nan)
    for g in fs.groups:
        for law in ("L(N,D)", "L(D)", "L(C)"):
            e = fs.entries.get((law, g))
            if e is not None and e.status == honest.OK:
                r[e.rows] = e.fit.residuals()
                break
    return r


def _laws(fs: FitSet, boot, n_resamples: int) -> dict:
    laws = {}
    for (law, group), e in fs.entries.items():
        names = e.fit.groups if (e.status == honest.OK and group == JOINT) else [group]
        for name in names:
            rec = {"status": e.status, "selection": e.selection, "n_available": int(e.n_available)}
            if e.status != honest.OK:
                rec["reason"] = e.reason
                rec["n_points"] = int(len(e.rows)) if e.rows is not None else 0
            else:
                rec.update(e.fit.record(name, boot, law))
                stuck = boot.not_converged.get(LawKey(law, group))
                if stuck:
                    rec["refits_not_converged"] = stuck
                    honest.flag_stopped_refits(rec, stuck, n_resamples)
                if law == "L(C)" and fs.lc_points == "frontier":
                    f = fs.frame[fs.frame["group"] == name]
                    honest.flag_unbracketed_frontier(rec, isoflop.unbracketed_side(f["N"], f["C"], f["loss"]))
                if group == JOINT:
                    rec["shared"] = [k for k in rec["params"] if k in ("alpha", "beta")]
            laws.setdefault(law, {})[name] = rec
    return laws


def _budget_notes(boot: bootstrap.Resamples, n: int) -> list[str]:
    stuck = {k.label(): v for k, v in boot.not_converged.items() if v > honest.NOTED_SHARE * n}
    if not stuck:
        return []
    return [f"Bootstrap refits that stopped at their evaluation budget (warm-started at the full fit, "
            f"{engine.REFIT_OPTIONS['maxfun']} evaluations): " + ", ".join(f"{k} {v} of {n}" for k, v in stuck.items())
            + f". Such a law has flat directions; its intervals are then, if anything, too narrow. Where more than "
            f"{honest.STOPPED_SHARE:.0%} stopped, its exponents carry the flag '{honest.REFITS_STOPPED}' and no "
            "verdict rests on it."]


def _caveats(fs: FitSet) -> list[str]:
    out = []
    for (law, group), e in fs.entries.items():
        if e.status != honest.OK:
            out.append(f"{law} [{group}] not fitted: {e.reason}.")
    for g in fs.groups:
        n_sizes = fs.frame.loc[fs.frame["group"] == g, "N"].nunique()
        if n_sizes < 3:
            out.append(f"{g}: only {n_sizes} model size(s): exponents in N are not identifiable, so "
                       "nothing here says how the comparison moves with model size"
                       + (" (L(D) fitted instead of L(N,D))." if n_sizes == 1 else "."))
    return out


def _jsonable(x):
    """numpy -> Python; NaN -> null; +-inf -> "inf"/"-inf" (a multiplier can be infinite)."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        if math.isnan(x):
            return None
        return ("inf" if x > 0 else "-inf") if math.isinf(x) else x
    if isinstance(x, np.bool_):
        return bool(x)
    return x
