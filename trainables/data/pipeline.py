"""One data pipeline for both variants: source -> frames + caption ids + caption-only labels.

Sources: the embedded synthetic set, a hub id, a `save_to_disk` directory or parquet files.
Order: a seeded permutation per epoch, consumed through a cursor that is saved in every
checkpoint, so a resumed trial sees exactly the samples an uninterrupted one would have.
"""
from __future__ import annotations

import functools
import io
import os
from dataclasses import dataclass
from glob import glob

import numpy as np
import torch

from search_spaces.sizes import ConfigError
from search_spaces.trial import TrialConfig
from trainables.data import synthetic
from trainables.data.tokenizer import pretrained_tokenizer, vocabulary_from_texts, word_level_tokenizer

# DINOv2's image processor normalises with the ImageNet statistics.
IMAGE_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGE_STD = np.array([0.229, 0.224, 0.225], np.float32)


@dataclass
class DataBundle:
    train: "ClipDataset"
    eval: "ClipDataset"
    tokenizer: object
    vocab_size: int
    description: dict  # what to record with the results: source, sizes, seeds


class ClipDataset(torch.utils.data.Dataset):
    """Rows of a `datasets.Dataset` -> (frames [T,3,H,W] float, input_ids, attention_mask, labels)."""

    def __init__(self, rows, cfg: TrialConfig, tokenizer, frames_column: str | None,
                 image_column: str | None, text_column: str, name: str):
        self.rows, self.cfg, self.tok = rows, cfg, tokenizer
        self.frames_column, self.image_column, self.text_column = frames_column, image_column, text_column
        self.name = name

    def __len__(self) -> int:
        return len(self.rows)

    def _decode(self, item, row: int) -> np.ndarray:
        """Anything image-like -> (H, W, 3) uint8 at the trial's image size."""
        from PIL import Image

        if isinstance(item, np.ndarray):
            # note: datasets' numpy format hands Array4D uint8 back as int64
            item = item.astype(np.uint8, copy=False)
            if item.shape[:2] == (self.cfg.image_size,) * 2:
                return item
        if isinstance(item, dict):  # datasets Image feature with decode=False
            item = item.get("bytes") or item.get("path")
        if isinstance(item, (bytes, bytearray)):
            item = Image.open(io.BytesIO(item))
        elif isinstance(item, str):
            item = Image.open(item)
        elif isinstance(item, np.ndarray):
            item = Image.fromarray(item)
        img = item.convert("RGB").resize((self.cfg.image_size,) * 2, Image.BILINEAR)
        return np.asarray(img, dtype=np.uint8)

    def frames_of(self, row: int) -> np.ndarray:
        """(T, H, W, 3) uint8 for row `row`; images are replicated to T frames."""
        r = self.rows[row]
        T = self.cfg.frames
        if self.frames_column:
            clip = r[self.frames_column]
            frames = [self._decode(f, row) for f in clip]
            if not frames:
                raise ValueError("no frames")
            # fewer frames than T: repeat the last one; more: take T evenly spaced
            idx = np.linspace(0, len(frames) - 1, T).round().astype(int)
            return np.stack([frames[i] for i in idx])
        return np.repeat(self._decode(r[self.image_column], row)[None], T, axis=0)

    def __getitem__(self, row: int):
        try:
            video = self.frames_of(row)
        except Exception as e:  # noqa: BLE001 - any decoder failure is a bad row, counted by collate
            return {"bad_row": row, "error": f"{type(e).__name__}: {e}"}
        x = (video.astype(np.float32) / 255.0 - IMAGE_MEAN) / IMAGE_STD
        frames = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()  # T,3,H,W
        ids, mask, labels = encode_caption(self.tok, str(self.rows[row][self.text_column]), self.cfg.text_len)
        return {"frames": frames, "input_ids": ids, "attention_mask": mask, "labels": labels}


def encode_caption(tok, caption: str, text_len: int):
    """BOS + caption + EOS, right-padded to text_len. Labels: caption and EOS only (BOS, pads: -100)."""
    body = tok(caption, add_special_tokens=False)["input_ids"][: text_len - 2]
    ids = [tok.bos_token_id, *body, tok.eos_token_id]
    n = len(ids)
    ids = ids + [tok.pad_token_id] * (text_len - n)
    mask = [1] * n + [0] * (text_len - n)
    labels = [-100] + ids[1:n] + [-100] * (text_len - n)
    return torch.tensor(ids), torch.tensor(mask), torch.tensor(labels)


class BadRows(RuntimeError):
    pass


def collate(items: list[dict], dataset_name: str = "") -> dict:
    good = [it for it in items if "bad_row" not in it]
    bad = [it for it in items if "bad_row" in it]
    if not good:
        first = bad[0]
        raise BadRows(f"dataset {dataset_name}: every row of a batch failed to decode "
                      f"(e.g. row {first['bad_row']}: {first['error']})")
    batch = {k: torch.stack([it[k] for it in good]) for k in good[0]}
    batch["n_bad_rows"] = len(bad)
    return batch


class EpochCursor:
    """Infinite, seeded, resumable sequence of index batches: state = (epoch, cursor)."""

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int = 0, cursor: int = 0):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.epoch, self.cursor = epoch, cursor

    def _perm(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def __iter__(self):
        epoch, cursor = self.epoch, self.cursor
        perm = self._perm(epoch)
        while True:
            if cursor + self.batch_size > self.n:  # drop the ragged tail: every batch is full
                epoch, cursor = epoch + 1, 0
                perm = self._perm(epoch)
            yield perm[cursor : cursor + self.batch_size].tolist()
            cursor += self.batch_size

    def advance(self) -> None:
        """Record that one batch was consumed by training (not merely prefetched)."""
        if self.cursor + self.batch_size > self.n:
            self.epoch, self.cursor = self.epoch + 1, 0
        self.cursor += self.batch_size

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "cursor": self.cursor}


def train_loader(ds: ClipDataset, cfg: TrialConfig, state: dict | None = None, workers: int = 0):
    cursor = EpochCursor(len(ds), cfg.micro_batch, cfg.seed, **(state or {}))
    if len(ds) < cfg.micro_batch:
        raise ConfigError(f"dataset {ds.name}: {len(ds)} training rows, fewer than one micro-batch ({cfg.micro_batch})")
    loader = torch.utils.data.DataLoader(
        ds, batch_sampler=cursor, num_workers=workers,
        collate_fn=functools.partial(collate, dataset_name=ds.name),
    )
    return cursor, loader


def derangement(n: int, generator: torch.Generator) -> torch.Tensor:
    """A random permutation of range(n) with no fixed point: out[i] != i for every i.

    Walk the rows in a random order and hand each one the next row's index (the last gets
    the first's): one n-cycle, so no row is mapped to itself. Needs n >= 2.
    """
    if n < 2:
        raise ValueError(f"a derangement needs at least 2 elements, got {n}")
    order = torch.randperm(n, generator=generator)
    out = torch.empty(n, dtype=torch.long)
    out[order] = order.roll(-1)
    return out


def eval_batches(ds: ClipDataset, batch_size: int, frames_from: torch.Tensor | None = None):
    """The eval split in order. frames_from[i]: take row i's frames from that row instead
    (captions and labels stay row i's); a row whose own or donor frames fail is a bad row."""
    for start in range(0, len(ds), batch_size):
        items = [ds[i] for i in range(start, min(len(ds), start + batch_size))]
        if frames_from is not None:
            for i, item in enumerate(items, start):
                donor = ds[int(frames_from[i])]
                if "bad_row" in item or "bad_row" in donor:
                    items[i - start] = item if "bad_row" in item else donor
                else:
                    item["frames"] = donor["frames"]
        yield collate(items, ds.name)


# -- sources --------------------------------------------------------------------------------
def _open_source(name: str):
    """A hub id, a save_to_disk directory or parquet file(s)/glob -> `datasets` Dataset or DatasetDict."""
    import datasets

    if os.path.isdir(name) and (os.path.exists(os.path.join(name, "dataset_info.json"))
                                or os.path.exists(os.path.join(name, "dataset_dict.json"))):
        return datasets.load_from_disk(name)
    if name.endswith(".parquet") or (os.path.isdir(name) and glob(os.path.join(name, "*.parquet"))):
        files = sorted(glob(os.path.join(name, "*.parquet"))) if os.path.isdir(name) else sorted(glob(name))
        if not files:
            raise ConfigError(f"dataset {name!r}: no parquet files match")
        return datasets.load_dataset("parquet", data_files=files)
    if os.path.exists(name):
        raise ConfigError(f"dataset {name!r}: a path, but neither a save_to_disk directory nor parquet files")
    try:
        return datasets.load_dataset(name)
    except Exception as e:  # noqa: BLE001 - hub/network errors come in many types
        raise ConfigError(f"dataset {name!r} not found locally or on the hub ({type(e).__name__}); "
                          "pass a save_to_disk directory or parquet files") from None


def load_data(cfg: TrialConfig) -> DataBundle:
    if cfg.dataset == "synthetic":
        train = synthetic.load_or_generate(cfg.dataset_seed, "train", cfg.dataset_size, cfg.frames, cfg.image_size)
        evl = synthetic.load_or_generate(cfg.dataset_seed, "eval", cfg.eval_size, cfg.frames, cfg.image_size)
        train, evl = train.with_format("numpy"), evl.with_format("numpy")
        frames_col, image_col, text_col = "frames", None, "caption"
        words = synthetic.vocabulary()
    else:
        train, evl, frames_col, image_col, text_col = _split_real(cfg)
        words = None
    if cfg.init == "pretrained":
        llm, _ = cfg.sizes
        tok = pretrained_tokenizer(cfg.llm_path or llm.hub_id)
    else:
        if words is None:
            words = vocabulary_from_texts(str(t) for t in train[text_col])
        tok = word_level_tokenizer(words)
    name = cfg.dataset
    bundle = DataBundle(
        train=ClipDataset(train, cfg, tok, frames_col, image_col, text_col, name),
        eval=ClipDataset(evl, cfg, tok, frames_col, image_col, text_col, name),
        tokenizer=tok,
        vocab_size=len(tok),
        description={"dataset": name, "train_rows": len(train), "eval_rows": len(evl),
                     "dataset_seed": cfg.dataset_seed, "vocab_size": len(tok)},
    )
    return bundle


def _split_real(cfg: TrialConfig):
    import datasets

    src = _open_source(cfg.dataset)
    if isinstance(src, datasets.DatasetDict):
        if "train" not in src:
            raise ConfigError(f"dataset {cfg.dataset!r} has no 'train' split (splits: {', '.join(src)})")
        rows = src["train"]
    else:
        rows = src
    if len(rows) == 0:
        raise ConfigError(f"dataset {cfg.dataset!r}: the train split is empty")
    cols = set(rows.column_names)
    frames_col, image_col, text_col = cfg.frames_column, cfg.image_column, cfg.text_column
    if not frames_col and not image_col:
        image_col = next((c for c in ("image", "img", "jpg", "png") if c in cols), None)
        frames_col = next((c for c in ("frames", "video_frames") if c in cols), None) if not image_col else None
    for role, col in (("text", text_col), ("image", image_col), ("frames", frames_col)):
        if col is not None and col not in cols:
            raise ConfigError(f"dataset {cfg.dataset!r}: no {role} column {col!r} (columns: {', '.join(sorted(cols))})")
    if not frames_col and not image_col:
        raise ConfigError(f"dataset {cfg.dataset!r}: no image or frames column found; pass --image-column "
                          f"or --frames-column (columns: {', '.join(sorted(cols))})")
    if image_col and isinstance(rows.features.get(image_col), datasets.Image):
        rows = rows.cast_column(image_col, datasets.Image(decode=False))  # decode ourselves: count bad rows
    if len(rows) <= cfg.eval_size:
        raise ConfigError(f"dataset {cfg.dataset!r}: {len(rows)} rows, not more than eval_size {cfg.eval_size}")
    split = rows.train_test_split(test_size=cfg.eval_size, seed=cfg.dataset_seed, shuffle=True)
    return split["train"], split["test"], frames_col, image_col, text_col
