"""--lr-search (Optuna, one study per variant x config) and --lr-from (the grid uses its rates)."""
from __future__ import annotations

import json
import sqlite3

import pytest

import tune_scaling
from search_spaces.errors import ConfigError
from search_spaces.grids import GRIDS, expand
from search_spaces.trial import TrialConfig


def test_search_targets_one_short_run_per_pair():
    from sweep.lr_search import search_targets

    from trainables.planner import plan_grid

    trials = plan_grid(GRIDS["phase4"], expand("phase4", configs=["S-S", "M-B"], steps=[300, 100]), 24.0)
    assert {t.micro_batch for t in trials} != {TrialConfig.micro_batch}  # planned, as the CLI does
    targets = search_targets(trials)
    assert sorted(targets) == [(v, c) for v in ("baseline", "foveated") for c in ("M-B", "S-S")]
    for (variant, config), t in targets.items():
        assert (t.variant, t.config, t.steps, t.milestones, t.checkpoint_every) == (variant, config, 100, (100,), 0)
        # the pair's own planner settings (micro-batch etc.) come with it
        src = next(s for s in trials if (s.variant, s.config) == (variant, config))
        assert t.micro_batch == src.micro_batch and t.lr_backbone / t.lr == pytest.approx(0.2)
    assert {t.steps for t in search_targets(trials, steps=40).values()} == {40}
    with pytest.raises(ConfigError):
        search_targets(trials, steps=0)


def write_best(path, lrs):
    path.write_text(json.dumps({"grid": "smoke", "lrs": lrs}))
    return str(path)


def test_lr_from_overrides_each_pair_and_refuses_a_missing_one(tmp_path, capsys):
    from sweep.lr_search import apply_lrs

    trials = expand("smoke", configs=["T1-T1", "T2-T2"], variants=["foveated"], steps=[20, 40])
    best = write_best(tmp_path / "best.json", {"foveated": {"T1-T1": {"lr": 1e-3, "lr_backbone": 5e-4},
                                                            "T2-T2": {"lr": 2e-3, "lr_backbone": 1e-3}}})
    out = apply_lrs(trials, best)
    assert [(t.config, t.steps, t.lr, t.lr_backbone) for t in out] == [
        ("T1-T1", 20, 1e-3, 5e-4), ("T1-T1", 40, 1e-3, 5e-4), ("T2-T2", 20, 2e-3, 1e-3), ("T2-T2", 40, 2e-3, 1e-3)]
    assert [t.replace(lr=0.1, lr_backbone=0.1) for t in out] == [t.replace(lr=0.1, lr_backbone=0.1) for t in trials]

    # through the CLI: a pair missing from the file is one line and exit 2, before any Ray
    rc = tune_scaling.main(["--grid", "smoke", "--configs", "T1-T1", "--lr-from", best, "--dry-run"])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: --lr-from") and "baseline T1-T1" in err
    bad = write_best(tmp_path / "bad.json", {"foveated": {"T1-T1": {"lr": -1, "lr_backbone": 1}}})
    with pytest.raises(ConfigError, match="bad learning rates"):
        apply_lrs(trials[:1], bad)
    (tmp_path / "junk.json").write_text("{not json")
    for path in (tmp_path / "junk.json", tmp_path / "absent.json"):
        assert tune_scaling.main(["--grid", "smoke", "--lr-from", str(path), "--dry-run"]) == 2


def test_lr_search_persists_the_study_and_the_grid_trains_with_its_best_lr(tmp_path, monkeypatch, capsys):
    import ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    common = ["--grid", "smoke", "--schedule", "cosine", "--configs", "T1-T1", "--variants", "foveated", "--seeds", "1", "--storage-path",
              str(tmp_path / "res"), "--name", "lrs", "--no-fit", "--max-concurrent", "2"]
    search = common + ["--lr-search", "--lr-trials", "2", "--lr-steps", "8", "--lr-min", "1e-3", "--lr-max", "8e-3"]
    try:
        assert tune_scaling.main(search) == 0
    finally:
        ray.shutdown()
    out_dir = tmp_path / "res" / "lrs_lr_search"
    doc = json.loads((out_dir / "best_lr.json").read_text())
    entry = doc["lrs"]["foveated"]["T1-T1"]
    assert 1e-3 <= entry["lr"] <= 8e-3 and entry["lr_backbone"] == pytest.approx(entry["lr"])  # smoke ratio 1
    assert entry["n_trials"] == 2 and doc["search_steps"] == 8
    # the study is in the sqlite file: both trials, the best one being what the JSON says
    with sqlite3.connect(out_dir / "optuna.db") as db:
        values = [v for (v,) in db.execute("select value from trial_values")]
        names = [n for (n,) in db.execute("select study_name from studies")]
    assert names == ["foveated_T1-T1_8"] and len(values) == 2
    assert min(values) == pytest.approx(entry["eval_loss"])

    # a second --lr-search finds the study complete: no new trials
    try:
        assert tune_scaling.main(search) == 0
    finally:
        ray.shutdown()
    assert "0 of 2 trials" in capsys.readouterr().out

    # the grid with --lr-from: its trial trains at the searched rates
    try:
        assert tune_scaling.main(common + ["--steps", "8", "--name", "grid", "--lr-from",
                                           str(out_dir / "best_lr.json")]) == 0
    finally:
        ray.shutdown()
    (params,) = list((tmp_path / "res" / "grid").glob("*/params.json"))
    trial = json.loads(params.read_text())["trial"]
    assert (trial["lr"], trial["lr_backbone"]) == (entry["lr"], entry["lr_backbone"])
