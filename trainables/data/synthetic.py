"""The embedded, offline clip-caption data set.

Each clip is T frames of dark noise with one coloured *target* shape among grey distractor
shapes of the same kinds and size. The target starts anywhere and moves in a straight line
(left, right, up or down) or stays; the distractors stand still. The caption names the
target's colour, its shape and how it moves, e.g. "red circle moves left" or
"blue cross stays". Only the frames tell: the colour is in the target's pixels alone, its
shape is legible only at its place (an average over the frame mixes in the distractors,
which take any shape), and its motion needs that place in several frames (a one-frame clip
always "stays"). One glimpse per frame at the target is enough,
which is what the foveated model gets; a language model without the frames learns the
grammar but must guess every content word, so caption loss with the true frames must end
clearly below the loss with another clip's frames.

Clip i is generated from its own RNG seeded by (seed, split, i): the set is deterministic and
any clip can be regenerated alone. Nothing is written: `SyntheticClips` computes clip i when it
is read (the same clip for the same index everywhere). A split small enough to fit in
`CACHE_BYTES` (the smoke grid's: 2,048 clips = 77 MB) is also kept in memory after its first
read, once per process, because a trial reads it for several epochs and a reused Ray worker
reads it again in the next trial; a larger split (phase size: 20,000 x 1.2 MB) is never cached,
so memory stays O(1) in the set size.
"""
from __future__ import annotations

import os

import numpy as np

from trainables.data import graded
from trainables.data.drawing import draw_distractors, noise, object_size, shape_mask

# Saturated target colours; distractors are grey (equal channels), so no pixel of a
# distractor or of the noise can ever match a target colour.
COLOURS = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 90, 240),
    "yellow": (240, 220, 40),
    "purple": (170, 60, 210),
    "cyan": (40, 210, 220),
}
SHAPES = ("square", "circle", "triangle", "cross")
MOTIONS = {"moves left": (0, -1), "moves right": (0, 1), "moves up": (-1, 0), "moves down": (1, 0), "stays": (0, 0)}
N_DISTRACTORS = 2
TRAVEL_FRACTION = 0.5  # a moving target crosses this share of the free span over the clip
# A whole split is cached when it fits in this many bytes (env FOVEATED_CLIP_CACHE_MB; 0: off).
# A partial cache of a larger, randomly read split would hit budget/size of the time: not worth it.
CACHE_BYTES = int(float(os.environ.get("FOVEATED_CLIP_CACHE_MB", 256)) * 2**20)
# (task, seed, split, frames, image_size, index) -> (read-only frames, caption); per process, at most
# CACHE_BYTES of frames in all (past that, clips are computed and not kept)
_CACHE: dict[tuple, tuple[np.ndarray, str]] = {}
_cached_bytes = 0


def vocabulary() -> list[str]:
    """Every word a synthetic caption can contain (fixed order: the tokenizer depends on it)."""
    words: list[str] = []
    for phrase in (*COLOURS, *SHAPES, *MOTIONS):
        for w in phrase.split():
            if w not in words:
                words.append(w)
    return words


def target_track(rng: np.random.Generator, motion: str, frames: int, image_size: int) -> list[tuple[int, int]]:
    """Top-left (y, x) of the target in each frame: a straight line that stays in view."""
    free = image_size - object_size(image_size)  # top-left coordinates range over [0, free]
    dy, dx = MOTIONS[motion]
    travel = round(free * TRAVEL_FRACTION) if (dy or dx) else 0
    # start where the whole track fits: along the motion only the first (free - travel) + 1 places
    y0 = int(rng.integers(0, free - travel * abs(dy) + 1)) + (travel if dy < 0 else 0)
    x0 = int(rng.integers(0, free - travel * abs(dx) + 1)) + (travel if dx < 0 else 0)
    steps = max(1, frames - 1)
    return [(y0 + round(dy * travel * t / steps), x0 + round(dx * travel * t / steps)) for t in range(frames)]


def make_clip(rng: np.random.Generator, frames: int, image_size: int) -> tuple[np.ndarray, str]:
    """One clip (T, H, W, 3) uint8 and its caption "<colour> <shape> <motion>"."""
    s, obj = image_size, object_size(image_size)
    video = noise(rng, frames, s)
    colour = str(rng.choice(list(COLOURS)))
    shape = str(rng.choice(SHAPES))
    motion = str(rng.choice(list(MOTIONS))) if frames > 1 else "stays"  # one frame shows no motion
    # distractors: grey, static, any shape (the target's included), drawn under the target
    draw_distractors(rng, video, N_DISTRACTORS, SHAPES)
    mask = shape_mask(shape, obj)
    for t, (y, x) in enumerate(target_track(rng, motion, frames, s)):
        video[t, y : y + obj, x : x + obj][mask] = COLOURS[colour]
    return video, f"{colour} {shape} {motion}"


# The embedded tasks by data-set name: this module's (a staircase of three attributes) and the
# graded one (trainables/data/graded.py, a loss that falls smoothly); a trial picks one with
# TrialConfig.dataset. Each is (clip generator, vocabulary, caption field per token or None).
TASKS = ("synthetic", "synthetic-graded")


def task(name: str):
    """(make_clip, vocabulary, fields) of an embedded task."""
    if name == "synthetic":
        return make_clip, vocabulary, None  # "moves left" is two words: no fixed field per token
    if name == "synthetic-graded":
        return graded.make_clip, graded.vocabulary, graded.FIELDS
    raise ValueError(f"unknown synthetic task {name!r}; known: {', '.join(TASKS)}")


def _clip_seed(seed: int, split: str, index: int) -> np.random.SeedSequence:
    split_id = {"train": 0, "eval": 1}[split]
    return np.random.SeedSequence([seed, split_id, index])


class SyntheticClips:
    """A read-only, random-access view of the set: row i = {"frames": (T,H,W,3) uint8, "caption"}.

    Rows are computed on demand from (seed, split, i); the object holds only the five numbers, so
    a DataLoader worker receives it for free and 20,000 clips cost no more than 20 (the
    process-wide cache above keeps a small split's clips, never a large one's).
    """

    def __init__(self, seed: int, split: str, size: int, frames: int, image_size: int, task_name: str = "synthetic"):
        _clip_seed(seed, split, 0)  # refuses an unknown split now, not at the first read
        self.seed, self.split, self.size, self.frames, self.image_size = seed, split, size, frames, image_size
        self.task_name, self.generate = task_name, task(task_name)[0]
        # clip i does not depend on the set's size, so sets of different sizes share one cache
        self.cached = size * frames * image_size * image_size * 3 <= CACHE_BYTES

    def _clip(self, index: int) -> tuple[np.ndarray, str]:
        global _cached_bytes
        key = (self.task_name, self.seed, self.split, self.frames, self.image_size, index)
        if key in _CACHE:
            return _CACHE[key]
        video, caption = self.generate(np.random.default_rng(_clip_seed(self.seed, self.split, index)),
                                       self.frames, self.image_size)
        if self.cached and _cached_bytes + video.nbytes <= CACHE_BYTES:
            video.setflags(write=False)  # shared by every later read: a reader must copy to change it
            _CACHE[key] = (video, caption)
            _cached_bytes += video.nbytes
        return video, caption

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.size:
            raise IndexError(f"synthetic {self.split} clip {index} of {self.size}")
        video, caption = self._clip(int(index))
        return {"frames": video, "caption": caption}
