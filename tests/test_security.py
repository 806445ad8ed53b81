"""Security properties of the tool: the dashboard binds to loopback
unless a host is given, Ray's token auth is never turned off, checkpoints never unpickle code
(ours or DeepSpeed's files), the code base has no eval/exec, and a hostile experiment state file
never runs: not one swapped in while the sweep runs (it is never recorded), not one swapped in
after the driver's check (the storage layer checks the very bytes Ray reads). Those two start
Ray: one short sweep in a subprocess, two resumes in this process."""
from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from trainables import checkpoint as ckpt

ROOT = Path(__file__).resolve().parents[1]
NARROW = ["--grid", "smoke", "--configs", "T1-T1", "--variants", "baseline", "--steps", "5", "--no-fit",
          "--schedule", "cosine"]


def project_sources() -> list[Path]:
    """The project's own .py files: not the venv, not run outputs (checkpoints carry DeepSpeed's
    zero_to_fp32.py), not caches."""
    out = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in ("ray_results", "__pycache__")]
        out += [Path(dirpath, f) for f in filenames if f.endswith(".py")]
    return out


class _Payload:
    """Unpickling this runs os.mkdir(marker): what a hostile checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


class _Stop(Exception):
    pass


def test_dashboard_binds_to_loopback_unless_a_host_is_given(tmp_path, monkeypatch):
    """What run_sweep hands to ray.init (ray.init intercepted: nothing starts)."""
    import ray

    from sweep.launch import run_sweep
    from tune_scaling import build_trials, parse_args

    seen = []

    def fake_init(**kwargs):
        seen.append(kwargs)
        raise _Stop

    monkeypatch.setattr(ray, "init", fake_init)
    for extra, host in (([], None), (["--dashboard"], "127.0.0.1"), (["--dashboard", "--dashboard-host", "0.0.0.0"], "0.0.0.0")):
        args = parse_args([*NARROW, "--storage-path", str(tmp_path), "--name", "sec", *extra])
        with pytest.raises(_Stop):
            run_sweep(args, build_trials(args))
        kwargs = seen[-1]
        assert kwargs.get("include_dashboard") == bool(extra)
        assert kwargs.get("dashboard_host") == host


def test_token_auth_is_never_disabled():
    """Ray 2.60 turns token auth on for the cluster ray.init starts; the tool says so explicitly
    (RAY_AUTH_MODE=token, which also keeps Ray's opt-out notice off stderr). No code of the tool
    (tests aside) writes RAY_AUTH_MODE with any other value, in any way: os.environ[...] =,
    setdefault, update, putenv."""
    offenders, token_writes = [], []
    for path in project_sources():
        if "tests" in path.relative_to(ROOT).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"
            for key, value in _env_writes(node):
                if key == "RAY_AUTH_MODE":
                    (token_writes if isinstance(value, ast.Constant) and value.value == "token"
                     else offenders).append(where)
    assert not offenders, offenders
    assert [w.split(":")[0] for w in token_writes] == ["sweep/cluster.py"], token_writes  # start_ray's
    assert os.environ.get("RAY_AUTH_MODE", "").lower() != "disabled"


def _env_writes(node) -> list[tuple[str | None, ast.AST | None]]:
    """(key, value node) of each write to a mapping that `node` makes (None: unknown)."""
    def name(k):
        return k.value if isinstance(k, ast.Constant) else None

    if isinstance(node, ast.Assign):
        return [(name(t.slice), node.value) for t in node.targets if isinstance(t, ast.Subscript)]
    if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Subscript):
        return [(name(node.target.slice), None)]
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
        return []
    if node.func.attr in ("setdefault", "putenv", "__setitem__") and node.args:
        return [(name(node.args[0]), node.args[1] if len(node.args) > 1 else None)]
    if node.func.attr == "update":
        out = [(k.arg, k.value) for k in node.keywords if k.arg]
        for a in node.args:
            out += [(name(k), v) for k, v in zip(a.keys, a.values)] if isinstance(a, ast.Dict) else []
        return out
    return []


def _checkpoint_dir(d: Path) -> Path:
    from search_spaces.grids import expand

    (trial,) = expand("smoke", configs=["T1-T1"], variants=["baseline"], steps=[20])
    d.mkdir()
    (d / ckpt.CONFIG_FILE).write_text(trial.to_json())
    return d


def test_a_pickled_payload_as_trainer_state_is_refused_not_run(tmp_path):
    from search_spaces.trial import TrialConfig

    d = _checkpoint_dir(tmp_path / "checkpoint_000000")
    marker = tmp_path / "pwned"
    torch.save({"step": 20, "x": _Payload(marker)}, d / ckpt.STATE_FILE)
    ckpt.write_manifest(d, 20)  # a consistent checkpoint: only the unpickler stands in the way
    cfg = TrialConfig.from_dict(json.loads((d / ckpt.CONFIG_FILE).read_text()))
    with pytest.raises(ckpt.CheckpointCorrupt, match=r"trainer_state.pt is unreadable \(UnpicklingError"):
        ckpt.load(d, None, cfg)
    assert not marker.exists(), "the payload ran"
    # the payload is real: an unrestricted load would have run it
    control = tmp_path / "control"
    torch.save({"x": _Payload(control)}, tmp_path / "control.pt")
    torch.load(tmp_path / "control.pt", weights_only=False)
    assert control.is_dir()


def test_deepspeed_checkpoint_files_load_weights_only(tmp_path):
    """DeepSpeed's own loader passes weights_only=False; ckpt.load swaps in a weights-only one
    (allowing DeepSpeed's three plain data classes) for the duration of the load."""
    from deepspeed.runtime.checkpoint_engine.torch_checkpoint_engine import (
        TorchCheckpointEngine,
    )
    from deepspeed.runtime.zero.config import ZeroStageEnum

    class Engine:
        checkpoint_engine = TorchCheckpointEngine()

    engine = Engine()
    marker = tmp_path / "pwned"
    torch.save({"module": _Payload(marker)}, tmp_path / "mp_rank_00_model_states.pt")
    torch.save({"zero_stage": ZeroStageEnum.gradients, "w": torch.ones(2)}, tmp_path / "ok.pt")
    with ckpt._weights_only_deepspeed(engine):
        with pytest.raises(Exception, match="Weights only load failed"):
            engine.checkpoint_engine.load(str(tmp_path / "mp_rank_00_model_states.pt"), map_location="cpu")
        assert engine.checkpoint_engine.load(str(tmp_path / "ok.pt"), map_location="cpu")["zero_stage"] == 2
    assert not marker.exists()
    assert "load" not in vars(engine.checkpoint_engine)  # DeepSpeed's own method is back afterwards


def test_no_eval_exec_and_every_torch_load_is_weights_only():
    sources = project_sources()
    assert len(sources) > 20
    bad = []
    for path in sources:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            if isinstance(f, ast.Name) and name in ("eval", "exec"):
                bad.append(f"{where}: {name}()")
            if name == "load" and isinstance(f, ast.Attribute) and getattr(f.value, "id", "") == "torch":
                wo = [k.value for k in node.keywords if k.arg == "weights_only"]
                value = wo[0].value if wo and isinstance(wo[0], ast.Constant) else None
                # this file's own control load (a payload that must run) is the one exception
                if value is not True and not (path.name == Path(__file__).name and value is False):
                    bad.append(f"{where}: torch.load without weights_only=True")
    assert not bad, bad


# -- hostile experiment state ---------------------------------------------------------------------
SWEEP = [*NARROW[:-2], "--steps", "40", "--milestones", "10", "--seeds", "1", "--schedule", "cosine"]


def payload_pickle(marker: Path) -> bytes:
    import pickle

    return pickle.dumps(_Payload(marker))


def payload_state(marker: Path) -> bytes:
    """An experiment_state-*.json whose resume would run the payload: Ray decodes it with
    cloudpickle expansion on (ray.tune.utils.serialization._loads_with_cloudpickle)."""
    return json.dumps({"trial_data": [], "runner_data": {"x": {"_type": "CLOUDPICKLE_FALLBACK",
                                                                "value": payload_pickle(marker).hex()}}}).encode()


@pytest.fixture(scope="module")
def swapped_mid_run(tmp_path_factory):
    """A one-trial sweep (CLI, subprocess, private Ray temp dir) whose tuner.pkl is replaced by a
    payload as soon as the trial's step-10 checkpoint is on storage, while the sweep runs on."""
    root = tmp_path_factory.mktemp("mid_run")
    exp = root / "res" / "exp"
    raytmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    env = dict(os.environ, RAY_TMPDIR=raytmp, PYTHONUNBUFFERED="1")
    argv = [sys.executable, str(ROOT / "tune_scaling.py"), *SWEEP, "--storage-path", str(root / "res"), "--name", "exp"]
    marker = root / "pwned"
    with open(root / "run.log", "wb") as log:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while not list(exp.glob("*/checkpoint_000000/manifest.json")):
            assert proc.poll() is None and time.monotonic() < deadline, (root / "run.log").read_text()[-3000:]
            time.sleep(0.1)
        good = (exp / "tuner.pkl").read_bytes()
        (exp / "tuner.pkl").write_bytes(payload_pickle(marker))
        rc = proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
        shutil.rmtree(raytmp, ignore_errors=True)
    assert rc == 0, (root / "run.log").read_text()[-3000:]
    return {"exp": exp, "good": good, "marker": marker}


@pytest.mark.slow
def test_a_tuner_pkl_swapped_in_while_the_sweep_runs_is_never_recorded_and_never_runs(swapped_mid_run):
    """Before, the end-of-run record hashed whatever was on storage, so the next plain re-run
    unpickled the payload."""
    from sweep import integrity

    exp, marker = swapped_mid_run["exp"], swapped_mid_run["marker"]
    assert integrity.sha256((exp / "tuner.pkl").read_bytes()) not in integrity.read_record(str(exp))["tuner.pkl"]
    before = (exp / "study.json").read_bytes()
    env = dict(os.environ, RAY_TMPDIR=str(exp.parent / "ray_tmp_unused"))  # a refusal starts no Ray
    proc = subprocess.run([sys.executable, str(ROOT / "tune_scaling.py"), *SWEEP, "--storage-path", str(exp.parent),
                           "--name", "exp"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith(f"error: experiment {exp}: tuner.pkl changed since this tool recorded it")
    assert not marker.exists(), "the payload ran"
    assert (exp / "study.json").read_bytes() == before and not (exp.parent / "ray_tmp_unused").exists()


@pytest.mark.parametrize("victim", ["tuner.pkl", "experiment_state", "callback-states"])
@pytest.mark.slow
def test_a_state_file_swapped_in_after_the_check_never_runs(victim, swapped_mid_run, tmp_path, monkeypatch, capsys):
    """The swap happens right after the driver's last check (under the experiment lock, Ray
    already started), before Ray reads the file: the storage layer refuses the bytes as Ray reads
    them, the run stops with one error line and exit 2, nothing is trained again and the payload
    never runs. Ray reads tuner.pkl and the experiment state in Tuner.restore, the callback
    states only inside Tuner.fit (where its TuneController would restart the whole experiment
    after any Exception from a failed restore)."""
    import ray

    import sweep.experiment
    import tune_scaling

    exp = tmp_path / "res" / "exp"
    shutil.copytree(swapped_mid_run["exp"], exp)
    (exp / "tuner.pkl").write_bytes(swapped_mid_run["good"])  # the file the driver wrote
    marker = tmp_path / "pwned"
    target = exp / "tuner.pkl" if victim == "tuner.pkl" else sorted(exp.glob(f"{victim}-*"))[-1]
    hostile = payload_state(marker) if victim == "experiment_state" else payload_pickle(marker)
    real_check, calls = sweep.experiment.integrity_refusal, []

    def check_then_swap(exp_dir, trust):
        found = real_check(exp_dir, trust)
        calls.append(found)
        if len(calls) == 2:  # decide() under the lock: the last check before Tuner.restore
            target.write_bytes(hostile)
        return found

    monkeypatch.setattr(sweep.experiment, "integrity_refusal", check_then_swap)
    trials_before = sorted(p.name for p in exp.rglob("*"))
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            rc = tune_scaling.main([*SWEEP, "--storage-path", str(exp.parent), "--name", "exp"])
    finally:
        ray.shutdown()
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert calls == [None, None] and rc == 2
    assert len(err) == 1 and f"{target.name} changed since this tool recorded it in study.json (found as Ray read it)" in err[0]
    assert not marker.exists(), "the payload ran"
    assert sorted(p.name for p in exp.rglob("*")) == trials_before  # nothing trained, nothing added
    # the payloads are real: Ray's own decoding of the file would run them
    if victim != "experiment_state":
        import pickle

        pickle.loads(hostile)
    else:
        from ray.tune.utils.serialization import _loads_with_cloudpickle

        _loads_with_cloudpickle(hostile)
    assert marker.is_dir()


@pytest.mark.slow
def test_trust_storage_refuses_a_damaged_state_file_in_one_line(swapped_mid_run, tmp_path):
    """--trust-storage accepts changed files, not a truncated one (Ray's restore of it ended in an
    EOFError traceback, its issue #58179)."""
    exp = tmp_path / "res" / "exp"
    shutil.copytree(swapped_mid_run["exp"], exp)
    (exp / "tuner.pkl").write_bytes(swapped_mid_run["good"][:-100])
    before = (exp / "study.json").read_bytes()
    env = dict(os.environ, RAY_TMPDIR=str(tmp_path / "ray_tmp_unused"))
    proc = subprocess.run([sys.executable, str(ROOT / "tune_scaling.py"), *SWEEP, "--storage-path", str(exp.parent),
                           "--name", "exp", "--resume", "--trust-storage"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-3000:]
    assert "tuner.pkl is damaged (not a complete pickle file" in lines[0] and "--trust-storage accepts" in lines[0]
    assert (exp / "study.json").read_bytes() == before and not (tmp_path / "ray_tmp_unused").exists()
