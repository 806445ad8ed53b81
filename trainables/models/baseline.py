"""Baseline VLM (the pooled path): pooled_grid x pooled_grid visual tokens per frame.

Each frame goes through the full ViT; its patch features (16x16 at 224 px, 4x4 at 56 px; CLS
dropped) are average-pooled to a pooled_grid x pooled_grid grid, then projected to the LLM
width: 4x4 = 16 tokens for the baseline arm, 1x1 = 1 token for the pooled1 control
(trainables/variants.py). Average pooling (rather than pixel-shuffle + MLP) keeps the projector
the same module, with the same input width, as the foveated model's, which the fairness rules
ask for; it adds no parameters and pools *before* the projector, so the projector runs on the
pooled tokens only. Sequence: [pooled_grid^2 * T visual tokens, text].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from trainables.models.base import VLMBase
from trainables.models.language import LanguageModel
from trainables.models.vision import VisionEncoder


class BaselineVLM(VLMBase):
    def __init__(self, vision: VisionEncoder, llm: LanguageModel, visual_scale: float = 0.14, pooled_grid: int = 4) -> None:
        super().__init__(vision, llm, visual_scale)
        self.pooled_grid = pooled_grid
        self.tokens_per_frame = pooled_grid * pooled_grid

    def frame_features(self, frames: torch.Tensor) -> torch.Tensor:
        """[B, T, 3, H, W] -> pooled patch features [B, T * tokens_per_frame, D_vit] (frame-major)."""
        B, T, C, H, W = frames.shape
        gh, gw, g = H // self.vision.patch, W // self.vision.patch, self.pooled_grid
        if gh % g or gw % g:
            raise ValueError(f"a {gh}x{gw} patch grid does not pool evenly to {g}x{g}")
        feats = self.vision(frames.reshape(B * T, C, H, W))[:, 1:]  # drop CLS
        grid = feats.transpose(1, 2).reshape(B * T, -1, gh, gw)
        pooled = F.avg_pool2d(grid, kernel_size=(gh // g, gw // g))
        return pooled.flatten(2).transpose(1, 2).reshape(B, T * self.tokens_per_frame, -1)

    def visual_tokens(self, frames: torch.Tensor) -> torch.Tensor:
        return self.project(self.frame_features(frames))
