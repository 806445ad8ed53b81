"""Time the Chinchilla reference fit and its bootstrap (prints numbers; asserts nothing).

    python benchmarks/fit_speed.py [--bootstrap 1000] [--repeat 3]
    python benchmarks/fit_speed.py --experiment [DIR] [--bootstrap 1000]

--experiment times `python -m fitting DIR` end to end (wall and CPU seconds, load average);
without DIR it analyses a synthetic smoke-shaped experiment (benchmarks/synthetic_experiment.py:
18 trials, 54 evaluations). Target: <= 60 s on 2 cores.

Targets on 2 CPU cores: full multi-start L(N,D) fit <= 10 s, 1,000 bootstrap refits <= 120 s,
bootstrap sd(alpha) in [0.01, 0.03] (~0.015 on this data).
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fitting import fit_law  # noqa: E402
from fitting.csv_table import load_csv  # noqa: E402
from fitting.threads import single_threaded_blas  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "chinchilla_svg_extracted_data.csv"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--experiment", nargs="?", const="", default=None, metavar="DIR")
    a = ap.parse_args()
    if a.experiment is not None:
        return time_experiment(a.experiment, a.bootstrap)
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


def time_experiment(exp_dir: str, n_boot: int) -> None:
    import os
    import resource
    import subprocess
    import tempfile

    from synthetic_experiment import write_experiment

    tmp = tempfile.mkdtemp(prefix="fit_speed_")
    exp = Path(exp_dir) if exp_dir else write_experiment(Path(tmp) / "smoke")
    load0 = os.getloadavg()[0]
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "fitting", str(exp), "--out", str(Path(tmp) / "analysis"),
                        "--bootstrap", str(n_boot)], capture_output=True, text=True,
                       cwd=Path(__file__).resolve().parents[1])
    wall = time.perf_counter() - t
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(r.stdout.strip() or r.stderr.strip().splitlines()[-1])
    print(f"python -m fitting {exp} --bootstrap {n_boot}: wall {wall:.1f} s, CPU {cpu.ru_utime + cpu.ru_stime:.1f} s "
          f"(load average {load0:.2f} before, {os.getloadavg()[0]:.2f} after, {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
