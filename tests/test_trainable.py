"""The Ray Tune trainable on DeepSpeed (CPU, gloo): reports, checkpoints, exact resume,
vision that matters, injected faults. One Ray session for the module."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

from search_spaces.errors import ConfigError
from search_spaces.grids import GRIDS, expand
from sweep.launch import param_space
from trainables import checkpoint as ckpt

REQUIRED_METRICS = {
    "variant", "config_id", "step", "samples", "tokens", "train_loss", "eval_loss", "eval_loss_se", "lr",
    "n_params", "n_params_llm", "n_params_vision", "flops", "samples_per_s", "tflops", "mfu",
    "peak_gpu_mem_gib", "host_rss_gib", "milestone", "eval_loss_shuffled_frames", "eval_loss_shuffled_frames_se",
    "eval_vision_gap", "eval_vision_gap_se",
}


@pytest.fixture(scope="module")
def ray_session():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def run(trials, storage: Path, name: str, max_failures: int = 0):
    from ray import tune

    from trainables.train import train_vlm

    tuner = tune.Tuner(
        tune.with_resources(train_vlm, {"cpu": 1}),
        param_space=param_space(trials),
        tune_config=tune.TuneConfig(max_concurrent_trials=2),
        run_config=tune.RunConfig(
            name=name, storage_path=str(storage), verbose=0,
            failure_config=tune.FailureConfig(max_failures=max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=3),
        ),
    )
    return list(tuner.fit())


def history(result) -> list[dict]:
    return result.metrics_dataframe.to_dict("records")


def short_trial(variant="baseline", steps=30, **kw):
    (trial,) = expand("smoke", configs=["T1-T1"], variants=[variant], steps=[steps],
                      overrides={"dataset_size": 256, "eval_size": 64, "milestones": [10, 20], **kw})
    return trial


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["baseline", "foveated"])
def test_trial_learns_to_look_reports_metrics_and_checkpoints(ray_session, tmp_path, variant):
    """The smoke grid's longest trial of each arm, at the grid's learning rate for it: it must see
    its frames (the fits' rule: gap > 5 SE and >= 2% of the shuffled-frames loss), every listed
    metric is reported, checkpoints hold it all."""
    from search_spaces.vision_rule import sees
    from trainables.learning_rates import assign

    longest = max(GRIDS["smoke"].steps)
    (trial,), _ = assign(GRIDS["smoke"], expand("smoke", configs=["T1-T1"], variants=[variant], steps=[longest],
                                                overrides={"milestones": [longest // 2]}))
    (result,) = run([trial], tmp_path, f"vision-{variant}")
    assert result.error is None, result.error
    rows = history(result)
    assert [r["step"] for r in rows] == [longest // 2, longest]
    last = rows[-1]
    assert REQUIRED_METRICS <= set(last)
    assert last["samples"] == longest * trial.global_batch
    assert last["flops"] == pytest.approx(last["flops_per_sample"] * last["samples"])
    assert rows[0]["eval_loss"] > last["eval_loss"]
    gap = last["eval_loss_shuffled_frames"] - last["eval_loss"]
    assert gap == pytest.approx(last["eval_vision_gap"])
    assert sees(gap, last["eval_vision_gap_se"], last["eval_loss_shuffled_frames"]), (last["eval_loss"], gap)
    with result.checkpoint.as_directory() as d:
        files = set(os.listdir(d))
        assert {"ds", "trainer_state.pt", "trial_config.json", "deepspeed_config.json"} <= files
        saved = json.loads(Path(d, "trial_config.json").read_text())
        assert saved == trial.to_dict()
        state = torch.load(Path(d, "trainer_state.pt"), weights_only=True)
        assert state["step"] == longest and state["data"]["epoch"] >= 1


@pytest.mark.parametrize("offload, variant", [(False, "baseline"), (True, "baseline"), (False, "pooled1")],
                         ids=["zero2", "zero2-offload", "zero2-pooled1"])
@pytest.mark.slow
def test_resume_after_failure_is_bit_identical(ray_session, tmp_path, offload, variant):
    """A trial that dies at step 25 is retried from its step-20 checkpoint and ends with exactly
    the losses of an uninterrupted trial; the two ran concurrently on distinct ports."""
    clean = short_trial(variant, offload=offload, deterministic=True)
    faulty = clean.replace(fault="raise@25", tag="faulty")
    results = run([clean, faulty], tmp_path, f"resume{int(offload)}-{variant}", max_failures=1)
    assert all(r.error is None for r in results), [r.error for r in results]
    a, b = (history(r) for r in results)
    a_by_step = {r["step"]: r for r in a}
    b_by_step = {r["step"]: r for r in b}
    assert sorted(b_by_step) == [10, 20, 30]
    for step in (20, 30):
        for key in ("train_loss", "eval_loss", "samples", "flops"):
            assert a_by_step[step][key] == b_by_step[step][key], (step, key)
    # the retry resumed from the step-20 checkpoint (not from scratch) and re-sent the reports
    # Ray may have dropped with the failure
    resent = [r for r in b if r.get("re_reported") is True]
    assert resent and {r["resumed_from_step"] for r in resent} == {20}
    assert [r["step"] for r in b if r.get("re_reported") is not True][-1] == 30
    assert a[0]["master_port"] != b[0]["master_port"]


@pytest.mark.slow
def test_non_finite_loss_stops_the_trial_naming_the_step(ray_session, tmp_path):
    (result,) = run([short_trial(fault="nan@13")], tmp_path, "nan")
    assert result.error is not None
    assert "non-finite training loss at step 13" in str(result.error)


@pytest.mark.slow
def test_injected_oom_names_config_microbatch_and_a_suggestion(ray_session, tmp_path):
    (result,) = run([short_trial(fault="oom@3")], tmp_path, "oom")
    msg = str(result.error)
    assert "out of memory at step 3" in msg and "T1-T1" in msg and "micro-batch 16" in msg
    assert "dry-run" in msg


def test_checkpoint_from_another_config_is_refused(tmp_path):
    trial = short_trial()
    (tmp_path / ckpt.CONFIG_FILE).write_text(trial.to_json())
    ckpt.check_compatible(tmp_path, trial)  # same config: accepted
    ckpt.check_compatible(tmp_path, trial.replace(fault="nan@3"))  # test hooks don't count
    other = trial.replace(lr=trial.lr / 5)
    with pytest.raises(ConfigError, match=rf"different trial config \(lr: {trial.lr!r} -> {other.lr!r}\)"):
        ckpt.check_compatible(tmp_path, other)


def test_rng_state_round_trip():
    import random

    import numpy as np

    state = ckpt.rng_state()
    a = (torch.rand(3), np.random.rand(3), random.random())
    ckpt.set_rng_state(state)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    assert not math.isnan(b[2])


@pytest.mark.slow
def test_phase_size_clips_stream_and_resume_bit_identically(ray_session, tmp_path):
    """The phase grids' data path at its real size (20,000 synthetic clips of 8 frames x 224²,
    computed per index by the streaming loader), on a tiny model: a trial that dies at step 5
    resumes from its step-3 checkpoint with exactly the losses of an uninterrupted one."""
    (clean,) = expand("phase1", configs=["T1-T1"], variants=["baseline"], steps=[6],
                      overrides={"init": "random", "precision": "fp32", "global_batch": 4, "micro_batch": 4,
                                 "text_len": 16, "query_dim": 32, "eval_size": 8, "milestones": [3],
                                 "deterministic": True})
    assert (clean.frames, clean.image_size, clean.dataset_size) == (8, 224, 20000)
    faulty = clean.replace(fault="raise@5", tag="faulty")
    results = run([clean, faulty], tmp_path, "phase_data", max_failures=1)
    assert all(r.error is None for r in results), [r.error for r in results]
    # keyed by step: the faulty trial's step-3 row may be its original report or the copy that
    # the restored trial re-sends (Ray's result table after a retry can hold either)
    a, b = ({r["step"]: r for r in history(res)} for res in results)
    assert sorted(a) == sorted(b) == [3, 6]
    for step in (3, 6):
        for key in ("train_loss", "eval_loss", "samples"):
            assert a[step][key] == b[step][key], (step, key)
    assert b[6].get("re_reported") is not True  # step 6 was trained after the resume
    assert any(r.get("resumed_from_step") == 3 for r in history(results[1]))
