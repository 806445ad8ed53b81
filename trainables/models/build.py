"""`build_vlm`: a TrialConfig -> its variant's VLM (trainables/variants.py), random or pretrained backbones."""
from __future__ import annotations

import os

import torch
from transformers import Dinov2Model, LlamaForCausalLM, PreTrainedModel

from search_spaces.errors import ConfigError
from search_spaces.sizes import LLMSize, ViTSize
from search_spaces.trial import TrialConfig
from trainables.hub import is_hub_id
from trainables.models.base import VLMBase
from trainables.models.baseline import BaselineVLM
from trainables.models.foveated import FoveatedVLM
from trainables.models.language import LanguageModel, build_language
from trainables.models.vision import VisionEncoder, build_vision
from trainables.variants import FOVEATED, POOLED, Variant, get_variant


def _offline() -> bool:
    flags = (os.environ.get(v, "").lower() for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return any(f in ("1", "true", "yes", "on") for f in flags)


def _load(
    cls: type[PreTrainedModel], name: str | None, what: str, arg: str, attn: str, **kw: object
) -> PreTrainedModel:
    """from_pretrained with every failure turned into ONE line naming the model and the remedies."""
    if name is None:
        raise ConfigError(
            f"init=pretrained needs {arg} for the {what}: this size has no hub id; "
            f"pass a local directory via {arg}, or use init=random"
        )
    local = not is_hub_id(name)
    name = os.path.expanduser(name)
    if local and not os.path.isdir(name):
        raise ConfigError(
            f"cannot load the {what} from {name!r}: no such directory; fix {arg}, or use init=random"
        )
    remedy = f"download it (hf download {name}) or pass a local directory via {arg}, or use init=random"
    try:
        # fp32 like the random init; the trainer decides the training precision
        return cls.from_pretrained(
            name, local_files_only=_offline() and not local, attn_implementation=attn, dtype=torch.float32, **kw
        )
    except (OSError, ValueError, RuntimeError) as e:  # hub/file errors are OSError or ValueError subclasses
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        where = "offline and not in the local cache" if _offline() and not local else first
        raise ConfigError(f"cannot load the {what} {name!r} ({where}): {remedy}") from e


def _check(what: str, name: str, got: dict, want: dict) -> None:
    """A pretrained backbone must match the registry size: N and the FLOPs formula use the registry."""
    bad = {k: (got[k], v) for k, v in want.items() if got[k] != v}
    if bad:
        diff = ", ".join(f"{k}={g} (expected {w})" for k, (g, w) in bad.items())
        raise ConfigError(f"the {what} at {name!r} does not match its registry size: {diff}")


def load_language(size: LLMSize, path: str | None, vocab_size: int, attn: str = "sdpa") -> LanguageModel:
    name = path or size.hub_id
    lm = _load(LlamaForCausalLM, name, f"LLM {size.key}", "llm_path", attn)
    c = lm.config
    got = (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads, c.intermediate_size)
    want = (size.hidden, size.layers, size.heads, size.kv_heads, size.intermediate)
    keys = ("hidden", "layers", "heads", "kv_heads", "intermediate")
    _check(f"LLM {size.key}", str(name), dict(zip(keys, got)), dict(zip(keys, want)))
    if c.vocab_size != vocab_size:
        # The trial's tokenizer decides the vocabulary (and the LM-head FLOPs); new rows get the
        # model's init, surplus rows are dropped.
        lm.resize_token_embeddings(vocab_size)
    lm.config.use_cache = False
    return LanguageModel(lm)


def load_vision(size: ViTSize, path: str | None, attn: str = "sdpa") -> VisionEncoder:
    name = path or size.hub_id
    vit = _load(Dinov2Model, name, f"ViT {size.key}", "vit_path", attn, drop_path_rate=0.0)
    c = vit.config
    got = (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.patch_size, c.mlp_ratio, c.use_swiglu_ffn)
    want = (size.hidden, size.layers, size.heads, size.patch, size.mlp_ratio, False)
    keys = ("hidden", "layers", "heads", "patch", "mlp_ratio", "swiglu")
    _check(f"ViT {size.key}", str(name), dict(zip(keys, got)), dict(zip(keys, want)))
    return VisionEncoder(vit)


def _pooled(spec: Variant, cfg: TrialConfig, vision: VisionEncoder, llm: LanguageModel) -> VLMBase:
    return BaselineVLM(vision, llm, visual_scale=cfg.visual_scale, pooled_grid=spec.pooled_grid)


def _foveated(spec: Variant, cfg: TrialConfig, vision: VisionEncoder, llm: LanguageModel) -> VLMBase:
    return FoveatedVLM(vision, llm, visual_scale=cfg.visual_scale, query_dim=cfg.query_dim)


# One model class per visual path (trainables/variants.py KINDS), with the spec's arguments.
MODELS = {POOLED: _pooled, FOVEATED: _foveated}


def build_vlm(cfg: TrialConfig, vocab_size: int, attn_implementation: str = "sdpa") -> VLMBase:
    """The trial's model: cfg.variant on cfg.config's backbones.

    init="random": fresh weights from torch's current RNG (seed before calling).
    init="pretrained": backbones from `cfg.llm_path or size.hub_id` / `cfg.vit_path or
    size.hub_id` (local directory or hub id; `local_files_only` when HF_HUB_OFFLINE is set);
    any failure is a one-line ConfigError. The connector is always freshly initialised.
    attn_implementation: "sdpa" for training, "eager" for FLOPs counting.
    Works under `with torch.device("meta"):` for parameter counting (random init only).
    """
    spec = get_variant(cfg.variant)
    llm_size, vit_size = cfg.sizes
    if cfg.init == "pretrained":
        llm = load_language(llm_size, cfg.llm_path, vocab_size, attn_implementation)
        vision = load_vision(vit_size, cfg.vit_path, attn_implementation)
    else:
        llm = build_language(llm_size, vocab_size, attn_implementation)
        vision = build_vision(vit_size, attn_implementation, cfg.vit_position_std)
    model = MODELS[spec.kind](spec, cfg, vision, llm)
    model.zero_visual_tokens = cfg.zero_visual_tokens
    return model
