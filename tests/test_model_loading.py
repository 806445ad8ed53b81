"""init="pretrained": loading backbones from local directories, and one-line errors offline."""
from __future__ import annotations

import pytest
import torch

from search_spaces.errors import ConfigError
from search_spaces.sizes import LLM_SIZES, VIT_SIZES
from search_spaces.trial import TrialConfig
from trainables.models import build_vlm
from trainables.models.language import build_language
from trainables.models.vision import build_vision


@pytest.fixture
def saved_backbones(tmp_path):
    torch.manual_seed(123)
    llm = build_language(LLM_SIZES["T2"], 256).eval()
    vision = build_vision(VIT_SIZES["T2"]).eval()
    llm.lm.save_pretrained(tmp_path / "llm")
    vision.vit.save_pretrained(tmp_path / "vit")
    return llm, vision, tmp_path


@pytest.mark.parametrize("variant", ["foveated", "baseline"])
def test_pretrained_path_round_trip(saved_backbones, variant: str) -> None:
    llm, vision, tmp = saved_backbones
    cfg = TrialConfig(
        variant=variant, config="T2-T2", steps=1, image_size=56, init="pretrained",
        llm_path=str(tmp / "llm"), vit_path=str(tmp / "vit"),
    )
    torch.manual_seed(999)  # a different RNG state: loaded weights must not depend on it
    model = build_vlm(cfg, 256).eval()
    ids = torch.randint(0, 256, (2, 7))
    px = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        torch.testing.assert_close(model.llm(model.llm.embed(ids)), llm(llm.embed(ids)), rtol=0, atol=0)
        torch.testing.assert_close(model.vision(px), vision(px), rtol=0, atol=0)
        cache_a, cache_b = model.vision.encode_cache(px), vision.encode_cache(px)
        q = torch.randn(2, vision.hidden)
        torch.testing.assert_close(model.vision.query_pass(q, cache_a), vision.query_pass(q, cache_b), rtol=0, atol=0)
    # the tied LM head survives the round trip
    assert model.llm.lm.lm_head.weight is model.llm.lm.model.embed_tokens.weight


def test_pretrained_vocab_is_resized_to_the_tokenizer(saved_backbones) -> None:
    _, _, tmp = saved_backbones
    cfg = TrialConfig(variant="baseline", config="T2-T2", steps=1, image_size=56, init="pretrained",
                      llm_path=str(tmp / "llm"), vit_path=str(tmp / "vit"))
    model = build_vlm(cfg, 300)
    assert model.llm.lm.get_input_embeddings().weight.shape[0] == 300
    assert model.llm.head(torch.zeros(1, LLM_SIZES["T2"].hidden)).shape[-1] == 300


def test_pretrained_backbone_of_the_wrong_size_is_refused(saved_backbones) -> None:
    _, _, tmp = saved_backbones
    cfg = TrialConfig(variant="foveated", config="T1-T2", steps=1, image_size=56, init="pretrained",
                      llm_path=str(tmp / "llm"), vit_path=str(tmp / "vit"))
    with pytest.raises(ConfigError, match="does not match its registry size"):
        build_vlm(cfg, 256)


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_missing_hub_model_offline_is_one_line_config_error(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = TrialConfig(variant="foveated", config="S-S", steps=1, init="pretrained",
                      llm_path="no-such-org-xyz/no-such-model-xyz")
    with pytest.raises(ConfigError) as err:
        build_vlm(cfg, 49152)
    msg = _one_line(err)
    assert "no-such-org-xyz/no-such-model-xyz" in msg
    assert "llm_path" in msg and "download" in msg and "init=random" in msg


def test_missing_local_dir_for_the_vit(saved_backbones, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _, _, tmp = saved_backbones
    cfg = TrialConfig(variant="baseline", config="T2-T2", steps=1, image_size=56, init="pretrained",
                      llm_path=str(tmp / "llm"), vit_path=str(tmp / "does-not-exist"))
    with pytest.raises(ConfigError) as err:
        build_vlm(cfg, 256)
    assert "vit_path" in _one_line(err)


def test_tiny_size_has_no_hub_id() -> None:
    cfg = TrialConfig(variant="baseline", config="T1-T1", steps=1, image_size=56, init="pretrained")
    with pytest.raises(ConfigError) as err:
        build_vlm(cfg, 256)
    assert "llm_path" in _one_line(err)
