"""The two VLMs on tiny configs (CPU, seconds) and the real sizes' parameter counts (meta)."""
from __future__ import annotations

import math

import pytest
import torch
from transformers import Dinov2Model

from search_spaces.sizes import LLM_SIZES, REAL_CONFIGS, VIT_SIZES
from search_spaces.trial import TrialConfig
from trainables.models import BaselineVLM, FoveatedVLM, build_vlm, param_counts
from trainables.models.vision import build_vision

VOCAB = 256
TINY = ("T1-T1", "T1-T2", "T2-T1", "T2-T2")
SLOW = pytest.mark.slow  # the quick loop keeps the mixed tiny sizes and one case of each property


def make_model(variant: str, config: str = "T2-T2", attn: str = "eager", seed: int = 0, **kw):
    torch.manual_seed(seed)
    cfg = TrialConfig(variant=variant, config=config, steps=1, image_size=56, **kw)
    return build_vlm(cfg, VOCAB, attn_implementation=attn).eval()


def make_batch(B: int = 2, T: int = 3, L: int = 9, seed: int = 1) -> dict[str, torch.Tensor]:
    """The data pipeline's contract: BOS + caption + EOS, right-padded; BOS and pads are -100."""
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, VOCAB, (B, L), generator=g)
    input_ids[:, 0] = 1  # BOS
    mask = torch.ones(B, L, dtype=torch.long)
    mask[0, L - 3 :] = 0  # first sample shorter: right padding
    input_ids[mask == 0] = 0
    labels = input_ids.masked_fill(mask == 0, -100)
    labels[:, 0] = -100
    frames = torch.randn(B, T, 3, 56, 56, generator=g)
    return {"frames": frames, "input_ids": input_ids, "attention_mask": mask, "labels": labels}


@pytest.mark.parametrize("config", [c if c in ("T1-T2", "T2-T1") else pytest.param(c, marks=SLOW) for c in TINY])
@pytest.mark.parametrize("variant", ["foveated", "baseline", "pooled1"])
def test_forward_backward_every_parameter_trains(variant: str, config: str) -> None:
    model = make_model(variant, config, attn="sdpa").train()
    batch = make_batch()
    out = model(**batch)
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    # random init: close to uniform over the vocabulary
    assert abs(out["loss"].item() - math.log(VOCAB)) < 1.0
    out["loss"].backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert missing == []


def test_vit_position_std_redraws_the_position_embeddings_and_nothing_else() -> None:
    default = {n: p.detach() for n, p in make_model("foveated", "T2-T2").named_parameters()}
    wide = {n: p.detach() for n, p in make_model("foveated", "T2-T2", vit_position_std=1.0).named_parameters()}
    pos = "vision.vit.embeddings.position_embeddings"
    assert float(default[pos].std()) < 0.03  # DINOv2's own init, 0.02 truncated at 2 std
    assert 0.8 < float(wide[pos].std()) < 0.95 and float(wide[pos].abs().max()) <= 2.0  # N(0, 1) cut at +-2
    assert set(default) == set(wide)
    assert [n for n in default if not torch.equal(default[n], wide[n])] == [pos]


def test_baseline_tokens_and_shapes() -> None:
    model = make_model("baseline")
    batch = make_batch(T=2)
    vis = model.visual_tokens(batch["frames"])
    assert vis.shape == (2, 2 * 16, LLM_SIZES["T2"].hidden)
    # the visual-scale rule: every token's per-element RMS is visual_scale
    torch.testing.assert_close(vis.pow(2).mean(-1).sqrt(), torch.full((2, 32), 0.14), rtol=1e-4, atol=1e-5)


def test_pooled1_is_the_baseline_mean_pooled_to_one_token() -> None:
    """Same modules, same init (same seed: identical parameters), one token per frame = the mean
    of the baseline's 16 pooled features, through the same projector and scale rule."""
    base, one = make_model("baseline"), make_model("pooled1")
    for (n1, p1), (n2, p2) in zip(base.named_parameters(), one.named_parameters(), strict=True):
        assert n1 == n2 and torch.equal(p1, p2)
    frames = make_batch(T=2)["frames"]
    with torch.no_grad():
        feats = one.frame_features(frames)
        assert feats.shape == (2, 2, VIT_SIZES["T2"].hidden)
        want = base.frame_features(frames).view(2, 2, 16, -1).mean(2)
        torch.testing.assert_close(feats, want, rtol=1e-5, atol=1e-6)
        vis = one.visual_tokens(frames)
    assert vis.shape == (2, 2, LLM_SIZES["T2"].hidden)
    torch.testing.assert_close(vis.pow(2).mean(-1).sqrt(), torch.full((2, 2), 0.14), rtol=1e-4, atol=1e-5)


def test_foveated_tokens_one_per_frame_and_scaled() -> None:
    model = make_model("foveated", visual_scale=0.3)
    vis = model.visual_tokens(make_batch(T=4)["frames"])
    assert vis.shape == (2, 4, LLM_SIZES["T2"].hidden)
    torch.testing.assert_close(vis.pow(2).mean(-1).sqrt(), torch.full((2, 4), 0.3), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_vision_forward_matches_transformers(attn: str) -> None:
    torch.manual_seed(0)
    enc = build_vision(VIT_SIZES["T2"], attn).eval()
    px = torch.randn(3, 3, 56, 56)
    ref = Dinov2Model.forward(enc.vit, px).last_hidden_state
    torch.testing.assert_close(enc(px), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_a_cached_query_pass_equals_appended_token_with_mask(attn: str) -> None:
    """(a) The query pass on the K/V cache == the full ViT (transformers' own layers) run with
    the query appended, where no frame token attends to the query and the query not to itself."""
    torch.manual_seed(0)
    enc = build_vision(VIT_SIZES["T2"], attn).eval()
    px = torch.randn(3, 3, 56, 56)
    query = torch.randn(3, enc.hidden)
    got = enc.query_pass(query, enc.encode_cache(px))

    x = torch.cat([enc.embed(px), query[:, None]], dim=1)
    S = x.shape[1]
    mask = torch.zeros(S, S)
    mask[:, S - 1] = float("-inf")  # nobody (the query included) attends to the query
    for layer in enc.vit.encoder.layer:
        x = layer(x, attention_mask=mask[None, None])
    ref = enc.vit.layernorm(x)
    torch.testing.assert_close(got, ref[:, -1], rtol=1e-5, atol=1e-5)
    # and the frame tokens are untouched by the query: same as the plain ViT
    torch.testing.assert_close(ref[:, :-1], enc(px), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("config", ["T1-T1", pytest.param("T2-T2", marks=SLOW)])
def test_b_autoregressive_kv_cache_equals_recompute(config: str) -> None:
    """(b) Frame-by-frame inference with the LLM's DynamicCache == recomputing every prefix."""
    model = make_model("foveated", config, attn="sdpa")
    batch = make_batch(T=4)
    with torch.no_grad():
        cached = model.autoregressive(batch["frames"], batch["input_ids"], batch["labels"], use_cache=True)
        fresh = model.autoregressive(batch["frames"], batch["input_ids"], batch["labels"], use_cache=False)
    assert cached["logits"].shape == (2, batch["input_ids"].shape[1], VOCAB)
    torch.testing.assert_close(cached["logits"], fresh["logits"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cached["loss"], fresh["loss"], rtol=1e-6, atol=1e-6)
    assert cached["n_tokens"] == (batch["labels"] != -100).sum()


def test_autoregressive_with_one_frame_equals_two_pass() -> None:
    # With T == 1 both modes use only the initial query, so they must agree exactly.
    model = make_model("foveated")
    batch = make_batch(T=1)
    with torch.no_grad():
        ar = model.autoregressive(batch["frames"], batch["input_ids"], batch["labels"])
        tp = model(**batch)
    torch.testing.assert_close(ar["loss"], tp["loss"], rtol=1e-5, atol=1e-6)


def _queries(model: FoveatedVLM, frames: torch.Tensor) -> torch.Tensor:
    B, T = frames.shape[:2]
    return model.frame_queries(model.vision.encode_cache(frames.flatten(0, 1)), B, T)


@pytest.mark.parametrize("t", [pytest.param(0, marks=SLOW), 1, pytest.param(2, marks=SLOW)])
def test_c_frame_t_steers_only_later_queries(t: int) -> None:
    """(c) Changing frame t changes the query for frame t+1, and none for frames <= t."""
    model = make_model("foveated")
    frames = make_batch(T=4)["frames"]
    changed = frames.clone()
    changed[:, t] = torch.randn_like(changed[:, t])
    with torch.no_grad():
        q0, q1 = _queries(model, frames), _queries(model, changed)
        v0, v1 = model.visual_tokens(frames), model.visual_tokens(changed)
    torch.testing.assert_close(q0[:, : t + 1], q1[:, : t + 1], rtol=0, atol=0)
    assert (q0[:, t + 1] - q1[:, t + 1]).abs().max() > 1e-4
    torch.testing.assert_close(v0[:, :t], v1[:, :t], rtol=0, atol=0)  # earlier frames' tokens too
    # the same holds frame by frame at inference
    batch = make_batch(T=4)
    with torch.no_grad():
        a = model.autoregressive(frames, batch["input_ids"])["logits"]
        b = model.autoregressive(changed, batch["input_ids"])["logits"]
    assert (a - b).abs().max() > 1e-4


def test_fairness_same_label_tokens_for_both_variants() -> None:
    batch = make_batch()
    outs = {v: make_model(v)(**batch) for v in ("foveated", "baseline")}
    n_expected = int((batch["labels"] != -100).sum())
    for out in outs.values():
        assert int(out["n_tokens"]) == n_expected
        torch.testing.assert_close(out["loss_sum"] / out["n_tokens"], out["loss"])
    assert int(outs["foveated"]["n_tokens"]) == int(outs["baseline"]["n_tokens"])


def test_eval_mode_adds_the_loss_per_caption_position() -> None:
    """The per-field losses of a fixed-format caption come from these sums; training skips them."""
    model, batch = make_model("foveated"), make_batch()
    assert "position_loss_sum" not in model.train()(**batch)  # training: nothing extra in the step
    with torch.no_grad():
        out = model.eval()(**batch)
    assert out["position_loss_sum"].shape == (batch["labels"].shape[1],)
    torch.testing.assert_close(out["position_loss_sum"].sum(), out["loss_sum"])
    assert out["position_tokens"].tolist() == (batch["labels"] != -100).sum(0).tolist()


@pytest.mark.parametrize("variant", ["foveated", "baseline"])
def test_next_token_alignment(variant: str) -> None:
    """Only label position k counts: its prediction must depend on text tokens < k, not on k."""
    model = make_model(variant)
    batch = make_batch()
    k = 4
    labels = torch.full_like(batch["labels"], -100)
    labels[:, k] = 7
    batch["labels"] = labels
    with torch.no_grad():
        base = model(**batch)["loss"]
        later = dict(batch, input_ids=batch["input_ids"].clone())
        later["input_ids"][:, k:] = 5  # the target itself and everything after it
        earlier = dict(batch, input_ids=batch["input_ids"].clone())
        earlier["input_ids"][:, k - 1] = (earlier["input_ids"][:, k - 1] + 1) % VOCAB
        assert model(**later)["loss"] == base
        assert model(**earlier)["loss"] != base


@pytest.mark.parametrize("variant", ["foveated", "baseline"])
def test_padding_content_does_not_matter(variant: str) -> None:
    model = make_model(variant)
    batch = make_batch()
    other = dict(batch, input_ids=batch["input_ids"].masked_fill(batch["attention_mask"] == 0, 42))
    with torch.no_grad():
        assert model(**batch)["loss"] == model(**other)["loss"]


@pytest.mark.parametrize("variant", ["foveated", "baseline"])
def test_gradient_checkpointing_same_loss_and_grads(variant: str) -> None:
    batch = make_batch(T=2)
    grads = []
    for ckpt in (False, True):
        model = make_model(variant).train()
        if ckpt:
            model.gradient_checkpointing_enable()
        out = model(**batch)
        out["loss"].backward()
        grads.append((out["loss"].detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    assert grads[0][1].keys() == grads[1][1].keys()
    for n in grads[0][1]:
        torch.testing.assert_close(grads[0][1][n], grads[1][1][n], rtol=1e-4, atol=1e-6)


# Tolerance of compiled vs eager (fp32, CPU): inductor fuses and reorders float reductions, so
# loss agrees to rtol 1e-5 and gradients to rtol 1e-3 / atol 1e-6 (bitwise equality is not promised).
# Foveated only: it runs every compiled block (ViT layers, query pass, LLM layers at two sequence
# lengths); inductor's C++ build of both variants takes ~3 min on this 2-core machine.
@pytest.mark.slow
@pytest.mark.parametrize("variant", ["foveated"])
def test_compiled_blocks_same_loss_and_grads(variant: str) -> None:
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    batch = make_batch(T=2)
    runs = []
    for compiled in (False, True):
        model = make_model(variant, attn="sdpa").train()  # the training attention
        if compiled:
            model.compile_blocks()
        out = model(**batch)
        out["loss"].backward()
        runs.append((out["loss"].detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (eager_loss, eager_grads), (comp_loss, comp_grads) = runs
    torch.testing.assert_close(comp_loss, eager_loss, rtol=1e-5, atol=1e-6)
    assert comp_grads.keys() == eager_grads.keys()
    for n in eager_grads:
        torch.testing.assert_close(comp_grads[n], eager_grads[n], rtol=1e-3, atol=1e-6, msg=n)
    # the compiled functions were actually used (not a silent eager fallback), and the layers
    # share graphs: ViT block (with / without the last layer's early stop), query block, LLM
    # layer at the coarse and the caption lengths = 5, not one per layer (3 + 3 layers here)
    assert model.vision._compiled and all(layer._compiled_call_impl for layer in model.llm.lm.model.layers)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 5


@pytest.mark.parametrize("variant", ["foveated", "baseline"])
def test_param_groups(variant: str) -> None:
    model = make_model(variant)
    groups = model.param_groups(lr=1e-3, lr_backbone=1e-4, weight_decay=0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    seen = [id(p) for g in groups for p in g["params"]]
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert len(seen) == len(set(seen)) and set(seen) == trainable
    assert {g["name"] for g in groups} == {"backbone_decay", "backbone_no_decay", "connector_decay", "connector_no_decay"}
    for g in groups:
        for p in g["params"]:
            n = names[id(p)]
            assert g["lr"] == (1e-4 if n.startswith(("vision.", "llm.")) else 1e-3), n
            no_decay = p.ndim < 2 or "embed_tokens" in n or "position_embeddings" in n or "cls_token" in n
            assert g["weight_decay"] == (0.0 if no_decay else 0.1), n
    if variant == "foveated":
        by_name = {names[id(p)]: g for g in groups for p in g["params"]}
        assert by_name["first_query"]["weight_decay"] == 0.0 and by_name["first_query"]["lr"] == 1e-3
        assert by_name["query_in.weight"]["weight_decay"] == 0.1


EXPECTED_LLM = {"S": 134.5e6, "M": 361.8e6, "L": 1711e6}
EXPECTED_VIT = {"S": 22.1e6, "B": 86.6e6, "L": 304.4e6}


@pytest.mark.parametrize("config", REAL_CONFIGS)
def test_real_param_counts_on_meta(config: str) -> None:
    counts = {}
    for variant in ("foveated", "baseline"):
        cfg = TrialConfig(variant=variant, config=config, steps=1)
        with torch.device("meta"):
            counts[variant] = param_counts(build_vlm(cfg, 49152))
    llm_key, vit_key = config.split("-")
    for c in counts.values():
        assert abs(c["llm"] / EXPECTED_LLM[llm_key] - 1) < 0.005, c
        assert abs(c["vision"] / EXPECTED_VIT[vit_key] - 1) < 0.005, c
        assert c["total"] == c["llm"] + c["vision"] + c["connector"]
        assert c["llm_non_embedding"] == c["llm"] - 49152 * LLM_SIZES[llm_key].hidden  # tied head
    fov, base = counts["foveated"], counts["baseline"]
    assert fov["llm"] == base["llm"] and fov["vision"] == base["vision"]
    # comparable connectors: the same projector, plus the foveated query machinery
    assert base["connector"] < fov["connector"] < 2 * base["connector"]


def test_variant_classes() -> None:
    assert isinstance(make_model("foveated", "T1-T1"), FoveatedVLM)
    assert isinstance(make_model("baseline", "T1-T1"), BaselineVLM)
    pooled1 = make_model("pooled1", "T1-T1")
    assert isinstance(pooled1, BaselineVLM) and pooled1.pooled_grid == 1
