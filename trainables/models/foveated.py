"""Foveated VLM: one visual token per frame, placed where the language model asks to look.

Training step (both passes every step, gradients through both):

1. The ViT runs once per frame and keeps every layer's K/V (`VisionEncoder.encode_cache`).
2. Coarse pass: a learned static query for every frame -> query pass -> T tokens -> LLM over
   those T tokens -> `query_out` on the hidden state at position t gives the query for frame
   t + 1.
3. Fine pass: frame 0 uses a learned initial query, frame t > 0 the coarse pass's query from
   position t - 1 -> query pass -> T tokens -> LLM over [T tokens, text] -> caption loss.

With T == 1 nothing consumes the coarse pass (frame 0 always uses the initial query), so it
is skipped; trainables/flops.py counts the same.

`autoregressive` runs inference truly frame by frame: the query for frame t comes from the
LLM's hidden state after the *foveated* tokens 0..t-1 (not from a coarse pass), using the
LLM's KV cache; `use_cache=False` recomputes the prefix at every step (same numbers, test b).

Connector = projector (shared class with the baseline) + query_in Linear(q, D_vit) +
query_out Linear(d_llm, q) + two learned q-vectors.
"""
from __future__ import annotations

import torch
from torch import nn
from transformers import DynamicCache

from trainables.models.base import VLMBase, text_loss
from trainables.models.language import LanguageModel
from trainables.models.vision import KV, VisionEncoder


class FoveatedVLM(VLMBase):
    tokens_per_frame = 1

    def __init__(
        self, vision: VisionEncoder, llm: LanguageModel, visual_scale: float = 0.14, query_dim: int = 384
    ) -> None:
        super().__init__(vision, llm, visual_scale)
        self.query_dim = query_dim
        # Unit-variance learned queries: the same scale query_out produces from the LLM's
        # final-norm hidden states at init, so coarse/initial and LLM-made queries start alike.
        self.coarse_query = nn.Parameter(torch.randn(query_dim))
        self.first_query = nn.Parameter(torch.randn(query_dim))
        # nn.Linear's default init on purpose: a CLS-sized one (std 0.02 per element) raises the
        # image-dependent share of a random-init token from ~1e-4 to ~2e-2, but on the smoke task
        # it learned to look no more reliably (vision gap 0.50 vs 0.94, T1-T1, 600 steps): the
        # query must stay large enough to steer attention in every ViT layer.
        self.query_in = nn.Linear(query_dim, vision.hidden)
        self.query_out = nn.Linear(llm.hidden, query_dim)

    def fovea(self, queries: torch.Tensor, cache: list[KV]) -> torch.Tensor:
        """queries [N, q] + the N frames' caches -> N visual tokens [N, d_llm] (scaled)."""
        return self.project(self.vision.query_pass(self.query_in(queries), cache))

    def frame_queries(self, cache: list[KV], B: int, T: int) -> torch.Tensor:
        """The coarse pass: queries [B, T, q] for the fine pass (row t made at position t - 1)."""
        first = self.first_query.expand(B, 1, -1)
        if T == 1:
            return first
        coarse = self.fovea(self.coarse_query.expand(B * T, -1), cache).view(B, T, -1)
        nxt = self.query_out(self.llm(coarse)[:, :-1])  # position T-1's query would be unused
        return torch.cat([first.to(nxt.dtype), nxt], dim=1)

    def visual_tokens(self, frames: torch.Tensor) -> torch.Tensor:
        B, T = frames.shape[:2]
        cache = self.vision.encode_cache(frames.flatten(0, 1))
        queries = self.frame_queries(cache, B, T)
        return self.fovea(queries.flatten(0, 1), cache).view(B, T, -1)

    def autoregressive(
        self,
        frames: torch.Tensor,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        use_cache: bool = True,
    ) -> dict[str, torch.Tensor]:
        """Frame-by-frame inference, teacher-forced text. Returns text `logits` [B, L, V]
        (row i predicts input_ids[:, i]) and, with labels, the same loss dict as forward.

        Frame t's query is query_out(LLM hidden state after foveated tokens 0..t-1); frame 0
        uses the initial query. With use_cache the LLM runs once per new token on a
        DynamicCache; without, it recomputes the whole prefix each step.
        """
        B, T = frames.shape[:2]
        full = self.vision.encode_cache(frames.flatten(0, 1))
        kv = DynamicCache(config=self.llm.lm.config) if use_cache else None
        tokens: list[torch.Tensor] = []
        query = self.first_query.expand(B, -1)
        for t in range(T):
            cache_t = [(k.unflatten(0, (B, T))[:, t], v.unflatten(0, (B, T))[:, t]) for k, v in full]
            tokens.append(self.fovea(query, cache_t)[:, None])
            h = self.llm(tokens[-1], cache=kv) if use_cache else self.llm(torch.cat(tokens, dim=1))
            if t < T - 1:
                query = self.query_out(h[:, -1])
        text = self.llm.embed(input_ids)
        if use_cache:
            h_text = self.llm(text, cache=kv)
        else:
            h_text = self.llm(torch.cat(tokens + [text], dim=1))[:, T:]
        hidden = torch.cat([h[:, -1:], h_text[:, :-1]], dim=1)  # row i predicts text token i
        logits = self.llm.head(hidden)
        out = {"logits": logits}
        if labels is not None:
            out.update(text_loss(logits, labels))
        return out
