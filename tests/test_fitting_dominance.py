"""fitting/dominance.py: the cheapest cell of one arm whose every run beats every run of the other."""
import numpy as np
import pandas as pd

from fitting import dominance
from fitting.report import _in_data


def _frame(cells):
    """cells: (group, config, steps, C, [loss per run])."""
    rows = [dict(group=g, config=cfg, steps=steps, C=C, loss=loss, loss_se=0.004, run_id=f"{g}-{cfg}-{i}")
            for g, cfg, steps, C, losses in cells for i, loss in enumerate(losses)]
    return pd.DataFrame(rows)


CELLS = [
    ("baseline", "S", 100, 1e11, [0.70, 0.62, 0.64]),  # cheapest, but one run is worse than foveated's best
    ("baseline", "S", 200, 2e11, [0.55, 0.57, 0.56]),  # the cheapest cell whose every run wins
    ("baseline", "M", 200, 6e11, [0.40, 0.41, 0.42]),  # wins too, but costs more
    ("foveated", "S", 800, 3e11, [0.66, 0.61, 0.63]),
    ("foveated", "M", 800, 1e12, [0.60, 0.59, 0.61]),  # foveated's best run: 0.59 at 1e12
]


def test_the_cheapest_cell_whose_every_run_beats_the_other_arms_best_run():
    d = dominance.between(_frame(CELLS), "foveated", "baseline")
    assert (d["winner"], d["loser"], d["config"], d["steps"], d["C"]) == ("baseline", "foveated", "S", 200, 2e11)
    assert (d["runs"], d["worst_loss"], d["loser_best_loss"], d["loser_best_C"]) == (3, 0.57, 0.59, 1e12)
    assert np.isclose(d["compute_ratio"], 5.0)  # foveated spent up to 1e12 without reaching 0.57
    assert dominance.between(_frame(CELLS), "baseline", "foveated") == d  # the order of the pair does not matter
    text = _in_data({"in_data": d})
    assert "every one of the 3 runs of baseline S at 200 steps (2e+11 FLOPs)" in text and "5x that compute" in text


def test_no_statement_when_the_arms_overlap_a_cell_has_too_few_runs_or_the_loser_spent_less():
    overlap = [c if c[0] != "foveated" else (*c[:4], [x - 0.2 for x in c[4]]) for c in CELLS]  # foveated best 0.39
    assert dominance.between(_frame(overlap), "foveated", "baseline") is None
    two_runs = [(g, cfg, s, C, losses[:2]) if g == "baseline" else (g, cfg, s, C, losses)
                for g, cfg, s, C, losses in CELLS]
    assert dominance.between(_frame(two_runs), "foveated", "baseline") is None  # < MIN_RUNS runs per cell
    cheap_loser = [c if c[0] != "foveated" else (*c[:3], 1e10, c[4]) for c in CELLS]
    assert dominance.between(_frame(cheap_loser), "foveated", "baseline") is None  # "did not reach it" says nothing
    assert _in_data({"in_data": None}) == ""


def test_a_lead_inside_the_evaluation_noise_is_not_a_fact():
    close = [c if c[:2] != ("baseline", "S") or c[2] != 200 else (*c[:4], [0.55, 0.575, 0.56]) for c in CELLS]
    frame = _frame(close)  # 0.575 vs 0.59: 0.015 < 2 x hypot(0.004, 0.004)? no: 0.015 > 0.0113, still a fact
    assert dominance.between(frame, "foveated", "baseline")["steps"] == 200
    frame.loc[frame["loss"] == 0.575, "loss_se"] = 0.01  # now 0.015 < 2 x hypot(0.01, 0.004) = 0.0215
    assert dominance.between(frame, "foveated", "baseline")["config"] == "M"  # the next cheapest clear cell
    frame["loss_se"] = np.nan  # no SEs known: no margin
    assert dominance.between(frame, "foveated", "baseline")["steps"] == 200


def test_unknown_steps_are_left_out_of_the_sentence():
    d = dominance.between(_frame([(g, cfg, np.nan, C, ls) for g, cfg, _, C, ls in CELLS]), "foveated", "baseline")
    assert "baseline S (2e+11 FLOPs)" in _in_data({"in_data": d})
    assert "baseline S (2e+11 FLOPs)" in _in_data({"in_data": {**d, "steps": None}})  # as fits.json stores NaN
