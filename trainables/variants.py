"""The study's arms, one spec each: the only place that says what a variant is.

A `Variant` is a name, its visual path (`kind`) and the visual tokens it gives the LLM per
frame. Everything else asks this registry through `get_variant(name)`, which raises a
ConfigError naming the known arms for anything else:

* the model builder (trainables/models/build.py `MODELS`): one model class per kind, built with
  the spec's arguments (`pooled_grid` for the pooled path);
* the FLOPs formula (trainables/flops.py `VISUAL_FLOPS`) and the activation-memory model
  (trainables/memory.py `VISUAL_ACTIVATIONS`): one term function per kind, fed the spec;
* the trainer's LLM token count (`tokens_per_frame`) and, through those two, the planner.

Design: this module is pure data and imports no torch (and no model class), because the
torch-free planning path (--dry-run: FLOPs, memory, planner) must ask it too; the class and the
formulas are looked up by `kind` where they live, so an arm that reuses a visual path, such as
pooled1 (the baseline's path at 1x1), is one entry here. It sits in trainables/, not in
trainables/models/, because importing that package imports the models and torch.

The spec layer (search_spaces/) validates variant names without importing trainables, so the
names are also listed there as data (search_spaces/sizes.py `VARIANTS`; the grids' default
arms are `GRID_VARIANTS`); tests/test_variants.py checks the two lists agree.

Adding an arm:
1. Same visual path (e.g. pooled to another grid): add its `Variant` below and its name to
   search_spaces/sizes.py VARIANTS; add its 9 real-size rows to trainables/param_table.py (so
   --dry-run stays torch-free; tests/test_memory.py checks them against the meta builds); add
   it to the `variant` parametrisations of tests/test_flops.py, tests/test_memory.py and
   tests/test_models.py (exact agreement with FlopCounterMode and with autograd's saved bytes).
2. A new visual path: also its model class (a VLMBase in trainables/models/) and one entry for
   its kind in build.MODELS, flops.VISUAL_FLOPS and memory.VISUAL_ACTIVATIONS (a missing one
   fails tests/test_variants.py).
3. The fitting (fitting/) stands alone and takes its arms from the data: every pair of arms is
   compared; fitting/derived.py ARM_ORDER fixes which one is named first and
   fitting/comparisons.py QUESTIONS what a pair's comparison answers (optional).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from search_spaces.errors import ConfigError

POOLED = "pooled"  # ViT over each frame, patch grid average-pooled, projected (BaselineVLM)
FOVEATED = "foveated"  # one token per frame from an LLM-steered query pass (FoveatedVLM)
KINDS = (POOLED, FOVEATED)


@dataclass(frozen=True)
class Variant:
    name: str
    kind: str  # the visual path, one of KINDS
    tokens_per_frame: int  # visual tokens per frame in the LLM's caption pass
    description: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"variant {self.name}: unknown kind {self.kind!r}, expected one of {KINDS}")
        if self.kind == FOVEATED and self.tokens_per_frame != 1:
            raise ValueError(f"variant {self.name}: the foveated path makes one token per frame")
        if self.kind == POOLED and math.isqrt(self.tokens_per_frame) ** 2 != self.tokens_per_frame:
            raise ValueError(f"variant {self.name}: pooled tokens must form a square grid")

    @property
    def pooled_grid(self) -> int:
        """Side of the pooled patch grid (pooled path): 4 -> 4x4 = 16 tokens per frame."""
        return math.isqrt(self.tokens_per_frame)


REGISTRY: dict[str, Variant] = {v.name: v for v in (
    Variant("foveated", FOVEATED, 1, "1 token per frame, placed where the LLM asks to look"),
    Variant("baseline", POOLED, 16, "16 tokens per frame: the patch grid average-pooled to 4x4"),
    # the control: the baseline's encoder, projector and pooling with 1 token per frame, so that
    # foveated vs pooled1 compares *where* the one token comes from at equal token count
    Variant("pooled1", POOLED, 1, "1 token per frame: the patch grid mean-pooled to 1x1"),
)}


def get_variant(name: str) -> Variant:
    """The spec of arm `name`; a ConfigError naming the known arms for any other name."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown variant {name!r}: choose from {', '.join(REGISTRY)}") from None
