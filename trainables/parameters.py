"""Trainable parameter counts N of a trial (total, LLM, LLM without embeddings, vision).

Parameters are counted by building the real model on the `meta` device (no storage, ~50 ms
even for L-L), so N comes from the same code that trains, never from a second formula; the
counts are cached per (variant, config, query_dim, vocab). The study's 18 real models at the
phase grids' settings come from trainables/param_table.py instead (written from those builds
and checked against them by tests/test_memory.py), so planning imports no torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from search_spaces.trial import TrialConfig
from trainables import param_table


@dataclass(frozen=True)
class ParamCounts:
    """Trainable parameters as trainables.models.param_counts reports them (+ the largest
    single tensor, which sizes DeepSpeed's gradient staging under offload)."""

    total: int
    llm: int
    llm_non_embedding: int
    vision: int
    connector: int
    largest_tensor: int


def param_counts_for(cfg: TrialConfig, vocab_size: int) -> ParamCounts:
    """N of a trial, from the real model built on the meta device (cached)."""
    return _param_counts(cfg.variant, cfg.config, cfg.query_dim, vocab_size)


@lru_cache(maxsize=None)
def _param_counts(variant: str, config: str, query_dim: int, vocab_size: int) -> ParamCounts:
    row = param_table.COUNTS.get((variant, config))
    if row is not None and (query_dim, vocab_size) == (param_table.QUERY_DIM, param_table.VOCAB_SIZE):
        return ParamCounts(*row)
    return build_param_counts(variant, config, query_dim, vocab_size)


def build_param_counts(variant: str, config: str, query_dim: int, vocab_size: int) -> ParamCounts:
    """Counts from the model built on the meta device (what param_table.py is checked against)."""
    import torch  # torch + transformers only here: planning with param_table imports neither

    from trainables.models import build_vlm, param_counts

    # init="random": a pretrained load would read weights; the counts are the same (build_vlm
    # checks pretrained backbones against the registry sizes).
    cfg = TrialConfig(variant=variant, config=config, steps=1, query_dim=query_dim)
    with torch.device("meta"):
        model = build_vlm(cfg, vocab_size)
    counts = param_counts(model)
    largest = max(p.numel() for p in model.parameters() if p.requires_grad)
    return ParamCounts(**{k: counts[k] for k in ("total", "llm", "llm_non_embedding", "vision", "connector")},
                       largest_tensor=largest)
