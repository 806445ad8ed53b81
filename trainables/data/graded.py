"""The graded synthetic task (`dataset="synthetic-graded"`): a caption loss that falls smoothly.

On the basic task (synthetic.py) the loss is a staircase: three attributes, each of a handful of
equally likely values, learned one after the other, so L(C) sits on plateaus and a fitted
exponent runs to its bound. This task spreads the learning out, in two ways:

* **Many sub-tasks of graded frequency.** The caption names five attributes of one coloured
  target among grey distractors: colour (8 hues), shape (6), motion (5), the quadrant it starts
  in (4) and a tag. Colours and shapes are drawn with Zipf weights (the k-th value with weight
  1/k), so a model learns the common values first and the rare ones later, each a small step.
* **Graded difficulty per clip.** A per-clip difficulty u ~ U(0, 1) sets the target's
  saturation (1 at u = 0 down to 0.25: a pale target is harder to find among the greys and its
  hue harder to tell), the number of distractors (1 to 3) and how far a moving target travels
  (60% down to 20% of the free span). Easy clips are learned early and hard ones late.

The tag ("alpha" .. "delta") is drawn uniformly and independently of the clip: no model can
predict it, so the task has a known floor, E* = ln 4 / 6 nats per caption token (5 words +
EOS), which a fitted L(C) = E + A C^-alpha can be checked against. Every other word is a
function of the frames, and only of the target's pixels: the colour of its pixels, its shape
at its place, its place in frame 0 and its displacement across frames.

`FIELDS` names each caption token's attribute (the caption is always 5 words, one token each),
so the evaluation can report the caption loss per attribute (trainables/evaluation.py).
"""
from __future__ import annotations

import numpy as np

from trainables.data.drawing import GREY_LEVELS, draw_distractors, noise, object_size, shape_mask

HUES = {
    "red": (230, 40, 40), "orange": (240, 140, 30), "yellow": (240, 220, 40), "green": (40, 200, 60),
    "cyan": (40, 210, 220), "blue": (50, 90, 240), "purple": (170, 60, 210), "pink": (240, 110, 190),
}
SHAPES = ("square", "circle", "triangle", "cross", "diamond", "ring")
MOTIONS = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0), "still": (0, 0)}
QUADRANTS = ("topleft", "topright", "bottomleft", "bottomright")
TAGS = ("alpha", "beta", "gamma", "delta")
FIELDS = ("colour", "shape", "motion", "quadrant", "tag")
MIN_SATURATION = 0.25
MAX_DISTRACTORS = 3
TRAVEL = (0.6, 0.2)  # share of the free span a moving target crosses at u = 0 and at u = 1
GREY = sum(GREY_LEVELS) // 2  # the grey a target's colour fades towards as its saturation falls


def zipf(n: int) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1)
    return w / w.sum()


COLOUR_P, SHAPE_P = zipf(len(HUES)), zipf(len(SHAPES))


def vocabulary() -> list[str]:
    """Every caption word, in a fixed order (the tokenizer depends on it)."""
    return [*HUES, *SHAPES, *MOTIONS, *QUADRANTS, *TAGS]


def irreducible_loss() -> float:
    """E*: the tag's entropy spread over the caption's tokens (5 words + EOS)."""
    return float(np.log(len(TAGS)) / (len(FIELDS) + 1))


def track(rng: np.random.Generator, motion: str, frames: int, image_size: int, travel: float):
    """Top-left (y, x) per frame: a straight line of `travel` x the free span, in view throughout."""
    free = image_size - object_size(image_size)
    dy, dx = MOTIONS[motion]
    span = round(free * travel) if (dy or dx) else 0
    y0 = int(rng.integers(0, free - span * abs(dy) + 1)) + (span if dy < 0 else 0)
    x0 = int(rng.integers(0, free - span * abs(dx) + 1)) + (span if dx < 0 else 0)
    steps = max(1, frames - 1)
    return [(y0 + round(dy * span * t / steps), x0 + round(dx * span * t / steps)) for t in range(frames)]


def quadrant(y: int, x: int, obj: int, image_size: int) -> str:
    """The quadrant holding the target's centre (the centre never sits on the midline: obj is odd
    or the frame side is, or both round the same way for every clip)."""
    half = image_size / 2
    cy, cx = y + obj / 2, x + obj / 2
    return QUADRANTS[2 * (cy >= half) + (cx >= half)]


def make_clip(rng: np.random.Generator, frames: int, image_size: int) -> tuple[np.ndarray, str]:
    """One clip (T, H, W, 3) uint8 and its caption "<colour> <shape> <motion> <quadrant> <tag>"."""
    s, obj = image_size, object_size(image_size)
    video = noise(rng, frames, s)
    u = float(rng.random())
    colour = str(rng.choice(list(HUES), p=COLOUR_P))
    shape = str(rng.choice(SHAPES, p=SHAPE_P))
    motion = str(rng.choice(list(MOTIONS))) if frames > 1 else "still"
    tag = str(rng.choice(TAGS))
    draw_distractors(rng, video, 1 + int(u * MAX_DISTRACTORS), SHAPES)
    saturation = 1.0 - (1.0 - MIN_SATURATION) * u
    rgb = np.round(GREY + saturation * (np.array(HUES[colour], float) - GREY)).astype(np.uint8)
    mask = shape_mask(shape, obj)
    path = track(rng, motion, frames, s, TRAVEL[0] + (TRAVEL[1] - TRAVEL[0]) * u)
    for t, (y, x) in enumerate(path):
        video[t, y : y + obj, x : x + obj][mask] = rgb
    return video, f"{colour} {shape} {motion} {quadrant(*path[0], obj, s)} {tag}"
