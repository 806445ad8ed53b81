"""The synthetic data set, tokenizer, caption encoding, resumable order and real-data sources."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from search_spaces.sizes import ConfigError
from search_spaces.trial import TrialConfig
from trainables.data import synthetic
from trainables.data.pipeline import (EpochCursor, collate, derangement, encode_caption, eval_batches, load_data,
                                     train_loader)
from trainables.data.tokenizer import word_level_tokenizer


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("FOVEATED_SCALING_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def tiny_cfg(**kw) -> TrialConfig:
    base = dict(variant="baseline", config="T1-T1", steps=4, frames=3, image_size=56, text_len=16,
                global_batch=4, micro_batch=4, dataset_size=24, eval_size=8)
    return TrialConfig(**{**base, **kw})


def test_synthetic_is_deterministic_and_seed_dependent():
    a = synthetic.generate(seed=7, split="train", size=6, frames=3, image_size=56)
    b = synthetic.generate(seed=7, split="train", size=6, frames=3, image_size=56)
    c = synthetic.generate(seed=8, split="train", size=6, frames=3, image_size=56)
    fa, fb, fc = (np.asarray(d.with_format("numpy")["frames"]) for d in (a, b, c))
    assert np.array_equal(fa, fb) and a["caption"] == b["caption"]
    assert not np.array_equal(fa, fc)
    # the eval split is a different set of clips, not a copy of the training one
    e = synthetic.generate(seed=7, split="eval", size=6, frames=3, image_size=56)
    assert e["caption"] != a["caption"]


def test_clips_are_deterministic_per_seed_split_and_index():
    def clip(seed, split, index, frames=4, size=56):
        return synthetic.make_clip(np.random.default_rng(synthetic._clip_seed(seed, split, index)), frames, size)

    v, c = clip(3, "train", 5)
    v2, c2 = clip(3, "train", 5)
    assert np.array_equal(v, v2) and c == c2
    for other in (clip(4, "train", 5), clip(3, "eval", 5), clip(3, "train", 6)):
        assert not np.array_equal(v, other[0])
    v224, _ = clip(3, "train", 5, frames=8, size=224)
    assert v224.shape == (8, 224, 224, 3) and v224.dtype == np.uint8


def read_target(video: np.ndarray) -> str:
    """Decode a clip the way one glimpse per frame could: find the target (the only pixels in
    a target colour), read colour and shape from the object-sized crop at that place alone,
    and the motion from where that place is in the first and last frame."""
    obj = synthetic.object_size(video.shape[1])
    places = []
    for t, frame in enumerate(video):
        hits = {name: (frame == rgb).all(-1) for name, rgb in synthetic.COLOURS.items()}
        (colour,) = [name for name, m in hits.items() if m.any()]  # exactly one target colour
        ys, xs = np.nonzero(hits[colour])
        y, x = ys.min(), xs.min()
        crop = video[t, y : y + obj, x : x + obj]  # the glimpse: the target's place only
        assert crop.shape[:2] == (obj, obj) and ys.max() - y < obj and xs.max() - x < obj
        seen = (crop == synthetic.COLOURS[colour]).all(-1)
        (shape,) = [s for s in synthetic.SHAPES if np.array_equal(seen, synthetic._shape_mask(s, obj))]
        places.append((y, x))
    (dy, dx) = np.sign(np.subtract(places[-1], places[0]))
    (motion,) = [m for m, d in synthetic.MOTIONS.items() if d == (dy, dx)]
    return f"{colour} {shape} {motion}"


def test_caption_is_what_the_glimpse_at_the_target_shows():
    rng = np.random.default_rng(0)
    captions = set()
    for _ in range(200):
        video, caption = synthetic.make_clip(rng, frames=4, image_size=56)
        assert video.shape == (4, 56, 56, 3) and video.dtype == np.uint8
        assert read_target(video) == caption
        assert set(caption.split()) <= set(synthetic.vocabulary())
        # distractors: grey (equal channels) and as bright as a target, so only the target's
        # place tells its shape
        grey = (video[0].min(-1) == video[0].max(-1)) & (video[0].min(-1) >= synthetic.GREY_LEVELS[0])
        assert grey.sum() > synthetic.object_size(56) ** 2 // 4
        captions.add(caption)
    # every colour, shape and motion occurs (the task is not a constant)
    words = " ".join(captions)
    assert all(w in words for w in (*synthetic.COLOURS, *synthetic.SHAPES, *synthetic.MOTIONS))
    # the phase grids' clip shape decodes the same way
    video, caption = synthetic.make_clip(np.random.default_rng(1), frames=8, image_size=224)
    assert read_target(video) == caption


def test_derangement_has_no_fixed_point():
    gen = torch.Generator().manual_seed(0)
    for n in [2, 3, 4, 5, 7, 16, 31, 32, 33, 255, 256, 257]:
        for _ in range(20):
            p = derangement(n, gen)
            assert sorted(p.tolist()) == list(range(n))  # a permutation
            assert (p != torch.arange(n)).all(), (n, p)
    a = derangement(64, torch.Generator().manual_seed(7))
    assert torch.equal(a, derangement(64, torch.Generator().manual_seed(7)))  # fixed by its seed
    with pytest.raises(ValueError):
        derangement(1, gen)


def test_shuffled_eval_batches_pair_every_caption_with_another_clips_frames():
    cfg = tiny_cfg(eval_size=9)  # 9 rows in batches of 4: a last batch of one row
    data = load_data(cfg)
    perm = derangement(len(data.eval), torch.Generator().manual_seed(0))
    true = list(eval_batches(data.eval, 4))
    shuf = list(eval_batches(data.eval, 4, frames_from=perm))
    assert [len(b["frames"]) for b in shuf] == [4, 4, 1]
    frames = torch.cat([b["frames"] for b in true])
    got = torch.cat([b["frames"] for b in shuf])
    assert torch.equal(got, frames[perm])
    assert all(not torch.equal(got[i], frames[i]) for i in range(len(frames)))
    assert torch.equal(torch.cat([b["labels"] for b in shuf]), torch.cat([b["labels"] for b in true]))


def test_caption_encoding_masks_everything_but_the_caption():
    tok = word_level_tokenizer(synthetic.vocabulary())
    ids, mask, labels = encode_caption(tok, "red circle moves left", text_len=10)
    assert ids[0] == tok.bos_token_id and ids[5] == tok.eos_token_id
    assert mask.tolist() == [1] * 6 + [0] * 4
    assert labels[0] == -100 and (labels[6:] == -100).all()
    assert labels[1:6].tolist() == ids[1:6].tolist()
    assert tok.decode(ids[1:5]) == "red circle moves left"
    # too long: truncated, EOS kept
    ids, _, _ = encode_caption(tok, " ".join(["red"] * 30), text_len=10)
    assert len(ids) == 10 and ids[-1] == tok.eos_token_id


def test_cursor_resume_replays_the_same_batches():
    full = EpochCursor(n=10, batch_size=3, seed=1)
    seq = [b for _, b in zip(range(9), iter(full))]
    assert all(len(b) == 3 for b in seq)
    # each epoch uses 9 of 10 rows, no repeats within an epoch
    assert len(set(sum(seq[:3], []))) == 9
    head = EpochCursor(n=10, batch_size=3, seed=1)
    for _ in range(5):
        head.advance()
    resumed = EpochCursor(n=10, batch_size=3, seed=1, **head.state_dict())
    assert [b for _, b in zip(range(4), iter(resumed))] == seq[5:9]


def test_loader_batches_follow_the_batch_contract():
    cfg = tiny_cfg()
    data = load_data(cfg)
    assert data.vocab_size == len(synthetic.vocabulary()) + 4
    _, loader = train_loader(data.train, cfg)
    batch = next(iter(loader))
    assert batch["frames"].shape == (4, 3, 3, 56, 56) and batch["frames"].dtype == torch.float32
    assert batch["input_ids"].shape == batch["labels"].shape == (4, 16)
    assert batch["n_bad_rows"] == 0
    # normalised pixels: the dark background sits well below zero
    assert batch["frames"].mean() < 0


def _write_images(tmp_path, n, bad_rows=()):
    import datasets
    from PIL import Image
    import io

    rows = []
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(np.full((30, 40, 3), i * 7 % 255, np.uint8)).save(buf, format="PNG")
        data = b"not an image" if i in bad_rows else buf.getvalue()
        rows.append({"image": {"bytes": data, "path": None}, "text": f"word{i % 3} thing"})
    ds = datasets.Dataset.from_list(rows, features=datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")}))
    path = tmp_path / "imgs"
    ds.save_to_disk(str(path))
    return str(path)


def test_real_images_are_resized_replicated_and_bad_rows_counted(tmp_path):
    path = _write_images(tmp_path, 20, bad_rows={3})
    cfg = tiny_cfg(dataset=path, image_column="image", text_column="text", eval_size=4)
    data = load_data(cfg)
    assert len(data.train) == 16 and len(data.eval) == 4
    items = [data.train[i] for i in range(len(data.train))] + [data.eval[i] for i in range(len(data.eval))]
    bad = [it for it in items if "bad_row" in it]
    assert len(bad) == 1 and "Error" in bad[0]["error"]
    good = [it for it in items if "bad_row" not in it]
    assert good[0]["frames"].shape == (3, 3, 56, 56)
    assert torch.equal(good[0]["frames"][0], good[0]["frames"][2])  # an image is replicated to T frames
    batch = collate(items[:8])
    assert batch["n_bad_rows"] == sum("bad_row" in it for it in items[:8])


@pytest.mark.parametrize("kw, message", [
    (dict(text_column="caption_typo"), "no text column 'caption_typo'"),
    (dict(image_column="pixels"), "no image column 'pixels'"),
    (dict(eval_size=50), "not more than eval_size"),
])
def test_real_data_errors_name_dataset_and_column(tmp_path, kw, message):
    path = _write_images(tmp_path, 10)
    cfg = tiny_cfg(dataset=path, **{"image_column": "image", "text_column": "text", "eval_size": 4, **kw})
    with pytest.raises(ConfigError, match=message) as e:
        load_data(cfg)
    assert path in str(e.value) and "\n" not in str(e.value)


def test_missing_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="neither a save_to_disk directory nor parquet"):
        load_data(tiny_cfg(dataset=str(tmp_path)))
    with pytest.raises(ConfigError, match="not found locally or on the hub"):
        load_data(tiny_cfg(dataset="no-such-user/no-such-dataset-xyz"))


def test_all_rows_undecodable_is_an_error(tmp_path):
    path = _write_images(tmp_path, 12, bad_rows=set(range(12)))
    data = load_data(tiny_cfg(dataset=path, image_column="image", text_column="text", eval_size=4))
    with pytest.raises(RuntimeError, match="every row of a batch failed to decode"):
        collate([data.train[i] for i in range(4)], dataset_name=path)
