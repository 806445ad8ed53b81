"""The test harness of tests/test_reliability.py: drivers run as whole processes in their own
session (started, watched, SIGKILLed with every process they started) and what a sweep left on
disk (Tune's stored trial status, complete checkpoints, milestone losses, each trial's starts
in the Ray worker logs)."""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from trainables import checkpoint as ckpt

ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT = 300  # one driver run takes ~30-60 s on 2 busy cores
START_LINE = re.compile(r"\[(\S+)\] start: training from step (\d+)")


# -- processes ----------------------------------------------------------------------------------
def session_members(sid: int) -> list[int]:
    """Live (non-zombie) processes in session `sid`: the driver, its Ray daemons and workers
    (Ray workers call setsid() into their own process group, but stay in the session)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(entry))
    return pids


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()[:80]
    except OSError:
        return f"{pid} (gone)"


def kill_session(sid: int, timeout: float = 30.0) -> None:
    """SIGKILL every process of the session and wait until none is left."""
    deadline = time.monotonic() + timeout
    while members := session_members(sid):
        for pid in members:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise AssertionError(f"processes of session {sid} survive SIGKILL: {members}")
        time.sleep(0.1)


class Driver:
    """`python tune_scaling.py ARGS` in a new session, output to a log file; always cleaned up."""

    def __init__(self, argv: list[str], env: dict, log: Path, delay: float = 0.0):
        self.raydir = Path(env["RAY_TMPDIR"]) / "ray"
        self.before = set(self.raydir.glob("session_2*"))
        self.log = log
        time.sleep(delay)
        self.t0 = time.monotonic()
        with open(log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, str(ROOT / "tune_scaling.py"), *argv], cwd=ROOT, env=env,
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        kill_session(self.proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, condition, what: str, timeout: float = RUN_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.proc.poll() is not None:
                raise AssertionError(f"driver exited (rc {self.proc.returncode}) before {what}:\n{self.output()[-4000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} after {timeout} s:\n{self.output()[-4000:]}")
            time.sleep(0.1)

    def kill(self) -> float:
        """SIGKILL the driver and every Ray process it started; returns when it ran."""
        at = self.elapsed
        kill_session(self.proc.pid)
        self.proc.wait(timeout=30)
        return at

    DRIVER_ONLY_GRACE = 30.0  # s for Ray's processes to end after their driver was SIGKILLed

    def kill_driver_only(self) -> tuple[float, float, list[str]]:
        """SIGKILL the driver process alone (what `kill -9 PID` or the OOM killer does) and wait
        until no process of its session is left: (when it ran, how long the rest took to end, the
        names of those still alive after DRIVER_ONLY_GRACE s, which are then killed)."""
        at = self.elapsed
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        t0 = time.monotonic()
        while session_members(self.proc.pid) and time.monotonic() - t0 < self.DRIVER_ONLY_GRACE:
            time.sleep(0.2)
        left = time.monotonic() - t0
        survivors = [process_name(pid) for pid in session_members(self.proc.pid)]
        kill_session(self.proc.pid)
        return at, left, survivors

    def finish(self, timeout: float = RUN_TIMEOUT) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"driver still running after {timeout} s:\n{self.output()[-4000:]}") from None

    def _new_sessions(self) -> list[Path]:
        return sorted(set(self.raydir.glob("session_2*")) - self.before)

    def trial_started(self, name: str) -> bool:
        """The trial has started training in this driver's Ray session (so a kill now hits a
        running trial, not a starting interpreter or a trial still being scheduled)."""
        new = self._new_sessions()
        return bool(new) and name in starts(new[-1])

    def session(self) -> Path:
        new = self._new_sessions()
        assert new, f"no Ray session under {self.raydir}"
        return new[-1]


# -- what is on disk ------------------------------------------------------------------------------
def starts(session: Path) -> dict[str, list[int]]:
    """trial name -> the step each start of it trained from, in this Ray session's worker logs."""
    found: dict[str, list[tuple[float, int]]] = {}
    for log in session.glob("logs/worker-*.out"):
        for line in log.read_text(errors="replace").splitlines():
            if m := START_LINE.search(line):
                found.setdefault(m.group(1), []).append((log.stat().st_mtime, int(m.group(2))))
    return {k: [s for _, s in sorted(v)] for k, v in found.items()}


def session_log_text(session: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in session.glob("logs/worker-*.out"))


def stored_status(exp: Path) -> dict[str, str]:
    """trial dir name -> status in the newest experiment state (by the name's timestamp, as Ray
    picks it on restore). {} while a file is mid-write."""
    states = sorted(exp.glob("experiment_state-*.json"))
    if not states:
        return {}
    try:
        data = json.loads(states[-1].read_text())
    except (OSError, ValueError):
        return {}
    out = {}
    for entry in data.get("trial_data", []):
        meta = json.loads(entry[0])
        out[meta["relative_logdir"]] = meta["status"]
    return out


def trial_dirs(exp: Path) -> dict[int, Path]:
    """steps -> directory of the untagged trial of that length; (steps, tag) -> a tagged one."""
    out = {}
    for d in exp.glob("baseline_T1-T1_*"):
        try:
            trial = json.loads((d / "params.json").read_text())["trial"]
        except (OSError, ValueError):  # not there yet, or Ray is still writing it
            continue
        out[(trial["steps"], trial["tag"])] = d
    return {steps: d for (steps, tag), d in out.items() if not tag} | {(s, t): d for (s, t), d in out.items() if t}


def newest_checkpoint(exp: Path, steps) -> int:
    """Newest complete checkpoint step of the trial `steps` names, 0 if none (yet). Lists the trials
    once: a second listing can miss a params.json Ray is rewriting (a KeyError seen in CI)."""
    dirs = trial_dirs(exp)
    return max(complete_checkpoints(dirs[steps]), default=0) if steps in dirs else 0


def complete_checkpoints(tdir: Path) -> dict[int, Path]:
    """manifest step -> checkpoint dir, for checkpoints whose files all match their manifest."""
    out = {}
    for d in sorted(tdir.glob("checkpoint_*")):
        try:
            manifest = ckpt.verify(d)
        except ckpt.CheckpointCorrupt:
            continue
        if manifest is not None:
            out[manifest["step"]] = d
    return out


def file_digest(tdir: Path) -> dict[str, bytes]:
    return {p.relative_to(tdir).as_posix(): p.read_bytes() for p in sorted(tdir.rglob("*"))
            if p.is_file() and (p.name == "result.json" or "checkpoint_" in p.as_posix())}


def milestone_losses(tdir: Path) -> dict[int, tuple[float, float]]:
    """step -> (train_loss, eval_loss) of the last milestone report per step in result.json."""
    out = {}
    for line in (tdir / "result.json").read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            if row.get("milestone"):
                out[row["step"]] = (row["train_loss"], row["eval_loss"])
    return out


def snapshot(exp: Path) -> dict:
    status = stored_status(exp)
    out = {}
    for steps, tdir in trial_dirs(exp).items():
        done = complete_checkpoints(tdir)
        out[steps] = {"status": status.get(tdir.name), "newest": max(done, default=0), "files": file_digest(tdir)}
    return out

