"""Time the Chinchilla reference fit and its bootstrap (prints numbers; asserts nothing).

    python benchmarks/fit_speed.py [--bootstrap 1000] [--repeat 3]

Targets on 2 CPU cores: full multi-start L(N,D) fit <= 10 s, 1,000 bootstrap refits <= 120 s,
bootstrap sd(alpha) in [0.01, 0.03] (~0.015 on this data).
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fitting import fit_law  # noqa: E402
from fitting.table import load_csv  # noqa: E402
from fitting.threads import single_threaded_blas  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "chinchilla_svg_extracted_data.csv"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    frame, _ = load_csv(DATA, "Model Size", "loss", c_col="Training FLOP", drop_top_loss=5)
    X, L = frame[["N", "D"]].to_numpy(), frame["loss"].to_numpy()
    times = []
    for _ in range(a.repeat):
        t = time.perf_counter()
        fit = fit_law("L(N,D)", X, L)
        times.append(time.perf_counter() - t)
    p = fit.params()
    print(f"points: {len(L)}")
    print("fit: " + ", ".join(f"{k}={v:.6g}" for k, v in p.items()) + f", objective={fit.objective:.6g}")
    print(f"full multi-start fit: best {min(times):.2f} s, median {np.median(times):.2f} s over {a.repeat}")
    rng = np.random.default_rng(a.seed)
    draws = []
    with single_threaded_blas():
        t = time.perf_counter()
        for _ in range(a.bootstrap):
            w = np.bincount(rng.integers(0, len(L), len(L)), minlength=len(L)).astype(float)
            draws.append(list(fit.refit(w).params().values()))
        dt = time.perf_counter() - t
    draws = np.array(draws)
    sd = dict(zip(p, draws.std(axis=0, ddof=1)))
    lo, hi = np.percentile(draws, [2.5, 97.5], axis=0)
    print(f"bootstrap: {a.bootstrap} refits in {dt:.1f} s ({1000 * dt / max(1, a.bootstrap):.1f} ms each)")
    print("bootstrap sd: " + ", ".join(f"{k}={v:.4g}" for k, v in sd.items()))
    print("bootstrap 95% CI: " + ", ".join(f"{k}=[{x:.4g}, {y:.4g}]" for k, x, y in zip(p, lo, hi)))


if __name__ == "__main__":
    main()
