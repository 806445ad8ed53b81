"""Shared test set-up: the project root on sys.path, a per-session data cache, quiet Ray."""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_configure(config):
    # slow tests still run in CI (nothing deselects them); the mark only says where the minutes go
    config.addinivalue_line("markers", "slow: takes more than ~30 s on 2 CPU cores (still run by CI)")
