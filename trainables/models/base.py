"""What both VLM variants share: backbones, projector, the caption loss and parameter groups.

Everything that the fairness rules say must be identical between the variants (loss mask,
visual-token scale rule, projector class, optimizer grouping) lives here, once.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trainables.models.connector import Projector, scale_visual
from trainables.models.language import LanguageModel
from trainables.models.vision import VisionEncoder

IGNORE_INDEX = -100

# Parameter names (substrings) that never get weight decay besides the 1-D ones (norm
# weights, biases, layer-scale, the foveated model's learned queries): token embeddings /
# tied LM head and DINOv2's CLS, mask and position tokens. Decaying them pulls the input
# space towards zero.
_NO_DECAY_NAMES = ("embed_tokens", "lm_head", "position_embeddings", "cls_token", "mask_token")


def text_loss(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """logits [B, L, V] (row i predicts token i) vs labels [B, L] (-100 = ignore).

    Returns loss (mean over label tokens), loss_sum (with grad, so gradient accumulation can
    weight micro-batches by tokens) and n_tokens (a long tensor). CE in fp32.
    """
    loss_sum = F.cross_entropy(
        logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
    )
    n_tokens = (labels != IGNORE_INDEX).sum()
    return {"loss": loss_sum / n_tokens.clamp(min=1), "loss_sum": loss_sum, "n_tokens": n_tokens}


@torch.no_grad()
def position_loss(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Caption loss summed over the batch at each text position ([L]) and the label count there."""
    per_token = F.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=IGNORE_INDEX, reduction="none")
    return {"position_loss_sum": per_token.sum(0), "position_tokens": (labels != IGNORE_INDEX).sum(0)}


class VLMBase(nn.Module):
    """A vision encoder, a language model and a projector; subclasses define the visual tokens.

    Subclasses implement `visual_tokens(frames) -> [B, n_vis, d_llm]` (already scaled); the
    rest of the forward pass is here so both variants compute the loss identically.
    """

    tokens_per_frame: int = 0  # visual tokens per frame (each arm's count: trainables/variants.py)
    zero_visual_tokens: bool = False  # the blind control (TrialConfig.zero_visual_tokens)
    # Submodule names that are backbone (trained at lr_backbone); everything else is connector.
    backbone_modules: tuple[str, ...] = ("vision", "llm")

    def __init__(self, vision: VisionEncoder, llm: LanguageModel, visual_scale: float = 0.14) -> None:
        super().__init__()
        self.vision = vision
        self.llm = llm
        self.projector = Projector(vision.hidden, llm.hidden)
        self.visual_scale = float(visual_scale)

    # -- pieces shared by the variants ---------------------------------------------------
    def project(self, feats: torch.Tensor) -> torch.Tensor:
        """Vision features [..., D_vit] -> LLM-width visual tokens on the text-embedding scale.

        Every visual token of either variant (the foveated model's coarse pass included) is made
        here, so the blind control zeroes them here: x * 0 keeps the graph (each parameter still
        gets a gradient, zero, as ZeRO expects), and + 0.0 turns -0.0 into +0.0, so the LLM's
        input is bit-identical whatever the frames."""
        tokens = scale_visual(self.projector(feats), self.visual_scale, self.llm.embed_dtype)
        return tokens * 0.0 + 0.0 if self.zero_visual_tokens else tokens

    def caption_loss(self, hidden: torch.Tensor, n_vis: int, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Next-token CE on the caption: hidden is the LLM output over [n_vis visual, L text].

        Text token i is predicted from position n_vis + i - 1 (the last visual token predicts
        text token 0), so the LM head runs over exactly L positions, never over visual ones.
        """
        L = labels.shape[1]
        logits = self.llm.head(hidden[:, n_vis - 1 : n_vis - 1 + L])
        out = text_loss(logits, labels)
        if not self.training:  # the evaluation's loss per caption position (per field of a fixed format)
            out.update(position_loss(logits, labels))
        return out

    def visual_tokens(self, frames: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(
        self,
        frames: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **_: object,
    ) -> dict[str, torch.Tensor]:
        """The batch contract: frames [B, T, 3, H, W] (DINOv2-normalised), input_ids /
        attention_mask / labels [B, L] (right-padded). attention_mask is accepted but not needed
        (see LanguageModel.forward). Extra batch keys are ignored. Labels default to input_ids
        with pads masked and BOS ignored."""
        if labels is None:
            labels = input_ids.clone()
            if attention_mask is not None:
                labels = labels.masked_fill(attention_mask == 0, IGNORE_INDEX)
            labels[:, 0] = IGNORE_INDEX
        vis = self.visual_tokens(frames)
        text = self.llm.embed(input_ids)
        hidden = self.llm(torch.cat([vis, text], dim=1))
        return self.caption_loss(hidden, vis.shape[1], labels)

    # -- optimisation ------------------------------------------------------------------
    def param_groups(self, lr: float, lr_backbone: float, weight_decay: float) -> list[dict]:
        """Optimizer groups: connector (everything not in a backbone) at `lr`, LLM + ViT at
        `lr_backbone`; no weight decay on 1-D parameters (norms, biases, layer scales,
        learned queries) nor on embeddings / CLS / position tokens. Same rule for both variants.
        Empty groups are dropped; each group carries a "name" for logging."""
        groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
        seen: set[int] = set()
        for name, p in self.named_parameters():
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            backbone = name.split(".", 1)[0] in self.backbone_modules
            decay = p.ndim >= 2 and not any(s in name for s in _NO_DECAY_NAMES)
            groups.setdefault((backbone, decay), []).append(p)
        out = []
        for (backbone, decay), params in sorted(groups.items()):
            out.append(
                {
                    "name": f"{'backbone' if backbone else 'connector'}_{'decay' if decay else 'no_decay'}",
                    "params": params,
                    "lr": lr_backbone if backbone else lr,
                    "weight_decay": weight_decay if decay else 0.0,
                }
            )
        return out

    def compile_blocks(self, **compile_kwargs) -> None:
        """torch.compile every ViT block (and its query pass) and every LLM decoder layer, in
        place. Blocks, not the whole model: the Python around them (the foveated model's two
        passes, the loss slicing) stays eager and graph breaks cannot spread; identical layers
        share one compiled graph (torch inlines nn.Modules and lifts their parameters)."""
        self.vision.compile_blocks(**compile_kwargs)
        for layer in self.llm.lm.model.layers:
            layer.compile(**compile_kwargs)

    def gradient_checkpointing_enable(self) -> None:
        """Recompute each ViT / LLM layer in backward. Changes memory, not the FLOPs we report
        (trainables/flops.py counts model FLOPs, not recomputation)."""
        self.vision.gradient_checkpointing = True
        self.llm.lm.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})


def _count(params) -> int:
    seen: dict[int, int] = {}
    for p in params:
        if p.requires_grad:
            seen[id(p)] = p.numel()
    return sum(seen.values())


def param_counts(model: VLMBase) -> dict[str, int]:
    """Trainable parameters (tied weights once): total, llm (incl. embeddings),
    llm_non_embedding, vision, connector (projector + any query machinery)."""
    llm = _count(model.llm.parameters())
    emb = _count(model.llm.lm.get_input_embeddings().parameters())
    head = model.llm.lm.get_output_embeddings()
    if head is not None and head.weight is not model.llm.lm.get_input_embeddings().weight:
        emb += _count(head.parameters())
    vision = _count(model.vision.parameters())
    total = _count(model.parameters())
    return {
        "total": total,
        "llm": llm,
        "llm_non_embedding": llm - emb,
        "vision": vision,
        "connector": total - llm - vision,
    }
