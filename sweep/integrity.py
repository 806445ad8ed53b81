"""Storage integrity: a resume unpickles only files this tool saw written.

`Tuner.restore` unpickles tuner.pkl, the experiment state (JSON carrying cloudpickled trial
fields), the searcher and callback states; Ray's result tools unpickle each trial's
params.pkl / error.pkl. Anyone who can write the storage path can put code there. So the
driver records the SHA-256 of every such file in study.json ("sha256"):

* at launch, once the Tuner has written tuner.pkl;
* while the experiment runs, each time Ray writes a new experiment checkpoint: `Recorder`
  (a Tune callback) hashes the driver's staging copies, which Ray uploads unchanged but later
  (each file keeps the hashes from its storage copy to the newest staged one);
* when the run ends or is interrupted (the final state Ray left on storage).

Before `Tuner.restore`, `problems` compares the directory with that record: a state file whose
content this tool's driver never produced (changed, or unrecorded) is refused (one line, exit
2) before anything is unpickled. A missing file is not (it runs nothing). The trust
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
KEEP = 4  # default of accept(); the Recorder keeps every staged hash until storage catches up


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


def write_record(exp_dir: str, record: dict[str, list[str]]) -> None:
    """Store `record` ({path: accepted hashes, newest last}) as study.json's "sha256" (atomically:
    a reader never sees half a file)."""
    _write_record(os.path.join(exp_dir, MANIFEST), record)


def _write_record(path: str, record: dict[str, list[str]], doc: dict | None = None) -> None:
    if doc is None:
        with open(path) as f:
            doc = json.load(f)
    doc = {**doc, "sha256": dict(sorted(record.items()))}
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(tmp, path)


def accept(record: dict[str, list[str]], rel: str, digest: str, keep: int | None = KEEP) -> None:
    """Add `digest` as the newest accepted content of `rel` (keeping the last `keep`; None: all)."""
    kept = [h for h in record.get(rel, []) if h != digest] + [digest]
    record[rel] = kept[-keep:] if keep else kept


def record(exp_dir: str) -> None:
    """Hash what is on storage now (launch, end of run, after a verified restore) and store it."""
    write_record(exp_dir, {rel: [digest] for rel, digest in hashes(exp_dir).items()})


def read_record(exp_dir: str) -> dict[str, list[str]] | None:
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
    out = [f"{rel} is not one this tool wrote" for rel in now if rel not in saved]
    out += [f"{rel} changed" for rel in now if rel in saved and sha256(os.path.join(exp_dir, rel)) not in saved[rel]]
    return out


class Recorder(Callback):
    """Keeps study.json's record current while Tune runs. After each controller step:

    * a state file that changed in the driver's staging directory (Ray's new experiment
      checkpoint, a trial's params.pkl / error.pkl) gets its hash accepted: Ray uploads that
      copy unchanged, in the background and possibly minutes later;
    * a state file that changed on storage with a hash already accepted marks the upload: older
      hashes of that file are dropped (storage never goes back to them), so the list holds the
      storage copy plus the staged versions not uploaded yet. A storage change with an unknown
      hash (a half-copied file, or someone else's) is never accepted."""

    def __init__(self, exp_dir: str):
        self.exp_dir = exp_dir
        self._staged: dict[str, tuple] = {}
        self._stored: dict[str, tuple] = {}
        self._dirs: list[str] = []  # the driver's staging directories (known from the first step)
        # study.json as read once, at the first step: Ray's uploads rewrite the storage copy
        # (not atomically) from the staging copy, so it is never read back while Tune runs
        self._doc: dict | None = None

    def __getstate__(self):
        return {"exp_dir": self.exp_dir}

    def __setstate__(self, state):
        self.__init__(**state)

    def on_step_begin(self, iteration, trials, **info):
        self._dirs = staging_dirs(trials) if trials else self._dirs

    def get_state(self):
        """Ray calls this while it saves an experiment checkpoint, after writing the experiment
        state and searcher files to staging and before uploading them: hashing here sees every
        version Ray writes, even two saves within one controller step (a driver killed before
        the next step would otherwise leave a storage copy the record never saw)."""
        if self._dirs:
            self._update(self._dirs)
        return None  # nothing to restore: the record lives in study.json

    def on_step_end(self, iteration, trials, **info):
        if trials:
            self._update(staging_dirs(trials))

    def _update(self, dirs: list[str]) -> None:
        staged = {key: stamp for d in dirs for key, stamp in _stamps(d, tag=d).items()}
        stored = _stamps(self.exp_dir)
        if staged == self._staged and stored == self._stored:
            return
        if self._doc is None:
            try:
                with open(os.path.join(self.exp_dir, MANIFEST)) as f:
                    self._doc = json.load(f)
            except (OSError, ValueError):  # mid-upload: try again next step
                return
        record = self._doc.setdefault("sha256", {})
        for (d, rel), stamp in staged.items():
            if stamp != self._staged.get((d, rel)):
                accept(record, rel, sha256(os.path.join(d, rel)), keep=None)
        for rel, stamp in stored.items():
            if stamp != self._stored.get(rel) and rel in record:
                digest = sha256(os.path.join(self.exp_dir, rel))
                if digest in record[rel]:
                    record[rel] = record[rel][record[rel].index(digest):]
        _write_record(os.path.join(self.exp_dir, MANIFEST), record, self._doc)
        # A restored experiment's staging directory holds the copy of study.json that Ray
        # downloaded with its state, and Ray's uploads would put that stale copy back on storage
        for d in dirs:
            if os.path.exists(os.path.join(d, MANIFEST)):
                _write_record(os.path.join(d, MANIFEST), record, self._doc)
        self._staged, self._stored = staged, stored


def staging_dirs(trials) -> list[str]:
    """The driver's staging directories of this experiment in this Ray session. A restored trial
    keeps its first session's timestamp (Ray copies its storage context), so its files and the
    controller's experiment state are staged under different `artifacts/<timestamp>/` folders."""
    import glob

    first = trials[0].storage
    artifacts = os.path.dirname(os.path.dirname(os.path.dirname(first.experiment_driver_staging_path)))
    return sorted(glob.glob(os.path.join(glob.escape(artifacts), "*", glob.escape(first.experiment_dir_name),
                                         "driver_artifacts")))


def _stamps(root: str, tag: str | None = None) -> dict:
    """{rel (or (tag, rel)): (mtime, size)} of root's state files."""
    out = {}
    for rel in state_files(root):
        try:
            st = os.stat(os.path.join(root, rel))
        except FileNotFoundError:  # replaced between listing and stat
            continue
        out[rel if tag is None else (tag, rel)] = (st.st_mtime_ns, st.st_size)
    return out
