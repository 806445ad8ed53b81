"""Experiments any Ray client can read, and storage that is not trusted blindly:
sweep/integrity.py, the portable pickles of sweep/launch.py and sweep/wsd.py.

One tiny real sweep (1 trial) is shared by the tests: plain Ray reads it in a subprocess whose
sys.path lacks the project; a tampered tuner.pkl is refused on --resume before it is unpickled.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARGV = ["--grid", "smoke", "--schedule", "cosine", "--configs", "T1-T1", "--variants", "baseline", "--steps", "4", "--seeds", "1",
        "--no-fit", "--max-concurrent", "1"]


def isolated(code: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run `code` with `python -I` from /tmp: no PYTHONPATH, no cwd, no user site on sys.path."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return subprocess.run([sys.executable, "-I", "-c", code], cwd="/tmp", env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    import ray

    import tune_scaling

    root = tmp_path_factory.mktemp("integrity")
    os.environ.pop("RAY_ADDRESS", None)
    try:
        assert tune_scaling.main([*ARGV, "--storage-path", str(root / "res"), "--name", "exp"]) == 0
    finally:
        ray.shutdown()
    return root / "res" / "exp"


def copy_of(experiment: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "res" / "exp"
    shutil.copytree(experiment, dest)
    return dest


def resume(exp: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, RAY_TMPDIR=str(exp.parent / "ray_tmp_unused"))  # a refusal starts no Ray
    return subprocess.run([sys.executable, str(ROOT / "tune_scaling.py"), *ARGV, "--storage-path", str(exp.parent),
                           "--name", exp.name, "--resume"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.mark.slow
def test_the_launch_records_every_state_file(experiment):
    from sweep import integrity

    record = json.loads((experiment / "study.json").read_text())["sha256"]
    assert "tuner.pkl" in record and any(k.startswith("experiment_state-") for k in record)
    assert any(k.endswith("/params.pkl") for k in record)
    assert sorted(record) == integrity.state_files(str(experiment)) and integrity.problems(str(experiment)) == []


@pytest.mark.slow
def test_plain_ray_reads_the_experiment_without_the_project(experiment, tmp_path):
    experiment = copy_of(experiment, tmp_path)  # a restore may write; the other tests' copies stay pristine
    code = f"""
import sys
import importlib.util
# the project is not importable (its venv's site-packages may live inside the checkout)
assert {str(ROOT)!r} not in sys.path and "" not in sys.path, sys.path
assert not any(importlib.util.find_spec(m) for m in ("sweep", "search_spaces", "trainables", "fitting")), sys.path
import ray
from ray import tune
from ray.tune import ExperimentAnalysis
df = ExperimentAnalysis({str(experiment)!r}).dataframe()
assert len(df) == 1 and df["eval_loss"].notna().all(), df
def train_vlm(config):  # a stand-in: the trainable's name must match, its code need not
    tune.report({{"step": 0}})
ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
results = tune.Tuner.restore({str(experiment)!r}, trainable=train_vlm).get_results()
assert len(results) == 1 and results[0].metrics["step"] == 4, results[0].metrics
mine = [m for m in sys.modules if m.split(".")[0] in ("sweep", "search_spaces", "trainables", "fitting")]
assert not mine, mine
print("ok", results[0].path)
"""
    proc = isolated(code)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-3000:]


def test_wsd_searcher_unpickles_without_the_project():
    """The WSD searcher lives in tuner.pkl too: pickled by value, it suggests trials in plain Ray."""
    import ray.cloudpickle

    from search_spaces.grids import expand
    from search_spaces.wsd import wsd_families
    from sweep.launch import portable_pickles
    from sweep.wsd import WsdSearcher

    families = wsd_families(expand("smoke", configs=["T1-T1"], variants=["baseline"], steps=[20, 40]), 0.25)
    portable_pickles()
    blob = ray.cloudpickle.dumps(WsdSearcher(families))
    code = f"""
import pickle, sys
s = pickle.loads({blob!r})
first = s.suggest("a")["trial"]
assert first["wsd_phase"] == "stable" and s.suggest("b") is None
s.on_trial_result("a", {{"step": 15, "milestone": True, "checkpoint_dir_name": "checkpoint_000000"}})
cool = s.suggest("c")["trial"]
assert cool["fork_from"] == "baseline_T1-T1_30_stable_s0_a", cool["fork_from"]
assert not [m for m in sys.modules if m.split(".")[0] in ("sweep", "search_spaces")]
print("ok")
"""
    proc = isolated(code, timeout=120)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-3000:]


class _Payload:
    """Unpickling this runs os.mkdir(marker): what a hostile tuner.pkl would do."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


@pytest.mark.slow
def test_a_tampered_tuner_pkl_is_refused_on_resume_and_its_payload_never_runs(experiment, tmp_path):
    exp = copy_of(experiment, tmp_path)
    marker = tmp_path / "pwned"
    (exp / "tuner.pkl").write_bytes(pickle.dumps(_Payload(marker)))
    before = (exp / "study.json").read_bytes()
    proc = resume(exp)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith(f"error: experiment {exp}: tuner.pkl changed since this tool recorded it")
    assert "--trust-storage" in lines[0]
    assert not marker.exists(), "the payload ran"
    assert (exp / "study.json").read_bytes() == before and not (exp.parent / "ray_tmp_unused").exists()
    pickle.loads((exp / "tuner.pkl").read_bytes())  # the payload is real: unpickling runs it
    assert marker.is_dir()


@pytest.mark.slow
def test_an_unrecorded_or_changed_state_file_is_refused(experiment, tmp_path):
    exp = copy_of(experiment, tmp_path)
    (exp / "experiment_state-2099-01-01_00-00-00.json").write_text("{}")  # Ray would load the newest
    proc = resume(exp)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "experiment_state-2099-01-01_00-00-00.json is not one this tool wrote" in proc.stderr
    (exp / "experiment_state-2099-01-01_00-00-00.json").unlink()
    (params,) = exp.glob("*/params.pkl")
    params.write_bytes(params.read_bytes() + b"\n")
    proc = resume(exp)
    assert proc.returncode == 2 and f"{params.parent.name}/params.pkl changed" in proc.stderr, proc.stderr


def test_record_and_problems_on_a_directory(tmp_path):
    from sweep import integrity

    (tmp_path / "study.json").write_text(json.dumps({"grid": "smoke", "trials": []}))
    (tmp_path / "tuner.pkl").write_bytes(b"a")
    (tmp_path / "t1").mkdir()
    (tmp_path / "t1" / "params.pkl").write_bytes(b"b")
    (tmp_path / "t1" / "result.json").write_text("{}")  # plain JSON: not a state file
    (tmp_path / "analysis").mkdir()
    (tmp_path / "analysis" / "x.pkl").write_bytes(b"ours")
    assert integrity.state_files(str(tmp_path)) == ["t1/params.pkl", "tuner.pkl"]
    assert integrity.problems(str(tmp_path)) == ["study.json has no SHA-256 record of the experiment state"]
    integrity.record_current(str(tmp_path))  # what --trust-storage does
    doc = json.loads((tmp_path / "study.json").read_text())
    assert doc["grid"] == "smoke" and sorted(doc["sha256"]) == ["t1/params.pkl", "tuner.pkl"]
    assert integrity.problems(str(tmp_path)) == []
    (tmp_path / "t1" / "params.pkl").write_bytes(b"c")
    assert integrity.problems(str(tmp_path)) == ["t1/params.pkl changed"]
    (tmp_path / "t1" / "params.pkl").unlink()  # a missing file runs nothing: not refused
    (tmp_path / "t1" / "error.pkl").write_bytes(b"x")
    assert integrity.problems(str(tmp_path)) == ["t1/error.pkl is not one this tool wrote"]


def test_the_storage_layer_records_before_it_writes_and_checks_what_it_reads(tmp_path, monkeypatch):
    """sweep.integrity.verified_filesystem, the storage_filesystem the driver hands Ray: a state
    file's hash is in study.json before the file is replaced; a read hands over exactly the bytes
    it checked; Ray's uploads of study.json are dropped; pickled, it is a plain LocalFileSystem."""
    import pyarrow.fs

    from sweep import integrity

    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "study.json").write_text(json.dumps({"grid": "smoke", "trials": []}))
    fs = integrity.verified_filesystem(str(exp))
    seen = []  # (the record, the file on disk) at the moment each write replaces the file
    real_replace = os.replace

    def watch(src, dst):
        if str(dst).endswith(".pkl"):
            seen.append((integrity.read_record(str(exp)).get("tuner.pkl"), Path(dst).read_bytes() if Path(dst).exists() else None))
        real_replace(src, dst)

    monkeypatch.setattr(integrity.os, "replace", watch)
    for content in (b"\x80v1.", b"\x80v2."):
        with fs.open_output_stream(str(exp / "tuner.pkl")) as f:
            f.write(content)
    sha = integrity.sha256
    assert seen == [([sha(b"\x80v1.")], None), ([sha(b"\x80v1."), sha(b"\x80v2.")], b"\x80v1.")]  # killed at either instant: it passes
    with fs.open_output_stream(str(exp / "study.json")) as f:  # Ray's stale copy of study.json
        f.write(b"{}")
    assert integrity.read_record(str(exp))["tuner.pkl"][-1] == sha(b"\x80v2.")
    assert integrity.problems(str(exp)) == []
    with fs.open_input_file(str(exp / "tuner.pkl")) as f:
        assert f.read() == b"\x80v2."
    monkeypatch.setattr(integrity.os, "replace", real_replace)
    (exp / "tuner.pkl").write_bytes(b"\x80evil.")  # not through the storage layer: never recorded
    with pytest.raises(integrity.StateRefused, match="tuner.pkl changed since this tool recorded it"):
        fs.open_input_stream(str(exp / "tuner.pkl"))
    (tmp_path / "down").mkdir()
    with pytest.raises(integrity.StateRefused, match="tuner.pkl changed"):  # also inside pyarrow's copy
        pyarrow.fs.copy_files(str(exp), str(tmp_path / "down"), source_filesystem=fs)
    assert type(pickle.loads(pickle.dumps(fs))) is pyarrow.fs.LocalFileSystem


def test_a_damaged_state_file_is_found_without_unpickling_it():
    from sweep import integrity

    good = pickle.dumps({"a": 1})
    assert integrity.damage("tuner.pkl", good) is None
    assert "tuner.pkl is damaged (not a complete pickle file" in integrity.damage("tuner.pkl", good[:-3])
    assert "is damaged" in integrity.damage("tuner.pkl", b"")
    assert integrity.damage("experiment_state-x.json", b'{"a": 1}') is None
    assert "not a complete JSON file" in integrity.damage("experiment_state-x.json", b'{"a": ')
    # Ray writes search_gen_state-*.json as a pickle despite its name
    assert integrity.damage("search_gen_state-x.json", good) is None
