"""Shared test set-up: the project root on sys.path, offline Hugging Face libraries, quiet Ray,
and the `slow` mark that `python -m pytest -m "not slow"` (the quick loop) leaves out."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_configure(config):
    # CI runs every test; `-m "not slow"` is the quick loop while changing code (a few minutes)
    config.addinivalue_line("markers", "slow: takes more than ~10 s on 2 CPU cores (left out of the quick loop)")


# Slow tests of the fitting's test files, marked here by name rather than in those files: each
# runs a bootstrap of several laws, a fitting CLI end to end, or reads a module fixture that runs
# a Ray experiment (marking only the first such test would move the fixture's cost to the next).
# Every one of those files keeps other tests in the quick loop.
SLOW_ELSEWHERE = {
    # the module's two-variant fit (a fixture) and both tests that read it
    "test_fitting_derived.py::test_crossover_recovered",
    "test_fitting_derived.py::test_efficiency_multiplier_recovered",
    "test_fitting_derived.py::test_csv_cli_chinchilla",
    "test_fitting_derived.py::test_csv_cli_all_bad_and_impossible_fit",
    # the module's analysed three-arm experiment (a fixture) and every test that reads it
    "test_fitting_honest.py::test_blind_arm_is_reported_and_its_comparisons_withheld",
    "test_fitting_honest.py::test_three_arm_report_names_what_each_comparison_answers",
    "test_fitting_honest.py::test_seed_spread_reported_next_to_eval_se",
    "test_fitting_honest.py::test_one_seed_per_cell_says_what_that_means",
    "test_fitting_honest.py::test_ar1_curve_gets_a_wider_interval_with_run",
    "test_fitting_laws.py::test_bootstrap_moves_from_warm_start",
    # the module's Ray experiment (a fixture) and every test that reads it
    "test_fitting_ray.py::test_points_table_contract",
    "test_fitting_ray.py::test_run_analysis_smoke_grid",
    "test_fitting_ray.py::test_plots_written_or_skipped_with_reason",
    "test_fitting_ray.py::test_derived_present_with_ci",
    "test_fitting_ray.py::test_cli_on_experiment_dir",
    "test_fitting_verdicts.py::test_an_extrapolated_crossover_is_not_ok_and_says_where_the_data_end",
    "test_fitting_verdicts.py::test_a_crossover_found_in_fewer_than_95_percent_of_resamples_is_not_ok",
    "test_fitting_verdicts.py::test_resamples_without_a_crossover_open_the_interval",
    # the module's analysed experiment (a fixture) and every test that reads it
    "test_fitting_vision.py::test_blind_cells_withhold_their_arms_comparisons_naming_the_cells",
    "test_fitting_vision.py::test_per_run_and_per_cell_tables_in_fits_and_report",
    "test_fitting_vision.py::test_the_seed_table_flags_a_cell_whose_seeds_disagree_on_seeing",
    "test_fitting_vision.py::test_the_points_table_carries_the_reported_gap_and_the_configs_learning_rates",
}


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by mark
def pytest_collection_modifyitems(config, items):
    for item in items:
        if f"{item.path.name}::{item.name}" in SLOW_ELSEWHERE:
            item.add_marker(pytest.mark.slow)
