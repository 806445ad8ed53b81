"""What a trial checkpoint holds, and how it goes to and comes back from Ray.

Layout of a checkpoint directory (Ray copies it into the trial's storage on `tune.report`):
  ds/                  DeepSpeed `save_checkpoint`: module, ZeRO optimizer, lr scheduler
  trainer_state.pt     step, counters, data cursor, RNG states, metrics history (tensors + plain types)
  trial_config.json    the TrialConfig that wrote it (a resume with another config is refused)
  deepspeed_config.json
  manifest.json        written last: the step, and every file's size and CRC-32
Every file loads with `torch.load(weights_only=True)` (DeepSpeed's own files too, through an
allowlist of its three plain data classes): no pickled code is ever executed. A checkpoint whose
files do not match its manifest (truncated, half-copied, overwritten) is `CheckpointCorrupt`;
`restore_newest` then falls back to the trial's next-newest checkpoint.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import os
import random
import re
import zlib
from pathlib import Path

import numpy as np
import torch

from search_spaces.errors import ConfigError
from search_spaces.trial import TrialConfig
from search_spaces.wsd import FORK_FREE_FIELDS

DS_TAG = "ds"
STATE_FILE = "trainer_state.pt"
CONFIG_FILE = "trial_config.json"
MANIFEST_FILE = "manifest.json"
CKPT_DIR = re.compile(r"checkpoint_(\d+)$")  # Ray's per-trial checkpoint directories


class CheckpointCorrupt(RuntimeError):
    """A checkpoint file is missing, truncated, altered or unloadable; the message names it."""


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "python": json.dumps(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    py = json.loads(state["python"])
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(directory: str | os.PathLike, engine, cfg: TrialConfig, ds_config: dict, trainer_state: dict) -> None:
    d = Path(directory)
    engine.save_checkpoint(str(d), tag=DS_TAG)
    torch.save({**trainer_state, "rng": rng_state()}, d / STATE_FILE)
    (d / CONFIG_FILE).write_text(cfg.to_json())
    (d / "deepspeed_config.json").write_text(json.dumps(ds_config, indent=2))
    write_manifest(d, trainer_state["step"])


def _crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            crc = zlib.crc32(chunk, crc)
    return crc


def write_manifest(directory: str | os.PathLike, step: int) -> None:
    """Record every file's size and CRC-32 (last, so a half-written checkpoint has none)."""
    d = Path(directory)
    files = {p.relative_to(d).as_posix(): {"size": p.stat().st_size, "crc32": _crc32(p)}
             for p in sorted(d.rglob("*")) if p.is_file() and p.name != MANIFEST_FILE}
    (d / MANIFEST_FILE).write_text(json.dumps({"step": int(step), "files": files}, indent=1))


def verify(directory: str | os.PathLike) -> dict | None:
    """Check the files against manifest.json; None for a checkpoint written without one."""
    d = Path(directory)
    path = d / MANIFEST_FILE
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"]
    except (ValueError, KeyError, TypeError, OSError) as e:
        raise CheckpointCorrupt(f"checkpoint file {path} is unreadable ({type(e).__name__})") from None
    for rel, want in files.items():
        p = d / rel
        if not p.is_file():
            raise CheckpointCorrupt(f"checkpoint file {p} is missing")
        size = p.stat().st_size
        if size != want["size"]:
            raise CheckpointCorrupt(f"checkpoint file {p} is truncated or altered ({size} bytes, "
                                    f"{want['size']} written)")
        if _crc32(p) != want["crc32"]:
            raise CheckpointCorrupt(f"checkpoint file {p} is corrupt (CRC-32 differs from the one written)")
    return manifest


def check_compatible(directory: str | os.PathLike, cfg: TrialConfig, fork: bool = False) -> None:
    """Refuse a checkpoint written by another trial config (one line naming what differs).

    fork: `cfg` is a WSD cooldown starting from a stable trial's checkpoint; those two may
    differ only in search_spaces.wsd.FORK_FREE_FIELDS. A key the saved config lacks (written
    before the field existed) compares as the field's default.
    """
    path = Path(directory) / CONFIG_FILE
    if not path.exists():
        raise ConfigError(f"checkpoint {directory} has no {CONFIG_FILE}: not written by this tool")
    defaults = {f.name: f.default for f in dataclasses.fields(TrialConfig) if f.default is not dataclasses.MISSING}
    saved = {**defaults, **json.loads(path.read_text())}
    mine = cfg.to_dict()
    free = ("tag", "fault", "compile") + (FORK_FREE_FIELDS if fork else ())
    diff = sorted(k for k in set(saved) | set(mine) if k not in free and saved.get(k) != mine.get(k))
    if diff:
        shown = ", ".join(f"{k}: {saved.get(k)!r} -> {mine.get(k)!r}" for k in diff[:4])
        raise ConfigError(f"checkpoint {directory} belongs to a different trial config ({shown})")
    if fork and saved.get("wsd_phase") != "stable":
        raise ConfigError(f"fork_from {directory} is not a WSD stable trial's checkpoint "
                          f"(wsd_phase {saved.get('wsd_phase')!r})")


def _deepspeed_safe_globals() -> list:
    """The plain data classes DeepSpeed pickles into its ZeRO checkpoints (enum, named tuple, scaler)."""
    out = []
    for module, name in (("deepspeed.runtime.zero.config", "ZeroStageEnum"),
                         ("deepspeed.utils.tensor_fragment", "fragment_address"),
                         ("deepspeed.runtime.fp16.loss_scaler", "LossScaler"),
                         ("deepspeed.runtime.fp16.loss_scaler", "DynamicLossScaler")):
        try:
            out.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            pass
    return out


@contextlib.contextmanager
def _weights_only_deepspeed(engine):
    """Make DeepSpeed's checkpoint engine load with weights_only=True (it passes False itself)."""
    ce = getattr(engine, "checkpoint_engine", None)
    if ce is None or not hasattr(ce, "load"):
        yield
        return
    allowed = _deepspeed_safe_globals()

    def safe_load(path, map_location=None):
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location=map_location, weights_only=True)

    ce.load = safe_load
    try:
        yield
    finally:
        del ce.load  # back to the class's method


def load(directory: str | os.PathLike, engine, cfg: TrialConfig, fork: bool = False) -> dict:
    """Restore engine + RNG from `directory`; return the trainer state (step, counters, cursor, history).

    A damaged checkpoint raises CheckpointCorrupt naming the file; another trial's raises ConfigError.
    fork: a WSD cooldown starting from its stable trial's checkpoint, which must be at cfg.fork_step.
    """
    d = Path(directory)
    verify(d)
    if not (d / CONFIG_FILE).is_file():  # e.g. a copy cut short before the manifest was written
        raise CheckpointCorrupt(f"checkpoint file {d / CONFIG_FILE} is missing")
    try:
        check_compatible(d, cfg, fork=fork)
    except ValueError as e:
        if isinstance(e, ConfigError):
            raise
        raise CheckpointCorrupt(f"checkpoint file {d / CONFIG_FILE} is unreadable ({type(e).__name__})") from None
    state_path = d / STATE_FILE
    try:
        state = torch.load(state_path, weights_only=True)
    except Exception as e:  # noqa: BLE001 - a truncated file raises several error types
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise CheckpointCorrupt(f"checkpoint file {state_path} is unreadable ({type(e).__name__}: {first})") from None
    if fork and state["step"] != cfg.fork_step:
        raise ConfigError(f"{cfg.trial_name}: fork_from {d} is at step {state['step']}, "
                          f"its fork point is step {cfg.fork_step}")
    try:
        with _weights_only_deepspeed(engine):
            load_path, _ = engine.load_checkpoint(str(d), tag=DS_TAG, load_module_strict=True)
    except Exception as e:  # noqa: BLE001 - DeepSpeed surfaces damage as many error types
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise CheckpointCorrupt(f"checkpoint {d / DS_TAG} could not be loaded by DeepSpeed "
                                f"({type(e).__name__}: {first[:300]})") from None
    if load_path is None:
        raise CheckpointCorrupt(f"checkpoint {d / DS_TAG} could not be loaded by DeepSpeed")
    set_rng_state(state.pop("rng"))
    return state


# -- which checkpoint a (re)started trial continues from ----------------------------------------
def checkpoint_step(checkpoint) -> int:
    """The step a checkpoint's manifest records (-1: none / unreadable), read without downloading it."""
    try:
        with checkpoint.filesystem.open_input_stream(f"{checkpoint.path}/{MANIFEST_FILE}") as f:
            return int(json.loads(f.read())["step"])
    except Exception:  # noqa: BLE001 - a missing or damaged manifest only lowers the priority
        return -1


def candidates(handed, trial_dir: str | None = None, filesystem=None) -> list:
    """Checkpoints a restarted trial may continue from, best first.

    `handed` is what `tune.get_checkpoint()` returned (None or the newest one the driver's
    experiment state knows); `trial_dir` (on `filesystem`) is the trial's storage directory,
    whose other checkpoint_* siblings are candidates too: a driver killed between a trial's
    checkpoint upload and its next experiment-state snapshot restores from an older one than
    the newest on storage, and a damaged newest one falls back to the next. Order: the
    manifest's step, newest first (the directory index breaks ties).
    """
    from ray import tune

    found = {}
    if handed is not None:
        found[handed.path.rstrip("/")] = handed
        if trial_dir is None:
            trial_dir, filesystem = os.path.dirname(handed.path.rstrip("/")), handed.filesystem
    if trial_dir is not None and filesystem is not None:
        import pyarrow.fs

        try:
            infos = filesystem.get_file_info(pyarrow.fs.FileSelector(trial_dir, allow_not_found=True))
        except OSError:
            infos = []
        for info in infos:
            if info.type == pyarrow.fs.FileType.Directory and CKPT_DIR.match(info.base_name):
                found.setdefault(info.path.rstrip("/"), tune.Checkpoint(info.path, filesystem=filesystem))

    def index(c) -> int:
        m = CKPT_DIR.match(os.path.basename(c.path.rstrip("/")))
        return int(m.group(1)) if m else -1

    return sorted(found.values(), key=lambda c: (checkpoint_step(c), index(c)), reverse=True)


def restore_newest(engine, cfg: TrialConfig, handed, trial_dir: str | None = None, filesystem=None,
                   log=print) -> tuple[dict | None, str | None]:
    """Load the newest loadable checkpoint among `candidates`: (trainer state, its path), or
    (None, None) when the trial has none. A damaged one is logged and skipped; when every one is
    damaged, CheckpointCorrupt names each file (the trial fails; the sweep goes on)."""
    problems = []
    for c in candidates(handed, trial_dir, filesystem):
        try:
            with c.as_directory() as d:
                return load(d, engine, cfg), c.path
        except CheckpointCorrupt as e:
            problems.append(str(e))
            log(f"[{cfg.trial_name}] {e}; trying the previous checkpoint")
    if problems:
        raise CheckpointCorrupt(f"{cfg.trial_name}: no loadable checkpoint: {'; '.join(problems)}")
    return None, None
