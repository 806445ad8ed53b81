"""--lr-search (rates x seeds per pair, chosen on loss and vision) and the tables the grids use."""
from __future__ import annotations

import json

import pytest

import tune_scaling
from search_spaces.errors import ConfigError
from search_spaces.grids import GRIDS, expand
from sweep.lr_search import SEARCH_SEED0, choose, search_runs, write_outputs
from sweep.options import SweepOptions
from trainables import learning_rates
from trainables.planner import plan_grid


def opts(**kw) -> SweepOptions:
    return SweepOptions(**kw)


def test_search_runs_one_standalone_run_per_pair_rate_and_seed():
    trials = plan_grid(GRIDS["phase4"], expand("phase4", configs=["S-S", "M-B"], steps=[300, 100]), 24.0)
    runs = search_runs(opts(grid="phase4", lr_grid=(1e-4, 3e-4), lr_seeds=2), trials)
    assert len(runs) == 2 * 2 * 2 * 2  # variants x configs x rates x seeds
    assert {(r.steps, r.milestones, r.wsd_phase, r.checkpoint_every) for r in runs} == {(300, (150, 300), "", 0)}
    assert sorted({r.seed for r in runs}) == [SEARCH_SEED0, SEARCH_SEED0 + 1]  # not the study's seeds
    for r in runs:
        src = next(t for t in trials if (t.variant, t.config) == (r.variant, r.config))
        assert r.micro_batch == src.micro_batch  # the planner's choice comes with the pair
        assert r.lr_backbone / r.lr == pytest.approx(src.lr_backbone / src.lr)  # the ratio is kept
    # default rates: the pair's current rate x 1/4 .. 2; the study's schedule, standalone
    wsd = search_runs(opts(grid="smoke", schedule="wsd", lr_seeds=1), expand("smoke", ["T1-T1"], ["foveated"]))
    assert [r.lr for r in wsd] == pytest.approx([GRIDS["smoke"].settings["lr"] * f for f in (0.25, 0.5, 1, 2)])
    assert {(r.schedule, r.steps, r.fork_from) for r in wsd} == {("wsd", max(GRIDS["smoke"].steps), "")}


def record(lr, seed, loss, gap=1.0, se=0.01, shuffled=2.0, status="ok", variant="foveated", config="T1-T1"):
    end = {"step": 480, "eval_loss": loss, "eval_loss_se": 0.01, "gap": gap, "gap_se": se,
           "sees": learning_rates_sees(gap, se, shuffled)}
    return {"variant": variant, "config": config, "lr": lr, "lr_backbone": lr, "seed": seed, "steps": 480,
            "status": status, "error": None, "half": dict(end, step=240), "end": end}


def learning_rates_sees(gap, se, shuffled):
    from search_spaces.vision_rule import sees

    return sees(gap, se, shuffled)


def test_choice_needs_every_seed_to_see_and_takes_the_smallest_rate_within_one_se_of_the_best():
    recs = [record(1e-3, s, loss) for s, loss in enumerate((0.602, 0.612, 0.607))]  # mean 0.607
    recs += [record(2e-3, s, loss) for s, loss in enumerate((0.60, 0.61, 0.605))]  # best mean 0.605
    recs += [record(4e-3, 0, 0.40), record(4e-3, 1, 0.41), record(4e-3, 2, 0.99, gap=9e-5, se=1e-5)]  # one blind
    recs += [record(8e-3, s, 0.5, status="error") for s in range(3)]
    entry = choose(recs)["foveated"]["T1-T1"]
    assert entry["best_mean_lr"] == 2e-3 and entry["lr"] == 1e-3  # 0.607 <= 0.605 + se(2e-3) = 0.6079
    assert entry["seeing"] == "3/3" and entry["at_grid_edge"]  # 1e-3 is the grid's smallest rate
    assert entry["by_rate"]["0.004"]["qualifies"] is False and entry["by_rate"]["0.004"]["seeing"] == 2
    assert entry["by_rate"]["0.008"]["qualifies"] is False  # failed runs never qualify
    # a clearly better rate is taken even when larger
    recs2 = [record(1e-3, s, 0.70 + s / 100) for s in range(3)] + [record(2e-3, s, 0.50 + s / 100) for s in range(3)]
    assert choose(recs2)["foveated"]["T1-T1"]["lr"] == 2e-3
    # two seeds that agree by chance (SE 5e-5) do not pin the choice: the SE is floored at the
    # pair's median SE (here 0.01), so the calmer 2e-3, 0.0019 worse, is taken
    recs3 = [record(1e-3, 0, 0.84), record(1e-3, 1, 0.87), record(2e-3, 0, 0.796), record(2e-3, 1, 0.820),
             record(4e-3, 0, 0.8057), record(4e-3, 1, 0.8058)]
    assert choose(recs3)["foveated"]["T1-T1"]["best_mean_lr"] == 4e-3
    assert choose(recs3)["foveated"]["T1-T1"]["lr"] == 2e-3
    # nothing qualifies: no rate, a reason
    blind = [record(1e-3, s, 1.0, gap=1e-4, se=1e-5) for s in range(2)]
    assert choose(blind)["foveated"]["T1-T1"]["lr"] is None


def make_table(tmp_path, recs, grid="smoke"):
    runs = expand(grid, ["T1-T1"], ["foveated"], [480])
    out = tmp_path / "search"
    out.mkdir(exist_ok=True)
    write_outputs(out, opts(grid=grid), [r.replace(seed=1000) for r in runs], recs)
    return out / "lr_table.json"


def test_a_written_table_assigns_its_rates_and_is_strict_only_when_named(tmp_path):
    path = make_table(tmp_path, [record(3e-3, s, 0.5 + s / 100) for s in range(3)])
    table = learning_rates.load_table(path)
    assert "3/3" in path.with_name("lr_search.md").read_text().replace(" ", "")
    trials = expand("smoke", ["T1-T1"], ["foveated"], [120, 480])
    out, source = learning_rates.assign(GRIDS["smoke"], trials, table)
    assert {(t.lr, t.lr_backbone) for t in out} == {(3e-3, 3e-3)} and str(path) in source
    # an override wins for its own field only
    out, source = learning_rates.assign(GRIDS["smoke"], trials, table, lr_backbone=1e-4)
    assert {(t.lr, t.lr_backbone) for t in out} == {(3e-3, 1e-4)} and "--lr-backbone" in source
    # another batch size than searched: a named table (--lr-from) refuses it, naming the setting
    bigger = [t.replace(global_batch=32, micro_batch=32) for t in trials]
    with pytest.raises(ConfigError, match="global_batch=16"):
        learning_rates.assign(GRIDS["smoke"], bigger, table, strict=True)
    # ... the default table falls back to the size rule, and the line says for which trials
    out, source = learning_rates.assign(GRIDS["smoke"], bigger, table)
    assert {t.lr for t in out} == {GRIDS["smoke"].settings["lr"]}  # T1-T1 is the smoke rule's anchor
    assert "2 of 2 trials from the size rule (foveated T1-T1" in source
    # a pair the table lacks: the same, strict or by the rule; explicit rates cover it
    other = expand("smoke", ["T2-T2"], ["baseline"], [480])
    with pytest.raises(ConfigError, match="no rate for baseline T2-T2"):
        learning_rates.assign(GRIDS["smoke"], other, table, strict=True)
    (by_rule,), _ = learning_rates.assign(GRIDS["smoke"], other, table)
    assert by_rule.lr < GRIDS["smoke"].settings["lr"]  # T2-T2 is larger than the anchor: a smaller rate
    out, _ = learning_rates.assign(GRIDS["smoke"], other, table, lr=1e-3, lr_backbone=1e-3)
    assert (out[0].lr, out[0].lr_backbone) == (1e-3, 1e-3)


def test_a_table_from_before_a_setting_existed_covers_only_that_settings_default(tmp_path):
    path = make_table(tmp_path, [record(3e-3, s, 0.5) for s in range(3)])
    doc = json.loads(path.read_text())
    del doc["settings"]["vit_position_std"]  # as written before the setting existed
    path.write_text(json.dumps(doc))
    table = learning_rates.load_table(path)
    trials = expand("smoke", ["T1-T1"], ["foveated"], [480])
    (same,), _ = learning_rates.assign(GRIDS["smoke"], trials, table, strict=True)
    assert same.lr == 3e-3  # searched with the default: still covered
    wide = [t.replace(vit_position_std=1.0) for t in trials]
    with pytest.raises(ConfigError, match="vit_position_std=None"):
        learning_rates.assign(GRIDS["smoke"], wide, table, strict=True)
    (by_rule,), source = learning_rates.assign(GRIDS["smoke"], wide, table)
    assert by_rule.lr == GRIDS["smoke"].settings["lr"] and "1 of 1 trials from the size rule" in source


def test_the_size_rule_scales_with_n_to_the_minus_one_third_and_anchors_every_phase_grid_alike():
    grid = GRIDS["phase4"]
    trials = expand("phase4", ["S-S", "L-L"], ["baseline"], [100])
    out, source = learning_rates.assign(grid, trials)
    s, l_ = out
    assert (s.lr, s.lr_backbone) == (grid.settings["lr"], grid.settings["lr_backbone"])  # the anchor
    from trainables.parameters import param_counts_for

    ratio = param_counts_for(l_, 49152).total / param_counts_for(s, 49152).total
    assert l_.lr == pytest.approx(s.lr * ratio ** (-1 / 3)) and "not searched" in source
    # M-S gets the same rate in phase2 (its only config) as in phase4
    (m2,), _ = learning_rates.assign(GRIDS["phase2"], expand("phase2", variants=["baseline"], steps=[100]))
    (m4,), _ = learning_rates.assign(grid, expand("phase4", ["M-S"], ["baseline"], [100]))
    assert m2.lr == m4.lr


def test_cli_dry_run_shows_each_trials_rates_and_their_source(tmp_path, capsys):
    empty = ["--storage-path", str(tmp_path / "empty")]  # no searched table there: the committed one
    assert tune_scaling.main(["--grid", "smoke", "--dry-run", "--format", "json", *empty]) == 0
    doc = json.loads(capsys.readouterr().out)
    table = json.loads(learning_rates.table_path(GRIDS["smoke"]).read_text())
    for row in doc["trials"]:
        assert row["lr"] == table["chosen"][row["variant"]][row["config"]]["lr"]
    assert "smoke.json" in doc["learning_rates"]
    assert tune_scaling.main(["--grid", "smoke", "--dry-run", "--lr", "3e-3", *empty]) == 0
    out = capsys.readouterr().out
    assert "0.003 / " in out and "--lr 0.003 (command line)" in out
    # a searched table for this --name on this storage is picked up without --lr-from
    storage = tmp_path / "res"
    (storage / "mine_lr_search").mkdir(parents=True)
    path = make_table(tmp_path, [record(7e-4, s, 0.5) for s in range(3)])
    (storage / "mine_lr_search" / "lr_table.json").write_text(path.read_text())
    argv = ["--grid", "smoke", "--configs", "T1-T1", "--variants", "foveated", "--dry-run", "--format", "json"]
    assert tune_scaling.main(argv + ["--name", "mine", "--storage-path", str(storage)]) == 0
    assert {r["lr"] for r in json.loads(capsys.readouterr().out)["trials"]} == {7e-4}
    # broken tables are one line and exit 2
    (tmp_path / "junk.json").write_text("{not json")
    for bad in (tmp_path / "junk.json", tmp_path / "absent.json"):
        assert tune_scaling.main(["--grid", "smoke", "--lr-from", str(bad), "--dry-run"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and err.startswith("error: learning-rate table")


@pytest.mark.slow
def test_lr_search_through_ray_records_every_run_and_grows_without_retraining(tmp_path, monkeypatch, capsys):
    import ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    argv = ["--grid", "smoke", "--configs", "T1-T1", "--variants", "foveated", "--storage-path", str(tmp_path),
            "--name", "lrs", "--lr-search", "--lr-seeds", "1", "--lr-steps", "14"]
    table = tmp_path / "lrs_lr_search" / "lr_table.json"

    def search(rates: str) -> None:
        try:
            tune_scaling.main(argv + ["--lr-grid", rates])
        finally:
            ray.shutdown()  # each command line is its own process, each with its own Ray

    search("1e-3,4e-3")  # 14 steps: nobody sees yet, no rate chosen
    doc = json.loads(table.read_text())
    assert [(r["lr"], r["seed"], r["status"]) for r in doc["runs"]] == [(1e-3, 1000, "ok"), (4e-3, 1000, "ok")]
    assert all(r["end"]["eval_loss"] > 0 and r["half"]["step"] == 7 for r in doc["runs"])
    assert doc["unresolved"] == {"foveated T1-T1": "no rate in the grid made every seed see its frames at "
                                                   "the horizon"}
    assert "lr search 2/2: foveated T1-T1" in capsys.readouterr().out
    # the same command again: nothing to train, the same records (read from the runs' files)
    search("1e-3,4e-3")
    again = capsys.readouterr().out
    assert "2 already done" in again and "lr search 1/" not in again
    assert json.loads(table.read_text())["runs"] == doc["runs"]
    # a wider grid trains only the new rate; the choice weighs all three
    search("1e-3,2e-3")
    grown = capsys.readouterr().out
    assert "1 already done" in grown and "lr search 1/1: foveated T1-T1 lr 0.002" in grown
    assert [r["lr"] for r in json.loads(table.read_text())["runs"]] == [1e-3, 2e-3, 4e-3]
