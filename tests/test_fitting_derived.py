"""Derived laws on synthetic two-variant data with a known answer; helpers; the CSV CLI."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import brentq

from fitting import bootstrap, derived, isoflop
from fitting.fitset import FitSet, cell_frontier, compute_frontier
from fitting.keys import CROSSOVER, MULTIPLIER, LawKey, of_pair
from fitting.laws import inverse_lc

CHINCHILLA = Path(__file__).parent / "data" / "chinchilla_svg_extracted_data.csv"
# foveated: lower loss at small compute, higher floor -> the curves cross inside the data range
TRUE = {"foveated": {"E": 2.0, "A": 150.0, "alpha": 0.15}, "baseline": {"E": 1.6, "A": 900.0, "alpha": 0.18}}
MULTIPLY = of_pair(MULTIPLIER, "foveated", "baseline", "ref_to_match_treat")


def _lc(p, C):
    return p["E"] + p["A"] * C ** -p["alpha"]


@pytest.fixture(scope="module")
def two_variants():
    rng = np.random.default_rng(2)
    C = np.geomspace(1e15, 1e21, 20)
    rows = []
    for g, p in TRUE.items():
        for i, c in enumerate(C):
            rows.append({"N": 1e8, "D": c / 6e8, "C": c, "loss": _lc(p, c) * np.exp(rng.normal(0, 0.002)),
                         "loss_se": np.nan, "group": g, "config": "S-S", "run_id": f"{g}{i}",
                         "n_llm": 8e7, "n_vision": 2e7})
    fs = FitSet(pd.DataFrame(rows))
    ctx = derived.context(fs.frame)
    return fs, ctx, bootstrap.bootstrap(fs, ctx, n=150, seed=0)


def test_crossover_recovered(two_variants):
    fs, ctx, boot = two_variants
    diff = lambda lc: _lc(TRUE["foveated"], np.exp(lc)) - _lc(TRUE["baseline"], np.exp(lc))  # noqa: E731
    true_c = np.exp(brentq(diff, np.log(1e15), np.log(1e21)))
    got = derived.summarize(fs.current(), ctx)[of_pair(CROSSOVER, "foveated", "baseline", "C")]
    assert got == pytest.approx(true_c, rel=0.5)
    lo, hi = boot.ci95(of_pair(CROSSOVER, "foveated", "baseline", "C"))
    assert lo <= true_c <= hi
    rep = derived.crossover_report(fs.ok("L(C)", "foveated").params("foveated"),
                                   fs.ok("L(C)", "baseline").params("baseline"), ctx, "foveated", "baseline")
    assert rep["lower_loss_at_low_compute"] == "foveated" and rep["lower_loss_at_data_max"] == "baseline"


def test_efficiency_multiplier_recovered(two_variants):
    fs, ctx, boot = two_variants
    grid = ctx.C_grid
    true_m = inverse_lc(TRUE["baseline"], _lc(TRUE["foveated"], grid)) / grid
    got = derived.summarize(fs.current(), ctx)[MULTIPLY]
    i = 1  # well below the crossover: the baseline needs several times the compute
    assert true_m[i] > 2
    assert got[i] == pytest.approx(true_m[i], rel=0.25)
    lo, hi = (np.asarray(v)[i] for v in boot.ci95(MULTIPLY))
    assert lo <= true_m[i] <= hi
    # past the crossover the baseline needs less than C to match the foveated loss
    assert got[-1] < 1


def test_efficiency_is_inverse_consistent():
    p_t, p_r = TRUE["foveated"], TRUE["baseline"]
    C = np.geomspace(1e15, 1e17, 5)
    m_t, m_r = derived.efficiency(p_t, p_r, C)
    # the baseline at m_t * C reaches exactly the foveated loss at C
    assert np.allclose(_lc(p_r, m_t * C), _lc(p_t, C), rtol=1e-10)
    assert np.all(np.isfinite(m_r))


def test_no_crossover_reports_range():
    p_t = {"E": 1.0, "A": 100.0, "alpha": 0.2}
    p_r = {"E": 1.2, "A": 200.0, "alpha": 0.2}
    assert derived.crossovers(p_t, p_r, 1e10, 1e20) == []


def test_frontier_and_buckets():
    C = np.array([1.0, 2.0, 2.0, 3.0, 4.0])
    loss = np.array([5.0, 4.0, 3.0, 3.5, 2.0])
    assert compute_frontier(C, loss).tolist() == [True, False, True, False, True]
    b = isoflop.buckets(np.array([1e18, 1.1e18, 1e19, 1.2e19, 5e19]))
    assert b.tolist() == [0, 0, 1, 1, 2]


def test_lc_takes_the_frontier_of_cells_so_a_lucky_seed_does_not_choose_it():
    # two sizes, three seeds per (N, D) cell; the large size's first budget has one lucky seed
    # (0.60) below every small-size point at that compute, but its cell's mean (0.733) is beaten
    cells = [(1.0, 1.0, [1.00, 1.02, 0.98]), (1.0, 2.0, [0.80, 0.82, 0.78]), (1.0, 4.0, [0.70, 0.71, 0.69]),
             (4.0, 1.0, [0.75, 0.60, 0.85]), (4.0, 2.0, [0.50, 0.52, 0.48])]
    rows = [(n, d, 6 * n * d, loss, f"s{k}") for n, d, losses in cells for k, loss in enumerate(losses)]
    f = pd.DataFrame(rows, columns=["N", "D", "C", "loss", "run_id"])
    f["group"], f["config"], f["loss_se"] = "a", [f"N={n:g}" for n in f["N"]], 0.01
    lucky = (f["N"] == 4.0) & (f["D"] == 1.0)
    assert compute_frontier(f["C"].to_numpy(), f["loss"].to_numpy())[lucky.to_numpy()].any()  # a point frontier keeps it
    keep = cell_frontier(f)
    assert not keep[lucky.to_numpy()].any()  # the cell frontier drops the whole cell
    assert keep.sum() == 12  # and keeps every seed of the four cells on it
    fs = FitSet(f)  # the default: L(C) on the frontier of cells, every other law on every point
    assert sorted(fs.entries[LawKey("L(C)", "a")].rows.tolist()) == np.flatnonzero(keep).tolist()
    assert "frontier of cells" in fs.lc_selection
    assert len(FitSet(f, lc_points="all").entries[LawKey("L(C)", "a")].rows) == len(f)


def test_isoflop_recovers_optimum():
    rows = []
    for c in (1e18, 1e19, 1e20):
        for n in np.geomspace(1e7, 1e10, 9):
            d = c / (6 * n)
            rows.append((n, c, 1.7 + 400 / n**0.34 + 400 / d**0.28))
    N, C, L = map(np.array, zip(*rows))
    res = isoflop.fit_isoflop(N, C, L)
    assert res.a == pytest.approx(0.28 / (0.34 + 0.28), abs=0.05)
    with pytest.raises(Exception, match="3 model sizes"):
        isoflop.fit_isoflop(N[:2], C[:2], L[:2])


def test_an_isoflop_exponent_through_two_budgets_is_flagged_and_the_report_lists_its_budgets():
    """Two budgets' minima fix a line exactly (no residual tests the power law): the exponent is
    fitted but flagged, which blocks a verdict; three budgets carry no such flag."""
    from fitting import honest
    from fitting.report import _isoflop_budgets

    def record(budgets):
        rows = [(n, c, 1.7 + 400 / n**0.34 + 400 / (c / (6 * n))**0.28)
                for c in budgets for n in np.geomspace(1e7, 1e10, 9)]
        fit = isoflop.fit_isoflop(*map(np.array, zip(*rows)))
        return {"status": "ok", **fit.record("a", bootstrap.Resamples(), isoflop.NAME)}

    two, three = record((1e18, 1e19)), record((1e18, 1e19, 1e20))
    assert len(two["budgets"]) == 2 and two["flags"]["a"] == [honest.TWO_BUDGETS]
    assert honest.TWO_BUDGETS in honest.BLOCKS_VERDICT
    assert len(three["budgets"]) == 3 and three["flags"]["a"] == []
    lines = _isoflop_budgets({"foveated": two, "baseline": {"status": "skipped"}})
    assert [ln for ln in lines if ln.startswith("- ")] == [
        "- foveated: C 1e+18: N_opt " + f"{two['budgets'][0]['N_opt']:.3g} (9 sizes); C 1e+19: N_opt "
        + f"{two['budgets'][1]['N_opt']:.3g} (9 sizes)"]


def test_a_grid_whose_smallest_size_wins_every_shared_budget_does_not_bracket_its_frontier():
    """isoflop.unbracketed_side, the rule fit_isoflop brackets a budget's minimum by: a grid whose
    sizes all sit above (below) the compute-optimal size is "smallest" ("largest"); one budget
    with its minimum between sizes, or too few sizes per budget to tell, is None."""
    def profile(budgets, sizes):
        rows = [(n, c, 1.7 + 400 / n**0.34 + 400 / (c / (6 * n))**0.28) for c in budgets for n in sizes]
        return map(np.array, zip(*rows))

    big, small, spread = np.geomspace(3e9, 3e10, 3), np.geomspace(1e5, 1e6, 3), np.geomspace(1e7, 1e10, 9)
    assert isoflop.unbracketed_side(*profile((1e18, 1e19), big)) == "smallest"
    assert isoflop.unbracketed_side(*profile((1e18, 1e19), small)) == "largest"
    assert isoflop.unbracketed_side(*profile((1e18, 1e19), spread)) is None
    assert isoflop.unbracketed_side(*profile((1e18, 1e19), big[:2])) is None  # 2 sizes: nothing to tell


def test_iso_loss_interpolates_on_ascending_x():
    f = pd.DataFrame({"group": "g", "config": "a", "N": 1e6, "C": [1e10, 1e11, 1e12], "loss": [4.0, 3.0, 2.0]})
    f = pd.concat([f, f.assign(config="b", N=2e6, C=f["C"] * 2)])
    iso = derived.iso_loss(f, n_levels=1)
    row = iso[iso["config"] == "a"].iloc[0]
    # loss level sqrt(2*4)=2.83 lies between 3 (1e11) and 2 (1e12): log-linear interpolation
    want = np.exp(np.interp(row["loss_level"], [2.0, 3.0], np.log([1e12, 1e11])))
    assert row["C"] == pytest.approx(want) and 1e11 < row["C"] < 1e12


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "fitting", "csv", *map(str, args)], capture_output=True, text=True)


def test_csv_cli_chinchilla(tmp_path):
    r = _cli(CHINCHILLA, "--n", "Model Size", "--c", "Training FLOP", "--loss", "loss",
             "--drop-top-loss", "5", "--bootstrap", "20", "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    fits = json.loads((tmp_path / "fits.json").read_text())
    p = fits["laws"]["L(N,D)"]["all"]["params"]
    assert p["alpha"] == pytest.approx(0.3473, abs=0.002) and fits["laws"]["L(N,D)"]["all"]["n_points"] == 240
    assert len(fits["dropped"]) == 5
    assert (tmp_path / "report.md").read_text().count("--drop-top-loss") == 5


def _one_line_error(r, *needles):
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for n in needles:
        assert n in lines[0]


def test_csv_cli_missing_column(tmp_path):
    r = _cli(CHINCHILLA, "--n", "params", "--c", "Training FLOP", "--loss", "loss", "--out", tmp_path)
    _one_line_error(r, "'params'")


def test_csv_cli_bad_rows_dropped_and_listed(tmp_path):
    rng = np.random.default_rng(0)
    N, D = (a.ravel() for a in np.meshgrid([1e7, 3e7, 1e8, 3e8], [1e8, 1e9, 1e10]))
    loss = 1.7 + 400 / N**0.34 + 600 / D**0.3 + rng.normal(0, 0.005, N.size)
    loss[[0, 1, 2]] = [np.nan, np.inf, -1.0]
    pd.DataFrame({"N": N, "D": D, "loss": loss}).to_csv(tmp_path / "p.csv", index=False)
    r = _cli(tmp_path / "p.csv", "--n", "N", "--d", "D", "--loss", "loss", "--bootstrap", "0", "--out", tmp_path / "o")
    assert r.returncode == 0, r.stderr
    fits = json.loads((tmp_path / "o" / "fits.json").read_text())
    assert sorted(d["run_id"] for d in fits["dropped"]) == ["row0", "row1", "row2"]
    assert fits["laws"]["L(N,D)"]["all"]["n_points"] == N.size - 3


def test_csv_cli_all_bad_and_impossible_fit(tmp_path):
    pd.DataFrame({"N": [1e7, 1e8], "D": [1e9, 1e9], "loss": [np.nan, 0.0]}).to_csv(tmp_path / "bad.csv", index=False)
    _one_line_error(_cli(tmp_path / "bad.csv", "--n", "N", "--d", "D", "--loss", "loss"), "no rows")
    D = np.geomspace(1e8, 1e10, 3)  # one size and 3 data sizes: L(D) has no free residual
    pd.DataFrame({"N": 1e8, "D": D, "loss": 2 + 600 / D**0.3}).to_csv(tmp_path / "one.csv", index=False)
    _one_line_error(_cli(tmp_path / "one.csv", "--n", "N", "--d", "D", "--loss", "loss", "--out", tmp_path / "o"),
                    "3 points for 3 parameters")
    _one_line_error(_cli(tmp_path / "one.csv", "--n", "N", "--loss", "loss"), "--d", "--c")


def test_flat_laws_give_infinite_compute_not_a_crash():
    """A bootstrap refit can land on alpha = 0 (a flat L(C)); derived quantities must survive it."""
    import numpy as np

    from fitting.laws import inverse_lc, optimal_allocation

    flat = {"E": 1.0, "A": 0.5, "alpha": 0.0}
    assert inverse_lc(flat, [1.2, 1.5, 2.0]).tolist() == [np.inf, 0.0, 0.0]
    n, d = optimal_allocation({"A": 1.0, "B": 1.0, "alpha": 0.0, "beta": 0.3}, [1e20, 1e21])
    assert np.isnan(n).all() and np.isnan(d).all()


def test_allocation_constant_is_nan_without_a_trade_off():
    """A bootstrap refit can land on B = 0 (or A = 0, or an exponent 0): no trade-off, no G
    (the real smoke run divided by zero here before)."""
    import math

    from fitting.laws import allocation_constant

    good = {"alpha": 0.34, "beta": 0.28, "A": 406.4, "B": 410.7}
    assert math.isfinite(allocation_constant(good)) and allocation_constant(good) > 0
    for key in ("A", "B", "alpha", "beta"):
        assert math.isnan(allocation_constant({**good, key: 0.0})), key


def _isoflop_frame() -> pd.DataFrame:
    """Two groups, 5 model sizes at each of 4 shared budgets (IsoFLOP identifiable)."""
    rng = np.random.default_rng(0)
    rows = []
    for g, shift in (("a", 0.0), ("b", 0.1)):
        for C in (1e15, 3e15, 1e16, 3e16):
            for N in (1e6, 2e6, 4e6, 8e6, 1.6e7):
                D = C / (6 * N)
                L = 1.7 + 400 / N ** 0.34 + 2000 / D ** 0.37 + shift
                rows.append({"N": N, "D": D, "C": C, "loss": L * np.exp(rng.normal(0, 0.005)), "group": g})
    return pd.DataFrame(rows)


def test_every_fitted_law_answers_one_interface():
    """FitSet, the bootstrap and fits.json use only FittedLaw (params / resample / record /
    refit_cost): unit weights give the full fit back, and a resample that loses a model size
    raises FitError for the laws that need it, IsoFLOP included."""
    from fitting.errors import FitError

    fs = FitSet(_isoflop_frame())
    assert {law for (law, _), e in fs.entries.items() if e.status == "ok"} >= {"L(N,D)", "L(C)", "power", isoflop.NAME}
    for (law, group), e in fs.entries.items():
        names = e.fit.groups if group == "joint" else [group]
        again = e.fit.resample(np.ones(len(e.rows)))
        for name in names:
            assert again.params(name) == pytest.approx(e.fit.params(name), rel=1e-4), (law, name)
            rec = e.fit.record(name, bootstrap.Resamples(), law)
            assert rec["params"] == e.fit.params(name) and rec["n_points"] == len(e.rows)
            assert set(rec["ci95"]) == set(rec["params"]) and all(v is None for v in rec["ci95"].values())
        assert e.fit.refit_cost > 0
    iso = fs.entries[(isoflop.NAME, "a")]
    keep = (fs.frame.iloc[iso.rows]["N"] < 4e6).to_numpy(float)  # 2 sizes left: no parabola
    with pytest.raises(FitError, match="IsoFLOP needs >= 3 model sizes"):
        iso.fit.resample(keep)
    assert fs.refit(np.r_[keep, np.ones(len(fs.frame) - len(keep))])[(isoflop.NAME, "a")] is None


def test_no_law_is_special_cased_by_name_outside_its_module():
    import ast

    root = Path(__file__).resolve().parent.parent / "fitting"
    for path in root.glob("*.py"):
        if path.name == "isoflop.py":
            continue
        strings = [n.value for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Constant)]
        assert "isoflop" not in strings, path.name
