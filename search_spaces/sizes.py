"""Size registry: the public SmolLM2 / DINOv2 architectures and tiny look-alikes for tests.

A config id is "<LLM key>-<ViT key>", e.g. "S-B" = SmolLM2-135M + dinov2-base. The numbers
come from the public model configs on the Hugging Face hub; the tiny sizes keep the same
architecture (grouped-query attention included) at a few hundred thousand parameters so
tests and the offline smoke grid run on two CPU cores.
"""
from __future__ import annotations

from dataclasses import dataclass

from search_spaces.errors import ConfigError


@dataclass(frozen=True)
class LLMSize:
    key: str
    hub_id: str | None  # None for test-only tiny sizes
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab_size: int = 49152  # SmolLM2's tokenizer; offline training uses its own smaller vocab
    rope_theta: float = 100000.0
    max_positions: int = 8192
    tied_embeddings: bool = True

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


@dataclass(frozen=True)
class ViTSize:
    key: str
    hub_id: str | None
    hidden: int
    layers: int
    heads: int
    patch: int = 14
    mlp_ratio: int = 4
    # DINOv2 stores position embeddings for 518 px (37x37 patches) and interpolates them.
    pretrain_image_size: int = 518

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


LLM_SIZES: dict[str, LLMSize] = {
    "S": LLMSize("S", "HuggingFaceTB/SmolLM2-135M", 576, 30, 9, 3, 1536),
    "M": LLMSize("M", "HuggingFaceTB/SmolLM2-360M", 960, 32, 15, 5, 2560),
    "L": LLMSize("L", "HuggingFaceTB/SmolLM2-1.7B", 2048, 24, 32, 32, 8192, rope_theta=130000.0),
    # Tiny sizes (tests, smoke grid). T2 keeps grouped-query attention (4 heads / 2 kv heads).
    "T1": LLMSize("T1", None, 64, 2, 4, 2, 128, vocab_size=256, max_positions=512),
    "T2": LLMSize("T2", None, 96, 3, 4, 2, 256, vocab_size=256, max_positions=512),
    # the offline model ladder's ends (--grid ladder): T0 < T1 < T2 < T3, about 2-3x apart in N
    "T0": LLMSize("T0", None, 48, 2, 4, 2, 96, vocab_size=256, max_positions=512),
    "T3": LLMSize("T3", None, 128, 4, 4, 2, 384, vocab_size=256, max_positions=512),
}

VIT_SIZES: dict[str, ViTSize] = {
    "S": ViTSize("S", "facebook/dinov2-small", 384, 12, 6),
    "B": ViTSize("B", "facebook/dinov2-base", 768, 12, 12),
    "L": ViTSize("L", "facebook/dinov2-large", 1024, 24, 16),
    "T1": ViTSize("T1", None, 48, 2, 3, pretrain_image_size=56),
    "T2": ViTSize("T2", None, 64, 3, 4, pretrain_image_size=56),
    "T0": ViTSize("T0", None, 32, 2, 2, pretrain_image_size=56),
    "T3": ViTSize("T3", None, 96, 4, 4, pretrain_image_size=56),
}

REAL_CONFIGS = tuple(f"{l}-{v}" for l in "SML" for v in "SBL")
# The study's arms by name, as data: TrialConfig validates a variant without importing trainables.
# Each name is one spec in trainables/variants.py (tests/test_variants.py checks both agree).
VARIANTS = ("foveated", "baseline", "pooled1")
# The arms a grid runs unless --variants names others: the headline comparison.
GRID_VARIANTS = ("foveated", "baseline")


def parse_config_id(config: str) -> tuple[LLMSize, ViTSize]:
    """'S-B' -> (LLM_SIZES['S'], VIT_SIZES['B']); unknown ids raise ConfigError."""
    llm_key, sep, vit_key = config.partition("-")
    if not sep or llm_key not in LLM_SIZES or vit_key not in VIT_SIZES:
        known = ", ".join(REAL_CONFIGS)
        raise ConfigError(
            f"unknown config id {config!r}: expected <LLM>-<ViT> with LLM in "
            f"{sorted(LLM_SIZES)} and ViT in {sorted(VIT_SIZES)} (the study's 9: {known})"
        )
    return LLM_SIZES[llm_key], VIT_SIZES[vit_key]
