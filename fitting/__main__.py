"""Command line.

    python -m fitting EXPERIMENT_DIR [--out DIR] [--bootstrap 1000] [--seed 0] [--lc-points frontier|all]
    python -m fitting csv FILE --loss COL (--d COL | --c COL) [--n COL] [--run COL] [--group COL]
                      [--drop-top-loss K] [--out DIR] [--bootstrap 1000] [--seed 0] [--lc-points ...]

In csv mode D = C/(6N) when --d is absent and C = 6ND when --c is absent; without --n (or with
one model size) L(D) and L(C) are fitted instead of L(N,D). --run COL names each row's run: the
bootstrap resamples runs, or blocks of consecutive points within a run when a group has < 3
runs; without it every row is its own run. --drop-top-loss K drops the K highest-loss rows
first (listed in the report): Chinchilla's reference data needs K=5. L(C) takes each group's
compute-efficient frontier of cells (rows with the same N and D, averaged); --lc-points all fits
it to every point instead. User errors print `error: <message>` on stderr and exit with status 2.

From another directory: `python PATH/TO/REPO/fitting ...` (or the repository on PYTHONPATH).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

if not __package__:  # run as `python .../fitting`: import the package from the repository, not its files
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from fitting.errors import FitError  # noqa: E402 - after the path above


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=None, help="output directory (default: next to the input, analysis/)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (0: no CIs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lc-points", choices=("frontier", "all"), default="frontier",
                   help="points for L(C): each group's compute-efficient frontier of cells (default) or all fit points")


def _check(a: argparse.Namespace) -> None:
    if a.bootstrap < 0:
        raise FitError("--bootstrap must be >= 0")
    if a.seed < 0:
        raise FitError(f"--seed must be >= 0, got {a.seed}")
    if a.out is not None and not a.out.strip():
        raise FitError("--out is empty (give a directory)")
    if a.out is not None and os.path.exists(a.out) and not os.path.isdir(a.out):
        raise FitError(f"--out {a.out} is a file, not a directory")


def _check_writable(out: str) -> None:
    """FitError unless the analysis can be written to `out` (tried, then undone: nothing is left)."""
    created = _new_dirs(out)
    try:
        os.makedirs(out, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as e:
        raise FitError(f"cannot write the analysis to {out} ({e.strerror or e})") from None
    finally:
        for d in created:
            if os.path.isdir(d) and not os.listdir(d):
                os.rmdir(d)


def _new_dirs(path: str | None) -> list[str]:
    """The directories that writing to `path` would create (removed again if the fit fails)."""
    out, p = [], os.path.abspath(path) if path else None
    while p and not os.path.exists(p):
        out.append(p)
        p = os.path.dirname(p)
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    from fitting.analysis import run_analysis, run_csv

    created: list[str] = []
    try:
        if argv[:1] == ["csv"]:
            p = argparse.ArgumentParser(prog="python -m fitting csv", description="fit a CSV of points")
            p.add_argument("file")
            p.add_argument("--n", default=None, help="column: model size N (parameters); absent: one size")
            p.add_argument("--loss", required=True, help="column: loss")
            p.add_argument("--d", default=None, help="column: data D (samples or tokens)")
            p.add_argument("--c", default=None, help="column: compute C (FLOPs)")
            p.add_argument("--group", default=None, help="column: variant / group label")
            p.add_argument("--run", default=None, help="column: run id (bootstrap unit; default: each row)")
            p.add_argument("--drop-top-loss", type=int, default=0, metavar="K",
                           help="drop the K highest-loss rows before fitting (default 0)")
            _common(p)
            a = p.parse_args(argv[1:])
            _check(a)
            if a.drop_top_loss < 0:
                raise FitError("--drop-top-loss must be >= 0")
            out = a.out or str(Path(a.file).parent / f"{Path(a.file).stem}_analysis")
            _check_writable(out)
            created = _new_dirs(out)
            fits = run_csv(a.file, a.n, a.loss, a.d, a.c, a.group, a.out, a.bootstrap, a.seed, a.drop_top_loss,
                           a.run, a.lc_points)
        else:
            p = argparse.ArgumentParser(prog="python -m fitting",
                                        description="scaling-law analysis of a Ray Tune experiment dir "
                                                    "(or: python -m fitting csv FILE ...)")
            p.add_argument("experiment_dir")
            _common(p)
            a = p.parse_args(argv)
            _check(a)
            if not os.path.isdir(a.experiment_dir):
                raise FitError(f"no experiment directory {a.experiment_dir}")
            out = a.out or os.path.join(a.experiment_dir, "analysis")
            _check_writable(out)
            created = _new_dirs(out)
            fits = run_analysis(a.experiment_dir, a.out, a.bootstrap, a.seed, a.lc_points)
    except FitError as e:
        for d in created:  # a failed fit leaves no empty output directory behind
            if os.path.isdir(d) and not os.listdir(d):
                os.rmdir(d)
        print(f"error: {e}", file=sys.stderr)
        return 2
    ok = [f"{law}[{g}]" for law, per in fits["laws"].items() for g, r in per.items() if r["status"] == "ok"]
    print(f"fitted {', '.join(ok) or 'nothing'}; wrote fits.json, report.md and "
          f"{sum(p['status'] == 'ok' for p in fits['plots'])} plot(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
