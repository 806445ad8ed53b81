"""What both embedded synthetic tasks draw with: the noise background, grey distractors' levels,
the object size and the shapes' pixel masks (trainables/data/synthetic.py, graded.py)."""
from __future__ import annotations

import numpy as np

GREY_LEVELS = (90, 130)  # distractor brightness range: well above the noise, no hue
NOISE_SHIFT = 2  # background noise: random bytes >> 2, i.e. 0..63 (bytes: 3x faster than integers)
NOISE_MAX = 255 >> NOISE_SHIFT
OBJECT_FRACTION = 3 / 8  # object side / frame side: 21 px at 56 (1.5 patches of 14 px)


def noise(rng: np.random.Generator, frames: int, size: int) -> np.ndarray:
    """(frames, size, size, 3) uint8 of dark noise, 0..NOISE_MAX per channel."""
    return (np.frombuffer(rng.bytes(frames * size * size * 3), np.uint8) >> NOISE_SHIFT).reshape(frames, size, size, 3)


def object_size(image_size: int) -> int:
    return max(6, round(image_size * OBJECT_FRACTION))


def shape_mask(shape: str, size: int) -> np.ndarray:
    """A size x size boolean mask of a filled shape (ring: a band)."""
    yy, xx = np.mgrid[0:size, 0:size]
    c, r = (size - 1) / 2, size / 2
    if shape == "square":
        return np.ones((size, size), bool)
    if shape == "circle":
        return (yy - c) ** 2 + (xx - c) ** 2 <= r**2
    if shape == "triangle":  # apex up: row r is filled over a width that grows with r
        return np.abs(xx - c) <= (yy + 1) / 2
    if shape == "cross":
        w = max(1, size // 4)
        return (np.abs(yy - c) < w) | (np.abs(xx - c) < w)
    if shape == "diamond":
        return np.abs(yy - c) + np.abs(xx - c) <= r
    if shape == "ring":
        d2 = (yy - c) ** 2 + (xx - c) ** 2
        return (d2 <= r**2) & (d2 >= (0.55 * r) ** 2)
    raise ValueError(shape)


def draw_distractors(rng: np.random.Generator, video: np.ndarray, n: int, shapes) -> None:
    """n grey, static objects of any of `shapes`, drawn in place (under the target, drawn later)."""
    s = video.shape[1]
    obj = object_size(s)
    for _ in range(n):
        mask = shape_mask(str(rng.choice(shapes)), obj)
        grey = int(rng.integers(*GREY_LEVELS))
        y, x = (int(v) for v in rng.integers(0, s - obj + 1, size=2))
        video[:, y : y + obj, x : x + obj][:, mask] = grey
