"""The vision check per run and per cell (fitting/vision.py): a run made blind on purpose (its
visual tokens zeroed) withholds every comparison resting on its arm and is named by its cell;
the fits are still drawn, marked; the seed table flags a cell whose seeds disagree on seeing."""
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fitting import run_analysis
from fitting.table import load_experiment
from fitting.vision import BIMODAL, FALLBACK, REPORTED, run_checks

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from synthetic_experiment import LRS, write_experiment  # noqa: E402

# foveated T2-T2 never sees (zeroed tokens, both seeds); foveated T1-T1 sees with seed 0 only
BLIND = ("foveated:T2-T2", "foveated:T1-T1:s1")


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    root = tmp_path_factory.mktemp("vision")
    exp = write_experiment(root / "exp", variants=("foveated", "baseline", "pooled1"), seeds=2, blind=BLIND)
    return run_analysis(exp, out_dir=root / "analysis", n_bootstrap=30, seed=0), root / "analysis", exp


def test_blind_cells_withhold_their_arms_comparisons_naming_the_cells(analysed):
    fits, out, _ = analysed
    fov = fits["vision"]["foveated"]
    assert fov["uses_frames"] is False and (fov["n_seeing"], fov["n_runs"]) == (9, 18)
    assert fov["blind_cells"] == ["T1-T1: 3 of 6 runs see", "T2-T2: 0 of 6 runs see"]
    assert fov["cells"]["T1-T2"]["n_seeing"] == fov["cells"]["T1-T2"]["n_runs"] == 6
    assert all(v["uses_frames"] and v["n_seeing"] == 18 for g, v in fits["vision"].items() if g != "foveated")
    comps = fits["derived"]["comparisons"]
    for name in ("foveated vs baseline", "foveated vs pooled1"):
        assert comps[name]["status"] == "withheld" and "efficiency_multiplier" not in comps[name]
        assert "in_data" not in comps[name]  # nothing is read off blind runs, not even a data fact
        assert "foveated T2-T2: 0 of 6 runs see" in comps[name]["reason"]
        assert "foveated T1-T1: 3 of 6 runs see" in comps[name]["reason"]
    assert comps["baseline vs pooled1"]["status"] != "withheld"
    alloc = fits["derived"]["optimal_allocation"]["foveated"]
    assert alloc["status"] == "withheld" and "foveated T2-T2" in alloc["reason"]
    # the fits are still computed and drawn, marked as resting on blind runs
    assert fits["laws"]["L(C)"]["foveated"]["status"] == "ok"
    report = (out / "report.md").read_text()
    assert "| L(C) | foveated (rests on blind runs) |" in report and "| L(C) | baseline |" in report
    assert "| L(C) joint | baseline (rests on blind runs) |" in report  # shares alpha with foveated
    drawn = pd.read_csv(out / "loss_vs_flops.csv")
    blind = drawn[drawn["kind"] == "blind run"]
    assert len(blind) == 9 and set(blind["group"]) == {"foveated"}  # 6 runs of T2-T2, 3 of T1-T1 seed 1


def test_per_run_and_per_cell_tables_in_fits_and_report(analysed):
    fits, out, _ = analysed
    runs = json.loads((out / "fits.json").read_text())["vision_runs"]
    assert len(runs) == 54 and all(r["gap_from"] == REPORTED for r in runs)
    t2 = [r for r in runs if (r["group"], r["config"]) == ("foveated", "T2-T2")]
    assert len(t2) == 6 and not any(r["sees"] for r in t2) and all(r["gap"] == 0 for r in t2)
    assert {r["steps"] for r in t2} == {150, 300, 600}  # a cosine trial is its own run
    assert fits["vision_rule"]["z_min"] == 5 and fits["vision_rule"]["rel_floor"] == 0.02
    report = (out / "report.md").read_text()
    top = report.split("## Answer")[0]
    assert "| foveated | T2-T2 | **0 / 6** | 0.002 | 0.0007 |" in top  # seeing runs / runs and the LRs
    assert f"| baseline | T1-T1 | 6 / 6 | {LRS['T1-T1'][0]:g} | {LRS['T1-T1'][1]:g} |" in top
    assert "5 standard errors and is at least 2% of its shuffled-frames loss" in top
    assert "| foveated | T2-T2 | 0 | 600 |" in top and "**no**: gap 0 is not above 5 SE" in top
    answer = report.split("## Answer")[1].split("## Seeds")[0]
    assert "**foveated vs baseline: withheld** — foveated does not use its frames in every run" in answer


def test_the_seed_table_flags_a_cell_whose_seeds_disagree_on_seeing(analysed):
    fits, out, _ = analysed
    cells = {(c["group"], c["config"], c["steps"]): c for c in fits["seeds"]["cells"]}
    for steps in (150, 300, 600):
        c = cells[("foveated", "T1-T1", steps)]
        assert BIMODAL in c["flags"] and (c["n_seeing"], c["n_judged"]) == (1, 2)
        assert BIMODAL not in cells[("foveated", "T2-T2", steps)]["flags"]  # all blind: not bimodal
    assert "**bimodal** (1 of 2 runs see)" in (out / "report.md").read_text()


def test_the_points_table_carries_the_reported_gap_and_the_configs_learning_rates(analysed):
    _, _, exp = analysed
    pts, _ = load_experiment(exp)
    final = pts[pts["step"] == pts["trial_steps"]]
    assert final["eval_vision_gap"].notna().all() and final["eval_vision_gap_se"].notna().all()
    t2 = final[final["config"] == "T2-T2"]
    assert (t2["lr"] == LRS["T2-T2"][0]).all() and (t2["lr_backbone"] == LRS["T2-T2"][1]).all()


def _frame(**cols):
    base = {"group": "a", "config": "T", "run_id": "r0", "seed": 0.0, "steps": 100.0, "C": 1e12, "loss": 1.0,
            "loss_se": 0.01, "loss_shuffled": 1.5, "loss_shuffled_se": 0.01, "vision_gap": np.nan,
            "vision_gap_se": np.nan, "lr": 1e-3, "lr_backbone": 1e-4}
    return pd.DataFrame([{**base, **cols}])


def test_without_a_reported_gap_the_check_falls_back_to_shuffled_minus_true_and_needs_an_se():
    (r,) = run_checks(_frame())
    assert r["gap_from"] == FALLBACK and r["gap"] == pytest.approx(0.5)
    assert r["gap_se"] == pytest.approx(0.01 * np.sqrt(2)) and r["sees"]
    (r,) = run_checks(_frame(loss_shuffled_se=np.nan))  # no SE: cannot be shown to see
    assert not r["sees"] and "no standard error" in r["reason"]
    (r,) = run_checks(_frame(vision_gap=9e-5, vision_gap_se=9e-5 / 8, loss_shuffled=1.00009))
    assert r["gap_from"] == REPORTED and not r["sees"] and "below the floor" in r["reason"]
    # a run is judged at its most-trained evaluation
    two = pd.concat([_frame(), _frame(steps=200.0, C=2e12, loss_shuffled=1.0 + 1e-4)], ignore_index=True)
    (r,) = run_checks(two)
    assert r["steps"] == 200 and not r["sees"]


def test_a_wsd_family_is_one_run_judged_at_its_longest_cooldown():
    from fitting.table import fit_frame

    rows = []
    for seed, gaps in ((0, (0.5, 0.4, 1e-4)), (1, (1e-4, 0.3, 0.6))):  # seed 0 loses it, seed 1 learns late
        for i, (phase, steps) in enumerate((("stable", 480), ("cooldown", 120), ("cooldown", 240), ("cooldown", 480))):
            gap = gaps[i - 1] if i else 0.5
            rows.append({"run_id": f"t{seed}{i}", "variant": "foveated", "config": "T2-T2", "seed": seed,
                         "schedule": "wsd", "wsd_phase": phase, "step": steps, "trial_steps": steps,
                         "samples": steps * 16, "flops": steps * 1e9, "eval_loss": 1.0, "eval_loss_se": 0.01,
                         "n_params": 1e5, "n_params_llm": 5e4, "n_params_vision": 5e4, "lr": 2e-3, "lr_backbone": 1e-3,
                         "eval_loss_shuffled_frames": 1.0 + gap, "eval_loss_shuffled_frames_se": 0.01,
                         "eval_vision_gap": gap, "eval_vision_gap_se": 1e-5})
    runs = run_checks(fit_frame(pd.DataFrame(rows)))
    assert [(r["run_id"], r["steps"], r["sees"]) for r in runs] == [
        ("wsd:foveated:T2-T2:s0", 480, False), ("wsd:foveated:T2-T2:s1", 480, True)]
    assert runs[0]["lr"] == 2e-3 and "below the floor" in runs[0]["reason"]


def test_the_pooled_gap_takes_each_size_at_its_own_largest_step_count():
    """A grid whose sizes run different step counts (the ladder) pools every size's most-trained
    runs, not only the one size that reaches the grid's largest step count."""
    from fitting.vision import vision_gaps

    rows = [_frame(config=c, run_id=f"{c}{s}", seed=float(s), steps=st, C=st * 1e10, loss_shuffled=1.0 + gap)
            for c, st, gap in (("T0", 800.0, 0.4), ("T1", 857.0, 0.8)) for s in range(3)]
    arm, _ = vision_gaps(pd.concat(rows, ignore_index=True), n=200)
    assert arm["a"]["n_pooled"] == 6 and arm["a"]["gap"] == pytest.approx(0.6)
    assert arm["a"]["points"] == "runs at their size's largest step count"
