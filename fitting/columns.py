"""The fit frame: one row per fit point, with the columns every law, check and plot reads.

Built in one place (`build`) from whatever the input is (a Ray experiment's points, a CSV):
each input gives the columns it knows, and every optional column it does not know is NaN.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

# what a fit point must have: model size, data, compute, loss, its arm, config and run
REQUIRED = ("N", "D", "C", "loss", "group", "config", "run_id")
# what an input may not know (NaN then): the eval's SE, the LLM / vision parameter split, the
# seed and step count of the run, the vision check's losses, the trial's peak learning rates
OPTIONAL = ("loss_se", "n_llm", "n_vision", "seed", "steps", "loss_shuffled", "loss_shuffled_se", "vision_gap",
            "vision_gap_se", "lr", "lr_backbone")
ORDER = ("N", "D", "C", "loss", "loss_se", "group", "config", "run_id", "n_llm", "n_vision", "seed", "steps",
         "loss_shuffled", "loss_shuffled_se", "vision_gap", "vision_gap_se", "lr", "lr_backbone")
FIELD_PREFIX = "field_"  # field_<name>: the eval loss on one caption field's token (field_plot.py)


def build(**columns) -> pd.DataFrame:
    """The fit frame from its columns (arrays, or a scalar for every row), in ORDER, then the
    field_* columns. A misspelt or missing column is a TypeError, not a silent column of NaN."""
    unknown = [c for c in columns if c not in ORDER and not c.startswith(FIELD_PREFIX)]
    missing = [c for c in REQUIRED if c not in columns]
    if unknown or missing:
        raise TypeError(f"fit frame: unknown column(s) {unknown}, missing {missing}")
    frame = {c: columns.get(c, np.nan) for c in ORDER}
    frame.update({c: v for c, v in columns.items() if c.startswith(FIELD_PREFIX)})
    return pd.DataFrame(frame)


def complete(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with each optional column it lacks added as NaN (a frame made by hand)."""
    missing = [c for c in OPTIONAL if c not in frame]
    return frame.assign(**dict.fromkeys(missing, np.nan)) if missing else frame
