"""The synthetic data set, tokenizer, caption encoding, resumable order and real-data sources
(streamed: the synthetic set is computed per index, real sets are read row by row)."""
from __future__ import annotations

import io
import os
import re

import numpy as np
import pytest
import torch

from search_spaces.errors import ConfigError
from search_spaces.trial import TrialConfig
from trainables.data import drawing, synthetic
from trainables.data.bundle import load_data
from trainables.data.pipeline import (EpochCursor, collate, derangement, encode_caption, eval_batches,
                                     normalise_frames, train_loader)
from trainables.data.sources import resolve
from trainables.data.tokenizer import word_level_tokenizer


def tiny_cfg(**kw) -> TrialConfig:
    base = dict(variant="baseline", config="T1-T1", steps=4, frames=3, image_size=56, text_len=16,
                global_batch=4, micro_batch=4, dataset_size=24, eval_size=8)
    return TrialConfig(**{**base, **kw})


def test_synthetic_is_deterministic_and_seed_dependent():
    a = synthetic.SyntheticClips(seed=7, split="train", size=6, frames=3, image_size=56)
    b = synthetic.SyntheticClips(seed=7, split="train", size=6, frames=3, image_size=56)
    c = synthetic.SyntheticClips(seed=8, split="train", size=6, frames=3, image_size=56)
    fa, fb, fc = (np.stack([d[i]["frames"] for i in range(6)]) for d in (a, b, c))
    assert np.array_equal(fa, fb) and [a[i]["caption"] for i in range(6)] == [b[i]["caption"] for i in range(6)]
    assert not np.array_equal(fa, fc)
    # the eval split is a different set of clips, not a copy of the training one
    e = synthetic.SyntheticClips(seed=7, split="eval", size=6, frames=3, image_size=56)
    assert [e[i]["caption"] for i in range(6)] != [a[i]["caption"] for i in range(6)]


def test_synthetic_clips_are_computed_per_index_at_any_size(tmp_path, monkeypatch):
    """A billion-clip set opens at once; clip i is the same whether read alone or in order,
    and it is exactly make_clip on its own (seed, split, index) RNG: no state, nothing stored."""
    monkeypatch.setenv("HOME", str(tmp_path))
    huge = synthetic.SyntheticClips(seed=3, split="train", size=10**9, frames=8, image_size=224)
    last = huge[10**9 - 1]
    video, caption = synthetic.make_clip(np.random.default_rng(synthetic._clip_seed(3, "train", 10**9 - 1)), 8, 224)
    assert np.array_equal(last["frames"], video) and last["caption"] == caption
    assert last["frames"].shape == (8, 224, 224, 3)
    small = synthetic.SyntheticClips(seed=3, split="train", size=5, frames=8, image_size=224)
    assert np.array_equal(small[4]["frames"], huge[4]["frames"])
    with pytest.raises(IndexError):
        small[5]
    assert list(tmp_path.iterdir()) == []  # no cache written


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
    obj = drawing.object_size(video.shape[1])
    places = []
    for t, frame in enumerate(video):
        hits = {name: (frame == rgb).all(-1) for name, rgb in synthetic.COLOURS.items()}
        (colour,) = [name for name, m in hits.items() if m.any()]  # exactly one target colour
        ys, xs = np.nonzero(hits[colour])
        y, x = ys.min(), xs.min()
        crop = video[t, y : y + obj, x : x + obj]  # the glimpse: the target's place only
        assert crop.shape[:2] == (obj, obj) and ys.max() - y < obj and xs.max() - x < obj
        seen = (crop == synthetic.COLOURS[colour]).all(-1)
        (shape,) = [s for s in synthetic.SHAPES if np.array_equal(seen, drawing.shape_mask(s, obj))]
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
        grey = (video[0].min(-1) == video[0].max(-1)) & (video[0].min(-1) >= drawing.GREY_LEVELS[0])
        assert grey.sum() > drawing.object_size(56) ** 2 // 4
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
    assert batch["frames"].shape == (4, 3, 3, 56, 56) and batch["frames"].dtype == torch.uint8
    assert batch["input_ids"].shape == batch["labels"].shape == (4, 16)
    assert batch["n_bad_rows"] == 0
    # normalised on the device: the dark background sits well below zero
    x = normalise_frames(batch["frames"], torch.float32)
    assert x.dtype == torch.float32 and x.mean() < 0
    want = (batch["frames"][0, 0, 0, 0, 0].item() / 255 - 0.485) / 0.229
    assert x[0, 0, 0, 0, 0].item() == pytest.approx(want, rel=1e-6)


def test_loader_workers_give_the_batches_of_the_main_process():
    cfg = tiny_cfg()
    data = load_data(cfg)
    seqs = []
    for workers in (0, 2):
        _, loader = train_loader(data.train, cfg, workers=workers)
        seqs.append([b for _, b in zip(range(7), loader)])  # 7 batches of 4 from 24 rows: crosses an epoch
    for a, b in zip(*seqs):
        assert torch.equal(a["frames"], b["frames"]) and torch.equal(a["input_ids"], b["input_ids"])


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
    assert good[0]["frames"].shape == (3, 3, 56, 56) and good[0]["frames"].dtype == torch.uint8
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


@pytest.mark.parametrize("name", ["my_clips", "./x", "~/clips.parquet", "data/../x.parquet", "clips_*.parquet"])
def test_a_missing_path_is_not_looked_up_on_the_hub(name, monkeypatch, tmp_path):
    import datasets

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("went to the hub"))
    with pytest.raises(ConfigError, match=f"dataset path {re.escape(name)} does not exist") as e:
        load_data(tiny_cfg(dataset=name))
    assert "~" not in str(e.value).split("(")[-1]  # the expanded path is shown
    assert resolve("org/name") == ("hub", "org/name")  # only an org/name id goes to the hub


def test_tilde_is_expanded(tmp_path, monkeypatch):
    path = _write_parquet(tmp_path, 12, frames=2)
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = tiny_cfg(dataset="~/" + os.path.basename(path), frames_column="frames", eval_size=4)
    assert len(load_data(cfg).train) == 8


def test_all_rows_undecodable_is_an_error(tmp_path):
    path = _write_images(tmp_path, 12, bad_rows=set(range(12)))
    data = load_data(tiny_cfg(dataset=path, image_column="image", text_column="text", eval_size=4))
    with pytest.raises(RuntimeError, match="every row of a batch failed to decode"):
        collate([data.train[i] for i in range(4)], dataset_name=path)


def _write_parquet(tmp_path, n, frames=8, size=56, row_group=5, captions=None, fmt="PNG"):
    """Clips as a user would store them: one encoded image per frame (list<binary>) + caption."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    def enc(a):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format=fmt)
        return buf.getvalue()

    clips, caps = [], []
    for i in range(n):
        video, caption = synthetic.make_clip(np.random.default_rng(i), frames, size)
        clips.append([enc(f) for f in video])
        caps.append(caption)
    path = tmp_path / "clips.parquet"
    pq.write_table(pa.table({"frames": clips, "caption": caps if captions is None else captions}),
                   path, row_group_size=row_group)
    return str(path)


def test_parquet_streams_by_row_group_without_copies(tmp_path, monkeypatch):
    """Parquet clips are read in place (no Arrow copy in the HF cache), split by whole row
    groups, shuffled within windows of groups, and decode to the frames that were written."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    path = _write_parquet(tmp_path, 40, frames=3)
    cfg = tiny_cfg(dataset=path, frames_column="frames", eval_size=8)
    data = load_data(cfg)
    assert len(data.train) == 32 and len(data.eval) == 8
    assert not set(data.train.index) & set(data.eval.index)
    assert sorted(data.train.groups) == [2] + [5] * 6  # 8 groups of 5: one held out whole, 3 rows of another
    item = data.train[0]
    video, caption = synthetic.make_clip(np.random.default_rng(int(data.train.index[0])), 3, 56)
    assert np.array_equal(item["frames"].numpy(), video.transpose(0, 3, 1, 2))  # PNG is lossless
    perm = EpochCursor(32, 4, seed=0, groups=data.train.groups, window=2)._perm(0)
    assert sorted(perm.tolist()) == list(range(32))
    cursor, loader = train_loader(data.train, cfg)
    batch = next(iter(loader))
    assert batch["frames"].shape == (4, 3, 3, 56, 56) and batch["n_bad_rows"] == 0
    assert not (tmp_path / "hf").exists()  # nothing cached
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clips.parquet"]


def test_grouped_cursor_resumes_exactly():
    groups = np.array([5, 5, 3, 5, 2])
    full = EpochCursor(20, 3, seed=4, groups=groups, window=2)
    seq = [b for _, b in zip(range(14), iter(full))]
    assert sorted(sum(seq[:6], [])) == sorted(set(sum(seq[:6], [])))  # no repeats within an epoch
    head = EpochCursor(20, 3, seed=4, groups=groups, window=2)
    for _ in range(8):
        head.advance()
    resumed = EpochCursor(20, 3, seed=4, **head.state_dict(), groups=groups, window=2)
    assert [b for _, b in zip(range(6), iter(resumed))] == seq[8:14]


def test_null_captions_are_bad_rows_and_all_null_is_an_error(tmp_path):
    caps = [None if i % 4 == 0 else "red circle top stays" for i in range(20)]
    path = _write_parquet(tmp_path, 20, frames=2, captions=caps)
    data = load_data(tiny_cfg(dataset=path, frames_column="frames", eval_size=4))
    assert data.null_captions == 5
    items = [data.train[i] for i in range(len(data.train))]
    nulls = sum(caps[data.train.index[i]] is None for i in range(len(data.train)))
    assert sum("bad_row" in it for it in items) == nulls > 0
    path = _write_parquet(tmp_path / "..", 20, frames=2, captions=pa_nulls(20))
    with pytest.raises(ConfigError, match="the text column 'caption' is null in all 20 rows"):
        load_data(tiny_cfg(dataset=path, frames_column="frames", eval_size=4))


def pa_nulls(n):
    import pyarrow as pa

    return pa.array([None] * n, pa.string())


@pytest.mark.parametrize("stats", [True, False], ids=["footer-stats", "no-stats"])
def test_parquet_null_captions_are_counted_behind_nested_columns(tmp_path, stats):
    """The caption's null count comes from its own leaf (an image struct and a frames list come
    first); without footer statistics the caption column alone is read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from trainables.data.sources import ParquetRows

    image = pa.array([{"bytes": b"x", "path": None}] * 6, pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    table = pa.table({"image": image, "frames": [[b"a", None]] * 6, "caption": ["a", None, "b", None, None, "c"]})
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=4, write_statistics=stats)
    rows = ParquetRows([str(tmp_path / "t.parquet")])
    assert rows.null_count("caption") == 3
    assert rows.null_count("frames") is None  # nested: unknown until decoded (bad rows)
    assert list(rows.group_sizes) == [4, 2] and rows[5]["caption"] == "c"


def test_the_host_memory_plan_includes_the_loader_prefetch():
    """--dry-run's host column: the trial process plus (4 workers x 2 + 2) uint8 batches in flight."""
    from search_spaces.grids import expand
    from trainables.data.prefetch import pipeline_host_bytes
    from trainables.memory import GIB, HOST_BASE_BYTES
    from trainables.planner import dry_run_rows

    (cfg,) = expand("phase1", configs=["S-S"], variants=["baseline"], steps=[100])
    loader = pipeline_host_bytes(cfg)
    assert loader == 10 * 32 * (8 * 3 * 224 * 224 + 3 * 64 * 8)  # 368 MiB at phase size
    (row,) = dry_run_rows([cfg], gpu_mem_gib=24.0)
    assert not row["offload"]
    assert row["host_mem_gib"] * GIB == pytest.approx(HOST_BASE_BYTES + 4.0 * row["n_params"] + loader)


def test_a_small_split_is_cached_once_per_process_and_a_large_one_never(monkeypatch):
    """The smoke set is read for several epochs: its clips are computed once and then shared
    (read-only, so no reader can change the cached copy); a split over the budget is never kept."""
    monkeypatch.setattr(synthetic, "_CACHE", {})
    monkeypatch.setattr(synthetic, "_cached_bytes", 0)
    small = synthetic.SyntheticClips(seed=11, split="train", size=4, frames=2, image_size=56)
    first, again = small[3], small[3]
    assert first["frames"] is again["frames"] and not first["frames"].flags.writeable
    with pytest.raises(ValueError):
        first["frames"][0, 0, 0, 0] = 1
    fresh = synthetic.make_clip(np.random.default_rng(synthetic._clip_seed(11, "train", 3)), 2, 56)
    assert np.array_equal(first["frames"], fresh[0]) and first["caption"] == fresh[1]
    monkeypatch.setattr(synthetic, "CACHE_BYTES", 3 * 2 * 56 * 56 * 3)  # room for 3 clips
    big = synthetic.SyntheticClips(seed=12, split="train", size=4, frames=2, image_size=56)
    assert not big.cached and big[0]["frames"] is not big[0]["frames"]
    fits = synthetic.SyntheticClips(seed=13, split="train", size=3, frames=2, image_size=56)
    for i in range(3):
        fits[i]
    assert synthetic._cached_bytes <= synthetic.CACHE_BYTES  # the budget is a hard bound
