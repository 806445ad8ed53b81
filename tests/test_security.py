"""Security properties of the tool (issue 8, case 8): the dashboard binds to loopback unless a
host is given, Ray's token auth is never turned off, checkpoints never unpickle code (ours or
DeepSpeed's files), and the code base has no eval/exec. No Ray is started here."""
from __future__ import annotations

import ast
import json
import os
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
    """Ray 2.60 turns token auth on for the cluster ray.init starts; no code of the tool (tests
    aside) writes RAY_AUTH_MODE, in any way: os.environ[...] =, setdefault, update, putenv."""
    offenders = []
    for path in project_sources():
        if "tests" in path.relative_to(ROOT).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            writes = []
            if isinstance(node, (ast.Assign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                writes = [t.slice for t in targets if isinstance(t, ast.Subscript)]
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr in ("setdefault", "putenv", "update", "__setitem__"):
                writes = list(node.args) + [k.value for k in node.keywords] + [k for k in node.keywords if k.arg]
                writes += [key for a in node.args if isinstance(a, ast.Dict) for key in a.keys if key is not None]
            for w in writes:
                text = w.arg if isinstance(w, ast.keyword) else w.value if isinstance(w, ast.Constant) else None
                if text == "RAY_AUTH_MODE":
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders
    assert os.environ.get("RAY_AUTH_MODE", "").lower() != "disabled"


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
