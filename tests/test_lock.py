"""sweep/lock.py: one driver per experiment (the whole-sweep cases are in tests/test_reliability.py).
Another process holds the lock here: a child python that takes it and waits to be told to end."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from search_spaces.errors import ConfigError
from sweep import lock

ROOT = Path(__file__).resolve().parents[1]
HOLD = "import sys, sweep.lock; sweep.lock.DriverLock(sys.argv[1]).acquire(); print('held', flush=True); sys.stdin.read()"


def holding_process(exp: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(exp)], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_held_lock_names_its_holder_and_refuses_a_second_driver(tmp_path):
    exp = tmp_path / "exp"
    assert lock.holder(str(exp)) is None and not exp.exists()  # asking writes nothing
    proc = holding_process(exp)
    try:
        who = lock.holder(str(exp))
        assert who.startswith(f"pid {proc.pid} on host ") and ", since 20" in who
        with pytest.raises(ConfigError, match=rf"is in use by another driver \(pid {proc.pid} on host .*\); wait for it"):
            lock.DriverLock(str(exp)).acquire()
    finally:
        proc.communicate("")  # a clean exit: the holder's name stays, the lock is free
    assert lock.holder(str(exp)) is None


def test_the_lock_of_a_killed_driver_is_taken_over_and_a_clean_release_leaves_it_empty(tmp_path):
    exp = tmp_path / "exp"
    proc = holding_process(exp)
    os.kill(proc.pid, signal.SIGKILL)  # no clean-up: the file still names it, the kernel freed the lock
    proc.wait()
    with lock.DriverLock(str(exp)) as mine:
        assert mine.stale.startswith(f"pid {proc.pid} on host ")
        assert (exp / lock.LOCK_FILE).read_text().startswith(f"pid {os.getpid()} on host ")
    assert (exp / lock.LOCK_FILE).read_text() == ""  # released
    with lock.DriverLock(str(exp)) as again:
        assert again.stale is None
