"""What a trial checkpoint holds, and how it goes to and comes back from Ray.

Layout of a checkpoint directory (Ray copies it into the trial's storage on `tune.report`):
  ds/                  DeepSpeed `save_checkpoint`: module, ZeRO optimizer, lr scheduler
  trainer_state.pt     step, counters, data cursor, RNG states, metrics history (tensors + plain types)
  trial_config.json    the TrialConfig that wrote it (a resume with another config is refused)
  deepspeed_config.json
Our own files load with `torch.load(weights_only=True)`: no pickled code is ever executed.
"""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import torch

from search_spaces.sizes import ConfigError
from search_spaces.trial import TrialConfig

DS_TAG = "ds"
STATE_FILE = "trainer_state.pt"
CONFIG_FILE = "trial_config.json"


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


def check_compatible(directory: str | os.PathLike, cfg: TrialConfig) -> None:
    """Refuse a checkpoint written by another trial config (one line naming what differs)."""
    path = Path(directory) / CONFIG_FILE
    if not path.exists():
        raise ConfigError(f"checkpoint {directory} has no {CONFIG_FILE}: not written by this tool")
    saved = json.loads(path.read_text())
    mine = cfg.to_dict()
    diff = sorted(k for k in set(saved) | set(mine) if k not in ("tag", "fault") and saved.get(k) != mine.get(k))
    if diff:
        shown = ", ".join(f"{k}: {saved.get(k)!r} -> {mine.get(k)!r}" for k in diff[:4])
        raise ConfigError(f"checkpoint {directory} belongs to a different trial config ({shown})")


def load(directory: str | os.PathLike, engine, cfg: TrialConfig) -> dict:
    """Restore engine + RNG from `directory`; return the trainer state (step, counters, cursor, history)."""
    check_compatible(directory, cfg)
    d = Path(directory)
    state_path = d / STATE_FILE
    try:
        state = torch.load(state_path, weights_only=True)
    except Exception as e:  # noqa: BLE001 - a truncated file raises several error types
        raise RuntimeError(f"checkpoint file {state_path} is unreadable ({type(e).__name__}: {e})") from None
    load_path, _ = engine.load_checkpoint(str(d), tag=DS_TAG, load_module_strict=True)
    if load_path is None:
        raise RuntimeError(f"checkpoint {d / DS_TAG} could not be loaded by DeepSpeed")
    set_rng_state(state.pop("rng"))
    return state
