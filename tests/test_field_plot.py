"""The per-field loss plot: seed means per (arm, config, steps, field); none without fields."""
from __future__ import annotations

import pandas as pd
import pytest

from fitting import field_plot


def frame(with_fields=True):
    rows = []
    for g in ("foveated", "baseline"):
        for steps, C in ((100, 1e11), (200, 2e11)):
            for seed in (0, 1):
                r = {"group": g, "config": "T1-T1", "N": 1e5, "steps": steps, "C": C + seed, "run_id": f"{g}{seed}"}
                if with_fields:
                    r.update(field_colour=1.0 / steps + seed * 0.01, field_tag=1.386)
                rows.append(r)
    return pd.DataFrame(rows)


def test_means_over_seeds_per_field_and_a_png_with_its_csv(tmp_path):
    data = field_plot.field_means(frame())
    colour = data[(data["group"] == "foveated") & (data["field"] == "colour")]
    assert colour["loss"].tolist() == pytest.approx([0.015, 0.01])  # (1/100 + 1/100 + 0.01) / 2, ...
    assert colour["runs"].tolist() == [2, 2] and colour["C"].tolist() == pytest.approx([1e11 + 0.5, 2e11 + 0.5])
    entry = field_plot.draw(frame(), tmp_path)
    assert entry["status"] == "ok" and (tmp_path / "field_losses.png").stat().st_size > 0
    assert len(pd.read_csv(tmp_path / "field_losses.csv")) == 2 * 2 * 2  # arms x steps x fields


def test_no_fields_no_plot(tmp_path):
    assert field_plot.draw(frame(with_fields=False), tmp_path) is None
    assert not (tmp_path / "field_losses.png").exists()
