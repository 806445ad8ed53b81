"""The variant registry (trainables/variants.py): one spec per arm, asked by every consumer."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from search_spaces.grids import GRIDS, expand
from search_spaces.errors import ConfigError
from search_spaces.sizes import GRID_VARIANTS, VARIANTS
from search_spaces.trial import TrialConfig
from trainables import flops, memory
from trainables.models import build
from trainables.train import llm_tokens_per_sample
from trainables.variants import KINDS, REGISTRY, get_variant


def test_registry_covers_exactly_the_spec_layers_names():
    assert tuple(REGISTRY) == VARIANTS
    assert set(GRID_VARIANTS) <= set(VARIANTS)
    assert all(set(g.variants) <= set(VARIANTS) for g in GRIDS.values())
    # the phase and smoke grids compare the two headline arms; the ladder adds pooled1
    assert all(g.variants == GRID_VARIANTS for n, g in GRIDS.items() if n != "ladder")
    assert GRIDS["ladder"].variants == VARIANTS
    assert GRID_VARIANTS == ("foveated", "baseline")  # the grids' default arms


@pytest.mark.parametrize("table", [build.MODELS, flops.VISUAL_FLOPS, memory.VISUAL_ACTIVATIONS],
                         ids=["models", "flops", "memory"])
def test_every_visual_path_has_a_model_a_flops_and_a_memory_term(table):
    assert set(table) == set(KINDS)


def _smuggled(name: str) -> TrialConfig:
    """A trial whose variant the spec layer would refuse: what a name listed in sizes.VARIANTS
    but missing from the registry would look like to the consumers."""
    cfg = TrialConfig(variant="baseline", config="T1-T1", steps=1, image_size=56, frames=2, text_len=8)
    object.__setattr__(cfg, "variant", name)
    return cfg


@pytest.mark.parametrize("consumer", ["registry", "flops", "memory", "trainer", "builder", "trial", "grid"])
def test_an_unknown_variant_raises_everywhere_naming_the_known_ones(consumer):
    cfg = _smuggled("pooled9")
    calls = {
        "registry": lambda: get_variant("pooled9"),
        "flops": lambda: flops.trial_flops_per_sample(cfg, 256),
        "memory": lambda: memory.activation_bytes(cfg, 1, False, 256),
        "trainer": lambda: llm_tokens_per_sample(cfg),
        "builder": lambda: build.build_vlm(cfg, 256),
        "trial": lambda: dataclasses.replace(cfg),
        "grid": lambda: expand("smoke", configs=["T1-T1"], variants=["pooled9"], steps=[10]),
    }
    with pytest.raises(ConfigError, match="unknown variant 'pooled9'") as e:
        calls[consumer]()
    assert all(v in str(e.value) for v in VARIANTS)


@pytest.mark.parametrize("variant", VARIANTS)
def test_model_and_trainer_read_the_specs_token_count(variant):
    spec = get_variant(variant)
    cfg = TrialConfig(variant=variant, config="T1-T1", steps=1, image_size=56, frames=3, text_len=8, query_dim=32)
    torch.manual_seed(0)
    model = build.build_vlm(cfg, 256)
    assert model.tokens_per_frame == spec.tokens_per_frame
    with torch.no_grad():
        vis = model.visual_tokens(torch.randn(2, 3, 3, 56, 56))
    assert vis.shape[1] == 3 * spec.tokens_per_frame
    assert llm_tokens_per_sample(cfg) == 3 * spec.tokens_per_frame + 8


def test_plot_styles_for_any_arm_name():
    from fitting.plot_style import style as _style
    from sweep.callbacks import variant_colour

    known = {v: (_style(v), variant_colour(v)) for v in ("foveated", "baseline", "pooled1")}
    assert len({s for s, _ in known.values()}) == len({c for _, c in known.values()}) == 3
    for other in ("pooled4", "mystery arm"):
        assert _style(other) == _style(other) and _style(other) not in [s for s, _ in known.values()]
        assert variant_colour(other) not in [c for _, c in known.values()]
