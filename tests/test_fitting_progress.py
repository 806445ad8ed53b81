"""The fit's progress line: written to its stream only, once per tenth in a log, redrawn on a
terminal; the bootstrap reports its batches in order and gives the same resamples either way."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd

from fitting import bootstrap, derived
from fitting.fitset import FitSet
from fitting.progress import Progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_log_gets_one_line_per_tenth_and_the_last_says_all():
    log = io.StringIO()
    p = Progress(200, stream=log)
    for done in range(10, 201, 10):  # 20 batches
        p.update(done)
    lines = log.getvalue().splitlines()
    assert len(lines) == 10 and lines[-1].startswith("bootstrap 200/200 resamples (100%)")
    assert lines[0].startswith("bootstrap 20/200 resamples (10%)") and "s left" in lines[0]


def test_a_terminal_line_is_redrawn_in_place_and_ended_once():
    tty = Terminal()
    p = Progress(3, what="bootstrap", stream=tty)
    p.last -= 10  # as if the last redraw were long ago
    p.update(1)
    p.update(3)
    text = tty.getvalue()
    first, last = text.split("\r")[1:]
    assert first.startswith("bootstrap 1/3") and text.count("\n") == 1 and last.endswith("\n")
    assert last.rstrip().endswith("(100%), 0 s") and len(last) - 1 >= len(first)  # blanks the longer line


def _frame(n_runs=6):
    rng = np.random.default_rng(0)
    rows = []
    for g, e in (("foveated", 1.0), ("baseline", 1.1)):
        for i, c in enumerate(np.geomspace(1e15, 1e19, n_runs)):
            rows.append({"N": 1e8, "D": c / 6e8, "C": c, "loss": (e + 300 * c ** -0.15) * np.exp(rng.normal(0, 0.01)),
                         "loss_se": np.nan, "group": g, "config": "S", "run_id": f"{g}{i}", "n_llm": np.nan,
                         "n_vision": np.nan})
    return pd.DataFrame(rows)


def test_the_bootstrap_reports_each_batch_and_batches_change_nothing():
    fs = FitSet(_frame())
    ctx = derived.context(fs.frame)
    seen = []
    a = bootstrap.bootstrap(fs, ctx, n=30, seed=4, workers=2, progress=seen.append)
    b = bootstrap.bootstrap(fs, ctx, n=30, seed=4, workers=1)
    assert seen == sorted(seen) and seen[-1] == 30 and len(seen) == len(set(seen)) > 1
    assert a.stats.keys() == b.stats.keys()
    for k in a.stats:
        np.testing.assert_allclose(np.asarray(a.stats[k].ci95, float), np.asarray(b.stats[k].ci95, float),
                                   rtol=1e-9, equal_nan=True)
