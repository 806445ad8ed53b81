"""One experiment directory on storage: where it lives, what grid it was launched with
(study.json), and whether this command launches it fresh or resumes it.

Ray's `Tuner.restore` silently ignores a changed grid, so a resume is allowed only when the
saved manifest matches this command's trials, and only after the integrity record of
sweep/integrity.py accepts the state files it will unpickle.
"""
from __future__ import annotations

import json
import os
import shlex
import tempfile
from pathlib import Path

from ray.tune import Tuner

from search_spaces import metric_names as M
from search_spaces.errors import ConfigError
from search_spaces.trial import TrialConfig
from sweep import integrity
from sweep.options import SweepOptions

MANIFEST = "study.json"  # the grid an experiment was launched with; a resume must match it


def check_storage(storage: str) -> str:
    """Absolute local path (created) or a URI; unwritable -> one-line error before any trial."""
    if "://" in storage:
        return storage
    path = Path(storage).expanduser().resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as e:
        raise ConfigError(f"storage path {path} is not writable ({e.strerror or e})") from None
    return str(path)


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
    os.makedirs(exp_dir, exist_ok=True)
    Path(exp_dir, MANIFEST).write_text(json.dumps(manifest, indent=1))


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


def check_integrity(exp_dir: str, trust: bool) -> None:
    """Refuse to resume (unpickle) an experiment whose state files differ from study.json's record."""
    if trust:
        print(f"--trust-storage: accepting the experiment state in {exp_dir} as it is", flush=True)
        integrity.record(exp_dir)
        return
    found = integrity.problems(exp_dir)
    if found:
        more = f" (+{len(found) - 1} more)" if len(found) > 1 else ""
        raise ConfigError(f"experiment {exp_dir}: {found[0]}{more} since this tool recorded it in study.json; "
                          f"not resuming, a resume unpickles it. If everyone who can write there is trusted, "
                          f"rerun with --trust-storage")


def should_resume(args: SweepOptions, storage: str, exp_dir: str, manifest: dict) -> bool:
    """True: restore the experiment at exp_dir; False: launch it. Raises ConfigError (before Ray
    starts) for --resume without an experiment, a foreign directory, a changed grid, or state
    files that fail the integrity check."""
    exists = "://" not in storage and os.path.isdir(exp_dir) and any(os.scandir(exp_dir))
    saved = read_manifest(exp_dir) if exists else None
    never_started = False
    if exists and not Tuner.can_restore(exp_dir):
        if grid_of(saved) != manifest:
            raise ConfigError(f"{exp_dir} exists but is not a Ray Tune experiment; pick another --name")
        # our own launch, stopped (killed) before Ray saved any experiment state: nothing ran
        print(f"experiment {exp_dir} was stopped before it started: launching it", flush=True)
        exists, never_started = False, True
    if args.resume and not exists and not never_started:
        raise ConfigError(f"--resume: no experiment at {exp_dir}")
    if exists and grid_of(saved) != manifest:
        raise ConfigError(f"experiment {exp_dir} was launched with {grid_difference(saved, manifest)}; Ray cannot "
                          f"change a grid on resume: use a new --name")
    if exists:
        check_integrity(exp_dir, args.trust_storage)
    return exists


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
