"""DINOv2 vision encoder: per-frame patch features, the per-layer K/V cache and the query pass.

The weights live in a stock transformers `Dinov2Model` (so `from_pretrained` and
`save_pretrained` just work), but the layers are walked here rather than through
`Dinov2Model.forward`, because the foveated variant needs what that forward hides:

* the keys and values every layer computes from its pre-attention norm (the *cache*), and
* a *query pass*: one extra token walked through the same layers with the same weights,
  attending to the cached K/V but never to itself, while the frame's tokens never attend to
  it. Because nothing attends to the query, the cache is exact: running the query pass on
  the cache equals running the full ViT with the query appended under that attention mask
  (tests/test_models.py checks this against transformers' own layer code).

The query attends to all cached tokens: the 256 patches *and* CLS (CLS is an ordinary key in
DINOv2's attention; keeping it makes the query pass literally "one more token in the ViT").

Attention runs either as explicit matmuls ("eager") or `F.scaled_dot_product_attention`
("sdpa"). FLOPs measurements use "eager": on CPU torch dispatches SDPA to a fused kernel that
`FlopCounterMode` does not count.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import Dinov2Config, Dinov2Model

from search_spaces.sizes import ViTSize

KV = tuple[torch.Tensor, torch.Tensor]  # keys, values: [N, heads, S, head_dim] each


def dinov2_config(size: ViTSize, attn_implementation: str = "sdpa") -> Dinov2Config:
    """The public DINOv2 config for a registry size (tiny sizes: same architecture, smaller)."""
    return Dinov2Config(
        hidden_size=size.hidden,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        mlp_ratio=size.mlp_ratio,
        patch_size=size.patch,
        image_size=size.pretrain_image_size,
        layerscale_value=1.0,
        layer_norm_eps=1e-6,
        drop_path_rate=0.0,  # the manual layer walk below has no stochastic depth
        attn_implementation=attn_implementation,
    )


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, eager: bool) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v on [N, heads, S, d] tensors, no mask."""
    if not eager:
        return F.scaled_dot_product_attention(q, k, v)
    w = torch.matmul(q, k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    return torch.matmul(w.softmax(dim=-1, dtype=torch.float32).to(q.dtype), v)


class VisionEncoder(nn.Module):
    """Wraps a `Dinov2Model` (attribute `vit`); see the module docstring."""

    def __init__(self, vit: Dinov2Model) -> None:
        super().__init__()
        self.vit = vit
        cfg = vit.config
        self.hidden = cfg.hidden_size
        self.heads = cfg.num_attention_heads
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        self.patch = cfg.patch_size
        self.gradient_checkpointing = False
        self._compiled: dict = {}  # compile_blocks: torch.compile'd _layer_block / _query_layer
        if getattr(cfg, "drop_path_rate", 0.0):
            raise ValueError("VisionEncoder walks the layers itself and does not implement drop_path")
        # The mask token (masked-image pre-training) is never used here; freezing it keeps
        # optimizers/DDP from seeing a parameter that never gets a gradient.
        if vit.embeddings.mask_token is not None:
            vit.embeddings.mask_token.requires_grad_(False)

    @property
    def eager(self) -> bool:
        return self.vit.config._attn_implementation == "eager"

    @property
    def layers(self) -> nn.ModuleList:
        return self.vit.encoder.layer

    def _heads(self, x: torch.Tensor) -> torch.Tensor:  # [N, S, D] -> [N, heads, S, hd]
        return x.view(x.shape[0], x.shape[1], self.heads, self.head_dim).transpose(1, 2)

    def _merge(self, x: torch.Tensor) -> torch.Tensor:  # [N, heads, S, hd] -> [N, S, D]
        return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], self.hidden)

    def _mlp_block(self, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return x + layer.layer_scale2(layer.mlp(layer.norm2(x)))

    def compile_blocks(self, **compile_kwargs) -> None:
        """torch.compile the per-layer block functions (one graph shared by all layers)."""
        self._compiled = {"block": torch.compile(self._layer_block, **compile_kwargs),
                          "query": torch.compile(self._query_layer, **compile_kwargs)}

    def _layer(self, i: int, x: torch.Tensor, last_kv_only: bool) -> tuple[torch.Tensor, ...]:
        return self._compiled.get("block", self._layer_block)(self.layers[i], x, last_kv_only)

    def _layer_block(self, layer: nn.Module, x: torch.Tensor, last_kv_only: bool) -> tuple[torch.Tensor, ...]:
        """One DINOv2 block over all tokens; also returns this layer's K/V (the cache entry).

        `last_kv_only`: stop after K/V. The foveated model only needs the last layer's K/V,
        not its patch outputs, so it skips that layer's attention, MLP and final norm.
        """
        attn = layer.attention
        h = layer.norm1(x)
        k, v = self._heads(attn.k_proj(h)), self._heads(attn.v_proj(h))
        if last_kv_only:
            return x, k, v
        q = self._heads(attn.q_proj(h))
        x = x + layer.layer_scale1(attn.o_proj(self._merge(attend(q, k, v, self.eager))))
        return self._mlp_block(layer, x), k, v

    def _run_layer(self, i: int, x: torch.Tensor, last_kv_only: bool) -> tuple[torch.Tensor, ...]:
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(self._layer, i, x, last_kv_only, use_reentrant=False)
        return self._layer(i, x, last_kv_only)

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] -> [N, 1 + P, D]: patch embedding + CLS + DINOv2's own (bicubic) position
        interpolation from its pre-training grid to H/14 x W/14."""
        return self.vit.embeddings(pixels)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Full ViT: [N, 3, H, W] -> final-norm features [N, 1 + P, D] (CLS first). Same result
        as `Dinov2Model(pixels).last_hidden_state`."""
        x = self.embed(pixels)
        for i in range(len(self.layers)):
            x, _, _ = self._run_layer(i, x, last_kv_only=False)
        return self.vit.layernorm(x)

    def encode_cache(self, pixels: torch.Tensor) -> list[KV]:
        """[N, 3, H, W] -> per-layer (K, V) of all 1 + P tokens, from each layer's pre-attention norm."""
        x = self.embed(pixels)
        cache: list[KV] = []
        n = len(self.layers)
        for i in range(n):
            x, k, v = self._run_layer(i, x, last_kv_only=i == n - 1)
            cache.append((k, v))
        return cache

    def query_pass(self, query: torch.Tensor, cache: list[KV]) -> torch.Tensor:
        """Walk one query token per frame through every layer against that frame's cache.

        query: [N, D] (already in ViT width); cache from `encode_cache` for the same N frames.
        Per layer, with the layer's own weights: norm1 -> q_proj -> attend to cached K/V (not
        to itself) -> o_proj -> layer_scale1 -> residual; norm2 -> MLP -> layer_scale2 ->
        residual. Then the ViT's final layernorm. Returns [N, D].
        """
        x = query[:, None, :]
        for layer, (k, v) in zip(self.layers, cache, strict=True):
            x = self._compiled.get("query", self._query_layer)(layer, x, k, v)
        return self.vit.layernorm(x)[:, 0]

    def _query_layer(self, layer: nn.Module, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        attn = layer.attention
        q = self._heads(attn.q_proj(layer.norm1(x)))
        x = x + layer.layer_scale1(attn.o_proj(self._merge(attend(q, k, v, self.eager))))
        return self._mlp_block(layer, x)


def build_vision(size: ViTSize, attn_implementation: str = "sdpa", position_std: float | None = None) -> VisionEncoder:
    """A randomly initialised DINOv2 of the given size.

    position_std: re-draw the learned position embeddings from DINOv2's form of init (a normal
    of that std truncated at 2 std) instead of std 0.02. The draw runs on a forked RNG, so every
    other weight of the model is the one the default init gives: an A/B of this option changes
    the position embeddings and nothing else."""
    vit = Dinov2Model(dinov2_config(size, attn_implementation))
    if position_std is not None:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            nn.init.trunc_normal_(vit.embeddings.position_embeddings, std=position_std,
                                  a=-2 * position_std, b=2 * position_std)
    return VisionEncoder(vit)
