"""The pipeline: points -> fits -> bootstrap -> derived laws -> fits.json, plots, report.md."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from fitting import bootstrap, derived, plots, report
from fitting.fitset import JOINT, FitSet
from fitting.laws import param_names
from fitting.table import fit_frame, load_csv, load_experiment
from fitting.threads import single_threaded


@single_threaded
def run_analysis(experiment_dir, out_dir=None, n_bootstrap: int = 1000, seed: int = 0) -> dict:
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
    return analyze_frame(frame, out, n_bootstrap, seed, source=str(experiment_dir), dropped=dropped,
                         notes=notes, n_rows=len(points))


@single_threaded
def run_csv(path, n_col, loss_col, d_col=None, c_col=None, group_col=None, out_dir=None,
            n_bootstrap: int = 1000, seed: int = 0, drop_top_loss: int = 0) -> dict:
    """Analyse a CSV of points. Strict: an L(N,D) fit the data cannot support is a FitError."""
    frame, dropped = load_csv(path, n_col, loss_col, d_col, c_col, group_col, drop_top_loss)
    out = Path(out_dir) if out_dir is not None else Path(path).parent / f"{Path(path).stem}_analysis"
    notes = [] if d_col else ["No data column given: D = C / (6 N)."]
    if not c_col:
        notes.append("No compute column given: C = 6 N D.")
    return analyze_frame(frame, out, n_bootstrap, seed, source=str(path), dropped=dropped, notes=notes,
                         strict=True, n_rows=len(frame) + len(dropped))


@single_threaded
def analyze_frame(frame: pd.DataFrame, out: Path, n_bootstrap=1000, seed=0, source="", dropped=(),
                  notes=(), strict=False, n_rows=None) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fs = FitSet(frame, strict=strict)
    ctx = derived.context(fs.frame)
    full = bootstrap.stats(fs.current(), ctx)
    boot = bootstrap.bootstrap(fs, ctx, n_bootstrap, seed)
    fits = {
        "source": source, "n_rows": n_rows if n_rows is not None else len(frame),
        "n_fit_points": len(fs.frame), "groups": fs.groups,
        "bootstrap": {"n": n_bootstrap, "seed": seed, "unit": "run_id (resampled within group)",
                      "interval": "percentile 95%"},
        "dropped": list(dropped), "laws": _laws(fs, boot),
        "derived": _derived(fs, ctx, full, boot), "notes": list(notes) + _caveats(fs),
    }
    fits["plots"] = plots.make_all(fs, ctx, fits, boot, out)
    fits = _jsonable(fits)
    (out / "fits.json").write_text(json.dumps(fits, indent=2))
    (out / "report.md").write_text(report.render(fits))
    return fits


# -- assembling fits.json ------------------------------------------------------------------------


def _ci(boot, key):
    b = boot.get(key)
    return None if b is None else [b["ci95"][0], b["ci95"][1]]


def _laws(fs: FitSet, boot) -> dict:
    laws = {}
    for (law, group), e in fs.entries.items():
        names = e.fit.groups if (e.status == "ok" and group == JOINT) else [group]
        for name in names:
            rec = {"status": e.status, "selection": e.selection}
            if e.status != "ok":
                rec["reason"] = e.reason
                rec["n_points"] = int(len(e.rows)) if e.rows is not None else 0
            elif law == "isoflop":
                rec.update(params={"a": e.fit["a"], "G": e.fit["G"]}, n_points=int(len(e.rows)),
                           budgets=e.fit["budgets"], objective=None)
                rec["ci95"] = {k: _ci(boot, f"{law}|{name}|{k}") for k in ("a", "G")}
            else:
                p = e.fit.params(name)
                rec.update(params=p, n_points=int(e.fit.n_points), objective=e.fit.objective,
                           rms_log_residual=float(np.sqrt(np.mean(e.fit.residuals() ** 2))))
                rec["ci95"] = {k: _ci(boot, f"{law}|{name}|{k}") for k in param_names(e.fit.law)}
                rec["sd"] = {k: boot[f"{law}|{name}|{k}"]["sd"] for k in p if f"{law}|{name}|{k}" in boot}
                if group == JOINT:
                    rec["shared"] = [k for k in p if k in ("alpha", "beta")]
            laws.setdefault(law, {})[name] = rec
    return laws


def _value(full, boot, key):
    b = boot.get(key, {})
    return {"value": full.get(key, np.nan), "ci95": _ci(boot, key),
            "n_resamples_ok": b.get("n_ok"), "n_resamples": b.get("n")}


def _derived(fs: FitSet, ctx, full, boot) -> dict:
    d = {"compute_grid": ctx["C_grid"], "flops_per_nd": ctx["flops_per_nd"]}
    d["scaling_exponent"] = {}
    for g in fs.groups:
        if fs.ok("L(C)", g) is not None:
            d["scaling_exponent"][g] = _value(full, boot, f"L(C)|{g}|alpha")
    alloc = {}
    for g in fs.groups:
        if f"allocation|{g}|G" in full:
            alloc[g] = {k: _value(full, boot, f"allocation|{g}|{k}")
                        for k in ("N_exponent", "D_exponent", "G", "N_opt", "D_opt")}
            alloc[g]["flops_per_nd"] = ctx["flops_per_nd"][g]
    d["optimal_allocation"] = alloc
    pr = ctx["pair"]
    if pr and fs.ok("L(C)", pr[0]) is not None and fs.ok("L(C)", pr[1]) is not None:
        p_t, p_r = fs.ok("L(C)", pr[0]).params(pr[0]), fs.ok("L(C)", pr[1]).params(pr[1])
        cr = derived.crossover_report(p_t, p_r, ctx)
        cr["treatment"], cr["reference"] = pr
        cr["first"] = _value(full, boot, "crossover|C")
        d["crossover"] = cr
        d["loss_ratio"] = {"treatment": pr[0], "reference": pr[1], **_value(full, boot, "ratio|loss")}
        d["efficiency_multiplier"] = {
            "treatment": pr[0], "reference": pr[1],
            "ref_to_match_treat": _value(full, boot, "multiplier|ref_to_match_treat"),
            "treat_to_match_ref": _value(full, boot, "multiplier|treat_to_match_ref"),
            "meaning": (f"ref_to_match_treat(C) = C_{pr[1]}(L_{pr[0]}(C)) / C: how many times C the "
                        f"{pr[1]} needs to reach the loss the {pr[0]} reaches with C (>1: {pr[0]} "
                        "is more compute-efficient); treat_to_match_ref is the reverse"),
        }
        d["exponent_difference"] = _value(full, boot, "exponent_diff|alpha")
    elif pr:
        d["crossover"] = {"status": "skipped", "reason": "needs an L(C) fit for both variants"}
    else:
        d["crossover"] = {"status": "skipped", "reason": f"needs exactly two variants, got {len(fs.groups)}"}
    d["best_configs"] = derived.best_configs(fs.frame).to_dict("records")
    d["extrapolation"] = derived.extrapolation_check(fs.frame, fs)
    return d


def _caveats(fs: FitSet) -> list[str]:
    out = []
    for (law, group), e in fs.entries.items():
        if e.status != "ok":
            out.append(f"{law} [{group}] not fitted: {e.reason}.")
    for g in fs.groups:
        n_sizes = fs.frame.loc[fs.frame["group"] == g, "N"].nunique()
        if n_sizes < 3:
            out.append(f"{g}: only {n_sizes} model size(s): exponents in N are not identifiable, so "
                       "nothing here says how the comparison moves with model size.")
    if fs.lc_selection.startswith("all"):
        out.append("L(C) was fitted to all end-of-schedule points, not a compute-efficient frontier: it "
                   "describes this grid's loss-vs-compute trend, which depends on the configs chosen.")
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
