"""Storage integrity: Ray unpickles only bytes that this tool wrote, checked as they are read.

`Tuner.restore` unpickles tuner.pkl, the experiment state (JSON carrying cloudpickled trial
fields) and the searcher, variant-generator and callback states; Ray's result tools unpickle
each trial's params.pkl / error.pkl. Anyone who can write the storage path can put code there.
So the driver keeps the SHA-256 of each such file ("state file") in study.json ("sha256"), and
it does so in the storage layer itself: Ray is handed `verified_filesystem(exp_dir)` (pyarrow's
local filesystem behind a `PyFileSystem` handler, Ray's `storage_filesystem` hook), which

* writes a state file by recording its hash first and then replacing the file atomically: a
  driver killed at any instant leaves a record that the file on disk passes (the old version or
  the new one; each file keeps its last KEEP hashes). Nothing else is ever recorded: a file put
  there by someone else, even while the sweep runs, stays unrecorded;
* reads a state file by hashing the very bytes it hands to Ray: what Ray unpickles is what was
  checked (no window between a check and the read), else `StateRefused`;
* ignores Ray's uploads of study.json (a restore downloads it with the state and would upload
  that stale copy back over the record).

`problems` is the same check over the whole directory before Ray starts (one line, exit 2);
`damaged` finds truncated or malformed state files without unpickling them (refused even
under --trust-storage). Pickled (inside tuner.pkl, the experiment state, or on its way to a
trial worker), the filesystem becomes a plain `LocalFileSystem`: trial workers write their
checkpoints directly, and the experiment stays readable by plain Ray.

The trust model (docs/operations.md): study.json must be as trustworthy as the storage it
describes; this detects files changed behind the tool's back (another user of a shared NFS, a
copy from elsewhere), not someone who can rewrite study.json as well. Local storage paths only.
"""
from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import os
import pickletools
import tempfile
import threading

import pyarrow as pa
import pyarrow.fs as pafs

MANIFEST = "study.json"  # an experiment's own file: its grid (sweep/experiment.py) and this record
# top-level files a restore unpickles (experiment_state / variant / search-generator JSON
# carry cloudpickled fields); in trial directories: every *.pkl (params.pkl, error.pkl)
STATE_PATTERNS = ("tuner.pkl", "*.pkl", "experiment_state-*.json", "basic-variant-state-*.json",
                  "search_gen_state-*.json")
SKIP_DIRS = ("analysis",)
KEEP = 2  # hashes kept per file: the version on disk and the one being written


class StateRefused(BaseException):
    """A state file failed its check as Ray read it. A BaseException on purpose: Ray's
    TuneController catches any Exception from a failed resume and then starts the experiment
    afresh, which would train every trial again beside the old ones. The driver turns it into
    its one-line refusal (ConfigError)."""


def is_state_file(rel: str) -> bool:
    """rel: POSIX path relative to the experiment directory."""
    parts = rel.split("/")
    if len(parts) == 1:
        return parts[0] != MANIFEST and any(fnmatch.fnmatch(parts[0], p) for p in STATE_PATTERNS)
    return (len(parts) == 2 and parts[0] not in SKIP_DIRS and not parts[0].startswith(".")
            and parts[1].endswith(".pkl"))


def state_files(root: str) -> list[str]:
    """Relative paths (POSIX) of the files under an experiment directory that Ray unpickles."""
    out = []
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return out
    for e in entries:
        if e.is_file() and is_state_file(e.name):
            out.append(e.name)
        elif e.is_dir() and is_state_file(f"{e.name}/x.pkl"):
            out += [f"{e.name}/{f.name}" for f in os.scandir(e.path) if f.is_file() and is_state_file(f"{e.name}/{f.name}")]
    return sorted(out)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def read_record(exp_dir: str) -> dict[str, list[str]] | None:
    try:
        with open(os.path.join(exp_dir, MANIFEST)) as f:
            return json.load(f).get("sha256")
    except (OSError, ValueError, AttributeError):
        return None


def write_record(exp_dir: str, record: dict[str, list[str]]) -> None:
    """Store `record` ({path: accepted hashes, newest last}) as study.json's "sha256", atomically."""
    path = os.path.join(exp_dir, MANIFEST)
    with open(path) as f:
        doc = json.load(f)
    atomic_write(path, json.dumps({**doc, "sha256": dict(sorted(record.items()))}, indent=1).encode())


def atomic_write(path: str, data: bytes) -> None:
    """Write beside the target, then rename: a reader sees the old bytes or the new, never half."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=f".{os.path.basename(path)}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def accept(record: dict[str, list[str]], rel: str, digest: str, keep: int = KEEP) -> None:
    """Add `digest` as the newest accepted content of `rel` (keeping the last `keep`)."""
    record[rel] = ([h for h in record.get(rel, []) if h != digest] + [digest])[-keep:]


def mismatch(record: dict | None, rel: str, data: bytes) -> str | None:
    """Why `data` is not an accepted version of `rel` (None: it is)."""
    if record is None:
        return f"{MANIFEST} has no SHA-256 record of the experiment state"
    if rel not in record:
        return f"{rel} is not one this tool wrote"
    return None if sha256(data) in record[rel] else f"{rel} changed"


def problems(exp_dir: str) -> list[str]:
    """What differs between the experiment's state files and study.json's record ([] = none)."""
    record = read_record(exp_dir)
    found = [mismatch(record, rel, read_bytes(os.path.join(exp_dir, rel))) for rel in state_files(exp_dir)]
    if record is None and not found:
        found = [mismatch(None, "", b"")]
    return list(dict.fromkeys(f for f in found if f))


def damage(rel: str, data: bytes) -> str | None:
    """Why a state file cannot be what Ray wrote (empty, truncated, malformed), read without
    unpickling it. Ray writes JSON or pickles (protocol >= 2: first byte 0x80), whatever the name."""
    pickled = data[:1] == b"\x80"
    try:
        if pickled:
            for _ in pickletools.genops(io.BytesIO(data)):  # opcodes only: nothing is run
                pass
        else:
            json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        return f"{rel} is damaged (not a complete {'pickle' if pickled else 'JSON'} file: {str(e).splitlines()[0][:80]})"
    return None


def damaged(exp_dir: str) -> list[str]:
    return [d for rel in state_files(exp_dir) if (d := damage(rel, read_bytes(os.path.join(exp_dir, rel))))]


def record_current(exp_dir: str) -> None:
    """--trust-storage: accept the state files as they are now (the user checked them)."""
    write_record(exp_dir, {rel: [sha256(read_bytes(os.path.join(exp_dir, rel)))] for rel in state_files(exp_dir)})


class VerifiedStorage(pafs.FileSystemHandler):
    """The local filesystem, with state files under `exp_dir` recorded on write and checked on read."""

    def __init__(self, exp_dir: str):
        self.exp_dir = os.path.abspath(exp_dir)
        self.local = pafs.LocalFileSystem()
        self._lock = threading.Lock()  # uploads run in threads: one record update at a time

    def _rel(self, path: str) -> str | None:
        rel = os.path.relpath(os.path.abspath(path), self.exp_dir)
        return None if rel.startswith("..") else rel.replace(os.sep, "/")

    def _commit(self, path: str, data: bytes) -> None:
        rel = self._rel(path)
        if rel == MANIFEST:
            return  # the record is ours alone: Ray's copy of study.json is stale
        with self._lock:
            if rel is not None and is_state_file(rel):
                record = read_record(self.exp_dir) or {}
                digest = sha256(data)
                if record.get(rel, [None])[-1] != digest:
                    accept(record, rel, digest)
                    write_record(self.exp_dir, record)  # first the record, then the file
            atomic_write(path, data)

    def _read(self, path: str):
        rel = self._rel(path)
        if rel is None or not is_state_file(rel):
            return None
        data = read_bytes(path)
        why = mismatch(read_record(self.exp_dir), rel, data)
        if why:
            raise StateRefused(f"experiment {self.exp_dir}: {why} since this tool recorded it in {MANIFEST} "
                                 f"(found as Ray read it); not resuming, a resume unpickles it")
        return pa.BufferReader(data)  # the checked bytes themselves

    # -- pyarrow's FileSystemHandler interface ------------------------------------------------
    def open_input_stream(self, path):
        checked = self._read(path)
        return checked if checked is not None else self.local.open_input_stream(path, compression=None)

    def open_input_file(self, path):
        checked = self._read(path)
        return checked if checked is not None else self.local.open_input_file(path)

    def open_output_stream(self, path, metadata):
        rel = self._rel(path)
        if rel is not None and (rel == MANIFEST or is_state_file(rel)):
            return pa.PythonFile(_Staged(self, path), mode="w")
        return self.local.open_output_stream(path, compression=None, metadata=metadata)

    def open_append_stream(self, path, metadata):
        return self.local.open_append_stream(path, compression=None, metadata=metadata)

    def move(self, src, dest):
        rel = self._rel(dest)
        if rel is not None and (rel == MANIFEST or is_state_file(rel)):
            self._commit(dest, read_bytes(src))
            self.local.delete_file(src)
        else:
            self.local.move(src, dest)

    def copy_file(self, src, dest):
        with self.open_input_stream(src) as f:
            data = f.read()
        with self.open_output_stream(dest, None) as out:
            out.write(data)

    def get_type_name(self):
        return "verified-local"

    def normalize_path(self, path):
        return self.local.normalize_path(path)

    def get_file_info(self, paths):
        return self.local.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.local.get_file_info(selector)

    def create_dir(self, path, recursive):
        self.local.create_dir(path, recursive=recursive)

    def delete_dir(self, path):
        self.local.delete_dir(path)

    def delete_dir_contents(self, path, missing_dir_ok):
        self.local.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self):
        raise OSError("refusing to delete the root directory's contents")

    def delete_file(self, path):
        self.local.delete_file(path)


class _Staged(io.BytesIO):
    """An output stream for a state file: buffered, committed (recorded, then written) on close."""

    def __init__(self, handler: VerifiedStorage, path: str):
        super().__init__()
        self._handler, self._path = handler, path

    def close(self):
        if not self.closed:
            self._handler._commit(self._path, self.getvalue())
        super().close()


class VerifiedFileSystem(pafs.PyFileSystem):
    """`PyFileSystem(VerifiedStorage(exp_dir))` that pickles as a plain LocalFileSystem."""

    def __reduce__(self):
        return pafs.LocalFileSystem, ()


def verified_filesystem(exp_dir: str) -> VerifiedFileSystem:
    return VerifiedFileSystem(VerifiedStorage(exp_dir))
