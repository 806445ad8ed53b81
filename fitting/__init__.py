"""Scaling-law fits for the foveated-vs-baseline VLM study.

    fitting.run_analysis(experiment_dir, out_dir=None, n_bootstrap=1000, seed=0) -> dict
    fitting.run_csv(path, n_col, loss_col, d_col=None, c_col=None, group_col=None, ..., run_col=None) -> dict
    fitting.analyze_frame(fit_frame, out_dir, AnalysisOptions(n_bootstrap=1000, ...)) -> dict
    fitting.fit_law("L(N,D)" | "L(C)" | "power", features, loss, groups=None) -> LawFit
    fitting.FitError: every user-caused problem (a ValueError)

CLI: python -m fitting EXPERIMENT_DIR | python -m fitting csv FILE ... (see __main__.py).
"""
from fitting.analysis import AnalysisOptions, analyze_frame, run_analysis, run_csv
from fitting.csv_table import load_csv
from fitting.errors import FitError
from fitting.laws import LawFit, fit_law, optimal_allocation
from fitting.table import fit_frame, load_experiment

__all__ = ["AnalysisOptions", "FitError", "LawFit", "analyze_frame", "fit_frame", "fit_law", "load_csv",
           "load_experiment", "optimal_allocation", "run_analysis", "run_csv"]
