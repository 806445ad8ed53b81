"""The embedded, offline clip-caption data set.

Each clip shows one or two small coloured shapes on a noisy dark background over T frames;
each shape starts in one of nine places and moves (or stays) in one direction. The caption
says what only looking can tell: colour, shape, where it starts and how it moves, e.g.
"red circle top left moves right and blue square center stays". A language model without
the frames can learn the grammar but must guess every content word, so caption loss with
the true frames must end clearly below the loss with frames shuffled across clips.

Clip i is generated from its own RNG seeded by (seed, split, i): the set is deterministic and
any clip can be regenerated alone. Nothing is stored: `SyntheticClips` computes clip i when it
is read (O(1) memory and disk in the set size; the same clip for the same index everywhere).
"""
from __future__ import annotations

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


class SyntheticClips:
    """A read-only, random-access view of the set: row i = {"frames": (T,H,W,3) uint8, "caption"}.

    Rows are computed on demand from (seed, split, i); only the five numbers are kept, so a
    DataLoader worker receives it for free and 20,000 clips cost no more than 20.
    """

    def __init__(self, seed: int, split: str, size: int, frames: int, image_size: int):
        _clip_seed(seed, split, 0)  # refuses an unknown split now, not at the first read
        self.seed, self.split, self.size, self.frames, self.image_size = seed, split, size, frames, image_size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.size:
            raise IndexError(f"synthetic {self.split} clip {index} of {self.size}")
        video, caption = make_clip(np.random.default_rng(_clip_seed(self.seed, self.split, int(index))),
                                   self.frames, self.image_size)
        return {"frames": video, "caption": caption}
