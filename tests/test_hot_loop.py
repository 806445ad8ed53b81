"""trainables/hot_loop.py on CPU: the prefetcher's order and contract, the deferred NaN check."""
from __future__ import annotations

import torch

from trainables.hot_loop import DevicePrefetcher, NonFiniteWatch


def test_prefetcher_keeps_order_normalises_frames_and_runs_one_batch_ahead():
    pulled = []

    def loader():
        for i in range(3):
            pulled.append(i)
            yield {"frames": torch.full((2, 3, 1, 1), i, dtype=torch.uint8), "input_ids": torch.tensor([i, i]), "n_bad_rows": i}

    feed = DevicePrefetcher(loader(), "cpu", torch.bfloat16)
    assert pulled == [0]  # the first batch is loaded at construction
    n_bad, batch = next(feed)
    assert pulled == [0, 1]  # ... and the next one while batch 0 is in use
    assert n_bad == 0 and "n_bad_rows" not in batch and batch["frames"].dtype == torch.bfloat16
    # uint8 0 -> (0 - mean) / std per channel: ImageNet statistics, red channel -0.485 / 0.229
    assert abs(float(batch["frames"][0, 0, 0, 0]) - (-0.485 / 0.229)) < 0.02
    rest = list(feed)
    assert [b["input_ids"].tolist() for _, b in rest] == [[1, 1], [2, 2]] and [n for n, _ in rest] == [1, 2]


def test_non_finite_watch_names_the_first_bad_step():
    watch = NonFiniteWatch("cpu")
    for step, loss in ((1, 2.0), (2, 1.5), (3, float("nan")), (4, float("inf")), (5, 1.0)):
        watch.update(step, torch.tensor(loss))
    assert watch.poll() == 3 and watch.check() == 3
    fine = NonFiniteWatch("cpu")
    fine.update(1, torch.tensor(0.5))
    assert fine.poll() == -1 and fine.check() == -1
