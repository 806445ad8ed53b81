"""Honest answers: blind arms withheld, flagged bounds, no verdict from one run, block bootstrap."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fitting import fit_law, honest, run_analysis, run_csv
from fitting.report import with_ci

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from synthetic_experiment import write_experiment  # noqa: E402


@pytest.fixture(scope="module")
def blind_foveated(tmp_path_factory):
    """Three arms, foveated blind (its shuffled-frames loss equals its loss), 2 seeds per cell."""
    root = tmp_path_factory.mktemp("exp")
    exp = write_experiment(root / "blind", variants=("foveated", "baseline", "pooled1"), seeds=2,
                           blind=("foveated",))
    out = root / "analysis"
    return run_analysis(exp, out_dir=out, n_bootstrap=30, seed=0), out


def test_blind_arm_is_reported_and_its_comparisons_withheld(blind_foveated):
    fits, out = blind_foveated
    v = fits["vision"]
    assert v["foveated"]["uses_frames"] is False and v["foveated"]["gap"] == pytest.approx(0.0, abs=1e-12)
    assert v["baseline"]["uses_frames"] and v["baseline"]["ci95"][0] > 0
    assert v["pooled1"]["uses_frames"] and v["pooled1"]["ci95"][0] > 0
    comps = fits["derived"]["comparisons"]
    assert set(comps) == {"foveated vs baseline", "foveated vs pooled1", "baseline vs pooled1"}
    for name in ("foveated vs baseline", "foveated vs pooled1"):
        assert comps[name]["status"] == "withheld" and "foveated does not use its frames" in comps[name]["reason"]
        assert "efficiency_multiplier" not in comps[name] and "crossover" not in comps[name]
    assert comps["baseline vs pooled1"]["status"] != "withheld"
    assert "efficiency_multiplier" in comps["baseline vs pooled1"]
    assert fits["derived"]["optimal_allocation"]["foveated"]["status"] == "withheld"
    report = (out / "report.md").read_text()
    top = report.split("## Answer")[0]
    assert "| foveated | 0 |" in top and "**no**" in top  # the vision table comes first
    assert "**foveated vs baseline: withheld**" in report
    on_disk = json.loads((out / "fits.json").read_text())
    assert on_disk["vision"]["foveated"]["uses_frames"] is False


def test_three_arm_report_names_what_each_comparison_answers(blind_foveated):
    fits, out = blind_foveated
    comps = fits["derived"]["comparisons"]
    assert "headline" in comps["foveated vs baseline"]["question"]
    assert "looking in the right place" in comps["foveated vs pooled1"]["question"]
    assert "token count alone" in comps["baseline vs pooled1"]["question"]
    report = (out / "report.md").read_text()
    answer = report.split("## Answer")[1].split("## Seeds")[0]
    assert "Which comparison answers which question:" in answer
    for name, c in comps.items():
        assert f"- {name}: {c['question']}" in answer
    # the computed comparison's table is titled with its question too
    assert f"**baseline vs pooled1** ({comps['baseline vs pooled1']['status']}" in report
    assert f"— question: {comps['baseline vs pooled1']['question']}" in report
    assert json.loads((out / "fits.json").read_text())["derived"]["comparisons"]["foveated vs pooled1"]["question"]


def test_seed_spread_reported_next_to_eval_se(blind_foveated):
    fits, out = blind_foveated
    s = fits["seeds"]
    assert s["max_runs_per_cell"] == 2
    cell = s["cells"][0]
    assert cell["n_runs"] == 2 and cell["seed_sd"] > 0 and cell["eval_se"] == pytest.approx(0.005)
    assert "| seed sd | eval SE |" in (out / "report.md").read_text()


def test_one_seed_per_cell_says_what_that_means(tmp_path):
    exp = write_experiment(tmp_path / "one", seeds=1)
    fits = run_analysis(exp, out_dir=tmp_path / "a", n_bootstrap=0)
    assert fits["seeds"]["max_runs_per_cell"] == 1
    assert "understate" in fits["seeds"]["note"]
    assert "understate" in (tmp_path / "a" / "report.md").read_text()


def test_at_bound_parameter_is_flagged_without_ci():
    # loss does not depend on N at all: the N term must vanish (alpha or A at its bound)
    N, D = (a.ravel() for a in np.meshgrid([1e6, 3e6, 1e7], np.geomspace(1e7, 1e9, 6)))
    rng = np.random.default_rng(0)
    fit = fit_law("L(N,D)", np.c_[N, D], (2 + 600 / D**0.3) * np.exp(rng.normal(0, 1e-3, N.size)))
    p = fit.params()
    ci = {k: [v * 0.9, v * 1.1] for k, v in p.items()}
    flags, clean = honest.param_flags(fit, "", p, ci, 2.0)
    stuck = [k for k in ("A", "alpha") if "at bound" in flags[k]]
    assert stuck, (p, flags)
    assert all(clean[k] is None for k in stuck)
    assert clean["beta"] == ci["beta"] and flags["beta"] == []


def test_zero_width_ci_is_flagged_and_never_printed():
    fit = fit_law("L(C)", np.geomspace(1e10, 1e14, 8), 1.5 + 30 * np.geomspace(1e10, 1e14, 8) ** -0.1)
    p = fit.params()
    flags, clean = honest.param_flags(fit, "", p, {"E": [p["E"]] * 2, "A": None, "alpha": [0.05, 0.2]}, 1.6)
    assert "zero-width CI" in flags["E"] and clean["E"] is None
    assert flags["A"] == ["no CI"] and clean["alpha"] == [0.05, 0.2]
    assert "[" not in with_ci(1.5, [1.5, 1.5]) and "zero-width" in with_ci(1.5, [1.5, 1.5])


def test_e_above_lowest_loss_is_flagged():
    fit = fit_law("L(C)", np.geomspace(1e10, 1e14, 8), 1.5 + 30 * np.geomspace(1e10, 1e14, 8) ** -0.1)
    p = dict(fit.params(), E=3.0)
    flags, _ = honest.param_flags(fit, "", p, {k: [0, 1] for k in p}, 2.0)
    assert any("above the lowest" in f for f in flags["E"])


def test_one_run_per_arm_gives_no_verdict(tmp_path):
    """Two arms, each a single constant-LR run with many milestones: no verdict either way."""
    rows = []
    for g, e in (("foveated", 1.5), ("baseline", 1.7)):
        for i, c in enumerate(np.geomspace(1e12, 1e16, 12)):
            loss = e + 300 * c**-0.15
            rows.append({"N": 1e6, "D": c / 6e6, "C": c, "loss": loss, "loss_se": 0.001, "group": g, "config": "T",
                         "run_id": f"{g}-run", "n_llm": np.nan, "n_vision": np.nan, "seed": 0, "steps": np.nan,
                         "loss_shuffled": loss + 0.2, "loss_shuffled_se": 0.001})
    from fitting import AnalysisOptions, analyze_frame

    fits = analyze_frame(pd.DataFrame(rows), tmp_path, AnalysisOptions(n_bootstrap=30, require_vision=True))
    comp = fits["derived"]["comparisons"]["foveated vs baseline"]
    assert comp["status"] == "not identified" and ">= 3 independent runs" in comp["reason"]
    answer = (tmp_path / "report.md").read_text().split("## Answer")[1].split("##")[0]
    assert "not identified" in answer and "excludes 1" not in answer and "includes 1" not in answer


def _ar1_csv(path, rho=0.7, n=80, seed=3):
    rng = np.random.default_rng(seed)
    D = np.geomspace(1e7, 1e10, n)
    eps = np.zeros(n)
    for i in range(1, n):
        eps[i] = rho * eps[i - 1] + rng.normal(0, 0.01 * np.sqrt(1 - rho * rho))
    pd.DataFrame({"samples": D, "loss": (1.8 + 400 * D**-0.3) * np.exp(eps), "run": "r0"}).to_csv(path, index=False)


def test_ar1_curve_gets_a_wider_interval_with_run(tmp_path):
    _ar1_csv(tmp_path / "curve.csv")
    widths = {}
    for by_run in (True, False):
        fits = run_csv(tmp_path / "curve.csv", None, "loss", d_col="samples", run_col="run" if by_run else None,
                       out_dir=tmp_path / str(by_run), n_bootstrap=150)
        ci = fits["laws"]["L(D)"]["all"]["ci95"]
        widths[by_run] = {k: ci[k][1] - ci[k][0] for k in ("E", "beta")}
    for k in ("E", "beta"):
        assert widths[True][k] > 1.5 * widths[False][k], widths


def test_csv_cli_one_size_with_run_exits_0(tmp_path):
    _ar1_csv(tmp_path / "curve.csv")
    r = subprocess.run([sys.executable, "-m", "fitting", "csv", str(tmp_path / "curve.csv"), "--d", "samples",
                        "--loss", "loss", "--run", "run", "--bootstrap", "20", "--out", str(tmp_path / "o")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    fits = json.loads((tmp_path / "o" / "fits.json").read_text())
    assert fits["laws"]["L(D)"]["all"]["status"] == "ok" and fits["laws"]["L(N,D)"]["all"]["status"] == "skipped"
    assert "circular blocks" in fits["bootstrap"]["resampling"]
    assert fits["laws"]["L(D)"]["all"]["n_points"] == 80 and fits["laws"]["L(D)"]["all"]["n_available"] == 80
    report = (tmp_path / "o" / "report.md").read_text()
    assert "L(D) fitted instead" in report and "exponents in N are not identifiable" in report


def test_wsd_cooldowns_of_one_stable_run_are_one_bootstrap_unit():
    """Cooldown trials forked from one stable run share its noise up to the fork: the bootstrap
    must resample that family whole, and count it as one run (verdicts need >= 3 runs)."""
    from fitting.table import fit_frame

    rows = []
    for seed in (0, 1):
        for i, (phase, steps) in enumerate((("stable", 480), ("cooldown", 150), ("cooldown", 300), ("cooldown", 600))):
            rows.append({"run_id": f"t{seed}{i}", "variant": "baseline", "config": "T1-T1", "seed": seed,
                         "schedule": "wsd", "wsd_phase": phase, "step": steps, "trial_steps": steps,
                         "samples": steps * 16, "flops": steps * 1e9, "eval_loss": 1.0, "eval_loss_se": 0.01,
                         "n_params": 1e5, "n_params_llm": 5e4, "n_params_vision": 5e4})
    rows.append({**rows[1], "run_id": "c0", "schedule": "cosine", "wsd_phase": ""})
    frame = fit_frame(pd.DataFrame(rows))
    assert len(frame) == 7  # the stable trials' rows are never points
    wsd = frame[frame["run_id"].str.startswith("wsd:")]
    assert sorted(wsd["run_id"].unique()) == ["wsd:baseline:T1-T1:s0", "wsd:baseline:T1-T1:s1"]
    assert wsd.groupby("run_id").size().tolist() == [3, 3]
    assert "cosine:baseline:T1-T1:150:s0" in set(frame["run_id"])  # a cosine trial is its own run
    # named by what it is, not by Ray's random trial id: a re-run gives the same units and order
    renamed = fit_frame(pd.DataFrame([{**r, "run_id": r["run_id"] + "x"} for r in reversed(rows)]))
    pd.testing.assert_frame_equal(renamed, frame)
    assert honest.runs_per_group(frame)["baseline"] == 3


def test_a_multiplier_outside_the_reference_arms_measured_compute_is_a_bound():
    from fitting.report import _comparison_answer

    em = {"ref_to_match_treat": {"value": [1e-12, 1e-12, 1e-12], "ci95": [[0, 0, 0], [6e-4, 6e-4, 6e-4]]},
          "measured_C": {"baseline": [1.77e11, 1e13], "foveated": [7.5e10, 4e12]}}
    c = {"treatment": "foveated", "reference": "baseline", "status": "ok", "efficiency_multiplier": em,
         "crossover": {}, "exponent_difference": {}}
    text = _comparison_answer("foveated vs baseline", c, [1e11, 4.05e11, 1e12])
    assert "below its smallest measured compute" in text and "< 0.437x" in text
    assert "95% CI" not in text and "excludes 1" not in text  # no interval for an extrapolation
    em["measured_C"]["baseline"] = [1e10, 1e13]  # matched compute 4e-1 FLOPs: still below
    em["ref_to_match_treat"]["value"] = [2.0, 2.0, 2.0]
    em["ref_to_match_treat"]["ci95"] = [[1.5, 1.5, 1.5], [2.5, 2.5, 2.5]]
    text = _comparison_answer("foveated vs baseline", c, [1e11, 4.05e11, 1e12])
    assert "needs 2x (95% CI [1.5, 2.5])" in text and "excludes 1" in text  # inside the data: a finding


def test_an_interval_cut_by_the_exponent_box_is_flagged_not_hidden():
    from types import SimpleNamespace

    fit = SimpleNamespace(exponent_names=("alpha",), coefficient_exponents={"A": "alpha"},
                          params_at_bound=lambda g: {"E": False, "A": False, "alpha": False})
    params = {"E": 0.5, "A": 10.0, "alpha": 3.3}
    flags, ci = honest.param_flags(fit, "baseline", params,
                                   {"E": [0.0, 0.6], "A": [1.0, 1e9], "alpha": [0.49, 10.0]}, min_loss=0.7)
    assert flags["alpha"] == ["CI ends at the exponent bound"] and ci["alpha"] == [0.49, 10.0]
    assert flags["E"] == ["CI reaches E = 0"] and flags["A"] == []
    flags, _ = honest.param_flags(fit, "baseline", params,
                                  {"E": [0.3, 0.6], "A": [1.0, 1e9], "alpha": [0.49, 9.0]}, min_loss=0.7)
    assert flags == {"E": [], "A": [], "alpha": []}
    assert "(CI ends at the exponent bound)" in with_ci(3.3, [0.49, 10.0], ["CI ends at the exponent bound"])


def test_a_coefficient_whose_exponent_is_zero_is_not_identified_and_a_near_zero_width_ci_is_none():
    from types import SimpleNamespace

    fit = SimpleNamespace(exponent_names=("alpha", "beta"), coefficient_exponents={"A": "alpha", "B": "beta"},
                          params_at_bound=lambda g: {"E": False, "A": False, "B": False, "alpha": True, "beta": False})
    params = {"E": 0.62, "A": 0.001075, "B": 6e4, "alpha": 0.0, "beta": 1.8}
    ci = {"E": [0.48, 0.63], "A": [0.0010745, 0.0010752], "B": [0.6, 4e13], "alpha": None, "beta": [0.16, 4.3]}
    flags, clean = honest.param_flags(fit, "baseline", params, ci, min_loss=0.6)
    assert flags["A"] == ["not identified (alpha = 0: a constant, indistinguishable from E)"] and clean["A"] is None
    assert flags["alpha"] == ["at bound"] and clean["B"] == [0.6, 4e13]
    assert honest.blocking_flags(flags, ["A", "B"]) == ["A not identified (alpha = 0: a constant, indistinguishable from E)"]
    assert honest.zero_width(0.5, [0.49999, 0.50001]) and not honest.zero_width(0.5, [0.49, 0.51])
