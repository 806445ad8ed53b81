"""The graded synthetic task: every caption word but the tag is what the target's pixels show;
the tag is noise of a known entropy; the evaluation reports the loss per caption field."""
from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch

from trainables.data import drawing, graded, synthetic
from trainables.evaluation import field_losses


def read_target(video: np.ndarray) -> str:
    """Decode the four visual fields from the target's pixels alone. Noise is <= 63 per channel
    and distractors are grey (equal channels), so the target is every pixel with unequal
    channels above the noise; its colour is the hue whose direction from grey it lies on."""
    obj = drawing.object_size(video.shape[1])
    places = []
    for t, frame in enumerate(video):
        target = (frame.max(-1) > 63) & (frame.min(-1) != frame.max(-1))
        ys, xs = np.nonzero(target)
        y, x = ys.min(), xs.min()
        assert ys.max() - y < obj and xs.max() - x < obj  # one object-sized place
        (rgb,) = {tuple(p) for p in frame[target]}  # one colour, whatever its saturation
        d = np.subtract(rgb, graded.GREY, dtype=float)
        cos = {h: d @ (v := np.subtract(c, graded.GREY, dtype=float)) / np.linalg.norm(d) / np.linalg.norm(v)
               for h, c in graded.HUES.items()}
        colour = max(cos, key=cos.get)
        seen = target[y : y + obj, x : x + obj]
        (shape,) = [s for s in graded.SHAPES if np.array_equal(seen, drawing.shape_mask(s, obj))]
        places.append((int(y), int(x)))
    dy, dx = np.sign(np.subtract(places[-1], places[0]))
    (motion,) = [m for m, v in graded.MOTIONS.items() if v == (dy, dx)]
    return f"{colour} {shape} {motion} {graded.quadrant(*places[0], obj, video.shape[1])}"


def test_every_field_but_the_tag_is_read_from_the_target_alone():
    rng = np.random.default_rng(0)
    words = Counter()
    for _ in range(300):
        video, caption = graded.make_clip(rng, frames=4, image_size=56)
        assert video.shape == (4, 56, 56, 3) and video.dtype == np.uint8
        *visual, tag = caption.split()
        assert read_target(video) == " ".join(visual) and tag in graded.TAGS
        assert len(caption.split()) == len(graded.FIELDS) and set(caption.split()) <= set(graded.vocabulary())
        words.update(caption.split())
    assert all(words[w] for w in (*graded.HUES, *graded.SHAPES, *graded.MOTIONS, *graded.QUADRANTS))
    # Zipf weights: the first colour and shape are several times as common as the last
    assert words["red"] > 3 * words["pink"] and words["square"] > 3 * words["ring"]


def test_the_tag_is_uniform_noise_independent_of_the_clip_and_sets_a_known_floor():
    rng = np.random.default_rng(1)
    pairs = [graded.make_clip(rng, 1, 56)[1].split() for _ in range(4000)]
    tags = Counter(p[-1] for p in pairs)
    assert all(abs(n / len(pairs) - 0.25) < 0.03 for n in tags.values())
    common = [p for p in pairs if p[0] == "red"]  # the tag does not depend on what is shown
    assert abs(Counter(p[-1] for p in common)["alpha"] / len(common) - 0.25) < 0.05
    assert graded.irreducible_loss() == pytest.approx(math.log(4) / 6)
    # one frame: no motion to show
    assert {p[2] for p in pairs} == {"still"}


def test_the_graded_task_is_a_data_set_with_named_caption_fields():
    from search_spaces.grids import expand
    from trainables.data.bundle import load_data

    (cfg,) = expand("ladder", ["T0-T0"], ["foveated"], [100], {"dataset_size": 8, "eval_size": 4})
    data = load_data(cfg)
    assert data.caption_fields == graded.FIELDS
    row = data.train.rows[3]
    assert row["caption"] == graded.make_clip(np.random.default_rng(synthetic._clip_seed(0, "train", 3)), 4, 56)[1]
    ids = data.tokenizer(row["caption"], add_special_tokens=False)["input_ids"]
    assert len(ids) == len(graded.FIELDS) and data.tokenizer.unk_token_id not in ids  # one token per field
    with pytest.raises(ValueError, match="unknown synthetic task"):
        synthetic.task("synthetic-nope")


def test_field_losses_read_each_fields_own_position():
    # position 0 is BOS (no label), 1..5 the fields, 6 EOS
    loss = torch.tensor([0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 1.0], dtype=torch.float64)
    n = torch.tensor([0, 2, 2, 2, 2, 2, 2])
    out = field_losses([loss, n], graded.FIELDS)
    assert out == {"eval_loss_field_colour": 1.0, "eval_loss_field_shape": 2.0, "eval_loss_field_motion": 3.0,
                   "eval_loss_field_quadrant": 4.0, "eval_loss_field_tag": 5.0}
