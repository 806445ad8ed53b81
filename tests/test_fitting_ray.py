"""End to end on a real (tiny) Ray Tune experiment: the loader's contract and run_analysis.

One module-scoped fixture runs the experiment (~20 s): a function trainable that reports the
contract's keys from a known law, two variants x 2 tiny sizes x 3 step counts (the smoke
grid's shape), plus a trial that raises, one that reports NaN, and one that re-reports a step.
"""
import json
import math
import subprocess
import sys

import pandas as pd
import pytest

from fitting import run_analysis
from fitting.table import POINT_COLUMNS, load_experiment

SIZES = {"T1-T1": (3.0e5, 1.0e5, 1.5e5), "T2-T2": (8.0e5, 3.0e5, 4.0e5)}  # total, llm, vision
STEPS = (20, 40, 80)
BATCH = 16


# foveated: lower data term (fewer, better-placed visual tokens), slightly higher floor
COEF = {"foveated": (1.2, 30.0, 40.0), "baseline": (1.1, 30.0, 90.0)}


def _law(variant, n, samples):
    e, a, b = COEF[variant]
    return e + a / n**0.3 + b / samples**0.4


def _specs():
    specs = [{"variant": v, "config": c, "steps": s, "mode": "ok"}
             for v in ("foveated", "baseline") for c in SIZES for s in STEPS]
    specs.append({"variant": "baseline", "config": "T1-T1", "steps": 30, "mode": "error"})
    specs.append({"variant": "foveated", "config": "T1-T1", "steps": 30, "mode": "nan"})
    specs.append({"variant": "foveated", "config": "T2-T2", "steps": 10, "mode": "resumed"})
    return specs


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    ray = pytest.importorskip("ray")
    from ray import tune

    # Everything the trainable uses is local or plain data: Ray pickles it by value, and the
    # workers cannot import this test module by name.
    coef, sizes, batch = COEF, SIZES, BATCH

    def trainable(config):
        spec = config["trial"]
        n, n_llm, n_vis = sizes[spec["config"]]
        e, a, b = coef[spec["variant"]]
        flops_per_sample = (6.0 if spec["variant"] == "baseline" else 4.0) * n * 10
        milestones = [spec["steps"] // 4, spec["steps"] // 2, spec["steps"]]
        if spec["mode"] == "resumed":  # re-reports its middle milestone after a "restart"
            milestones = [milestones[0], milestones[1], milestones[1], milestones[2]]
        for i, step in enumerate(milestones):
            if spec["mode"] == "error" and i == 1:
                raise RuntimeError("simulated OOM")
            samples = step * batch
            loss = e + a / n**0.3 + b / samples**0.4 + (0.0 if step == spec["steps"] else 0.05)
            if spec["mode"] == "nan" and i == 2:
                loss = float("nan")
            if spec["mode"] == "resumed" and i == 1:
                loss += 1.0  # the stale first report of this step; the later one must win
            final = {"eval_loss_shuffled_frames": loss + 0.5, "eval_loss_shuffled_frames_se": 0.01} \
                if step == spec["steps"] else {}
            tune.report({
                **final, "variant": spec["variant"], "config": spec["config"], "step": step, "samples": samples,
                "tokens": samples * 40, "train_loss": loss, "eval_loss": loss, "eval_loss_se": 0.01,
                "lr": 1e-3, "flops": flops_per_sample * samples, "n_params": n, "n_params_llm": n_llm,
                "n_params_vision": n_vis, "trial_steps": spec["steps"], "milestone": True,
                "schedule": "cosine",
            })

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        root = tmp_path_factory.mktemp("ray_results")
        tuner = tune.Tuner(trainable, param_space={"trial": tune.grid_search(_specs())},
                           run_config=tune.RunConfig(name="smoke", storage_path=str(root), verbose=0))
        tuner.fit()
    finally:
        if started:
            ray.shutdown()
    return root / "smoke"


@pytest.fixture(scope="module")
def analysed(experiment, tmp_path_factory):
    out = tmp_path_factory.mktemp("analysis")
    return run_analysis(experiment, out_dir=out, n_bootstrap=50, seed=0), out


def test_points_table_contract(experiment):
    pts, dropped = load_experiment(experiment)
    assert list(pts.columns) == POINT_COLUMNS
    # 12 good trials x 3 milestones + the resumed one (3 distinct steps); error + NaN trials out
    assert len(pts) == 12 * 3 + 3
    assert (pts["group"] == pts["variant"]).all()
    reasons = " ".join(d["reason"] for d in dropped)
    assert len(dropped) == 2 and "ERROR" in reasons and "non-finite" in reasons
    resumed = pts[(pts["config"] == "T2-T2") & (pts["trial_steps"] == 10)]
    assert resumed["step"].tolist() == [2, 5, 10]
    mid = resumed[resumed["step"] == 5]["eval_loss"].iloc[0]
    assert mid == pytest.approx(_law("foveated", SIZES["T2-T2"][0], 5 * BATCH) + 0.05)  # last report won
    # the learning rates come from the trial config (here: none), never a report's scheduled "lr"
    assert pts["lr"].isna().all() and pts["lr_backbone"].isna().all()


def test_run_analysis_smoke_grid(analysed):
    fits, out = analysed
    assert (out / "points.parquet").exists() and (out / "fits.json").exists() and (out / "report.md").exists()
    on_disk = json.loads((out / "fits.json").read_text())
    assert on_disk["laws"]["L(C)"]["foveated"]["status"] == "ok"
    for variant in ("foveated", "baseline"):
        rec = on_disk["laws"]["L(C)"][variant]
        assert set(rec["params"]) == {"E", "A", "alpha"} and set(rec["ci95"]) == {"E", "A", "alpha"}
        lnd = on_disk["laws"]["L(N,D)"][variant]
        assert lnd["status"] == "skipped" and "not identifiable" in lnd["reason"]
        assert "model sizes (N)" in lnd["reason"]
    assert len(pd.read_parquet(out / "points.parquet")) == 39
    report = (out / "report.md").read_text()
    assert "simulated OOM" in report and "non-finite" in report  # dropped trials are listed
    assert "not identifiable" in report


def test_plots_written_or_skipped_with_reason(analysed):
    fits, out = analysed
    names = {p["name"]: p for p in fits["plots"]}
    assert set(names) == {"loss_vs_flops", "loss_vs_size", "iso_loss", "efficiency_ratio", "optimal_size"}
    for p in names.values():
        if p["status"] == "ok":
            assert (out / p["png"]).stat().st_size > 1000 and len(pd.read_csv(out / p["csv"])) > 0
        else:
            assert p["reason"]
    assert names["loss_vs_flops"]["status"] == "ok" and names["efficiency_ratio"]["status"] == "ok"
    assert names["optimal_size"]["status"] == "skipped"  # no L(N,D), no IsoFLOP with 2 sizes


def test_derived_present_with_ci(analysed):
    fits, _ = analysed
    d = fits["derived"]
    assert set(d["scaling_exponent"]) == {"foveated", "baseline"}
    assert all(v["uses_frames"] and v["ci95"][0] > 0 for v in fits["vision"].values())
    comp = d["comparisons"]["foveated vs baseline"]
    assert comp["status"] != "withheld", comp["reason"]
    cr = comp["crossover"]
    assert "crossovers" in cr and len(cr["search_range"]) == 2
    em = comp["efficiency_multiplier"]["ref_to_match_treat"]
    assert len(em["value"]) == len(d["compute_grid"]) and em["ci95"] is not None
    best = pd.DataFrame(d["best_configs"])
    assert {"config", "N_llm", "N_vision", "vision_share"} <= set(best.columns)
    assert best["vision_share"].between(0, 1).all()


def test_cli_on_experiment_dir(experiment, tmp_path):
    r = subprocess.run([sys.executable, "-m", "fitting", str(experiment), "--out", str(tmp_path),
                        "--bootstrap", "5"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    fits = json.loads((tmp_path / "fits.json").read_text())
    assert fits["bootstrap"]["n"] == 5
    alpha = fits["laws"]["L(C)"]["baseline"]["params"]["alpha"]
    assert math.isfinite(alpha) and alpha > 0


def test_missing_experiment_dir_is_a_fit_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "fitting", str(tmp_path / "nope")], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().startswith("error:") and len(r.stderr.strip().splitlines()) == 1


def test_a_run_trained_twice_is_named_and_dropped(tmp_path):
    """Two drivers on one experiment (before the driver lock) trained every trial twice, in
    directories of their own: the fits keep one copy of each run and list every other copy."""
    import shutil

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "benchmarks"))
    from synthetic_experiment import write_experiment

    exp = write_experiment(tmp_path / "exp", seeds=2)
    original, none = load_experiment(exp)
    assert none == []
    twins = {}
    for i, d in enumerate(sorted(p for p in exp.iterdir() if p.is_dir())[:7]):
        copy = exp / f"{d.name}_again"
        shutil.copytree(d, copy)
        rows = [json.loads(line) for line in (copy / "result.json").read_text().splitlines()]
        twins[f"zz{i}"] = rows[0]["trial_id"]
        (copy / "result.json").write_text("".join(json.dumps({**r, "trial_id": f"zz{i}"}) + "\n" for r in rows))
    points, dropped = load_experiment(exp)
    assert sorted(d["run_id"] for d in dropped) == sorted(twins)  # kept: the first trial id of equals
    for d in dropped:
        assert d["reason"].startswith(f"duplicate of trial {twins[d['run_id']]} (same variant, config, steps, seed")
    pd.testing.assert_frame_equal(points, original)
