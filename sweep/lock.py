"""One driver per experiment: an exclusive lock on `<experiment>/.driver.lock`.

Two drivers on one experiment directory would launch (or restore) the same trials twice, into
the same trial directories. The lock is an `flock` held for the driver's lifetime: the kernel
(or the NFS server's lock manager) releases it when the process ends, however it ends, so a
SIGKILLed driver never leaves a lock that blocks the next one. The file names the holder
(pid, host, start time): a second driver reports it in one line and exits 2; a driver that
finds a holder named in the file but the lock free says whose stale lock it takes over. The
file is kept (emptied on a clean exit): removing it would let two drivers lock two different
files of the same name.
"""
from __future__ import annotations

import fcntl
import os
import socket
import time

from search_spaces.errors import ConfigError

LOCK_FILE = ".driver.lock"


class DriverLock:
    def __init__(self, exp_dir: str):
        self.path = os.path.join(exp_dir, LOCK_FILE)
        self.fd: int | None = None
        self.stale: str | None = None  # the holder named by a lock whose driver is gone

    def acquire(self) -> "DriverLock":
        """Take the lock (creating the experiment directory), or ConfigError naming the holder."""
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise in_use(os.path.dirname(self.path), holder) from None
        self.stale = _read(fd) or None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}"
                      .encode(), 0)
        os.fsync(fd)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        os.ftruncate(self.fd, 0)  # an empty file: nobody's lock
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> "DriverLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def holder(exp_dir: str) -> str | None:
    """Who holds the experiment's lock now (None: nobody), without taking it or writing anything."""
    try:
        fd = os.open(os.path.join(exp_dir, LOCK_FILE), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None  # free (released again when fd closes)
    except BlockingIOError:
        return _read(fd) or ""
    finally:
        os.close(fd)


def in_use(exp_dir: str, who: str) -> ConfigError:
    who = who or "one that has not yet written its name"
    return ConfigError(f"experiment {exp_dir} is in use by another driver ({who}); wait for it to end or stop it, "
                       f"then rerun")


def _read(fd: int) -> str:
    return os.pread(fd, 512, 0).decode(errors="replace").strip()
