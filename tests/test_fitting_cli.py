"""fitting/__main__.py: the fitting's command line runs from any directory, not only the
repository root: `python PATH/TO/REPO/fitting ...` (`python -m fitting` needs the repository
on the path: its root as the working directory, or PYTHONPATH)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def write_points(path: Path) -> None:
    """12 points of a known L(N, D) = 1.8 + 400 / N^0.34 + 2000 / D^0.37, C = 6 N D."""
    rows = ["N,C,L"]
    for n in (1e7, 3e7, 1e8):
        for d in (1e9, 3e9, 1e10, 3e10):
            rows.append(f"{n:g},{6 * n * d:g},{1.8 + 400 / n ** 0.34 + 2000 / d ** 0.37:.6f}")
    path.write_text("\n".join(rows) + "\n")


def run(argv: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def test_the_fitting_cli_runs_from_another_directory(tmp_path):
    write_points(tmp_path / "points.csv")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    args = ["csv", "points.csv", "--n", "N", "--c", "C", "--loss", "L", "--bootstrap", "0"]
    # `python -m fitting` needs the package on the path: from elsewhere it is not found ...
    assert "No module named fitting" in run(["-m", "fitting", *args], tmp_path, env).stderr
    # ... the package directory itself runs from anywhere
    proc = run([str(ROOT / "fitting"), *args, "--out", "out"], tmp_path, env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "out" / "report.md").exists()
    fits = json.loads((tmp_path / "out" / "fits.json").read_text())
    assert fits["laws"]["L(N,D)"]["all"]["params"]["alpha"] == pytest.approx(0.34, rel=0.05)
