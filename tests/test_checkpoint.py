"""Checkpoint fallback at unit level (trainables/checkpoint.py, no Ray run): which checkpoint a
restarted trial tries first, and how damaged ones are named. The whole-sweep version (a truncated
checkpoint in a killed and resumed sweep) is in tests/test_reliability.py."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from search_spaces.grids import expand
from trainables import checkpoint as ckpt


def smoke_trial():
    (trial,) = expand("smoke", configs=["T1-T1"], variants=["baseline"], steps=[60])
    return trial


def _fake_checkpoint(d: Path, step: int) -> Path:
    d.mkdir(parents=True)
    (d / ckpt.CONFIG_FILE).write_text(smoke_trial().to_json())
    (d / ckpt.STATE_FILE).write_bytes(os.urandom(4096))
    (d / "ds").mkdir()
    (d / "ds" / "mp_rank_00_model_states.pt").write_bytes(os.urandom(8192))
    ckpt.write_manifest(d, step)
    return d


def test_restart_prefers_the_newest_step_on_storage_over_the_one_ray_hands_back(tmp_path):
    """A driver killed before its next experiment-state snapshot hands back an older checkpoint
    than the newest on storage; a reused directory index may hold a newer step than a higher one."""
    from ray import tune

    a = _fake_checkpoint(tmp_path / "checkpoint_000000", 10)
    b = _fake_checkpoint(tmp_path / "checkpoint_000001", 40)
    c = _fake_checkpoint(tmp_path / "checkpoint_000002", 30)
    order = [Path(x.path).name for x in ckpt.candidates(tune.Checkpoint(str(a)))]
    assert order == [b.name, c.name, a.name]


def test_every_checkpoint_damaged_fails_the_trial_naming_each_file(tmp_path):
    from ray import tune

    trial = smoke_trial()
    old = _fake_checkpoint(tmp_path / "checkpoint_000000", 10)
    new = _fake_checkpoint(tmp_path / "checkpoint_000001", 20)
    (old / "ds" / "mp_rank_00_model_states.pt").write_bytes(b"")  # truncated
    state = new / ckpt.STATE_FILE
    state.write_bytes(bytes(reversed(state.read_bytes())))  # same size, other bytes
    logged = []
    with pytest.raises(ckpt.CheckpointCorrupt) as err:
        ckpt.restore_newest(None, trial, tune.Checkpoint(str(new)), log=logged.append)
    msg = str(err.value)
    assert "\n" not in msg
    assert f"checkpoint file {state} is corrupt (CRC-32" in msg
    assert f"checkpoint file {old / 'ds' / 'mp_rank_00_model_states.pt'} is truncated or altered (0 bytes" in msg
    assert len(logged) == 2 and "trying the previous checkpoint" in logged[0]


def test_a_checkpoint_without_a_trial_config_counts_as_damaged(tmp_path):
    trial = smoke_trial()
    d = tmp_path / "checkpoint_000000"
    d.mkdir()  # a copy cut short before the manifest and the config were written
    with pytest.raises(ckpt.CheckpointCorrupt, match="trial_config.json is missing"):
        ckpt.load(d, None, trial)
