"""One data pipeline for both variants: source -> frames + caption ids + caption-only labels.

Sources (trainables/data/sources.py): the synthetic set, computed clip by clip; a hub id or a
`save_to_disk` directory (memory-mapped Arrow); parquet files (read by row group). Rows are
decoded per batch in DataLoader workers; host memory is the loader's prefetch
(`pipeline_host_bytes`), whatever the number of rows. Frames travel as uint8 and are
normalised on the device (`normalise_frames`): 4x less host memory and PCIe than float32.
Order: a seeded permutation per epoch, consumed through a cursor that is saved in every
checkpoint, so a resumed trial sees exactly the samples an uninterrupted one would have.
Opening a trial's splits and its tokenizer: trainables/data/bundle.py (`load_data`).
"""
from __future__ import annotations

import functools
import io
import os

import numpy as np
import torch

from search_spaces.errors import ConfigError
from search_spaces.trial import TrialConfig
from trainables.data.prefetch import GPU_WORKERS, PREFETCH_FACTOR
from trainables.data.sources import SHUFFLE_WINDOW

# DINOv2's image processor normalises with the ImageNet statistics.
IMAGE_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGE_STD = np.array([0.229, 0.224, 0.225], np.float32)


class ClipDataset(torch.utils.data.Dataset):
    """Rows of a source -> (frames [T,3,H,W] uint8, input_ids, attention_mask, labels).

    `index` maps this split's positions to source rows (None: all rows); `groups` are the
    sizes of the runs of positions that lie together on disk (None: random access is cheap).
    Without a tokenizer (the preflight) items carry the caption text instead of ids.
    """

    def __init__(self, rows, cfg: TrialConfig, tokenizer, frames_column: str | None,
                 image_column: str | None, text_column: str, name: str,
                 index: np.ndarray | None = None, groups: np.ndarray | None = None):
        self.rows, self.cfg, self.tok = rows, cfg, tokenizer
        self.frames_column, self.image_column, self.text_column = frames_column, image_column, text_column
        self.name, self.index, self.groups = name, index, groups

    def __len__(self) -> int:
        return len(self.rows) if self.index is None else len(self.index)

    def row(self, i: int) -> dict:
        return self.rows[int(i if self.index is None else self.index[i])]

    def _decode(self, item) -> np.ndarray:
        """Anything image-like -> (H, W, 3) uint8 at the trial's image size."""
        from PIL import Image

        if isinstance(item, list):  # a raw array stored as nested lists (parquet)
            item = np.asarray(item, dtype=np.uint8)
        if isinstance(item, np.ndarray) and item.dtype != object:
            # note: datasets' numpy format hands Array4D uint8 back as int64
            item = item.astype(np.uint8, copy=False)
            if item.shape == (self.cfg.image_size, self.cfg.image_size, 3):
                return item
        if isinstance(item, dict):  # datasets Image feature with decode=False
            item = item.get("bytes") or item.get("path")
        if isinstance(item, (bytes, bytearray)):
            item = Image.open(io.BytesIO(item))
        elif isinstance(item, str):
            item = Image.open(item)
        elif isinstance(item, np.ndarray):
            item = Image.fromarray(item)
        if item is None:
            raise ValueError("null image")
        img = item.convert("RGB")
        if img.size != (self.cfg.image_size,) * 2:
            img = img.resize((self.cfg.image_size,) * 2, Image.BILINEAR)
        return np.asarray(img, dtype=np.uint8)

    def frames_of(self, i: int, r: dict | None = None) -> np.ndarray:
        """(T, H, W, 3) uint8 of position i; images are replicated to T frames."""
        r = self.row(i) if r is None else r
        T = self.cfg.frames
        if self.frames_column:
            clip = r[self.frames_column]
            if clip is None or len(clip) == 0:
                raise ValueError("no frames")
            if isinstance(clip, np.ndarray) and clip.dtype != object and clip.shape[1:] == (self.cfg.image_size,) * 2 + (3,):
                frames = clip.astype(np.uint8, copy=False)  # a fixed-shape array: decode nothing
            else:
                frames = [self._decode(f) for f in clip]
            # fewer frames than T: repeat the last one; more: take T evenly spaced
            idx = np.linspace(0, len(frames) - 1, T).round().astype(int)
            return np.stack([frames[j] for j in idx])
        return np.repeat(self._decode(r[self.image_column])[None], T, axis=0)

    def __getitem__(self, i: int):
        try:
            r = self.row(i)
            video = self.frames_of(i, r)
            caption = r[self.text_column]
            if caption is None:
                raise ValueError(f"null {self.text_column!r}")
        except Exception as e:  # noqa: BLE001 - any decoder failure is a bad row, counted by collate
            return {"bad_row": int(i), "error": f"{type(e).__name__}: {e}"}
        frames = torch.from_numpy(np.ascontiguousarray(video.transpose(0, 3, 1, 2)))  # T,3,H,W uint8
        if self.tok is None:
            return {"frames": frames, "caption": str(caption)}
        ids, mask, labels = encode_caption(self.tok, str(caption), self.cfg.text_len)
        return {"frames": frames, "input_ids": ids, "attention_mask": mask, "labels": labels}


def normalise_frames(frames: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """uint8 [..., 3, H, W] -> DINOv2-normalised `dtype`, on frames' device (fp32 arithmetic)."""
    mean = torch.as_tensor(IMAGE_MEAN, device=frames.device).view(3, 1, 1)
    std = torch.as_tensor(IMAGE_STD, device=frames.device).view(3, 1, 1)
    return ((frames.float() / 255.0 - mean) / std).to(dtype)


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
    batch = {k: torch.stack([it[k] for it in good]) if torch.is_tensor(good[0][k]) else [it[k] for it in good]
             for k in good[0]}
    batch["n_bad_rows"] = len(bad)
    return batch


class EpochCursor:
    """Infinite, seeded, resumable sequence of index batches: state = (epoch, cursor).

    groups (sizes of runs of adjacent positions, e.g. parquet row groups): the epoch's order
    shuffles the groups, then rows within each window of `window` groups, so reads stay local.
    """

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int = 0, cursor: int = 0,
                 groups: np.ndarray | None = None, window: int = SHUFFLE_WINDOW):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.epoch, self.cursor = epoch, cursor
        self.groups, self.window = groups, window

    def _perm(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, epoch])
        if self.groups is None:
            return rng.permutation(self.n)
        starts = np.concatenate([[0], np.cumsum(self.groups)[:-1]])
        order = rng.permutation(len(self.groups))
        parts = []
        for w in range(0, len(order), self.window):
            rows = np.concatenate([np.arange(starts[g], starts[g] + self.groups[g]) for g in order[w : w + self.window]])
            parts.append(rng.permutation(rows))
        return np.concatenate(parts)

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


def loader_workers() -> int:
    """DataLoader worker processes: GPU_WORKERS under CUDA; none on CPU, where the trial's own
    cores train (FOVEATED_DATA_WORKERS overrides either)."""
    env = os.environ.get("FOVEATED_DATA_WORKERS")
    if env:
        return max(0, int(env))
    return min(GPU_WORKERS, max(1, (os.cpu_count() or 2) - 1)) if torch.cuda.is_available() else 0


def _loader(ds: "ClipDataset", workers: int, **kw) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        ds, num_workers=workers, prefetch_factor=PREFETCH_FACTOR if workers else None,
        pin_memory=torch.cuda.is_available(), collate_fn=functools.partial(collate, dataset_name=ds.name), **kw,
    )


def train_loader(ds: ClipDataset, cfg: TrialConfig, state: dict | None = None, workers: int | None = None):
    """(cursor, loader): the loader prefetches ahead; training calls cursor.advance() per batch
    consumed, so the checkpointed cursor never counts a prefetched batch."""
    if len(ds) < cfg.micro_batch:
        raise ConfigError(f"dataset {ds.name}: {len(ds)} training rows, fewer than one micro-batch ({cfg.micro_batch})")
    cursor = EpochCursor(len(ds), cfg.micro_batch, cfg.seed, **(state or {}), groups=ds.groups)
    return cursor, _loader(ds, loader_workers() if workers is None else workers, batch_sampler=cursor)


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


class _FramesFrom(torch.utils.data.Dataset):
    """Row i of `ds` with its frames taken from row frames_from[i] (caption and labels stay
    row i's); a row whose own or donor frames fail is a bad row."""

    def __init__(self, ds: "ClipDataset", frames_from: torch.Tensor):
        self.ds, self.frames_from, self.name = ds, frames_from, ds.name

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict:
        item, donor = self.ds[i], self.ds[int(self.frames_from[i])]
        if "bad_row" in item or "bad_row" in donor:
            return item if "bad_row" in item else donor
        item["frames"] = donor["frames"]
        return item


def eval_batches(ds: ClipDataset, batch_size: int, workers: int | None = None,
                 frames_from: torch.Tensor | None = None):
    """The whole eval split in order (its rows ascending: parquet groups are read once);
    with frames_from, every row paired with another row's frames (see `_FramesFrom`)."""
    source = ds if frames_from is None else _FramesFrom(ds, frames_from)
    yield from _loader(source, loader_workers() if workers is None else workers, batch_size=batch_size, shuffle=False)
