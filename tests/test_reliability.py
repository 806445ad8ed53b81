"""Fault injection on whole sweeps: the driver SIGKILLed three times and
resumed, a WSD sweep killed after its first fork checkpoint and resumed (in place, and after its
directory was moved), two drivers on one experiment, a trial process SIGKILLed mid-step, Ctrl-C
and SIGTERM, a diverging and an out-of-memory trial inside a sweep, a truncated checkpoint.

Not repeated here (trial-level, tested elsewhere): the NaN / OOM error messages and a
bit-identical retry after a raised error (tests/test_trainable.py), undecodable rows skipped
and counted (tests/test_data.py).

Every kill happens at a known state, observed by polling the storage (a named checkpoint
complete on disk, a trial TERMINATED in Ray's stored state), never after a random delay. The
cosine sweeps are one narrowed smoke grid with --deterministic: baseline T1-T1 for 20 and 60
steps, milestones every 10 steps; the WSD sweeps are baseline T1-T1 at 20 and 40 steps with
cooldown fraction 0.25 (a 30-step stable trial forking at 15 and 30). A resumed trial must end
with exactly (==) the losses of the uninterrupted run of the same trials. What a trial did is
read from Tune's experiment state (status), its checkpoints (manifest step) and its own
"[name] start: training from step k" line in the Ray worker logs, one per start: drivers run
Ray under a private RAY_TMPDIR, so those logs are this module's alone (and no other process
on the machine can attach to these clusters with --address auto).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest

from sweep_harness import (
    Driver, RUN_TIMEOUT, complete_checkpoints, milestone_losses, newest_checkpoint, session_log_text,
    snapshot, starts, stored_status, trial_dirs,
)
from trainables import checkpoint as ckpt

SHORT, LONG = 20, 60
GRID = ["--grid", "smoke", "--schedule", "cosine", "--configs", "T1-T1", "--variants", "baseline", "--steps", f"{SHORT},{LONG}",
        "--milestones", "10,20,30,40,50", "--deterministic", "--seeds", "1"]
NAMES = {SHORT: f"baseline_T1-T1_{SHORT}_s0", LONG: f"baseline_T1-T1_{LONG}_s0"}


def expected_milestones(steps: int) -> list[int]:
    return [m for m in (10, 20, 30, 40, 50) if m < steps] + [steps]


@pytest.fixture(scope="module")
def ray_env(tmp_path_factory):
    """Environment of the drivers: a private Ray temp dir (short: Ray's socket paths)."""
    raytmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    # TUNE_GLOBAL_CHECKPOINT_S=1: Tune writes the experiment state every second instead of every
    # 10 s or more, so "the 20-step trial is TERMINATED on disk" is seen while the 60-step trial
    # still has ~30 steps to go; at 10 s an idle machine could finish both first, and the next
    # kill would find nothing running
    env = dict(os.environ, RAY_TMPDIR=raytmp, PYTHONUNBUFFERED="1", TUNE_GLOBAL_CHECKPOINT_S="1")
    yield env
    shutil.rmtree(raytmp, ignore_errors=True)


# -- the uninterrupted reference + trial-level faults, in one in-process sweep ------------------
@pytest.fixture(scope="module")
def fault_sweep(tmp_path_factory, ray_env):
    """run_sweep (the CLI's driver) over the grid's two clean trials (the reference for every
    resumed run here) plus three faulty copies of the 20-step one: SIGKILLed at step 15, loss
    NaN at step 13, out of memory at step 3. max_failures=1; the fitting step runs."""
    import ray

    from sweep.launch import run_sweep
    from tune_scaling import build_trials, parse_args

    store = tmp_path_factory.mktemp("faults")
    args = parse_args([*GRID, "--storage-path", str(store), "--name", "faults", "--max-failures", "1",
                       "--bootstrap", "20"])
    short, long_ = sorted(build_trials(args), key=lambda t: t.steps)
    trials = [long_, short, short.replace(fault="kill@15", tag="kill"),
              short.replace(fault="nan@13", tag="nan"), short.replace(fault="oom@3", tag="oom")]
    err = io.StringIO()
    t0 = time.monotonic()
    raydir = Path(ray_env["RAY_TMPDIR"], "ray")
    before = set(raydir.glob("session_2*"))
    if ray.is_initialized():  # another module's session: run_sweep starts its own
        ray.shutdown()
    with pytest.MonkeyPatch.context() as mp:
        for key in ("RAY_TMPDIR",):
            mp.setenv(key, ray_env[key])
        try:
            with contextlib.redirect_stderr(err):
                rc = run_sweep(args, trials)
        finally:
            ray.shutdown()
    (session,) = set(raydir.glob("session_2*")) - before
    exp = store / "faults"
    record = {"rc": rc, "stderr": err.getvalue(), "exp": exp, "dirs": trial_dirs(exp), "status": stored_status(exp),
              "starts": starts(session), "seconds": time.monotonic() - t0,
              "reference": {s: milestone_losses(trial_dirs(exp)[s]) for s in (SHORT, LONG)}}
    print(f"\nfault_sweep: {record['seconds']:.0f} s, rc {rc}, starts {record['starts']}, "
          f"statuses {sorted(record['status'].values())}")
    return record


@pytest.mark.slow
def test_reference_run_reports_every_milestone(fault_sweep):
    ref = fault_sweep["reference"]
    for steps in (SHORT, LONG):
        assert sorted(ref[steps]) == expected_milestones(steps)
    assert fault_sweep["starts"][NAMES[LONG]] == [0] and fault_sweep["starts"][NAMES[SHORT]] == [0]


@pytest.mark.slow
def test_killed_trial_process_is_retried_from_its_checkpoint(fault_sweep):
    """fault kill@15 SIGKILLs the trial's worker mid-step: Ray retries it (FailureConfig) from its
    step-10 checkpoint and it ends with the uninterrupted trial's losses at every milestone."""
    d = fault_sweep["dirs"][(SHORT, "kill")]
    assert fault_sweep["status"][d.name] == "TERMINATED"
    assert fault_sweep["starts"][f"{NAMES[SHORT]}_kill"] == [0, 10]
    assert milestone_losses(d) == fault_sweep["reference"][SHORT]


@pytest.mark.slow
def test_diverging_trial_fails_alone_and_the_fit_excludes_it(fault_sweep):
    """nan@13: that trial ends in ERROR naming step 13 (on its retry too); every other trial
    finishes; the sweep's fitting step leaves it out and says so in report.md."""
    d = fault_sweep["dirs"][(SHORT, "nan")]
    status = fault_sweep["status"]
    assert status[d.name] == "ERROR"
    assert "non-finite training loss at step 13" in (d / "error.txt").read_text()
    assert f"{d.name} failed: " in fault_sweep["stderr"] and "non-finite training loss at step 13" in fault_sweep["stderr"]
    clean = [fault_sweep["dirs"][k] for k in (SHORT, LONG, (SHORT, "kill"))]
    assert [status[c.name] for c in clean] == ["TERMINATED"] * 3
    assert fault_sweep["rc"] == 1  # some trials failed
    report = (fault_sweep["exp"] / "analysis" / "report.md").read_text()
    run_id = json.loads((d / "result.json").read_text().splitlines()[0])["trial_id"]
    excluded = [line for line in report.splitlines() if line.startswith(f"- {run_id}:")]
    assert excluded and "ERROR" in excluded[0] and "non-finite training loss at step 13" in excluded[0], report


@pytest.mark.slow
def test_out_of_memory_trial_fails_alone_with_a_suggestion(fault_sweep):
    d = fault_sweep["dirs"][(SHORT, "oom")]
    status = fault_sweep["status"]
    assert status[d.name] == "ERROR"
    last = [line for line in (d / "error.txt").read_text().splitlines() if line.strip()][-1]
    assert "out of memory at step 3" in last and "T1-T1" in last and "micro-batch 16" in last
    assert "the planner suggests micro-batch" in last and "--dry-run" in last
    others = [k for k in fault_sweep["dirs"] if not (isinstance(k, tuple) and k[1] in ("nan", "oom"))]
    assert all(status[fault_sweep["dirs"][k].name] == "TERMINATED" for k in others)


# -- the driver SIGKILLed three times -----------------------------------------------------------
@pytest.fixture(scope="module")
def killed_sweep(tmp_path_factory, ray_env):
    """Launch, then SIGKILL at three known states and re-run with --resume each time:
      1. the driver process alone, as soon as the 60-step trial's step-10 checkpoint is complete
         on storage (Ray's own processes and the trial must then end with it);
      2. the whole driver session, as soon as the 20-step trial is TERMINATED in Ray's stored state;
      3. the whole session, as soon as the 60-step trial wrote two more checkpoints in this run;
         then its newest complete checkpoint's trainer_state.pt is truncated to half (case 6);
    and a last --resume runs to the end. Returns what was seen at each kill."""
    store = tmp_path_factory.mktemp("killed")
    exp = store / "killed"
    argv = [*GRID, "--no-fit", "--storage-path", str(store), "--name", "killed"]
    logs = tmp_path_factory.mktemp("killed_logs")
    kills, sessions = [], []

    # 1
    with Driver(argv, ray_env, logs / "run1.log") as d:
        d.wait_for(lambda: newest_checkpoint(exp, LONG) >= 10, "the 60-step trial's step-10 checkpoint")
        at, left, survivors = d.kill_driver_only()
        kills.append({"trigger": "60-step trial checkpointed step 10", "at_s": at, "seen": snapshot(exp),
                      "left_after_s": left, "survivors": survivors})
        sessions.append(d.session())
    # 2
    with Driver([*argv, "--resume"], ray_env, logs / "run2.log") as d:
        d.wait_for(lambda: any(n.startswith(NAMES[SHORT] + "_") and s == "TERMINATED"
                               for n, s in stored_status(exp).items()), "20-step trial TERMINATED")
        kills.append({"trigger": "20-step trial TERMINATED", "at_s": d.kill(), "seen": snapshot(exp)})
        assert kills[-1]["seen"][LONG]["status"] != "TERMINATED", "kill 2 came after both trials ended"
        sessions.append(d.session())
    # 3
    start3 = kills[-1]["seen"][LONG]["newest"]
    target = min(start3 + 20, 50)
    with Driver([*argv, "--resume"], ray_env, logs / "run3.log") as d:
        # under load run 2 may already have left checkpoint 50 (target reached at once): wait for
        # the trial to start in this run too, else the next run is not the one it restarts in
        d.wait_for(lambda: d.trial_started(NAMES[LONG]) and newest_checkpoint(exp, LONG) >= target,
                   f"60-step trial started and checkpointed step {target}")
        kills.append({"trigger": f"60-step trial checkpointed step {target}", "at_s": d.kill(), "seen": None})
        sessions.append(d.session())
    corrupted = None
    tlong = trial_dirs(exp)[LONG]
    if stored_status(exp).get(tlong.name) != "TERMINATED":
        done = complete_checkpoints(tlong)
        step = max(done)
        victim = done[step] / ckpt.STATE_FILE
        victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
        corrupted = {"step": step, "file": str(victim), "fallback": max(complete_checkpoints(tlong), default=0)}
    kills[-1]["seen"] = snapshot(exp)  # after the truncation: what the resume must cope with
    # 4
    with Driver([*argv, "--resume"], ray_env, logs / "run4.log") as d:
        rc = d.finish()
        final_output = d.output()
        sessions.append(d.session())
    record = {"kills": kills, "sessions": sessions, "corrupted": corrupted, "rc": rc,
              "output": final_output, "exp": exp, "final": snapshot(exp), "status": stored_status(exp)}
    print("\nkilled_sweep: " + "; ".join(
        f"kill {i + 1} ({k['trigger']}) at {k['at_s']:.1f} s: "
        + ", ".join(f"{s}-step {v['status']} newest ckpt {v['newest']}" for s, v in k["seen"].items())
        for i, k in enumerate(kills)) + f"; corrupted {corrupted}; starts per run "
        + str([starts(s) for s in sessions[1:]]))
    return record


@pytest.mark.slow
def test_ray_processes_end_with_a_sigkilled_driver(killed_sweep):
    """Kill 1 hit the driver process alone: its Ray processes (GCS, raylet, the dashboard and
    runtime-env agents, the trial's worker) were all gone soon after (Driver.kill_driver_only
    polls the driver's session; without the watchdog two agents stayed ~60 s)."""
    kill = killed_sweep["kills"][0]
    assert kill["left_after_s"] < Driver.DRIVER_ONLY_GRACE and not kill["survivors"], kill["survivors"]


@pytest.mark.slow
def test_killed_driver_resumes_without_rerunning_finished_trials(killed_sweep, fault_sweep):
    """After three SIGKILLs of the driver's session and --resume each time: every trial is
    TERMINATED; a trial TERMINATED at a kill never started again and its files are untouched;
    an unfinished one started exactly once in the next run, from its newest complete checkpoint
    (0: none yet); the per-milestone losses equal the uninterrupted run's."""
    rec = killed_sweep
    assert rec["rc"] == 0, rec["output"][-4000:]
    assert "ended without releasing it: taking over" in rec["output"]  # kill 3's driver held the lock
    assert set(rec["status"].values()) == {"TERMINATED"} and len(rec["status"]) == 2
    for i, kill in enumerate(rec["kills"]):
        later = [starts(s) for s in rec["sessions"][i + 1:]]
        for steps, seen in kill["seen"].items():
            name = NAMES[steps]
            if seen["status"] == "TERMINATED":
                assert all(name not in s for s in later), (i, name, later)
                assert rec["final"][steps]["files"] == seen["files"], f"{name} changed after it finished"
            else:
                assert later[0].get(name) == [seen["newest"]], (i + 1, name, seen["newest"], later[0])
    for steps in (SHORT, LONG):
        losses = milestone_losses(trial_dirs(rec["exp"])[steps])
        assert sorted(losses) == expected_milestones(steps)
        assert losses == fault_sweep["reference"][steps]


@pytest.mark.slow
def test_truncated_checkpoint_falls_back_to_the_previous_one(killed_sweep, fault_sweep):
    """Case 6: the newest checkpoint of the unfinished trial was cut in half before the last
    resume: the trial names the file, continues from the checkpoint before it, ends identical."""
    corrupted = killed_sweep["corrupted"]
    assert corrupted, "precondition: the 60-step trial had finished by kill 3 (nothing left to corrupt)"
    assert 0 < corrupted["fallback"] < corrupted["step"]
    last = killed_sweep["sessions"][-1]
    assert starts(last)[NAMES[LONG]] == [corrupted["fallback"]]
    assert f"checkpoint file {corrupted['file']} is truncated or altered" in session_log_text(last)
    assert milestone_losses(trial_dirs(killed_sweep["exp"])[LONG]) == fault_sweep["reference"][LONG]


# -- Ctrl-C and SIGTERM ------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_stops_gracefully_and_prints_the_resume_command(how, tmp_path, ray_env, fault_sweep):
    """SIGINT to the driver's process group (what a terminal's Ctrl-C does), or SIGTERM to the
    driver (kill PID, a batch scheduler), once the 60-step trial has checkpointed step 20: exit 130
    and `interrupted: resume with: python tune_scaling.py ... --resume`; that exact command
    completes the experiment with the uninterrupted losses."""
    exp = tmp_path / "ctrlc"
    argv = [*GRID, "--no-fit", "--storage-path", str(tmp_path), "--name", "ctrlc"]
    with Driver(argv, ray_env, tmp_path / "run1.log") as d:
        d.wait_for(lambda: newest_checkpoint(exp, LONG) >= 20,
                   "a step-20 checkpoint")
        if how == "ctrl-c":
            os.killpg(d.proc.pid, signal.SIGINT)
        else:
            os.kill(d.proc.pid, signal.SIGTERM)
        rc = d.finish(timeout=120)
        out = d.output()
    assert rc == 130, out[-3000:]
    hints = [line for line in out.splitlines() if line.startswith("interrupted: resume with: ")]
    assert len(hints) == 1, out[-3000:]
    cmd = shlex.split(hints[0].removeprefix("interrupted: resume with: "))
    assert cmd[:2] == ["python", "tune_scaling.py"] and cmd[-1] == "--resume" and cmd[2:-1] == argv
    seen = snapshot(exp)
    assert seen[LONG]["status"] != "TERMINATED" and seen[LONG]["newest"] >= 20
    with Driver(cmd[2:], ray_env, tmp_path / "run2.log") as d:
        assert d.finish() == 0, d.output()[-4000:]
        resumed = starts(d.session())
    assert resumed[NAMES[LONG]] == [seen[LONG]["newest"]]
    assert set(stored_status(exp).values()) == {"TERMINATED"}
    for steps in (SHORT, LONG):
        assert milestone_losses(trial_dirs(exp)[steps]) == fault_sweep["reference"][steps]


# -- a driver killed before Ray saved anything; an experiment without Ray's state ------------------
def test_what_an_existing_directory_means(tmp_path):
    """Only study.json exists (killed between writing it and Ray's first experiment snapshot):
    --resume launches it again instead of refusing a 'non-Ray' directory; a directory whose
    study.json is another grid's is refused; an experiment that ran but has lost Ray's tuner.pkl
    is refused, never trained again beside its own results. Read-only: no Ray starts."""
    from search_spaces.errors import ConfigError
    from sweep.experiment import MANIFEST, RELAUNCH, decide
    from sweep.launch import prepare
    from tune_scaling import build_trials, parse_args

    args = parse_args([*GRID, "--no-fit", "--storage-path", str(tmp_path), "--name", "early", "--resume"])
    storage, exp, _, trials, manifest = prepare(args, build_trials(args))
    Path(exp).mkdir()
    (Path(exp) / MANIFEST).write_text(json.dumps(manifest))
    assert decide(args, storage, exp, manifest) == RELAUNCH
    (Path(exp) / MANIFEST).write_text(json.dumps({"grid": "phase1", "trials": []}))
    with pytest.raises(ConfigError, match="exists but is not a Ray Tune experiment"):
        decide(args, storage, exp, manifest)
    (Path(exp) / MANIFEST).write_text(json.dumps(manifest))
    (Path(exp) / "baseline_T1-T1_20_s0_abc").mkdir()
    (Path(exp) / "baseline_T1-T1_20_s0_abc" / "result.json").write_text('{"step": 20}\n')
    before = sorted(p.name for p in Path(exp).rglob("*"))
    with pytest.raises(ConfigError, match="has run but Ray's tuner.pkl is missing, so it cannot be resumed"):
        decide(args, storage, exp, manifest)
    assert sorted(p.name for p in Path(exp).rglob("*")) == before


# -- WSD: a driver killed after the first fork checkpoint ---------------------------------------------
WSD_GRID = ["--grid", "smoke", "--schedule", "wsd", "--configs", "T1-T1", "--variants", "baseline", "--steps", "20,40",
            "--cooldown-frac", "0.25", "--deterministic", "--seeds", "1", "--no-fit"]
WSD_NAMES = ("baseline_T1-T1_30_stable_s0", "baseline_T1-T1_20_cooldown_s0", "baseline_T1-T1_40_cooldown_s0")


def wsd_trials(exp: Path) -> dict[str, Path]:
    """trial name (without Ray's id) -> its directory."""
    return {d.name.rsplit("_", 1)[0]: d for d in exp.iterdir() if d.is_dir() and (d / "params.json").exists()}


def wsd_losses(exp: Path) -> dict[str, dict]:
    return {name: milestone_losses(d) for name, d in wsd_trials(exp).items()}


@pytest.fixture(scope="module")
def wsd_reference(tmp_path_factory, ray_env):
    """The uninterrupted WSD run: the losses every resumed WSD run must end with."""
    store = tmp_path_factory.mktemp("wsd_ref")
    with Driver([*WSD_GRID, "--storage-path", str(store), "--name", "ref"], ray_env, store / "run.log") as d:
        assert d.finish() == 0, d.output()[-4000:]
    losses = wsd_losses(store / "ref")
    assert sorted(losses) == sorted(WSD_NAMES) and all(losses.values()), losses
    return losses


def killed_at_first_fork(store: Path, ray_env, name: str) -> dict:
    """Launch the WSD sweep and SIGKILL its whole session as soon as the stable trial's step-15
    checkpoint (the 20-step cooldown's fork point) is complete on storage."""
    exp = store / name
    store.mkdir(parents=True, exist_ok=True)

    def fork_checkpoint() -> bool:
        stable = wsd_trials(exp).get(WSD_NAMES[0]) if exp.is_dir() else None
        return stable is not None and 15 in complete_checkpoints(stable)

    with Driver([*WSD_GRID, "--storage-path", str(store), "--name", name], ray_env, store / f"{name}_run1.log") as d:
        d.wait_for(fork_checkpoint, "the stable trial's checkpoint at its first fork step (15)")
        d.kill()
        session = d.session()
    return {"exp": exp, "status": stored_status(exp), "starts": starts(session)}


def resume_wsd(store: Path, name: str, ray_env, log: Path) -> dict:
    with Driver([*WSD_GRID, "--storage-path", str(store), "--name", name, "--resume"], ray_env, log) as d:
        rc = d.finish()
        return {"rc": rc, "output": d.output(), "starts": starts(d.session())}


@pytest.mark.slow
def test_wsd_sweep_killed_after_its_first_fork_checkpoint_resumes(tmp_path, ray_env, wsd_reference):
    """Before: the resumed stable trial overwrote checkpoint_000000 (its fork point) and the
    cooldown failed three times ('fork_from ... is at step 30, its fork point is step 15')."""
    killed = killed_at_first_fork(tmp_path, ray_env, "wsd")
    assert killed["status"].get(next(n for n in killed["status"] if n.startswith(WSD_NAMES[0]))) != "TERMINATED"
    run = resume_wsd(tmp_path, "wsd", ray_env, tmp_path / "run2.log")
    assert run["rc"] == 0, run["output"][-4000:]
    assert "interrupted" not in run["output"]
    assert sorted(stored_status(killed["exp"]).values()) == ["TERMINATED"] * 3
    assert run["starts"][WSD_NAMES[0]] == [15]  # the stable trial continued from its fork checkpoint
    assert wsd_losses(killed["exp"]) == wsd_reference
    stable = wsd_trials(killed["exp"])[WSD_NAMES[0]]
    assert sorted(complete_checkpoints(stable)) == [15, 30]  # both fork points kept, none overwritten


@pytest.mark.slow
def test_wsd_sweep_resumes_after_its_directory_was_moved(tmp_path, ray_env, wsd_reference):
    """Killed at the same point, the experiment directory moved to another storage path and name,
    resumed there: every trial (the cooldowns created only now included) runs in the new place,
    with the uninterrupted losses; nothing is written at the old path; the live plot is drawn in
    the new directory. Before: cooldowns failed 'CheckpointCorrupt ... is missing' (absolute fork
    paths) and new trials and the plot went to the old path."""
    killed = killed_at_first_fork(tmp_path / "a", ray_env, "wsd")
    moved = tmp_path / "b" / "moved"
    moved.parent.mkdir()
    shutil.move(killed["exp"], moved)
    (moved / "live_scaling.png").unlink(missing_ok=True)
    run = resume_wsd(moved.parent, "moved", ray_env, tmp_path / "run2.log")
    assert run["rc"] == 0, run["output"][-4000:]
    assert "interrupted" not in run["output"]
    assert not killed["exp"].exists(), sorted(p.name for p in killed["exp"].rglob("*"))
    assert sorted(stored_status(moved).values()) == ["TERMINATED"] * 3
    assert sorted(wsd_trials(moved)) == sorted(WSD_NAMES)
    assert wsd_losses(moved) == wsd_reference
    assert (moved / "live_scaling.png").is_file()
    from sweep import integrity

    assert integrity.problems(str(moved)) == []  # the record follows the moved directory's own files


# -- two drivers on one experiment -----------------------------------------------------------------
@pytest.mark.slow
def test_a_second_driver_on_the_same_experiment_exits_2_and_nothing_trains_twice(tmp_path, ray_env):
    """Two drivers started 1 s apart with the same --name, and a third with --resume once the
    running one's trial has checkpointed: exactly one driver runs the sweep, each other one exits 2
    with one line naming the holder; the trial trains once, in one directory (the running driver
    is then stopped: a long trial keeps it busy while the third one starts)."""
    argv = [*GRID, "--steps", "400", "--milestones", "10", "--no-fit", "--storage-path", str(tmp_path), "--name", "two"]
    exp = tmp_path / "two"
    raydir = Path(ray_env["RAY_TMPDIR"]) / "ray"
    before = set(raydir.glob("session_2*"))
    with Driver(argv, ray_env, tmp_path / "a.log") as a, Driver(argv, ray_env, tmp_path / "b.log", delay=1.0) as b:
        deadline = time.monotonic() + RUN_TIMEOUT
        while a.proc.poll() is None and b.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        loser, winner = (a, b) if a.proc.poll() is not None else (b, a)
        assert loser.finish() == 2, loser.output()[-3000:]
        name = "baseline_T1-T1_400_s0"
        winner.wait_for(lambda: any(complete_checkpoints(d) for d in exp.glob(f"{name}_*")), "the running trial's checkpoint")
        with Driver([*argv, "--resume"], ray_env, tmp_path / "c.log") as c:
            assert c.finish() == 2, c.output()[-3000:]
        assert winner.proc.poll() is None  # still running: the refusals above met a live driver
        sessions = sorted(set(raydir.glob("session_2*")) - before)
        started = [starts(s).get(name, []) for s in sessions]
    for refused in (loser, c):
        errors = [line for line in refused.output().splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and f"is in use by another driver (pid {winner.proc.pid} on host" in errors[0], \
            refused.output()[-3000:]
    assert [s for s in started if s] == [[0]], started  # one start, from step 0, in one Ray session
    assert len([d for d in exp.iterdir() if d.is_dir() and d.name.startswith("baseline_")]) == 1
