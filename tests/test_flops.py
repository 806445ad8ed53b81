"""trainables/flops.py against torch's FlopCounterMode on the real modules."""
from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from search_spaces.sizes import LLM_SIZES, REAL_CONFIGS, VIT_SIZES
from search_spaces.trial import TrialConfig
from trainables.flops import (
    flops_breakdown,
    mfu,
    peak_flops,
    train_flops_per_sample,
    trial_flops_per_sample,
)
from trainables.models import build_vlm

TOL = 0.02


def _batch(B: int, T: int, L: int, image: int, vocab: int) -> dict[str, torch.Tensor]:
    input_ids = torch.randint(0, vocab, (B, L))
    labels = input_ids.clone()
    labels[:, 0] = -100
    return {"frames": torch.randn(B, T, 3, image, image), "input_ids": input_ids, "labels": labels}


def _measure(model, batch: dict, backward: bool) -> float:
    """FLOPs per sample that FlopCounterMode sees for one forward (+ backward)."""
    with FlopCounterMode(display=False) as counter:
        out = model(**batch)
        if backward:
            out["loss"].backward()
    return counter.get_total_flops() / batch["frames"].shape[0]


SLOW = pytest.mark.slow  # the quick loop keeps every variant at the mixed tiny sizes (3 frames) and M-S


@pytest.mark.parametrize("frames", [pytest.param(1, marks=SLOW), 3])
@pytest.mark.parametrize("config", [pytest.param("T1-T1", marks=SLOW), "T1-T2", "T2-T1",
                                    pytest.param("T2-T2", marks=SLOW)])
@pytest.mark.parametrize("variant", ["foveated", "baseline", "pooled1"])
def test_train_flops_match_flop_counter_tiny(variant: str, config: str, frames: int) -> None:
    torch.manual_seed(0)
    cfg = TrialConfig(variant=variant, config=config, steps=1, image_size=56, frames=frames, text_len=11)
    model = build_vlm(cfg, 256, attn_implementation="eager")  # FlopCounterMode can't see CPU SDPA
    measured = _measure(model, _batch(2, frames, 11, 56, 256), backward=True)
    formula = trial_flops_per_sample(cfg, 256)
    assert abs(formula / measured - 1) < TOL, (formula, measured)


@pytest.fixture
def meta_safe_masks(monkeypatch):
    # transformers checks position_ids for packed sequences with a data-dependent `.all()`,
    # which meta tensors cannot answer; our sequences are never packed.
    import transformers.masking_utils as mu

    monkeypatch.setattr(mu, "find_packed_sequence_indices", lambda position_ids: None)


@pytest.mark.parametrize("config", ["M-S", pytest.param("S-L", marks=SLOW)])
@pytest.mark.parametrize("variant", ["foveated", "baseline", "pooled1"])
def test_flops_match_flop_counter_real_sizes_on_meta(variant: str, config: str, meta_safe_masks) -> None:
    """Real sizes at 224 px (position-embedding interpolation included), no memory used."""
    cfg = TrialConfig(variant=variant, config=config, steps=1, frames=4, text_len=24)
    with torch.device("meta"):
        model = build_vlm(cfg, 49152, attn_implementation="eager")
        batch = _batch(2, 4, 24, 224, 49152)
    llm, vit = cfg.sizes
    fwd = _measure(model, batch, backward=False)
    assert abs(sum(flops_breakdown(variant, llm, vit, 4, 24, vocab_size=49152).values()) / fwd - 1) < TOL
    train = _measure(model, batch, backward=True)
    assert abs(trial_flops_per_sample(cfg, 49152) / train - 1) < TOL


def test_training_is_three_forwards_but_pixels_get_no_gradient() -> None:
    llm, vit = LLM_SIZES["S"], VIT_SIZES["B"]
    parts = flops_breakdown("baseline", llm, vit, 8, 64)
    assert train_flops_per_sample("baseline", llm, vit, 8, 64) == 3 * sum(parts.values()) - parts["patch_embed"]


def test_foveated_runs_the_llm_twice_and_skips_the_coarse_pass_for_one_frame() -> None:
    llm, vit = LLM_SIZES["S"], VIT_SIZES["S"]
    one = flops_breakdown("foveated", llm, vit, 1, 64)
    eight = flops_breakdown("foveated", llm, vit, 8, 64)
    base = flops_breakdown("baseline", llm, vit, 8, 64)
    # LLM over 8 then 8 + 64 tokens vs 16 * 8 + 64 tokens
    assert eight["llm"] < base["llm"]
    assert eight["query"] > 2 * 8 * one["query"] * 0.99  # two passes over 8 frames vs one pass over 1
    # the cached foveated ViT skips the last layer's attention + MLP of the patches
    assert eight["vit"] < base["vit"]
    assert base["lm_head"] == eight["lm_head"] == 2 * 64 * llm.hidden * llm.vocab_size


def test_pooled1_is_the_baseline_with_one_token_per_frame() -> None:
    llm, vit = LLM_SIZES["S"], VIT_SIZES["S"]
    base, one = flops_breakdown("baseline", llm, vit, 8, 64), flops_breakdown("pooled1", llm, vit, 8, 64)
    assert one["vit"] == base["vit"] and one["patch_embed"] == base["patch_embed"] and one["query"] == 0
    assert one["projector"] * 16 == base["projector"]
    assert one["llm"] == flops_breakdown("foveated", llm, vit, 1, 71)["llm"]  # one pass over 8 + 64 positions


def test_all_real_configs_positive_and_ordered() -> None:
    for config in REAL_CONFIGS:
        cfg = TrialConfig(variant="baseline", config=config, steps=1, text_len=64)
        assert trial_flops_per_sample(cfg, 49152) > trial_flops_per_sample(cfg.replace(text_len=32), 49152) > 0


def test_peak_flops_table_and_override(monkeypatch) -> None:
    monkeypatch.delenv("PEAK_FLOPS", raising=False)
    assert peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_flops("NVIDIA H100 PCIe") == 756e12
    assert peak_flops("NVIDIA H200") == 989e12
    assert peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert peak_flops("NVIDIA GeForce RTX 4090") == 165.2e12
    assert peak_flops("Some Unknown Accelerator") is None
    assert peak_flops("NVIDIA H100 80GB HBM3", override=1e15) == 1e15
    monkeypatch.setenv("PEAK_FLOPS", "2e14")
    assert peak_flops("Some Unknown Accelerator") == 2e14


def test_mfu() -> None:
    assert mfu(10.0, 1e12, 989e12) == pytest.approx(10e12 / 989e12)
    assert mfu(10.0, 1e12, None) is None
