"""Verdicts that need the data (fitting/honest.py's rules): a crossover is found only inside the
compute both arms measured and in >= 95% of resamples; a resample without one is an outcome of
the interval; a flagged L(C) parameter blocks "ok"."""
import math

import numpy as np
import pandas as pd
import pytest

from fitting import AnalysisOptions, analyze_frame, derived, honest

DATA = (1e12, 1e15)  # both arms measured exactly this compute range


def frame(laws: dict, noise: float, runs: int = 4, seed: int = 0) -> pd.DataFrame:
    """`runs` constant-LR runs per arm, each evaluated at 6 budgets in DATA, losses from
    L = E + A C^-alpha with a per-run offset (seed spread) and a smaller per-point noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for g, (e, a, alpha) in laws.items():
        for r in range(runs):
            offset = rng.normal(0, noise)
            for c in np.geomspace(*DATA, 6):
                loss = (e + a * c**-alpha) * np.exp(offset + rng.normal(0, noise / 3))
                rows.append({"N": 1e6, "D": c / 6e6, "C": c, "loss": loss, "loss_se": 0.002, "group": g,
                             "config": "T", "run_id": f"{g}-{r}", "n_llm": np.nan, "n_vision": np.nan, "seed": r,
                             "steps": np.nan, "loss_shuffled": loss + 0.5, "loss_shuffled_se": 0.002})
    return pd.DataFrame(rows)


def compare(tmp_path, baseline_e: float, noise: float) -> tuple[dict, str]:
    """foveated 1 + 400 C^-0.2 against baseline E + 3000 C^-0.3: E sets where they cross
    (1.5: 4.7e13, inside DATA; 1.32: 6.7e14, near its end; 1.25: 3.2e15 and 1.22: 1.1e16, beyond it)."""
    laws = {"foveated": (1.0, 400.0, 0.2), "baseline": (baseline_e, 3000.0, 0.3)}
    fits = analyze_frame(frame(laws, noise), tmp_path, AnalysisOptions(n_bootstrap=100, require_vision=True))
    report = (tmp_path / "report.md").read_text()
    return fits["derived"]["comparisons"]["foveated vs baseline"], report.split("## Answer")[1].split("## Seeds")[0]


def test_a_crossover_inside_the_data_in_every_resample_is_found(tmp_path):
    comp, answer = compare(tmp_path, 1.5, 0.003)
    cr = comp["crossover"]
    assert comp["status"] == "ok" and cr["status"] == honest.FOUND
    assert cr["common_range"] == pytest.approx(list(DATA)) and DATA[0] < cr["crossovers"][0] < DATA[1]
    assert cr["resamples_crossing_in_data"]["n"] >= 95 and cr["resamples_crossing_in_data"]["of"] == 100
    assert "the L(C) curves cross at C = 4." in answer and "inside the compute both arms measured" in answer


def test_an_extrapolated_crossover_is_not_ok_and_says_where_the_data_end(tmp_path):
    comp, answer = compare(tmp_path, 1.25, 0.003)
    assert comp["crossover"]["crossovers"][0] > DATA[1]
    assert comp["status"] == "not identified" and comp["crossover"]["status"] == honest.UNRESOLVED
    assert "beyond the compute both arms measured ([1e+12, 1e+15] FLOPs)" in comp["reason"]
    assert "an extrapolation, not a finding" in comp["reason"] and " of 100 resamples cross" in comp["reason"]
    assert "**foveated vs baseline: not identified**" in answer and "the L(C) curves cross at" not in answer


def test_a_crossover_found_in_fewer_than_95_percent_of_resamples_is_not_ok(tmp_path):
    comp, _ = compare(tmp_path, 1.32, 0.02)
    cr = comp["crossover"]
    assert DATA[0] < cr["crossovers"][0] < DATA[1]  # the full fit crosses inside the data...
    assert cr["resamples_crossing_in_data"]["n"] < 95  # ...but not robustly
    assert comp["status"] == "not identified" and "(needs >= 95% to state a crossover" in comp["reason"]


def test_resamples_without_a_crossover_open_the_interval(tmp_path):
    comp, _ = compare(tmp_path, 1.22, 0.03)
    first = comp["crossover"]["first"]
    assert first["n_resamples_ok"] == first["n_resamples"] == 100  # every resample is an outcome
    assert first["ci95"][1] == "inf"  # beyond the search range in more than 2.5% of them
    assert comp["status"] != "ok"


def test_a_fit_without_a_crossing_reads_as_plus_or_minus_infinity():
    ctx = derived.Context(["b", "f"], [("f", "b")], (1e11, 1e16), np.geomspace(1e11, 1e16, 5), (1e10, 1e17),
                          {}, {}, leader={"f vs b": "f"})
    low, high = {"E": 1.0, "A": 10.0, "alpha": 0.2}, {"E": 2.0, "A": 10.0, "alpha": 0.2}
    assert derived.crossover_value(low, high, [], ctx, "f", "b") == math.inf  # the leader leads throughout
    assert derived.crossover_value(high, low, [], ctx, "f", "b") == -math.inf  # it trails throughout
    assert derived.crossover_value(low, high, [3e12, 5e14], ctx, "f", "b") == 3e12


@pytest.mark.parametrize("roots, common, n_in, n, status, words", [
    ([5e13], [1e12, 1e15], 95, 100, honest.FOUND, ""),
    ([5e13], [1e12, 1e15], 94, 100, honest.UNRESOLVED, "but only 94 of 100 resamples cross there"),
    ([5e15], [1e12, 1e15], 100, 100, honest.UNRESOLVED, "beyond the compute both arms measured"),
    ([5e11], [1e12, 1e15], 100, 100, honest.UNRESOLVED, "below the compute both arms measured"),
    ([], [1e12, 1e15], 5, 100, honest.NONE_IN_DATA, ""),
    ([], [1e12, 1e15], 6, 100, honest.UNRESOLVED, "do not cross, but"),
    ([5e13], None, 100, 100, honest.UNRESOLVED, "do not overlap"),
    ([5e13], [1e12, 1e15], None, None, honest.UNRESOLVED, "no bootstrap"),
])
def test_crossover_rules(roots, common, n_in, n, status, words):
    got, reason = honest.crossover_status(roots, common, n_in, n)
    assert got == status and words in reason
    if common and status == honest.UNRESOLVED and n:
        assert "([1e+12, 1e+15] FLOPs)" in reason


CLEAN = {"E": [], "A": [], "alpha": []}


@pytest.mark.parametrize("param, flag", [
    ("E", honest.E_ABOVE_MIN), ("alpha", honest.CI_AT_EXPONENT_BOUND), ("E", honest.CI_AT_E_ZERO),
    ("alpha", honest.AT_BOUND), ("alpha", honest.NO_CI), ("alpha", honest.UNBRACKETED["smallest"]),
])
def test_a_flagged_lc_parameter_blocks_ok(param, flag):
    runs = {"foveated": 6, "baseline": 6}
    vision = {a: {"uses_frames": True} for a in runs}
    assert honest.comparison_status(["foveated", "baseline"], vision, True, runs,
                                    {"foveated": CLEAN, "baseline": CLEAN}) == ("ok", "")
    flags = {"foveated": CLEAN, "baseline": {**CLEAN, param: [flag]}}
    status, reason = honest.comparison_status(["foveated", "baseline"], vision, True, runs, flags)
    assert status == "not identified" and reason.startswith("fitted parameters that cannot carry a verdict")
    assert f"baseline: " in reason and flag in reason


def test_the_interval_of_a_flag_that_only_blocks_the_verdict_is_kept():
    """E above the lowest loss and an interval cut by the box block the verdict but keep the
    interval (shown, flagged); a parameter at its bound has none."""
    for kept in (honest.E_ABOVE_MIN, honest.CI_AT_EXPONENT_BOUND, honest.CI_AT_E_ZERO):
        assert kept in honest.BLOCKS_VERDICT and kept not in honest.NO_INTERVAL
    assert honest.AT_BOUND in honest.NO_INTERVAL and honest.CONSTANT_TERM["alpha"] in honest.NO_INTERVAL


def test_vision_is_decided_before_runs_and_flags():
    runs = {"foveated": 1, "baseline": 6}
    vision = {"foveated": {"uses_frames": False, "blind_cells": ["T2-T2: 0 of 2 runs see"], "reason": ""},
              "baseline": {"uses_frames": True}}
    status, reason = honest.comparison_status(["foveated", "baseline"], vision, True, runs,
                                              {"foveated": {"E": [honest.E_ABOVE_MIN]}, "baseline": CLEAN})
    assert status == "withheld" and reason == "foveated does not use its frames in every run (foveated T2-T2: 0 of 2 runs see)"


def test_every_blocking_flag_names_the_data_that_would_lift_it():
    for flag in honest.BLOCKS_VERDICT:
        assert honest.REMEDIES[flag].format(x="compute")
    assert honest.remedies("L(C)", {"foveated": CLEAN, "baseline": CLEAN}) == ""


def test_a_not_identified_verdict_says_per_arm_what_data_would_identify_it():
    flags = {"foveated": {**CLEAN, "E": [honest.E_ABOVE_MIN], "alpha": [honest.CI_AT_EXPONENT_BOUND]},
             "baseline": {**CLEAN, "E": [honest.E_AT_ZERO]}, "pooled1": CLEAN}
    arms = honest.remedies("L(C)", flags).split("; ")
    assert len(arms) == 2  # pooled1 has nothing to lift
    assert arms[0].startswith("foveated: points that show where the loss levels off")
    assert arms[0].endswith(", and a wider span of compute")
    assert arms[1] == "baseline: compute beyond the largest measured, until the loss bends towards its floor"
    both = honest.remedies("L(C)", {"foveated": {"E": [honest.E_AT_ZERO]}, "pooled1": {"E": [honest.CI_AT_E_ZERO]}})
    assert both.startswith("foveated and pooled1: compute beyond") and ";" not in both
    nd = honest.remedies("L(N,D)", {"baseline": {"alpha": [honest.AT_BOUND], "beta": [honest.AT_BOUND]}})
    assert nd == "baseline: a wider span of model sizes, and a wider span of step counts"


def test_a_law_whose_refits_mostly_stopped_at_their_budget_carries_no_verdict():
    """Its intervals are too narrow (flat directions): its exponents are flagged, the interval kept."""
    def rec():
        return {"flags": {"E": [], "A": [], "alpha": [], "beta": []}}
    quiet = rec()
    honest.flag_stopped_refits(quiet, 500, 1000)  # half: not more than the share
    assert all(f == [] for f in quiet["flags"].values())
    stuck = rec()
    honest.flag_stopped_refits(stuck, 874, 1000)
    assert stuck["flags"]["alpha"] == stuck["flags"]["beta"] == [honest.REFITS_STOPPED]
    assert stuck["flags"]["E"] == [] and honest.REFITS_STOPPED not in honest.NO_INTERVAL
    runs = {"foveated": 6, "baseline": 6}
    vision = {a: {"uses_frames": True} for a in runs}
    status, reason = honest.comparison_status(["foveated"], vision, True, runs, {"foveated": stuck["flags"]})
    assert status == "not identified" and "alpha CI too narrow (most bootstrap refits" in reason
    assert "more runs or a wider span of model sizes" in honest.remedies("L(N,D)", {"foveated": stuck["flags"]})


def test_an_lc_frontier_the_grid_does_not_bracket_carries_no_verdict():
    """The flag lands on L(C)'s alpha once, keeps its interval, names itself in the reason, and the
    report says what would lift it."""
    rec = {"flags": {"E": [], "A": [], "alpha": []}}
    honest.flag_unbracketed_frontier(rec, None)  # bracketed somewhere, or nothing to tell
    assert rec["flags"]["alpha"] == []
    for _ in range(2):
        honest.flag_unbracketed_frontier(rec, "smallest")
    assert rec["flags"]["alpha"] == [honest.UNBRACKETED["smallest"]]
    assert honest.UNBRACKETED["smallest"] not in honest.NO_INTERVAL
    assert honest.blocking_flags(rec["flags"], rec["flags"]) == [honest.UNBRACKETED["smallest"]]
    assert honest.remedies("L(C)", {"baseline": rec["flags"]}).startswith("baseline: smaller sizes")


def test_the_analysis_flags_the_lc_of_an_arm_whose_grid_never_brackets_a_budget(tmp_path):
    """Sizes on shared budgets (3 per budget): arm "over" has every size above its compute-optimal
    one, arm "spread" brackets it; only "over"'s L(C) carries the flag, and only on the frontier."""
    rng = np.random.default_rng(0)
    rows = []
    for g, sizes in (("over", (3e9, 1e10, 3e10)), ("spread", (1e7, 1e8, 1e9))):
        for c in np.geomspace(1e17, 1e21, 5):  # one frontier cell per budget: 5 points for L(C)
            for n in sizes:
                loss = (1.7 + 400 / n**0.34 + 400 / (c / (6 * n))**0.28) * np.exp(rng.normal(0, 0.003))
                rows.append({"N": n, "D": c / (6 * n), "C": c, "loss": loss, "loss_se": 0.002, "group": g,
                             "config": f"N{n:.0e}", "run_id": f"{g}{n:.0e}{c:.0e}", "n_llm": np.nan,
                             "n_vision": np.nan})
    flag = honest.UNBRACKETED["smallest"]
    fits = analyze_frame(pd.DataFrame(rows), tmp_path, AnalysisOptions(n_bootstrap=20))
    assert flag in fits["laws"]["L(C)"]["over"]["flags"]["alpha"]
    assert flag not in fits["laws"]["L(C)"]["spread"]["flags"]["alpha"]
    every = analyze_frame(pd.DataFrame(rows), tmp_path / "all", AnalysisOptions(n_bootstrap=20, lc_points="all"))
    assert flag not in every["laws"]["L(C)"]["over"]["flags"]["alpha"]
