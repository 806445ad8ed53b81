"""When does a run use its frames? The one rule the fits, the live monitor and the driver apply.

Every evaluation scores the captions with each clip's own frames and with another clip's
(trainables/evaluation.py); the vision gap is shuffled - true, with its standard error over the
evaluation batches. A run *sees* when its gap is clearly above zero on both counts:

- beyond the evaluation noise: gap > Z_MIN standard errors, and
- large enough to matter: gap >= REL_FLOOR x the shuffled-frames loss (what the caption costs
  without its own frames). A z-test alone is not enough: a run that never left the caption
  prior had a gap of 9e-5 nats/token at z = 8, a measurable but meaningless sliver. Relative to
  the shuffled loss, the floor reads the same on any data set and tokenizer: the frames take at
  least 2% off the caption's cost. On the synthetic smoke task the caption prior is ~1.0
  nats/token; runs that learned to look had gaps near 1 nat, runs that did not below 1e-4: the
  floor (0.02) sits more than two decades above the one and more than one below the other.

A run with no standard error, or no gap, cannot be shown to see.

A leaf module: it imports only the standard library, so fitting/ (which imports no other project
code) may use it, and the live monitor's pickled callback carries it by value.
"""
from __future__ import annotations

import math

Z_MIN = 5.0  # gap / SE above this: not evaluation noise
REL_FLOOR = 0.02  # gap / shuffled-frames loss at least this: an effect that matters


def _finite(x) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def blind_reason(gap, se, shuffled_loss) -> str:
    """"" when the run sees its frames, else why it does not (a short phrase)."""
    if not _finite(gap):
        return "no vision gap measured"
    if not _finite(se):
        return "no standard error: cannot be shown to see"
    gap, se = float(gap), float(se)
    if not gap > Z_MIN * se:
        return f"gap {gap:.2g} is not above {Z_MIN:g} SE ({Z_MIN * se:.2g})"
    if not _finite(shuffled_loss) or float(shuffled_loss) <= 0:
        return "no shuffled-frames loss to set the effect-size floor"
    floor = REL_FLOOR * float(shuffled_loss)
    if gap < floor:
        return f"gap {gap:.2g} is below the floor {REL_FLOOR:.0%} of the shuffled loss ({floor:.2g})"
    return ""


def sees(gap, se, shuffled_loss) -> bool:
    return blind_reason(gap, se, shuffled_loss) == ""


def describe() -> str:
    """The rule in one sentence, for reports and logs."""
    return (f"a run sees when its vision gap exceeds {Z_MIN:g} standard errors and is at least "
            f"{REL_FLOOR:.0%} of its shuffled-frames loss")
