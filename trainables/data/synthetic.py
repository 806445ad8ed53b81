"""The embedded, offline clip-caption data set.

Each clip shows one or two small coloured shapes on a noisy dark background over T frames;
each shape starts in one of nine places and moves (or stays) in one direction. The caption
says what only looking can tell: colour, shape, where it starts and how it moves, e.g.
"red circle top left moves right and blue square center stays". A language model without
the frames can learn the grammar but must guess every content word, so caption loss with
the true frames must end clearly below the loss with frames shuffled across clips.

Clip i is generated from its own RNG seeded by (seed, split, i): the set is deterministic and
any clip can be regenerated alone. Stored and loaded through `datasets` (Arrow on disk).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

COLOURS = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 90, 240),
    "yellow": (240, 220, 40),
    "purple": (170, 60, 210),
    "white": (245, 245, 245),
}
SHAPES = ("square", "circle", "triangle", "cross")
PLACES = {  # name -> (row, col) in a 3x3 layout
    "top left": (0, 0), "top": (0, 1), "top right": (0, 2),
    "left": (1, 0), "center": (1, 1), "right": (1, 2),
    "bottom left": (2, 0), "bottom": (2, 1), "bottom right": (2, 2),
}
MOTIONS = {"moves left": (0, -1), "moves right": (0, 1), "moves up": (-1, 0), "moves down": (1, 0), "stays": (0, 0)}
GRAMMAR_WORDS = ("and",)


def vocabulary() -> list[str]:
    """Every word a synthetic caption can contain (fixed order: the tokenizer depends on it)."""
    words: list[str] = []
    for phrase in (*COLOURS, *SHAPES, *PLACES, *MOTIONS, *GRAMMAR_WORDS):
        for w in phrase.split():
            if w not in words:
                words.append(w)
    return words


def _shape_mask(shape: str, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    c = (size - 1) / 2
    if shape == "square":
        return np.ones((size, size), bool)
    if shape == "circle":
        return (yy - c) ** 2 + (xx - c) ** 2 <= (size / 2) ** 2
    if shape == "triangle":  # apex up: row r is filled over a width that grows with r
        return np.abs(xx - c) <= (yy + 1) / 2
    if shape == "cross":
        w = max(1, size // 4)
        return (np.abs(yy - c) < w) | (np.abs(xx - c) < w)
    raise ValueError(shape)


def make_clip(rng: np.random.Generator, frames: int, image_size: int) -> tuple[np.ndarray, str]:
    """One clip (T, H, W, 3) uint8 and its caption."""
    s = image_size
    video = rng.integers(0, 40, size=(frames, s, s, 3), dtype=np.uint8)  # dark noise
    obj = max(4, s // 5)
    n_objects = int(rng.integers(1, 3))
    # distinct places so two objects never start on top of each other
    place_names = rng.choice(list(PLACES), size=n_objects, replace=False)
    parts = []
    for place in place_names:
        colour = str(rng.choice(list(COLOURS)))
        shape = str(rng.choice(SHAPES))
        motion = str(rng.choice(list(MOTIONS)))
        row, col = PLACES[str(place)]
        cell = s / 3
        y0 = cell * row + (cell - obj) / 2
        x0 = cell * col + (cell - obj) / 2
        dy, dx = MOTIONS[motion]
        # travel at most a third of the frame over the clip, so the object stays in view
        speed = (s / 3) / max(1, frames - 1)
        mask = _shape_mask(shape, obj)
        for t in range(frames):
            y = int(round(np.clip(y0 + dy * speed * t, 0, s - obj)))
            x = int(round(np.clip(x0 + dx * speed * t, 0, s - obj)))
            video[t, y : y + obj, x : x + obj][mask] = COLOURS[colour]
        parts.append(f"{colour} {shape} {place} {motion}")
    return video, " and ".join(parts)


def _clip_seed(seed: int, split: str, index: int) -> np.random.SeedSequence:
    split_id = {"train": 0, "eval": 1}[split]
    return np.random.SeedSequence([seed, split_id, index])


def generate(seed: int, split: str, size: int, frames: int, image_size: int):
    """A `datasets.Dataset` with columns `frames` (T,H,W,3 uint8) and `caption`."""
    import datasets  # heavy import: only when data is actually built

    def rows():
        for i in range(size):
            video, caption = make_clip(np.random.default_rng(_clip_seed(seed, split, i)), frames, image_size)
            yield {"frames": video, "caption": caption}

    features = datasets.Features({
        "frames": datasets.Array4D(shape=(frames, image_size, image_size, 3), dtype="uint8"),
        "caption": datasets.Value("string"),
    })
    # note: from_list keeps everything in memory once; the sets here are a few hundred MB at most
    return datasets.Dataset.from_list(list(rows()), features=features)


def cache_dir() -> Path:
    root = os.environ.get("FOVEATED_SCALING_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "foveated_scaling"
    )
    return Path(root) / "synthetic"


def load_or_generate(seed: int, split: str, size: int, frames: int, image_size: int):
    """Generate once, then reload from the Arrow cache (shared by all trials on a machine)."""
    import datasets

    key = hashlib.sha1(f"v1-{seed}-{split}-{size}-{frames}-{image_size}".encode()).hexdigest()[:12]
    path = cache_dir() / f"{split}-{size}x{frames}x{image_size}-{key}"
    if (path / "dataset_info.json").exists():
        return datasets.load_from_disk(str(path))
    ds = generate(seed, split, size, frames, image_size)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    ds.save_to_disk(str(tmp))
    try:  # atomic publish: concurrent trials may race to create the same set
        os.replace(tmp, path)
    except OSError:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return datasets.load_from_disk(str(path))
