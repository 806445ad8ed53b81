"""When does a run use its frames? One rule for the fits, the LR search and the live monitor.

The vision gap of an evaluation is the caption loss with another clip's frames minus the loss
with the clip's own frames. A run *sees* when its gap is clearly above zero in both senses:

* statistically: gap > Z_MIN standard errors (the trainer's paired SE over eval batches);
* in size: gap >= FLOOR_REL x the shuffled-frames loss. A z-test alone passes a run whose gap
  is real but negligible (a blind run here had a gap of 9e-5 at z of 8, with a caption loss
  of 1.0): the frames must explain a non-trivial share of the loss.

A gap without a standard error cannot be shown to see. A leaf module (no imports), so the
fitting package, which stands alone, may use it too.
"""
from __future__ import annotations

import math

Z_MIN = 5.0
FLOOR_REL = 0.02


def sees(gap, se, shuffled_loss) -> bool:
    """True when the gap passes both tests; False for a missing or non-finite number."""
    try:
        gap, se, shuffled_loss = float(gap), float(se), float(shuffled_loss)
    except (TypeError, ValueError):
        return False
    if not all(math.isfinite(x) for x in (gap, se, shuffled_loss)) or se < 0:
        return False
    return gap > Z_MIN * se and gap >= FLOOR_REL * shuffled_loss
