"""SmolLM2 language model: a stock transformers `LlamaForCausalLM` behind a small interface.

The VLMs feed it `inputs_embeds` (visual tokens + text embeddings) and take the final-norm
hidden states; the LM head is applied separately and only at the positions that predict
text, so the vocabulary projection (49152 wide for SmolLM2) never runs over visual tokens.
Keeping the stock class means `from_pretrained` / `save_pretrained` work unchanged.
"""
from __future__ import annotations

import torch
from torch import nn
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

from search_spaces.sizes import LLMSize


def llama_config(size: LLMSize, vocab_size: int, attn_implementation: str = "sdpa") -> LlamaConfig:
    """The public SmolLM2 config for a registry size, with the tokenizer's vocabulary size."""
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=size.hidden,
        intermediate_size=size.intermediate,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        num_key_value_heads=size.kv_heads,
        head_dim=size.head_dim,
        max_position_embeddings=size.max_positions,
        rope_parameters={"rope_type": "default", "rope_theta": size.rope_theta},
        rms_norm_eps=1e-5,
        tie_word_embeddings=size.tied_embeddings,
        hidden_act="silu",
        attention_bias=False,
        mlp_bias=False,
        initializer_range=0.02,
        use_cache=False,
        attn_implementation=attn_implementation,
    )


class LanguageModel(nn.Module):
    """Wraps a `LlamaForCausalLM` (attribute `lm`)."""

    def __init__(self, lm: LlamaForCausalLM) -> None:
        super().__init__()
        self.lm = lm
        self.hidden = lm.config.hidden_size
        self.vocab_size = lm.config.vocab_size

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.lm.model.embed_tokens(input_ids)

    @property
    def embed_dtype(self) -> torch.dtype:
        return self.lm.model.embed_tokens.weight.dtype

    def forward(self, inputs_embeds: torch.Tensor, cache: DynamicCache | None = None) -> torch.Tensor:
        """[B, n, d] embeddings -> [B, n, d] final-norm hidden states (causal attention).

        No padding mask is passed on purpose: batches are right-padded, so under causal
        attention no real position ever sees a pad and the pads' own outputs carry label
        -100. Skipping the mask is exact and lets SDPA use its fused causal kernels.
        With `cache`, the new positions continue after the cached ones (RoPE included).
        """
        out = self.lm.model(inputs_embeds=inputs_embeds, cache=cache, use_cache=cache is not None)
        return out.last_hidden_state

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """LM head (tied to the embeddings for SmolLM2): [..., d] -> logits [..., vocab]."""
        return self.lm.lm_head(hidden)


def build_language(size: LLMSize, vocab_size: int, attn_implementation: str = "sdpa") -> LanguageModel:
    """A randomly initialised SmolLM2-architecture model of the given size."""
    return LanguageModel(LlamaForCausalLM(llama_config(size, vocab_size, attn_implementation)))
