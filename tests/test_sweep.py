"""The sweep driver: grids -> trial lists, the live scaling plot (callback alone and end to end,
incl. a resume), TensorBoard files, Ray's start-up arguments."""
from __future__ import annotations

import dataclasses
import json
import pickle
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import tune_scaling
from search_spaces.errors import ConfigError
from search_spaces.grids import GRIDS, expand
from search_spaces.sizes import GRID_VARIANTS, REAL_CONFIGS
from search_spaces.trial import TrialConfig
from sweep.launch import param_space
from trainables.planner import plan_grid, plan_trial

SEED_STEPS = [100, 300, 1000, 3000]


# -- grids ---------------------------------------------------------------------------------
@pytest.mark.parametrize("grid, configs", [("phase1", ["S-S"]), ("phase2", ["M-S"]), ("phase3", ["S-B"]),
                                          ("phase4", list(REAL_CONFIGS))])
def test_phase_grids_expand_to_the_study_trials(grid, configs):
    trials = expand(grid)
    expected = [(v, c, s) for v in GRID_VARIANTS for c in configs for s in SEED_STEPS]  # variant-major
    assert [(t.variant, t.config, t.steps) for t in trials] == expected
    assert len(trials) == {"phase4": 72}.get(grid, 8)
    # the fairness rules: one batch, data set, lr pair, image size for every trial of a phase
    assert {(t.global_batch, t.dataset, t.lr, t.lr_backbone, t.frames, t.image_size) for t in trials} == {
        (32, "synthetic", 1e-4, 2e-5, 8, 224)}
    assert len(param_space(trials)["trial"]["grid_search"]) == len(trials)


def test_the_cli_plans_the_expanded_grid():
    # expand is pure data (the TrialConfig defaults); the CLI then applies the memory planner and
    # each (variant, config)'s learning rates (trainables/learning_rates.py)
    from trainables.learning_rates import assign

    plain = expand("phase4", configs=["S-S", "L-L"], steps=[100])
    planned = tune_scaling.build_trials(tune_scaling.parse_args(["--grid", "phase4", "--configs", "S-S,L-L",
                                                                 "--steps", "100", "--gpu-mem", "24"]))
    assert {t.micro_batch for t in plain} == {TrialConfig.micro_batch} and not any(t.offload for t in plain)
    assert planned == assign(GRIDS["phase4"], [plan_trial(t, 24.0).apply(t) for t in plain])[0]
    assert any(t.offload for t in planned)  # L-L needs offload at 24 GiB: the plan did change trials
    assert all(t.global_batch == t.micro_batch * t.grad_accum for t in planned)
    smoke = expand("smoke", configs=["T1-T1"])
    assert plan_grid(GRIDS["smoke"], smoke, 1e-9) == smoke  # a grid with its own micro-batch is not planned


def test_smoke_grid_expands_to_its_definition():
    g = GRIDS["smoke"]
    trials = expand("smoke")
    assert len(trials) == len(g.variants) * len(g.configs) * len(g.steps) >= 12
    assert [(t.variant, t.config, t.steps) for t in trials] == [
        (v, c, s) for v in g.variants for c in g.configs for s in g.steps]
    assert {t.precision for t in trials} == {"fp32"} and {t.init for t in trials} == {"random"}


def test_ladder_sizes_meet_on_shared_compute_budgets_for_every_arm():
    """The ladder's per-size step counts (Grid.steps_by_config): every size runs >= 3 step counts
    spanning >= 8x, and with each run's compute from the one FLOPs function, the IsoFLOP fit's own
    buckets hold >= 3 sizes in >= 3 budgets, for every arm (their FLOPs per step differ)."""
    from fitting.isoflop import MIN_SIZES, buckets
    from trainables.data.tokenizer import planning_vocab_size
    from trainables.flops import trial_flops_per_sample

    g = GRIDS["ladder"]
    trials = expand("ladder")
    assert len(trials) == len(g.variants) * sum(len(g.steps_for(c)) for c in g.configs)
    for c in g.configs:
        steps = g.steps_for(c)
        assert [t.steps for t in trials if t.config == c and t.variant == "baseline"] == list(steps)
        assert len(steps) >= 3 and max(steps) / min(steps) >= 8
    vocab = planning_vocab_size(trials[0])  # the dry-run's vocabulary: the graded task's words + specials
    for variant in g.variants:
        arm = [t for t in trials if t.variant == variant]
        C = np.array([t.steps * t.global_batch * trial_flops_per_sample(t, vocab) for t in arm])
        sizes_per_budget = {}
        for t, b in zip(arm, buckets(C)):
            sizes_per_budget.setdefault(b, set()).add(t.config)
        shared = [b for b, sizes in sizes_per_budget.items() if len(sizes) >= MIN_SIZES]
        assert len(shared) >= 3, (variant, sizes_per_budget)
    # narrowing with --steps still applies one list to every size
    assert {t.steps for t in expand("ladder", steps=[50, 60])} == {50, 60}
    with pytest.raises(ValueError, match="does not run"):
        dataclasses.replace(g, configs=("T0-T0",))  # step counts for sizes the grid no longer runs


def test_reuse_actors_auto_is_on_for_cpu_trials_only():
    from sweep.launch import reuse_actors

    def args(*argv):
        return tune_scaling.parse_args(list(argv))

    assert reuse_actors(args(), use_gpu=False) and not reuse_actors(args(), use_gpu=True)
    assert reuse_actors(args("--gpus-per-trial", "0"), use_gpu=True)
    assert not reuse_actors(args("--gpus-per-trial", "0.5"), use_gpu=True)
    assert reuse_actors(args("--reuse-actors"), use_gpu=True)  # bare flag = on
    assert not reuse_actors(args("--reuse-actors", "off"), use_gpu=False)


def test_cli_narrowing_and_overrides():
    args = tune_scaling.parse_args(["--grid", "phase4", "--configs", "S-S,M-S", "--variants", "foveated",
                                    "--steps", "100,300", "--init", "random", "--seed", "3"])
    trials = tune_scaling.build_trials(args)
    assert [(t.variant, t.config, t.steps) for t in trials] == [
        ("foveated", "S-S", 100), ("foveated", "S-S", 300), ("foveated", "M-S", 100), ("foveated", "M-S", 300)]
    assert {(t.init, t.seed) for t in trials} == {("random", 3)}
    with pytest.raises(ConfigError, match="unknown config id"):
        expand("phase4", configs=["X-S"])
    with pytest.raises(ConfigError, match="unknown variant"):
        expand("phase4", variants=["fovea"])


def test_seeds_replicate_every_cell_with_the_same_seeds_for_both_arms():
    def trials(*argv):
        return tune_scaling.build_trials(tune_scaling.parse_args(list(argv)))

    smoke = trials("--grid", "smoke")  # the smoke grid's default: 2 replicates per cell
    assert GRIDS["smoke"].seeds == 2 and len(smoke) == 2 * len(expand("smoke"))
    assert len(trials("--grid", "phase1")) == 8  # phase grids: one run per cell
    reps = trials("--grid", "phase1", "--seeds", "3", "--seed", "5", "--steps", "100")
    assert [(t.variant, t.seed) for t in reps] == [(v, s) for v in GRID_VARIANTS for s in (5, 6, 7)]
    assert {t.dataset_seed for t in reps} == {0}  # one data set: only init + order differ
    assert len({t.trial_name for t in reps}) == 6 and reps[1].trial_name == "foveated_S-S_100_s6"
    # a replicate differs from its cell's first run in the seed alone
    assert reps[1].replace(seed=5) == reps[0]
    from search_spaces.wsd import wsd_families

    families = wsd_families(trials("--grid", "smoke", "--configs", "T1-T1", "--variants", "baseline"))
    assert [(f.key, len(f.cooldowns)) for f in families] == [("baseline_T1-T1_s0", 3), ("baseline_T1-T1_s1", 3)]
    assert {c.seed for c in families[1].trials()} == {1}


def test_a_refused_resume_names_the_differing_fields():
    from sweep.experiment import grid_difference

    old = [t.to_dict() for t in expand("smoke", configs=["T1-T1"], steps=[10, 20])]
    new = [t.to_dict() for t in expand("smoke", configs=["T1-T1"], steps=[10, 30], seeds=2)]
    text = grid_difference({"grid": "smoke", "trials": old}, {"grid": "smoke", "trials": new})
    assert text == "4 trials (this command: 8); other values of milestones, seed, steps", text
    assert "grid 'phase1' (this command: 'smoke')" in grid_difference({"grid": "phase1", "trials": old},
                                                                     {"grid": "smoke", "trials": old})


# -- live plot: the callback alone ------------------------------------------------------------
def fake_trial(tid, variant="foveated", config="T1-T1", steps=40):
    cfg = {"trial": {"variant": variant, "config": config, "steps": steps}}
    return SimpleNamespace(trial_id=tid, config=cfg, last_result={})


def row(step, loss, variant="foveated", config="T1-T1", milestone=True):
    r = {"step": step, "flops": 1e9 * step, "variant": variant, "config_id": config, "milestone": milestone}
    if milestone:
        r["eval_loss"] = loss
    return r


def stamp(path: Path):
    st = path.stat()
    return st.st_mtime_ns, st.st_size, path.read_bytes()


def test_live_plot_draws_throttles_and_always_draws_on_completion(tmp_path):
    from sweep.callbacks import LiveScalingPlot

    target = tmp_path / "exp" / "live_scaling.png"
    cb = LiveScalingPlot(str(target), min_interval_s=3600, title="t", configs=["T1-T1", "T2-T2"], background=False)
    a, b = fake_trial("a"), fake_trial("b", "baseline", "T2-T2")
    cb.on_trial_result(1, [a], a, row(10, 3.0, milestone=False))  # no eval loss: not a point
    assert not target.exists() and cb.draws == 0
    cb.on_trial_result(1, [a], a, row(10, 3.0))  # the first milestone draws at once
    assert target.exists() and cb.draws == 1
    first = stamp(target)
    assert first[2][:8] == b"\x89PNG\r\n\x1a\n"
    cb.on_trial_result(2, [a, b], b, row(10, 3.5, "baseline", "T2-T2"))  # within the interval: recorded only
    assert cb.draws == 1 and stamp(target) == first
    assert set(cb.trials) == {"a", "b"}
    b.last_result = row(20, 3.1, "baseline", "T2-T2")
    cb.on_trial_complete(3, [a, b], b)  # completion always redraws, with the final row
    assert cb.draws == 2
    second = stamp(target)
    assert second[2] != first[2]
    assert cb.trials["b"]["points"] == {10: (1e10, 3.5), 20: (2e10, 3.1)}
    # atomic writes leave no temporary files behind, and the file is readable by others
    assert sorted(p.name for p in target.parent.iterdir()) == ["live_scaling.png"]
    assert target.stat().st_mode & 0o044 == 0o044


def test_live_plot_draws_in_the_background_and_state_survives_pickle_and_checkpoint(tmp_path):
    from sweep.callbacks import LiveScalingPlot

    cb = LiveScalingPlot(str(tmp_path / "p.png"), min_interval_s=0)  # background thread (default)
    t = fake_trial("a")
    for step in range(1, 30):  # requests arriving faster than drawing collapse into fewer draws
        cb.on_trial_result(1, [t], t, row(step, 3.0 - 0.01 * step))
    clone = pickle.loads(pickle.dumps(cb))  # what tuner.pkl does with the RunConfig's callbacks
    assert clone.trials == cb.trials and clone._thread is None
    cb.on_experiment_end([t])  # waits for the last draw, then ends the thread
    assert (tmp_path / "p.png").exists() and 1 <= cb.draws < 30 and cb._thread is None
    fresh = LiveScalingPlot(str(tmp_path / "q.png"), min_interval_s=0)
    assert fresh.get_state() is None  # stateless until a point arrives: Tune skips the file
    fresh.set_state(cb.get_state())  # what Tune's experiment checkpoint does on restore
    fresh.on_experiment_end([])
    assert (tmp_path / "q.png").exists() and fresh.trials["a"]["points"][20] == (2e10, pytest.approx(2.8))


def test_live_plot_failure_never_raises_and_uri_targets_work(tmp_path, caplog):
    from sweep.callbacks import LiveScalingPlot, live_plot_target

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cb = LiveScalingPlot(str(blocker / "live.png"), min_interval_s=0, background=False)
    t = fake_trial("a")
    cb.on_trial_result(1, [t], t, row(10, 3.0))  # must not raise into Tune's loop
    assert cb.draws == 0 and "live scaling plot not written" in caplog.text
    uri = live_plot_target(f"file://{tmp_path}/remote", "exp")
    assert uri == f"file://{tmp_path}/remote/exp/live_scaling.png"
    cb = LiveScalingPlot(uri, min_interval_s=0)
    cb.on_trial_result(1, [t], t, row(10, 3.0))
    cb.flush()
    assert (tmp_path / "remote" / "exp" / "live_scaling.png").stat().st_size > 1000


# -- end to end ------------------------------------------------------------------------------
class Watcher(threading.Thread):
    """Polls a file's (mtime, size) while the sweep runs: the versions a viewer would have seen."""

    def __init__(self, path: Path):
        super().__init__(daemon=True)
        self.path, self.versions, self.stop = path, [], threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                v = (self.path.stat().st_mtime_ns, self.path.stat().st_size)
                if not self.versions or self.versions[-1] != v:
                    self.versions.append(v)
            except FileNotFoundError:
                pass
            time.sleep(0.05)


def tfevent_tags(path: Path) -> set[str]:
    import struct

    from tensorboardX.proto import event_pb2

    data, i, tags = path.read_bytes(), 0, set()
    while i < len(data):  # TFRecord: length, crc, payload, crc
        (n,) = struct.unpack("<Q", data[i:i + 8])
        tags |= {v.tag for v in event_pb2.Event.FromString(data[i + 12:i + 12 + n]).summary.value}
        i += 12 + n + 4
    return tags


@pytest.mark.slow
def test_sweep_updates_live_plot_writes_tensorboard_and_resumes_it(tmp_path, monkeypatch, capsys):
    import ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    argv = ["--grid", "smoke", "--schedule", "cosine", "--configs", "T1-T1", "--steps", "24", "--seeds", "1", "--milestones", "8,16", "--no-fit",
            "--storage-path", str(tmp_path / "res"), "--name", "live", "--plot-interval", "0",
            "--max-concurrent", "1", "--cpus-per-trial", "1"]
    exp = tmp_path / "res" / "live"
    watcher = Watcher(exp / "live_scaling.png")
    watcher.start()
    try:
        assert tune_scaling.main(argv) == 0
    finally:
        watcher.stop.set()
        watcher.join()
        ray.shutdown()
    out = capsys.readouterr().out
    assert f"tensorboard --logdir {exp}" in out and f"live plot: {exp / 'live_scaling.png'}" in out
    # 2 trials x 3 milestones, one after another: the plot changed while the sweep ran
    assert len(watcher.versions) >= 3, watcher.versions
    assert len({size for _, size in watcher.versions}) >= 2
    events = sorted(exp.glob("*/events.out.tfevents.*"))
    assert len(events) == 2 and {"ray/tune/eval_loss", "ray/tune/flops"} <= tfevent_tags(events[0])
    # --reuse-actors auto on a CPU sweep: the second trial ran in the first one's worker process
    pids = {json.loads(p.read_text().splitlines()[-1])["pid"] for p in exp.glob("*/result.json")}
    assert len(pids) == 1, pids

    # resume of the finished experiment: the callback comes back from tuner.pkl and its points
    # from Tune's checkpoint, so it redraws the plot with nothing left to train
    (exp / "live_scaling.png").unlink()
    try:
        assert tune_scaling.main(argv) == 0
    finally:
        ray.shutdown()
    assert "resuming experiment" in capsys.readouterr().out
    assert (exp / "live_scaling.png").stat().st_size > 1000


def test_each_grid_brings_its_default_schedule_and_the_flag_overrides_it():
    """The offline smoke study runs WSD (one stable run serves its three step counts: the
    compute that fits its 10-minute budget); phase grids stay cosine; --schedule wins."""
    assert GRIDS["smoke"].schedule == "wsd" and GRIDS["phase4"].schedule == "cosine"
    assert tune_scaling.parse_args(["--grid", "smoke"]).schedule == "wsd"
    assert tune_scaling.parse_args([]).schedule == "wsd"  # smoke is the default grid
    assert tune_scaling.parse_args(["--grid", "phase1"]).schedule == "cosine"
    assert tune_scaling.parse_args(["--grid", "smoke", "--schedule", "cosine"]).schedule == "cosine"
    assert tune_scaling.parse_args(["--grid", "phase1", "--schedule", "wsd"]).schedule == "wsd"


def test_sweep_options_refuse_unknown_fields_and_the_driver_refuses_a_namespace():
    import argparse

    from sweep.launch import run_sweep
    from sweep.options import SweepOptions

    opts = tune_scaling.parse_args(["--grid", "smoke", "--configs", "T1-T1"])
    assert isinstance(opts, SweepOptions) and opts.configs == ("T1-T1",) and opts.gpu_mem == 24.0
    with pytest.raises(ConfigError, match="unknown sweep option.*: gpu_memory"):
        SweepOptions.from_dict({"grid": "smoke", "gpu_memory": 12})
    with pytest.raises(ConfigError, match="unknown sweep option.*: typo"):  # a flag without a field
        SweepOptions.from_namespace(argparse.Namespace(grid="smoke", typo=1), [])
    with pytest.raises(TypeError, match="takes SweepOptions"):
        run_sweep(argparse.Namespace(**{k: v for k, v in vars(opts).items()}), [])


def test_study_json_of_a_uri_experiment_goes_through_its_filesystem(tmp_path, monkeypatch):
    """A storage URI is not a local path: study.json lands in the bucket (here a file:// URI),
    never in a local directory named after the scheme ('./s3:/bucket/...')."""
    from sweep.experiment import MANIFEST, check_storage, write_manifest

    monkeypatch.chdir(tmp_path)
    uri = f"file://{tmp_path}/bucket/res"
    assert check_storage(uri) == uri  # reachable: probed, nothing written
    write_manifest(f"{uri}/exp", {"grid": "smoke", "trials": []})
    assert json.loads((tmp_path / "bucket" / "res" / "exp" / MANIFEST).read_text()) == {"grid": "smoke", "trials": []}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bucket"]
