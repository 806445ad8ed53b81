"""Plots a reader can trust: seed means with the seeds' range (no zigzag between seeds), fits
solid with a band over their arm's data and dashed beyond it, no multiplier the report would not
state, decimal loss ticks; each checked on the CSV of what was drawn or on the axes."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from fitting import bootstrap, derived, plots  # noqa: E402
from fitting.fitset import FitSet  # noqa: E402
from fitting.keys import LawKey, pair_key  # noqa: E402
from fitting.plot_style import fitted_curve, plain_ticks  # noqa: E402


@pytest.fixture(scope="module")
def fitted():
    """Two arms, 3 sizes x 3 lengths x 2 seeds; the baseline measured a narrower compute range."""
    rng = np.random.default_rng(1)
    rows = []
    for g, e, steps in (("foveated", 1.0, (1, 2, 4)), ("baseline", 1.1, (2, 4))):
        for n in (1e6, 2e6, 4e6):
            for k in steps:
                for seed in (0, 1):
                    d = 1e9 * k
                    rows.append({"N": n, "D": d, "C": 6 * n * d, "loss": (e + 40 * (6 * n * d) ** -0.1)
                                 * np.exp(rng.normal(0, 0.02)), "loss_se": np.nan, "group": g, "config": f"S{n:.0e}",
                                 "run_id": f"{g}{n}{k}s{seed}", "n_llm": np.nan, "n_vision": np.nan})
    fs = FitSet(pd.DataFrame(rows))
    ctx = derived.context(fs.frame, fs.current())
    return fs, ctx, bootstrap.bootstrap(fs, ctx, n=40, seed=0, workers=1)


def _fits(status):
    return {"vision_runs": [], "derived": {"optimal_allocation": {},
                                           "comparisons": {pair_key("foveated", "baseline"): {"status": status,
                                                                                              "reason": "why"}}}}


def test_one_line_per_config_through_seed_means_and_fits_dashed_beyond_their_data(fitted, tmp_path):
    fs, ctx, boot = fitted
    made = {p["name"]: p for p in plots.make_all(fs, ctx, _fits("ok"), boot, tmp_path)}
    assert made["loss_vs_flops"]["status"] == "ok"
    drawn = pd.read_csv(tmp_path / "loss_vs_flops.csv")
    means = drawn[drawn["kind"] == "seed mean"]
    assert len(means) == 3 * 3 + 3 * 2 and (means["runs"] == 2).all()  # one point per cell, not per seed
    assert ((means["lo"] <= means["loss"]) & (means["loss"] <= means["hi"]) & (means["lo"] < means["hi"])).all()
    assert len(drawn[drawn["kind"] == "run"]) == 30
    fit = drawn[(drawn["kind"] == "fit L(C)") & (drawn["group"] == "baseline")]
    lo_c, hi_c = ctx.measured_C["baseline"]
    beyond = fit["extrapolated"].astype(str) == "True"  # a column of the CSV, so read as text
    assert beyond.any() and (beyond == ~fit["C"].between(lo_c, hi_c)).all()
    assert fit.loc[~beyond, "lo"].notna().all()  # a band where the arm measured
    # the cells each L(C) was fitted to (its arm's frontier of cells) are ringed, one ring per cell;
    # cells of equal compute and noise put some of them off the frontier
    ringed = drawn[drawn["kind"] == "L(C) cell"]
    for g in fs.groups:
        used = fs.frame.iloc[fs.entries[LawKey("L(C)", g)].rows]
        assert len(ringed[ringed["group"] == g]) == used.groupby(["config", "D"]).ngroups
    assert 0 < len(ringed) < len(means)


def test_a_flagged_fit_says_so_in_its_legend(fitted):
    fs, ctx, boot = fitted
    fits = {**_fits("not identified"), "laws": {"L(C)": {"baseline": {"flags": {"E": ["E at lower bound (0)"]}},
                                                          "foveated": {"flags": {"E": [], "alpha": []}}}}}
    fits["laws"]["L(C)"]["baseline"]["flags"]["alpha"] = ["at bound"]
    fig, ax = plt.subplots()
    plots._loss_vs_flops(fig, ax, fs, ctx, fits, boot)
    labels = ax.get_legend_handles_labels()[1]
    plt.close(fig)
    assert [x for x in labels if x.startswith("baseline fit:")][0].endswith("(flagged: E at lower bound (0); alpha at bound)")
    assert "flagged" not in [x for x in labels if x.startswith("foveated fit:")][0]


def test_the_multiplier_is_drawn_only_for_a_stated_comparison(fitted, tmp_path):
    fs, ctx, boot = fitted
    for status, expect in (("not identified", False), ("ok", True)):
        out = tmp_path / status.replace(" ", "_")
        out.mkdir()
        plots.make_all(fs, ctx, _fits(status), boot, out)
        drawn = pd.read_csv(out / "efficiency_ratio.csv")
        assert (drawn["kind"] == "multiplier").any() == expect
        assert drawn.loc[drawn["kind"] == "fit", "ci_lo"].notna().any() == expect  # no interval on an estimate
    m = drawn[drawn["kind"] == "multiplier"]
    # at every C either the fitted multiplier (its match inside the baseline's data) or the data's bound
    assert (m["multiplier"].notna() ^ m["bound"].notna()).all()


def test_a_fitted_curve_is_solid_inside_and_dashed_outside_its_arms_range():
    fig, ax = plt.subplots()
    x = np.geomspace(1, 100, 9)
    fitted_curve(ax, x, x ** -0.5, (3.0, 30.0), "k", "fit", band=(x ** -0.5 * 0.9, x ** -0.5 * 1.1))
    solid, dashed = ax.lines
    inside = (x >= 3) & (x <= 30)
    assert np.array_equal(np.isfinite(solid.get_xdata()), inside)
    assert np.isfinite(dashed.get_xdata()).sum() == (~inside).sum() + 2  # joined at both ends
    assert len(ax.collections) == 1  # the band
    plt.close(fig)


def test_loss_ticks_are_plain_decimals():
    fig, ax = plt.subplots()
    ax.plot([1, 10], [2.4, 4.1])
    ax.set_yscale("log")
    plain_ticks(ax.yaxis)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels(minor=True) + ax.get_yticklabels() if t.get_text()]
    assert "3" in labels and "4" in labels and not any("times" in s or "^" in s for s in labels)
    plt.close(fig)
