"""The connector pieces both variants share: the projector and the visual-token scale rule.

Fairness rule: both variants map vision features to the LLM width with the *same* module
class and put the result on the text-embedding scale with the *same* fixed rule, so any
loss difference comes from which tokens are shown, not from how they are conditioned.
"""
from __future__ import annotations

import torch
from torch import nn


class Projector(nn.Module):
    """Vision width -> LLM width: Linear, GELU, Linear (the LLaVA-1.5 two-layer MLP).

    Used per visual token by both variants (baseline: 16 pooled patch features per frame;
    foveated: the query pass's one token per frame), so the two connectors differ only by
    the foveated model's query machinery (see FoveatedVLM).
    """

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_dim, out_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def scale_visual(x: torch.Tensor, visual_scale: float, dtype: torch.dtype) -> torch.Tensor:
    """Put visual tokens on the text-embedding scale: RMS-normalise each token, times a constant.

    After this every visual token has per-element RMS == `visual_scale` (0.14 by default,
    the original experiment plan's constant), whatever the projector's output magnitude, so neither variant can
    win by learning a louder or quieter visual signal. Parameter-free and applied the same
    way in both variants. Computed in fp32 (bf16 sums of squares are coarse), returned in
    the LLM's embedding dtype.
    """
    xf = x.float()
    rms = xf.pow(2).mean(-1, keepdim=True).add(1e-6).rsqrt()
    return (xf * rms * visual_scale).to(dtype)
