"""Storage integrity: a resume unpickles only files this tool saw written.

`Tuner.restore` unpickles tuner.pkl, the experiment state (JSON carrying cloudpickled trial
fields), the searcher and callback states; Ray's result tools unpickle each trial's
params.pkl / error.pkl. Anyone who can write the storage path can put code there. So the
driver records the SHA-256 of every such file in study.json ("sha256"):

* at launch, once the Tuner has written tuner.pkl;
* while the experiment runs, each time Ray writes a new experiment checkpoint: `Recorder`
  (a Tune callback) hashes the driver's staging copies, which Ray then uploads unchanged;
* when the run ends or is interrupted (the final state Ray left on storage).

Before `Tuner.restore`, `verify` compares the directory with that record: a changed, missing or
unrecorded state file is refused (one line, exit 2) before anything is unpickled. The trust
model (README): study.json itself must be as trustworthy as the storage it describes; this
detects files changed behind the tool's back (another user of a shared NFS / bucket, a copy
from elsewhere), it does not protect against someone who can rewrite study.json as well.
Local storage paths only (a URI experiment is never resumed by this tool).

This module is pickled by value with the callbacks (sweep.launch.portable_pickles): it uses
only the standard library and Ray at run time.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import time

from ray.tune import Callback

MANIFEST = "study.json"
# top-level files a restore unpickles (experiment_state / variant / search-generator JSON
# carry cloudpickled fields); in trial directories: every *.pkl (params.pkl, error.pkl)
STATE_PATTERNS = ("tuner.pkl", "*.pkl", "experiment_state-*.json", "basic-variant-state-*.json",
                  "search_gen_state-*.json")
SKIP_DIRS = ("analysis",)


def state_files(root: str) -> list[str]:
    """Relative paths (POSIX) of the files under an experiment directory that Ray unpickles."""
    out = []
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return out
    for e in entries:
        if e.is_file() and e.name != MANIFEST and any(fnmatch.fnmatch(e.name, p) for p in STATE_PATTERNS):
            out.append(e.name)
        elif e.is_dir() and e.name not in SKIP_DIRS and not e.name.startswith("."):
            out += [f"{e.name}/{f.name}" for f in os.scandir(e.path) if f.is_file() and f.name.endswith(".pkl")]
    return sorted(out)


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def hashes(root: str) -> dict[str, str]:
    return {rel: sha256(os.path.join(root, rel)) for rel in state_files(root)}


def write_record(exp_dir: str, record: dict[str, str]) -> None:
    """Store `record` as study.json's "sha256" (atomically: a reader never sees half a file)."""
    path = os.path.join(exp_dir, MANIFEST)
    with open(path) as f:
        doc = json.load(f)
    doc["sha256"] = dict(sorted(record.items()))
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(tmp, path)


def record(exp_dir: str) -> None:
    """Hash what is on storage now (launch, end of run) and store it."""
    write_record(exp_dir, hashes(exp_dir))


def read_record(exp_dir: str) -> dict[str, str] | None:
    try:
        with open(os.path.join(exp_dir, MANIFEST)) as f:
            return json.load(f).get("sha256")
    except (OSError, ValueError):
        return None


def problems(exp_dir: str) -> list[str]:
    """What differs between the experiment's state files and study.json's record ([] = none)."""
    saved = read_record(exp_dir)
    if saved is None:
        return ["study.json has no SHA-256 record of the experiment state"]
    now = state_files(exp_dir)
    out = [f"{rel} is missing" for rel in sorted(set(saved) - set(now))]
    out += [f"{rel} is not one this tool wrote" for rel in now if rel not in saved]
    out += [f"{rel} changed" for rel in now if rel in saved and sha256(os.path.join(exp_dir, rel)) != saved[rel]]
    return out


class Recorder(Callback):
    """Keeps study.json's record current while Tune runs: after each controller step that wrote a
    new experiment checkpoint (its experiment_state file changed in the driver's staging
    directory), hash the staged state files, which Ray uploads to `exp_dir` unchanged."""

    def __init__(self, exp_dir: str, min_interval_s: float = 0.0):
        """min_interval_s: 0 checks after every controller step (a few stat calls), so a driver
        killed right after Ray wrote its state almost never leaves the record behind."""
        self.exp_dir = exp_dir
        self.min_interval_s = min_interval_s
        self._seen: dict[str, tuple] = {}
        self._last = 0.0

    def __getstate__(self):
        return {"exp_dir": self.exp_dir, "min_interval_s": self.min_interval_s}

    def __setstate__(self, state):
        self.__init__(**state)

    def on_step_end(self, iteration, trials, **info):
        now = time.monotonic()
        if not trials or now - self._last < self.min_interval_s:
            return
        self._last = now
        staging = trials[0].storage.experiment_driver_staging_path
        stamps = {}
        for rel in state_files(staging):
            st = os.stat(os.path.join(staging, rel))
            stamps[rel] = (st.st_mtime_ns, st.st_size)
        if stamps == self._seen:
            return
        record = read_record(self.exp_dir) or {}
        record.update({rel: sha256(os.path.join(staging, rel)) for rel in stamps if stamps[rel] != self._seen.get(rel)})
        write_record(self.exp_dir, record)
        self._seen = stamps
