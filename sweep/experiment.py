"""One experiment directory on storage: where it lives, what grid it was launched with
(study.json), and whether this command launches it fresh or resumes it.

Ray's `Tuner.restore` silently ignores a changed grid, so a resume is allowed only when the
saved manifest matches this command's trials, no other driver holds the experiment
(sweep/lock.py), Ray's own state is there, and the integrity record of sweep/integrity.py
accepts the state files it will unpickle. `decide` only reads: the driver asks it before Ray
starts (every refusal costs no Ray start-up) and again once it holds the experiment's lock.
"""
from __future__ import annotations

import json
import os
import shlex
import tempfile
import threading
from pathlib import Path

from ray.tune import Tuner

from search_spaces import metric_names as M
from search_spaces.errors import ConfigError
from search_spaces.trial import TrialConfig
from sweep import integrity
from sweep import lock
from sweep.integrity import MANIFEST  # study.json: the grid a resume must match, and the integrity record
from sweep.lock import LOCK_FILE
from sweep.options import SweepOptions

LAUNCH, RELAUNCH, RESUME = "launch", "relaunch", "resume"


STORAGE_PROBE_S = 20.0  # pyarrow's own retries against an unreachable bucket take minutes


def check_storage(storage: str) -> str:
    """Absolute local path (created) or a reachable URI; else a one-line error before any trial."""
    if "://" in storage:
        probe_uri(storage)
        return storage
    path = Path(storage).expanduser().resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as e:
        raise ConfigError(f"storage path {path} is not writable ({e.strerror or e})") from None
    return str(path)


def probe_uri(uri: str, timeout: float = STORAGE_PROBE_S) -> None:
    """ConfigError unless the filesystem behind `uri` answers (a bucket's existence) in time."""
    import pyarrow.fs

    failure = []

    def probe():
        try:
            fs, path = pyarrow.fs.FileSystem.from_uri(uri)
            fs.get_file_info(path)
        except Exception as e:  # noqa: BLE001 - credentials, DNS, a missing bucket: all one line
            failure.append(e)

    worker = threading.Thread(target=probe, daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive() or failure:
        why = f"no answer in {timeout:.0f} s" if worker.is_alive() else str(failure[0]).strip().splitlines()[0][:200]
        raise ConfigError(f"storage {uri} is not reachable ({why})")


def read_manifest(exp_dir: str) -> dict | None:
    path = Path(exp_dir, MANIFEST)
    if not path.exists():
        return None
    try:
        saved = json.loads(path.read_text())
    except (ValueError, OSError) as e:
        raise ConfigError(f"{path} is unreadable ({type(e).__name__}); pick another --name") from None
    try:  # fill in fields added to TrialConfig since the launch (with their defaults)
        trials = [TrialConfig.from_dict(t).to_dict() for t in saved["trials"]]
    except Exception:  # noqa: BLE001 - a removed or invalid field: compare as written
        return saved
    return {**saved, "trials": trials}


def write_manifest(exp_dir: str, manifest: dict) -> None:
    text = json.dumps(manifest, indent=1)
    if "://" in exp_dir:  # through the bucket's filesystem (os.makedirs would make a local "s3:" dir)
        import pyarrow.fs

        fs, path = pyarrow.fs.FileSystem.from_uri(exp_dir)
        fs.create_dir(path, recursive=True)
        with fs.open_output_stream(f"{path}/{MANIFEST}") as f:
            f.write(text.encode())
        return
    os.makedirs(exp_dir, exist_ok=True)
    Path(exp_dir, MANIFEST).write_text(text)


def grid_of(saved: dict | None) -> dict | None:
    """The part of study.json a resume must match (not the integrity record)."""
    return None if saved is None else {"grid": saved.get("grid"), "trials": saved.get("trials")}


def grid_difference(saved: dict | None, manifest: dict) -> str:
    """What differs between a saved grid and this command's, in words (for the refusal)."""
    if saved is None:
        return "an unknown grid"
    parts = []
    if saved.get("grid") != manifest["grid"]:
        parts.append(f"grid {saved.get('grid')!r} (this command: {manifest['grid']!r})")
    old, new = saved.get("trials") or [], manifest["trials"]
    if len(old) != len(new):
        parts.append(f"{len(old)} trials (this command: {len(new)})")
    keys = sorted({k for t in old + new for k in t})
    fields = [k for k in keys if {repr(t.get(k)) for t in old} != {repr(t.get(k)) for t in new}]
    if fields:
        parts.append(f"other values of {', '.join(fields)}")
    elif old != new and len(old) == len(new):
        parts.append("the same values in other combinations")
    return "; ".join(parts) or "other trials"


def integrity_refusal(exp_dir: str, trust: bool) -> str | None:
    """Why the state files Ray would unpickle may not be (None: they may). Without --trust-storage
    each must match study.json's record; with it, each must still be a complete file."""
    if trust:
        found = integrity.damaged(exp_dir)
        why = "not resuming (--trust-storage accepts changed files, not damaged ones)"
    else:
        found = integrity.problems(exp_dir)
        why = (f"since this tool recorded it in {MANIFEST}; not resuming, a resume unpickles it. If everyone "
               "who can write there is trusted, rerun with --trust-storage")
    if not found:
        return None
    more = f" (+{len(found) - 1} more)" if len(found) > 1 else ""
    return f"experiment {exp_dir}: {found[0]}{more} {why}"


def has_started(exp_dir: str) -> bool:
    """Ray saved experiment state or a trial wrote results: the experiment ran."""
    return any(Path(exp_dir).glob("experiment_state-*.json")) or any(Path(exp_dir).glob("*/result.json"))


def decide(args: SweepOptions, storage: str, exp_dir: str, manifest: dict, locked: bool = False) -> str:
    """LAUNCH (new), RELAUNCH (ours, stopped before Ray saved anything) or RESUME the experiment at
    exp_dir. Reads only; raises ConfigError for an experiment another driver runs (unless this one
    holds its lock: `locked`), --resume without an experiment, a foreign directory, a changed grid,
    an experiment that ran but lacks Ray's tuner.pkl, or state files that fail the integrity check."""
    local = "://" not in storage
    entries = [e.name for e in os.scandir(exp_dir)] if local and os.path.isdir(exp_dir) else []
    if not [e for e in entries if e != LOCK_FILE]:
        if args.resume:
            raise ConfigError(f"--resume: no experiment at {exp_dir}")
        return LAUNCH
    who = None if locked else lock.holder(exp_dir)
    if who is not None:  # another driver runs it: nothing else here can be trusted to stay put
        raise lock.in_use(exp_dir, who)
    saved = read_manifest(exp_dir)
    ray_files = os.path.exists(os.path.join(exp_dir, "tuner.pkl")) or has_started(exp_dir)
    if grid_of(saved) != manifest:
        if not ray_files:
            raise ConfigError(f"{exp_dir} exists but is not a Ray Tune experiment; pick another --name")
        raise ConfigError(f"experiment {exp_dir} was launched with {grid_difference(saved, manifest)}; Ray cannot "
                          f"change a grid on resume: use a new --name")
    if not has_started(exp_dir):
        return RELAUNCH  # our own launch, stopped (killed) before Ray saved any state: nothing ran
    if not Tuner.can_restore(exp_dir):
        raise ConfigError(f"experiment {exp_dir} has run but Ray's tuner.pkl is missing, so it cannot be resumed "
                          f"(its results stay readable: python -m fitting {exp_dir}); use a new --name")
    refusal = integrity_refusal(exp_dir, args.trust_storage)
    if refusal:
        raise ConfigError(refusal)
    return RESUME


def announce(args: SweepOptions, exp_dir: str, plan: str) -> None:
    """Say what this run does to the experiment; --trust-storage records its files as they are."""
    if plan == RELAUNCH:
        print(f"experiment {exp_dir} was stopped before it started: launching it", flush=True)
    elif plan == RESUME:
        if args.trust_storage:
            print(f"--trust-storage: accepting the experiment state in {exp_dir} as it is", flush=True)
            integrity.record_current(exp_dir)
        print(f"resuming experiment {exp_dir}: finished trials are kept, unfinished ones continue "
              f"from their last checkpoint", flush=True)


def is_finished(metrics: dict) -> bool:
    """A trial's last report is its final step. Not Ray's `done` flag alone: a restored
    experiment's state can hold a TERMINATED trial whose last saved result says done=False."""
    step, last = metrics.get(M.STEP), metrics.get(M.TRIAL_STEPS)
    return bool(metrics.get("done")) or (step is not None and last is not None and step >= last)


def resume_hint(args: SweepOptions) -> str:
    """The command that continues this experiment (the user's own arguments plus --resume)."""
    argv = list(args.argv)
    if "--resume" not in argv:
        argv.append("--resume")
    return f"interrupted: resume with: python tune_scaling.py {shlex.join(argv)}"
