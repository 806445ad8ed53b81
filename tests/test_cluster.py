"""Joining a Ray cluster: ray.init arguments, unreachable addresses, and a real 2-node cluster
(two raylets on this machine via ray.cluster_utils.Cluster) running a narrowed smoke grid."""
from __future__ import annotations

import json
import shutil
import socket
import time

import pytest

import tune_scaling
from search_spaces.errors import ConfigError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_init_kwargs_dashboard_is_loopback_by_default():
    from sweep.cluster import ray_init_kwargs

    kw = ray_init_kwargs(tune_scaling.parse_args(["--dashboard"]))
    assert kw["include_dashboard"] is True and kw["dashboard_host"] == "127.0.0.1" and kw["address"] is None
    kw = ray_init_kwargs(tune_scaling.parse_args(["--dashboard", "--dashboard-host", "0.0.0.0"]))
    assert kw["dashboard_host"] == "0.0.0.0"
    kw = ray_init_kwargs(tune_scaling.parse_args([]))
    assert kw["include_dashboard"] is False and "dashboard_host" not in kw
    # joining a cluster: its own dashboard; ray.init's dashboard arguments would be ignored or refused
    kw = ray_init_kwargs(tune_scaling.parse_args(["--dashboard", "--address", "ray://head:10001"]))
    assert kw["address"] == "ray://head:10001" and not {"include_dashboard", "dashboard_host"} & set(kw)


def test_dashboard_message_names_url_and_where_it_binds():
    from types import SimpleNamespace

    from sweep.cluster import dashboard_message

    args = tune_scaling.parse_args(["--dashboard"])
    msg = dashboard_message(SimpleNamespace(dashboard_url="127.0.0.1:8265"), args)
    assert "http://127.0.0.1:8265" in msg and "bound to 127.0.0.1" in msg
    assert dashboard_message(SimpleNamespace(dashboard_url=""), args).startswith("dashboard: not running")
    assert dashboard_message(SimpleNamespace(dashboard_url="x"), tune_scaling.parse_args([])) is None


def test_auth_line_says_what_the_run_does_about_token_auth(monkeypatch):
    from sweep.cluster import auth_line

    monkeypatch.setenv("RAY_AUTH_MODE", "token")  # what start_ray sets for a Ray it starts, unless the user set it
    assert auth_line().startswith("ray: token auth on") and "ray get-auth-token" in auth_line()
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert "token auth is OFF" in auth_line()


def test_a_real_size_grid_without_a_gpu_is_one_line_before_launch(monkeypatch, capsys):
    """--grid phase1 --init random on a machine without CUDA: exit 2 and one line, nothing started;
    --dry-run and the tiny smoke grid are not refused."""
    import sys
    from types import SimpleNamespace

    import torch

    from sweep.cluster import gpu_refusal

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    launched = []
    monkeypatch.setitem(sys.modules, "sweep.launch", SimpleNamespace(run_sweep=lambda *a: launched.append(a) or 0))
    assert tune_scaling.main(["--grid", "phase1", "--init", "random", "--steps", "100", "--no-fit"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "S-S is a real-size model" in err[0] and "has no GPU" in err[0], err
    assert "--dry-run and --check-data work here" in err[0] and not launched
    assert tune_scaling.main(["--grid", "phase1", "--dry-run"]) == 0
    smoke = tune_scaling.build_trials(tune_scaling.parse_args(["--grid", "smoke"]))
    assert gpu_refusal(smoke, "this machine") is None


@pytest.mark.parametrize("address, expected", [
    ("10.0.0.5:6379", ("10.0.0.5", 6379)), ("ray://head.example:10001", ("head.example", 10001)),
    ("ray://head.example", ("head.example", 10001)), ("head", ("head", 6379)), ("[::1]:7000", ("::1", 7000)),
])
def test_resolve_address(address, expected):
    from sweep.cluster import resolve_address

    assert resolve_address(address) == expected


def test_auto_without_a_started_cluster_is_an_error(monkeypatch):
    from ray._private import services

    from sweep.cluster import resolve_address

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(services, "find_bootstrap_address", lambda temp_dir: None)
    with pytest.raises(ConfigError, match="no cluster started with `ray start`"):
        resolve_address("auto")
    monkeypatch.setenv("RAY_ADDRESS", "10.1.2.3:6380")
    assert resolve_address("auto") == ("10.1.2.3", 6380)


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_unreachable_address_is_one_line_and_exit_2(scheme, capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    address = f"{scheme}127.0.0.1:{free_port()}"  # nothing listens there
    t0 = time.monotonic()
    rc = tune_scaling.main(["--grid", "smoke", "--schedule", "cosine", "--configs", "T1-T1", "--steps", "10", "--seeds", "1", "--no-fit",
                            "--storage-path", str(tmp_path), "--address", address])
    assert rc == 2 and time.monotonic() - t0 < 20
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert err.startswith(f"error: cannot reach a Ray cluster at {address}")
    for bad in ("http://head:10001", "head:port"):
        assert tune_scaling.main(["--grid", "smoke", "--storage-path", str(tmp_path), "--address", bad]) == 2


def _rows(exp_dir):
    rows = {}
    for f in exp_dir.glob("*/result.json"):
        lines = [json.loads(x) for x in f.read_text().splitlines() if x.strip()]
        rows[f.parent.name] = lines[-1]
    return rows


@pytest.mark.slow
def test_two_node_cluster_runs_the_trials_on_both_nodes(tmp_path, monkeypatch):
    """Head (1 CPU) + worker node (1 CPU), trials of 1 CPU each, at most 2 at once: both trials
    finish, on two different Ray nodes, and at the same time."""
    import tempfile

    import ray
    from ray._private import state
    from ray.cluster_utils import Cluster

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    # own temp dir (short: Ray's socket paths must stay < 108 bytes): the cluster's address file
    # must not land in /tmp/ray, where another session's `--address auto` would find it
    temp_dir = tempfile.mkdtemp(prefix="rc", dir="/tmp")
    cluster = Cluster(initialize_head=True, shutdown_at_exit=True,
                      head_node_args={"num_cpus": 1, "include_dashboard": False, "temp_dir": temp_dir})
    try:
        cluster.add_node(num_cpus=1, temp_dir=temp_dir)
        cluster.wait_for_nodes()
        rc = tune_scaling.main(["--grid", "smoke", "--schedule", "cosine", "--configs", "T1-T1", "--steps", "30", "--seeds", "1", "--no-fit",
                                "--storage-path", str(tmp_path / "res"), "--name", "two",
                                "--address", cluster.address, "--cpus-per-trial", "1", "--max-concurrent", "2"])
        assert rc == 0
        nodes = [n for n in ray.nodes() if n["Alive"]]
        assert len(nodes) == 2 and all(n["Resources"].get("CPU") == 1 for n in nodes)
        from ray.tune import ExperimentAnalysis

        assert [t.status for t in ExperimentAnalysis(str(tmp_path / "res" / "two")).trials] == ["TERMINATED"] * 2
        rows = _rows(tmp_path / "res" / "two")
        assert len(rows) == 2 and all(r["step"] == 30 and r["milestone"] for r in rows.values())
        # node of each trial: its worker pid -> the actor that ran it -> that actor's node id.
        # (Both raylets share this machine's IP, so node_ip / hostname in the rows cannot differ.)
        pid_node = {a["Pid"]: a["Address"]["NodeID"] for a in state.actors().values() if a.get("Pid")}
        trial_nodes = {name: pid_node[r["pid"]] for name, r in rows.items()}
        assert len(set(trial_nodes.values())) == 2, trial_nodes
        assert set(trial_nodes.values()) == {n["NodeID"] for n in nodes}
        # and concurrently: each node has 1 CPU, so two overlapping 1-CPU trials need both nodes
        (a0, a1), (b0, b1) = [(r["timestamp"] - r["time_total_s"], r["timestamp"]) for r in rows.values()]
        assert max(a0, b0) < min(a1, b1), "the two trials did not overlap in time"
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
