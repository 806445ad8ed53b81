"""The fit frame's one builder: required columns enforced, optional ones NaN, a fixed order."""
from __future__ import annotations

import numpy as np
import pytest

from fitting import columns

REQUIRED = dict(N=[1e6, 2e6], D=[1e8, 1e8], C=[6e14, 1.2e15], loss=[3.0, 2.9], group="a", config="T", run_id=["r0", "r1"])


def test_optional_columns_are_nan_and_the_order_is_fixed():
    frame = columns.build(**REQUIRED, seed=[0, 1], field_colour=[1.0, 0.5])
    assert tuple(frame.columns) == columns.ORDER + ("field_colour",)
    assert frame["seed"].tolist() == [0, 1] and frame["lr"].isna().all() and frame["group"].tolist() == ["a", "a"]


def test_a_misspelt_or_missing_column_is_an_error():
    with pytest.raises(TypeError, match="unknown column"):
        columns.build(**REQUIRED, sede=[0, 1])
    with pytest.raises(TypeError, match="missing"):
        columns.build(**{k: v for k, v in REQUIRED.items() if k != "run_id"})


def test_complete_adds_only_what_a_hand_made_frame_lacks():
    frame = columns.build(**REQUIRED).drop(columns=["vision_gap", "lr"])
    done = columns.complete(frame)
    assert set(columns.OPTIONAL) <= set(done.columns) and np.isnan(done["vision_gap"]).all()
    assert columns.complete(done) is done
