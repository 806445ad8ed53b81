"""Baseline VLM: 16 visual tokens per frame.

Each frame goes through the full ViT; its patch features (16x16 at 224 px, 4x4 at 56 px; CLS
dropped) are average-pooled to a 4x4 grid, i.e. 16 tokens, then projected to the LLM width.
Average pooling (rather than pixel-shuffle + MLP) keeps the projector the same module, with
the same input width, as the foveated model's, which the fairness rules ask for; it adds no
parameters and pools *before* the projector, so the projector runs on 16 tokens per frame.
Sequence: [16*T visual tokens, text].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from trainables.models.base import VLMBase

POOLED_GRID = 4  # 4x4 = 16 tokens per frame


class BaselineVLM(VLMBase):
    variant = "baseline"
    tokens_per_frame = POOLED_GRID * POOLED_GRID

    def frame_features(self, frames: torch.Tensor) -> torch.Tensor:
        """[B, T, 3, H, W] -> pooled patch features [B, T*16, D_vit] (frame-major order)."""
        B, T, C, H, W = frames.shape
        gh, gw = H // self.vision.patch, W // self.vision.patch
        if gh % POOLED_GRID or gw % POOLED_GRID:
            raise ValueError(f"a {gh}x{gw} patch grid does not pool evenly to {POOLED_GRID}x{POOLED_GRID}")
        feats = self.vision(frames.reshape(B * T, C, H, W))[:, 1:]  # drop CLS
        grid = feats.transpose(1, 2).reshape(B * T, -1, gh, gw)
        pooled = F.avg_pool2d(grid, kernel_size=(gh // POOLED_GRID, gw // POOLED_GRID))
        return pooled.flatten(2).transpose(1, 2).reshape(B, T * self.tokens_per_frame, -1)

    def visual_tokens(self, frames: torch.Tensor) -> torch.Tensor:
        return self.project(self.frame_features(frames))
