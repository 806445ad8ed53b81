"""The ONE FLOPs formula of the code base (MFU, the planner and the fits all call it).

It counts the matmul / convolution FLOPs the models in trainables/models/ actually execute
for one sample, term by term, and tests/test_flops.py checks it against
`torch.utils.flop_counter.FlopCounterMode` run on the real modules (forward + backward).
A multiply-add is 2 FLOPs. Norms, softmax, activations, RoPE, pooling and the loss are not
counted (FlopCounterMode does not count them either; they are < 1% at the study's sizes).

Convention, training = 3 x forward: backward costs two matmuls per forward matmul (input and
weight gradients). The one exception is the ViT's patch-embedding convolution, whose input
is the pixels: autograd computes no input gradient there, so it costs 2 x forward.

Gradient checkpointing: we report *model* FLOPs, not hardware FLOPs. Recomputing activations
in backward does not change C (a trial's compute stays comparable with and without
checkpointing), and MFU uses the same numbers, so MFU drops when checkpointing is on.

Causal attention is counted over the full n x n score matrix (that is what eager attention and
FlopCounterMode's SDPA rule count), i.e. QK^T and AV each 2 * n^2 * width per layer.
"""
from __future__ import annotations

import os

from search_spaces.sizes import LLMSize, ViTSize
from search_spaces.trial import TrialConfig
from trainables.variants import FOVEATED, POOLED, Variant, get_variant


def _vit_layer(D: int, mlp: int, S: int) -> int:
    """One DINOv2 block over S tokens: q,k,v,o projections, QK^T and AV, MLP."""
    return 2 * S * D * 4 * D + 2 * 2 * S * S * D + 2 * 2 * S * D * mlp


def _llm_pass(llm: LLMSize, n: int) -> int:
    """The decoder stack over n positions (no LM head)."""
    d, width, kv = llm.hidden, llm.heads * llm.head_dim, llm.kv_heads * llm.head_dim
    per_layer = (
        2 * n * d * (2 * width + 2 * kv)  # q, o (width) and k, v (kv heads)
        + 2 * 2 * n * n * width  # QK^T and AV over the full score matrix
        + 2 * 3 * n * d * llm.intermediate  # gate, up, down
    )
    return llm.layers * per_layer


def _pooled_visual(spec: Variant, llm: LLMSize, vit: ViTSize, T: int, L: int, q: int, S: int, proj: int) -> dict[str, int]:
    """Pooled path (trainables/models/baseline.py): the full ViT over every frame, the projector
    and the LLM over tokens_per_frame * T pooled tokens + the text."""
    D, mlp = vit.hidden, vit.hidden * vit.mlp_ratio
    n_vis = spec.tokens_per_frame * T
    return {"vit": T * vit.layers * _vit_layer(D, mlp, S), "query": 0, "projector": n_vis * proj,
            "llm": _llm_pass(llm, n_vis + L)}


def _foveated_visual(spec: Variant, llm: LLMSize, vit: ViTSize, T: int, L: int, q: int, S: int, proj: int) -> dict[str, int]:
    """Foveated path (trainables/models/foveated.py): full blocks except the last layer, of
    which only K/V are needed; the query passes; the coarse and the fine LLM pass."""
    D, d, mlp = vit.hidden, llm.hidden, vit.hidden * vit.mlp_ratio
    out = {"vit": T * ((vit.layers - 1) * _vit_layer(D, mlp, S) + 2 * S * D * 2 * D)}
    query_layer = 2 * D * 2 * D + 2 * 2 * S * D + 2 * 2 * D * mlp  # q, o; attend to S keys; MLP
    one_pass = T * (2 * q * D + vit.layers * query_layer)  # query_in + walk through the ViT
    passes = 2 if T > 1 else 1  # coarse + fine; with T == 1 the coarse pass is skipped
    out["query"] = passes * one_pass + (2 * (T - 1) * d * q if T > 1 else 0)  # + query_out
    out["projector"] = passes * T * proj
    out["llm"] = (_llm_pass(llm, T) if T > 1 else 0) + _llm_pass(llm, T + L)
    return out


# One term function per visual path (trainables/variants.py KINDS).
VISUAL_FLOPS = {POOLED: _pooled_visual, FOVEATED: _foveated_visual}


def flops_breakdown(
    variant: str,
    llm: LLMSize,
    vit: ViTSize,
    frames: int,
    text_len: int,
    image_size: int = 224,
    query_dim: int = 384,
    vocab_size: int | None = None,
) -> dict[str, int]:
    """Forward FLOPs per sample by part: patch_embed, vit, query (query passes + query_in/out),
    projector, llm (every decoder pass), lm_head. An unknown variant is a ConfigError."""
    spec = get_variant(variant)
    V = vocab_size if vocab_size is not None else llm.vocab_size
    T, L = frames, text_len
    D, d = vit.hidden, llm.hidden
    P = (image_size // vit.patch) ** 2
    S = P + 1  # patches + CLS
    proj_per_token = 2 * D * d + 2 * d * d  # Projector: Linear(D, d), Linear(d, d)
    out = {"patch_embed": T * 2 * P * D * 3 * vit.patch**2, "lm_head": 2 * L * d * V}
    out.update(VISUAL_FLOPS[spec.kind](spec, llm, vit, T, L, query_dim, S, proj_per_token))
    return out


def train_flops_per_sample(
    variant: str,
    llm: LLMSize,
    vit: ViTSize,
    frames: int,
    text_len: int,
    image_size: int = 224,
    query_dim: int = 384,
    vocab_size: int | None = None,
) -> float:
    """Training (forward + backward) FLOPs for one sample: 3 x forward, except 2 x for the
    patch embedding (no gradient w.r.t. pixels). Model FLOPs: gradient checkpointing's
    recomputation is NOT included (see the module docstring)."""
    parts = flops_breakdown(variant, llm, vit, frames, text_len, image_size, query_dim, vocab_size)
    return float(3 * sum(parts.values()) - parts["patch_embed"])


def trial_flops_per_sample(cfg: TrialConfig, vocab_size: int) -> float:
    """train_flops_per_sample for a trial (its frames, text_len, image_size, query_dim)."""
    llm, vit = cfg.sizes
    return train_flops_per_sample(
        cfg.variant, llm, vit, cfg.frames, cfg.text_len, cfg.image_size, cfg.query_dim, vocab_size
    )


# Dense (no sparsity) bf16 tensor-core peaks, FLOP/s per device. First match wins, so the
# more specific names come first.
PEAK_FLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),  # SXM ("NVIDIA H100 80GB HBM3")
    ("H200", 989e12),
    ("A100", 312e12),
    ("RTX 4090", 165.2e12),  # with fp32 accumulation
)


def peak_flops(device_name: str | None = None, override: float | None = None) -> float | None:
    """Peak bf16 FLOP/s of one device. `override` (or env PEAK_FLOPS) wins; otherwise looked
    up from `device_name` (default: the current CUDA device's name). None if unknown."""
    if override is not None:
        return float(override)
    if os.environ.get("PEAK_FLOPS"):
        return float(os.environ["PEAK_FLOPS"])
    if device_name is None:
        import torch

        if not torch.cuda.is_available():
            return None
        device_name = torch.cuda.get_device_name()
    for key, peak in PEAK_FLOPS:
        if key.lower() in device_name.lower():
            return peak
    return None


def mfu(samples_per_s: float, flops_per_sample: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation: achieved model FLOP/s over peak (per device: pass one device's
    samples/s and peak, or totals of both). None when the peak is unknown."""
    if not peak:
        return None
    return samples_per_s * flops_per_sample / peak
