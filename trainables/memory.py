"""The GPU / host memory model of one trial (used by the planner); its parameter counts come
from trainables/parameters.py.

Memory of one GPU, single process, DeepSpeed ZeRO-2 (trainables/engine.py), P = parameters:

    peak allocated = static + max(activation peak, optimizer-step transient)
    static         = weights + gradients + optimizer state on the GPU
    predicted GPU  = peak allocated + fragmentation margin + CUDA context

`peak allocated` is what `torch.cuda.max_memory_allocated` reports (benchmarks/
memory_check.py compares the two); the planner fits `predicted GPU` into the card.

Activations are derived per layer from what autograd actually saves in the modules of
trainables/models (HF Llama layers, our DINOv2 layer walk), with SDPA / flash attention (no
S x S score matrix is ever stored; only q, k, v, the output and a fp32 log-sum-exp per head).
tests/test_memory.py checks `Activations.saved` against the bytes autograd saves for tiny
configs on CPU (saved_tensors_hooks), both variants, with and without checkpointing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from search_spaces.sizes import LLMSize, ViTSize
from search_spaces.trial import TrialConfig
from trainables.data.prefetch import pipeline_host_bytes
from trainables.parameters import param_counts_for
from trainables.variants import FOVEATED, POOLED, Variant, get_variant

GIB = 2**30
# The CUDA context, cuBLAS/cuDNN workspaces and the NCCL/gloo set-up live outside the caching
# allocator (max_memory_allocated never sees them): ~0.5-0.8 GiB on H100/4090 with torch 2.x.
CUDA_CONTEXT_BYTES = 1.0 * GIB
# The caching allocator rounds and splits blocks; with activations of many sizes reserved
# memory runs 5-15% above allocated. 10% of the peak is the safety margin we plan with.
FRAGMENTATION = 0.10
# Host RSS of a trial process before any model state: torch + CUDA libraries, DeepSpeed,
# the Ray worker, tokenizer and data loader.
HOST_BASE_BYTES = 3.0 * GIB
LN_STATS = 8  # LayerNorm saves mean + rstd, fp32, per token
LOGIT_TRANSIENT = 10  # bytes per logit beyond the saved fp32 log-probs (see _transient)
RECOMPUTE_FACTOR = 2  # with checkpointing: the recomputed layer + its gradient working set
ZERO_BUCKET_ELEMENTS = 5e7  # ZeRO-2 reduce / allgather bucket size (trainables/engine.py)


# -- activations -------------------------------------------------------------------------
def _norm_llm(d: int, e: int) -> float:
    """LlamaRMSNorm per token: casts to fp32 (pow and mul save that copy: 4d) and rsqrt (4),
    the normalised value cast back (saved by the weight multiply: d*e) and its output (saved
    by the next Linear: d*e). In fp32 the cast is the input itself: same count."""
    return 4 * d + 4 + 2 * d * e


def _llm_layer(llm: LLMSize, e: int) -> float:
    """One LlamaDecoderLayer per token. Attention: SDPA saves q (after RoPE), k and v at
    kv-head width (enable_gqa, no repeat), its output and a fp32 log-sum-exp per head; o_proj's
    input is a view of that output (flash kernels lay it out [B, S, H, d]), not a copy. MLP:
    SiLU saves gate, the product saves silu(gate) and up, down_proj saves the product."""
    width, kv = llm.heads * llm.head_dim, llm.kv_heads * llm.head_dim
    attn = e * (2 * width + 2 * kv) + 4 * llm.heads
    return 2 * _norm_llm(llm.hidden, e) + attn + 4 * llm.intermediate * e


def _llm_pass(llm: LLMSize, n: int, read: int, e: int, ckpt: bool) -> float:
    """Saved bytes of one decoder stack over n positions, of which `read` are consumed (LM
    head / query_out: a slice, so the Linear saves a contiguous copy of those rows). The final
    norm saves its fp32 copy, rsqrt and the cast-back value (its output itself is only read
    through that copy). Checkpointed (HF decoder layers, non-reentrant): each layer keeps
    only its input. (RoPE cos/sin: see _per_sample.)"""
    d = llm.hidden
    per_layer = d * e if ckpt else _llm_layer(llm, e)
    return n * (llm.layers * per_layer + 4 * d + 4 + d * e) + read * d * e


def _vit_layer(vit: ViTSize, e: int) -> float:
    """One DINOv2 block per token (trainables/models/vision.py `_layer`): norm1 input + stats
    and output (saved by q/k/v proj), q, k, v, out + lse (SDPA; o_proj's input is a view of
    out), layer-scale input, norm2 input + stats and output, fc1 output (GELU input, 4D),
    GELU output (fc2 input, 4D), layer-scale-2 input: 18 D*e in all."""
    return 18 * vit.hidden * e + 4 * vit.heads + 2 * LN_STATS


def _query_layer(vit: ViTSize, e: int) -> float:
    """One layer of the query pass per query token: a `_vit_layer` without k and v (those
    are the patch tokens' cached K/V, counted with the patch ViT)."""
    return 16 * vit.hidden * e + 4 * vit.heads + 2 * LN_STATS


def _projector(D: int, d: int, e: int) -> float:
    """Projector per token: fc1 input (D), GELU input and fc2 input (d each); scale_visual's
    fp32 copy (saved by pow and mul: 4d) and its rsqrt (4)."""
    return D * e + 2 * d * e + 4 * d + 4


@dataclass(frozen=True)
class Activations:
    """Activation memory of one micro-batch, in bytes.

    saved: what autograd holds at the end of the forward pass (the CPU-verified part).
    transient: extra bytes at the backward peak on top of `saved`.
    parts: `saved` by part (pixels, vit, query, projector, llm, logits, rope).
    """

    saved: float
    transient: float
    parts: dict[str, float] = field(default_factory=dict)

    @property
    def peak(self) -> float:
        return self.saved + self.transient


def _pooled_saved(spec: Variant, cfg: TrialConfig, e: int, ckpt: bool) -> tuple[dict[str, float], int, int]:
    """Pooled path: (saved bytes per sample of vit, query, projector, llm; the longest LLM pass;
    the LLM positions of all passes)."""
    llm, vit = cfg.sizes
    T, L, D, d = cfg.frames, cfg.text_len, vit.hidden, llm.hidden
    S = (cfg.image_size // vit.patch) ** 2 + 1  # patches + CLS
    layer = D * e if ckpt else _vit_layer(vit, e)  # checkpointed: the layer's input only
    n_vis = spec.tokens_per_frame * T
    parts = {
        # + final LayerNorm (input + stats); avg_pool2d saves its input, a view of the LN output
        "vit": T * (S * vit.layers * layer + S * (D * e + LN_STATS) + S * D * e),
        "query": 0.0,
        "projector": n_vis * _projector(D, d, e),
        "llm": _llm_pass(llm, n_vis + L, L, e, ckpt),
    }
    return parts, n_vis + L, n_vis + L


def _foveated_saved(spec: Variant, cfg: TrialConfig, e: int, ckpt: bool) -> tuple[dict[str, float], int, int]:
    """Foveated path: the same triple as _pooled_saved (cached ViT, two query passes, coarse and
    fine LLM pass)."""
    llm, vit = cfg.sizes
    T, L, D, d = cfg.frames, cfg.text_len, vit.hidden, llm.hidden
    S = (cfg.image_size // vit.patch) ** 2 + 1  # patches + CLS
    kv = 2 * D * e  # this layer's K/V: the cache, read again by both query passes
    # the last layer only computes K/V: norm1 input + stats + output, k, v
    last = D * e if ckpt else D * e + LN_STATS + D * e
    layer = D * e if ckpt else _vit_layer(vit, e) - kv  # a full layer already contains k and v once
    passes = 2 if T > 1 else 1  # coarse + fine; T == 1 skips the coarse pass
    fine_queries = T * cfg.query_dim * e if T > 1 else 0  # query_in input (coarse: a param)
    coarse = _llm_pass(llm, T, T - 1, e, ckpt) if T > 1 else 0.0
    parts = {
        "vit": T * S * ((vit.layers - 1) * (layer + kv) + last + kv),
        "query": passes * T * (vit.layers * _query_layer(vit, e) + D * e + LN_STATS) + fine_queries,
        "projector": passes * T * _projector(D, d, e),
        "llm": coarse + _llm_pass(llm, T + L, L, e, ckpt),
    }
    return parts, T + L, (T if T > 1 else 0) + T + L


# One term function per visual path (trainables/variants.py KINDS).
VISUAL_ACTIVATIONS = {POOLED: _pooled_saved, FOVEATED: _foveated_saved}


def _per_sample(cfg: TrialConfig, vocab_size: int, ckpt: bool) -> tuple[dict[str, float], float, float]:
    """(saved bytes per sample by part, largest single layer's saved bytes per sample, bytes
    per micro-batch: RoPE cos/sin, [1, n, head_dim] per LLM pass, shared by batch and layers)."""
    spec = get_variant(cfg.variant)
    llm, vit = cfg.sizes
    e = 2 if cfg.precision == "bf16" else 4
    T, L = cfg.frames, cfg.text_len
    S = (cfg.image_size // vit.patch) ** 2 + 1  # patches + CLS
    parts = {"pixels": T * 3 * cfg.image_size**2 * e}  # the patch conv saves its input
    visual, llm_max, positions = VISUAL_ACTIVATIONS[spec.kind](spec, cfg, e, ckpt)
    parts.update(visual)
    # CE in fp32: log_softmax saves its fp32 output over the L text positions; ids + labels
    parts["logits"] = L * vocab_size * 4 + 2 * L * 8
    largest_layer = max(T * S * _vit_layer(vit, e), llm_max * _llm_layer(llm, e))
    return parts, largest_layer, 2 * positions * llm.head_dim * e


def activation_bytes(cfg: TrialConfig, micro_batch: int, checkpointing: bool, vocab_size: int) -> Activations:
    """Activation memory of one micro-batch of `cfg` (its frames, text_len, image_size, precision)."""
    parts, largest_layer, shared = _per_sample(cfg, vocab_size, checkpointing)
    parts = {k: v * micro_batch for k, v in parts.items()}
    parts["rope"] = shared
    # Backward peak beyond `saved`:
    # * the loss: the forward holds bf16 logits (2) + their fp32 copy (4) next to the saved
    #   log-probs; backward makes the fp32 grad of the log-probs (4), of the logits (4) and
    #   its bf16 cast (2): ~10 bytes per logit on top of the saved 4.
    # * a layer: its activation gradients (about one layer's saved set) - and with
    #   checkpointing the recomputed layer's saved set as well.
    logits = LOGIT_TRANSIENT * cfg.text_len * vocab_size
    layer = largest_layer * (RECOMPUTE_FACTOR if checkpointing else 1)
    return Activations(sum(parts.values()), micro_batch * max(logits, layer), parts)


# -- the whole GPU + host -----------------------------------------------------------------
@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes by term (see the module docstring); `*_gib` properties for reports."""

    micro_batch: int
    offload: bool
    checkpointing: bool
    params: int
    weights: float  # compute copy (bf16: 2 B/param)
    grads: float  # gradient partition + DeepSpeed staging buckets
    optimizer: float  # fp32 master + Adam moments on the GPU (0 when offloaded)
    step_transient: float  # extra during optimizer.step (activations are gone by then)
    activations: Activations
    host: float  # peak host RSS of the trial process

    @property
    def static(self) -> float:
        return self.weights + self.grads + self.optimizer

    @property
    def peak_allocated(self) -> float:
        return self.static + max(self.activations.peak, self.step_transient)

    @property
    def fragmentation(self) -> float:
        return FRAGMENTATION * self.peak_allocated

    @property
    def gpu_total(self) -> float:
        return self.peak_allocated + self.fragmentation + CUDA_CONTEXT_BYTES

    @property
    def gpu_gib(self) -> float:
        return self.gpu_total / GIB

    @property
    def host_gib(self) -> float:
        return self.host / GIB


def estimate_memory(
    cfg: TrialConfig,
    vocab_size: int,
    micro_batch: int | None = None,
    offload: bool | None = None,
    checkpointing: bool | None = None,
) -> MemoryEstimate:
    """Memory of `cfg` on one GPU; micro_batch / offload / checkpointing default to cfg's own."""
    mb = cfg.micro_batch if micro_batch is None else micro_batch
    off = cfg.offload if offload is None else offload
    ckpt = cfg.grad_checkpointing if checkpointing is None else checkpointing
    accum = max(1, cfg.global_batch // mb)
    n = param_counts_for(cfg, vocab_size)
    P = n.total
    e = 2 if cfg.precision == "bf16" else 4
    # ZeRO-2 (stage_1_and_2.py) stages gradients through reduce buckets, double-buffered
    # when overlap_comm is on (the engine turns it on under CUDA).
    buckets = 2 * ZERO_BUCKET_ELEMENTS * e
    weights = P * e  # params are views into one flat low-precision buffer
    if off:
        # Grads leave for pinned host memory per bucket; at most about a bucket of param.grad
        # waits (the largest tensor goes alone) next to the staging buffers.
        grads = buckets + max(ZERO_BUCKET_ELEMENTS, n.largest_tensor) * e
        optimizer = 0.0
        step = 0.0  # the step runs on the host; only the bf16 copy-back crosses over
    else:
        grads = P * e + buckets  # contiguous grad partition (grads_in_partition)
        optimizer = 12.0 * P  # fp32 master (ZeRO copies even fp32 params) + exp_avg + exp_avg_sq
        step = 4.0 * P  # the fp32 flat gradient partition made for the optimizer step
    # Host: the model is built in fp32 on the CPU before DeepSpeed moves it (4 B/param,
    # freed after the move). Offloaded (DeepSpeed CPU Adam): fp32 master 4 + moments 8 +
    # pinned fp32 gradient partition 4 + a pinned low-precision copy-back buffer e + with
    # accumulation the fp32 accumulator 4 = 22 B/param in bf16; that plus the base process
    # matches the ~22-24 B/param RSS observed for a 1.7B model.
    offload_state = P * (4 + 8 + 4 + e + (4 if accum > 1 else 0)) if off else 0.0
    host = HOST_BASE_BYTES + max(4.0 * P, offload_state) + pipeline_host_bytes(cfg, mb)  # + loader prefetch
    acts = activation_bytes(cfg, mb, ckpt, vocab_size)
    return MemoryEstimate(mb, off, ckpt, P, weights, grads, optimizer, step, acts, host)
