"""search_spaces/vision_rule.py: when a run sees its frames (z above Z_MIN and an effect-size floor)."""
import math

import pytest

from search_spaces import vision_rule as R


def test_a_tiny_gap_at_high_z_is_blind_and_a_clear_gap_sees():
    # the smoke grid's blind run: a gap of 9e-5 nats at z = 8, on a caption prior of ~1 nat/token
    assert not R.sees(9e-5, 9e-5 / 8, 1.0)
    assert "below the floor" in R.blind_reason(9e-5, 9e-5 / 8, 1.0)
    assert R.sees(0.3, 0.3 / 20, 1.3) and R.blind_reason(0.3, 0.3 / 20, 1.3) == ""


@pytest.mark.parametrize("gap, se, shuffled, why", [
    (0.3, None, 1.3, "no standard error"),  # no SE: cannot be shown to see
    (0.3, math.nan, 1.3, "no standard error"),
    (None, 0.01, 1.3, "no vision gap"),
    (0.0, 0.0, 1.0, "not above"),  # the zeroed-tokens control: gap and SE exactly 0
    (-0.2, 0.01, 1.0, "not above"),
    (0.3, 0.3 / 4.9, 1.3, "not above 5 SE"),  # large, but not beyond the evaluation noise
    (0.3, 0.01, None, "no shuffled-frames loss"),
])
def test_what_cannot_be_shown_to_see(gap, se, shuffled, why):
    assert not R.sees(gap, se, shuffled) and why in R.blind_reason(gap, se, shuffled)


def test_the_floor_is_relative_to_the_shuffled_loss():
    assert R.REL_FLOOR == 0.02 and R.Z_MIN == 5.0
    assert R.sees(0.05, 0.001, 2.0)  # floor 0.04
    assert not R.sees(0.05, 0.001, 3.0)  # floor 0.06
    assert "5 standard errors" in R.describe() and "2%" in R.describe()
