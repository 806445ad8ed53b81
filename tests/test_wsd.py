"""WSD schedule with cooldown branches forked from Ray checkpoints: the families, the
LR curve across a fork, the fork check, the searcher, and the whole thing through Ray."""
from __future__ import annotations

import math

import pytest
import torch

from search_spaces.grids import expand
from trainables.planner import dry_run_rows
from search_spaces.errors import ConfigError
from search_spaces.wsd import schedule_comparison, wsd_families
from trainables import checkpoint as ckpt
from trainables.engine import make_scheduler

MIN = 0.1


def family(steps=(100, 200, 400), frac=0.2, shape="linear", **kw):
    trials = expand("smoke", configs=["T1-T1"], variants=["baseline"], steps=list(steps), overrides=kw)
    (fam,) = wsd_families(trials, frac, shape)
    return fam


def closed_form(t: int, warmup: int, fork: int, end: int, shape: str) -> float:
    """LR factor of optimizer step t (1-based): transformers' WSD lambda at t - 1."""
    u = t - 1
    if u < warmup:
        return MIN + (1 - MIN) * u / warmup
    if u < fork:
        return 1.0
    p = (u - fork) / (end - fork)
    return MIN + (1 - MIN) * ((1 - p) if shape == "linear" else (1 - math.sqrt(p)))


def test_families_fork_points_and_compute():
    fam = family()
    assert [c.steps for c in fam.cooldowns] == [100, 200, 400]
    assert fam.fork_steps == (80, 160, 320)
    assert fam.stable.steps == 320 and fam.stable.milestones == (80, 160, 320)
    assert fam.stable.wsd_phase == "stable" and {c.wsd_phase for c in fam.cooldowns} == {"cooldown"}
    assert {t.warmup for t in fam.trials()} == {10}  # one warmup for the family
    # compute: S_k (1 - f) + f sum(S_i) steps vs sum(S_i)
    trials = expand("smoke", configs=["T1-T1"], variants=["baseline"], steps=[100, 200, 400])
    comp = schedule_comparison(dry_run_rows(trials, 24.0), dry_run_rows(fam.trials(), 24.0), 0.2)
    assert comp["wsd_over_cosine"] == pytest.approx((320 + 0.2 * 700) / 700)


def test_invalid_wsd_settings_are_one_line_errors():
    with pytest.raises(ConfigError, match="share a fork"):
        family(steps=(100, 101), frac=0.9)  # both fork at step 10
    with pytest.raises(ConfigError, match="fork"):
        family(steps=(10, 200), warmup_steps=10)  # warmup 10 > fork 8
    with pytest.raises(ConfigError, match="cooldown_frac"):
        family(frac=1.0)
    base = family().cooldowns[0]
    with pytest.raises(ConfigError, match="fork_from is only"):
        base.replace(wsd_phase="", fork_from="/x")
    with pytest.raises(ConfigError, match="explicit warmup_steps"):
        base.replace(warmup_steps=-1)
    with pytest.raises(ConfigError, match="cooldown_shape"):
        base.replace(cooldown_shape="cosine")


@pytest.mark.parametrize("shape", ["linear", "1-sqrt"])
def test_lr_follows_the_schedule_across_the_fork(shape):
    """Step the stable trial's scheduler to a fork, hand its state to each cooldown's scheduler
    (as DeepSpeed's load_checkpoint does) and tabulate the LR of every step against the closed form."""
    fam = family(shape=shape, lr=1.0, lr_backbone=0.5)
    def groups():
        return [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in (1.0, 0.5)]

    opt = torch.optim.SGD(groups(), lr=1.0)
    stable = make_scheduler(opt, fam.stable)
    table, saved = [], {}
    for t in range(1, fam.stable.steps + 1):
        table.append([g["lr"] for g in opt.param_groups])
        opt.step()
        stable.step()
        if t in fam.fork_steps:
            saved[t] = (stable.state_dict(), opt.state_dict())
    for t, lrs in enumerate(table, 1):  # the stable trial never decays
        assert lrs == pytest.approx([f * closed_form(t, 10, 10**9, 10**9 + 1, shape) for f in (1.0, 0.5)], abs=1e-12)
    for c in fam.cooldowns:
        opt2 = torch.optim.SGD(groups(), lr=1.0)
        sched = make_scheduler(opt2, c)
        sd, osd = saved[c.fork_step]
        opt2.load_state_dict(osd)
        sched.load_state_dict(sd)
        for t in range(c.fork_step + 1, c.steps + 1):
            want = closed_form(t, 10, c.fork_step, c.steps, shape)
            assert [g["lr"] for g in opt2.param_groups] == pytest.approx([want, 0.5 * want], abs=1e-12), (c.steps, t)
            opt2.step()
            sched.step()
        assert sched.get_last_lr() == pytest.approx([MIN, 0.5 * MIN])


def test_fork_check_allows_only_the_family_differences(tmp_path):
    fam = family()
    (tmp_path / ckpt.CONFIG_FILE).write_text(fam.stable.to_json())
    cooldown = fam.cooldowns[1].replace(fork_from=str(tmp_path))
    ckpt.check_compatible(tmp_path, cooldown, fork=True)
    with pytest.raises(ConfigError, match="different trial config"):
        ckpt.check_compatible(tmp_path, cooldown)  # an ordinary resume must match exactly
    with pytest.raises(ConfigError, match=r"lr: [0-9.e-]+ -> 0.001"):
        ckpt.check_compatible(tmp_path, cooldown.replace(lr=1e-3), fork=True)
    (tmp_path / ckpt.CONFIG_FILE).write_text(fam.cooldowns[2].to_json())
    with pytest.raises(ConfigError, match="not a WSD stable"):
        ckpt.check_compatible(tmp_path, cooldown, fork=True)


def test_searcher_forks_once_saves_and_finishes(tmp_path):
    from ray.tune.search import Searcher

    from sweep.wsd import WsdSearcher

    fam = family(steps=(100, 200))
    s = WsdSearcher([fam])
    assert s.total_trials == 3
    first = s.suggest("s1")["trial"]
    assert first["wsd_phase"] == "stable" and first["steps"] == 160
    assert s.suggest("x") is None  # waiting for the fork at 80
    s.on_trial_result("s1", {"step": 40, "milestone": False})  # not a milestone: no fork
    assert s.suggest("x") is None
    s.on_trial_result("s1", {"step": 80, "milestone": True, "checkpoint_dir_name": "checkpoint_000000"})
    s.on_trial_result("s1", {"step": 80, "milestone": True, "re_reported": True})  # a restored trial's re-sent report: no second fork
    s.save(tmp_path / "state.pkl")
    restored = WsdSearcher([])
    restored.restore(tmp_path / "state.pkl")
    for searcher in (s, restored):
        c1 = searcher.suggest("c1")["trial"]
        # the stable trial's directory, relative to the experiment: no checkpoint index, no absolute path
        assert c1["steps"] == 100 and c1["fork_from"] == "baseline_T1-T1_160_stable_s0_s1"
        assert searcher.suggest("y") is None
    # the second fork reaches only the searcher it was reported to; a re-sent milestone row that
    # the driver never saw first-hand forks too (its checkpoint was written with it)
    s.on_trial_result("s1", {"step": 160, "milestone": True, "re_reported": True})
    s.on_trial_complete("s1")
    assert s.suggest("c2")["trial"]["fork_from"] == "baseline_T1-T1_160_stable_s0_s1"
    assert s.suggest("z") == Searcher.FINISHED
    restored.on_trial_complete("s1", error=True)  # failed before its second fork
    assert restored.suggest("z") == Searcher.FINISHED and "200" in restored.abandoned[0]


def test_a_cooldown_finds_its_fork_checkpoint_by_step(tmp_path, monkeypatch):
    """fork_from names the stable trial's directory (relative, or an old absolute checkpoint path):
    the cooldown takes the checkpoint whose manifest says its fork step, whatever its index."""
    from types import SimpleNamespace

    import pyarrow.fs

    from trainables import storage

    fam = family(steps=(100, 200))
    stable_dir = tmp_path / "exp" / "baseline_T1-T1_160_stable_s0_s1"
    for index, step in ((0, 160), (1, 80), (2, 160)):  # e.g. a checkpoint index reused after a restore
        d = stable_dir / f"checkpoint_{index:06d}"
        d.mkdir(parents=True)
        ckpt.write_manifest(d, step)
    ctx = SimpleNamespace(experiment_fs_path=str(tmp_path / "exp"), storage_filesystem=pyarrow.fs.LocalFileSystem(),
                          trial_fs_path=str(stable_dir), current_checkpoint_index=0)
    monkeypatch.setattr(storage, "trial_storage", lambda: ctx)
    for fork_from in ("baseline_T1-T1_160_stable_s0_s1", f"/elsewhere/{stable_dir.name}/checkpoint_000002"):
        cool = fam.cooldowns[0].replace(fork_from=fork_from)  # 100 steps: fork at 80
        assert [c.path for c in storage.fork_candidates(cool)] == [str(stable_dir / "checkpoint_000001")]
    two = storage.fork_candidates(fam.cooldowns[1].replace(fork_from=stable_dir.name))  # 200 steps: fork at 160
    assert [c.path for c in two] == [str(stable_dir / f"checkpoint_{i:06d}") for i in (2, 0)]  # newest first
    with pytest.raises(ConfigError, match=r"no checkpoint at its fork step 120 \(checkpoints at steps \[80, 160\]\)"):
        storage.fork_candidates(fam.cooldowns[1].replace(fork_from=stable_dir.name, cooldown_frac=0.4))
    # the next checkpoint of this trial goes after every existing directory, never over one
    storage.skip_existing_checkpoints()
    assert ctx.current_checkpoint_index == 2


# -- end to end through Ray --------------------------------------------------------------------
@pytest.fixture(scope="module")
def wsd_experiment(tmp_path_factory):
    """tune_scaling.py --schedule wsd on 1 variant x 1 config x 2 step counts (20, 40 steps; forks
    at 15 and 30), plus a standalone WSD run of 20 steps to compare the fork against."""
    import os

    import ray

    root = tmp_path_factory.mktemp("ray_results")
    import tune_scaling

    assert not ray.is_initialized()
    argv = ["--grid", "smoke", "--configs", "T1-T1", "--variants", "baseline", "--steps", "20,40", "--seeds", "1",
            "--schedule", "wsd", "--cooldown-frac", "0.25", "--deterministic", "--no-fit",
            # the settings' rates, so the reference run below (built without the committed
            # learning-rate table) trains at the experiment's rate
            "--lr", "5e-4", "--lr-backbone", "5e-4",
            "--storage-path", str(root), "--name", "wsd"]
    rc = tune_scaling.main(argv)
    try:
        ray.shutdown()
        # the same command again: Tuner.restore brings the searcher back from Tune's experiment
        # checkpoint (WsdSearcher.save/restore); everything is finished, so nothing runs
        rc_again = tune_scaling.main(argv)
        from ray import tune

        from trainables.train import train_vlm

        fam = family(steps=(20, 40), frac=0.25, deterministic=True)
        alone = fam.cooldowns[0].replace(wsd_phase="")
        (ref,) = tune.Tuner(tune.with_resources(train_vlm, {"cpu": 1}), param_space={"trial": alone.to_dict()},
                            run_config=tune.RunConfig(name="alone", storage_path=str(root), verbose=0)).fit()
    finally:
        ray.shutdown()
    return (rc, rc_again), root / "wsd", ref


@pytest.mark.slow
def test_searcher_end_to_end_produces_every_point(wsd_experiment):
    from fitting.table import fit_frame, load_experiment

    rc, exp_dir, _ = wsd_experiment
    assert rc == (0, 0)
    assert len([d for d in exp_dir.iterdir() if (d / "result.json").exists()]) == 3
    pts, dropped = load_experiment(exp_dir)
    assert not dropped
    assert (pts["schedule"] == "wsd").all()
    stable = pts[pts["wsd_phase"] == "stable"]
    assert stable["step"].tolist() == [15, 30]
    frame = fit_frame(pts)
    cool = pts[pts["wsd_phase"] == "cooldown"].sort_values("trial_steps")
    assert len(frame) == len(cool) == 2  # stable rows are not points
    # both cooldowns share the stable run up to the fork: one bootstrap unit, the family
    assert frame["run_id"].tolist() == ["wsd:baseline:T1-T1:s0"] * 2
    assert cool["step"].tolist() == [20, 40] and cool["trial_steps"].tolist() == [20, 40]
    # C accounting: the cooldown's counters continue the stable phase's (C = shared + own)
    fps = stable["flops"].iloc[-1] / stable["samples"].iloc[-1]
    for _, row in cool.iterrows():
        assert row["samples"] == row["trial_steps"] * 16
        assert row["flops"] == pytest.approx(fps * 16 * row["trial_steps"], rel=1e-12)


@pytest.mark.slow
def test_cooldown_continues_the_stable_run_exactly(wsd_experiment):
    """A cooldown first trains step fork + 1 from the stable trial's state: on CPU with
    deterministic kernels it ends bit-identical to one uninterrupted WSD run of that length."""
    import json

    _, exp_dir, ref = wsd_experiment
    (cool_dir,) = [d for d in exp_dir.iterdir() if d.name.startswith("baseline_T1-T1_20_cooldown_")]
    rows = [json.loads(line) for line in (cool_dir / "result.json").read_text().splitlines() if line.strip()]
    last = rows[-1]
    assert last["resumed_from_step"] == 15 and last["wsd_phase"] == "cooldown"
    assert last["flops"] == last["flops_per_sample"] * 16 * 20
    cfg = family(steps=(20, 40), frac=0.25).cooldowns[0]
    assert last["lr"] in (pytest.approx(MIN * cfg.lr), pytest.approx(MIN * cfg.lr_backbone))
    want = ref.metrics
    assert ref.error is None and want["step"] == 20
    # (train_loss differs by design: each trial averages it since its own start)
    for key in ("eval_loss", "eval_loss_se", "samples", "flops"):
        assert last[key] == want[key], key
