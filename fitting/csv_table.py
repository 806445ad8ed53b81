"""A CSV of (N, D|C, loss) points -> the fit frame, with every row left out and why.

Each row is a point; a column may name its group (arm) and its run (the bootstrap's unit).
D = C/(6N) without a data column, C = 6ND without a compute column.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fitting import columns
from fitting.errors import FitError


def load_csv(path, n_col: str, loss_col: str, d_col: str | None = None, c_col: str | None = None,
             group_col: str | None = None, drop_top_loss: int = 0,
             run_col: str | None = None) -> tuple[pd.DataFrame, list[dict]]:
    """CSV of points -> (fit frame, dropped rows). D = C/(6N) without --d; C = 6ND without --c.
    run_col names the run each row belongs to (the bootstrap's unit); without it each row is a run."""
    path = Path(path)
    if not path.is_file():
        raise FitError(f"CSV file not found: {path}")
    if d_col is None and c_col is None:
        raise FitError("need a data column (--d) or a compute column (--c) to know D")
    try:
        raw = pd.read_csv(path)
    except (ValueError, OSError) as e:
        raise FitError(f"cannot read {path}: {str(e).splitlines()[0]}") from None
    wanted = [c for c in (n_col, loss_col, d_col, c_col, group_col, run_col) if c is not None]
    missing = [c for c in wanted if c not in raw.columns]
    if missing:
        have = ", ".join(repr(c) for c in raw.columns[:12])
        raise FitError(f"{path.name} lacks column(s) {', '.join(map(repr, missing))} (has {have})")
    for flag, col in (("--group", group_col), ("--run", run_col)):
        empty = int((raw[col].isna() | (raw[col].astype(str).str.strip() == "")).sum()) if col else 0
        if empty:  # an empty label would become an arm (or a run) of its own, named "nan"
            raise FitError(f"{path.name}: column {col!r} ({flag}) is empty in {empty} of {len(raw)} rows")
    num = {c: pd.to_numeric(raw[c], errors="coerce").to_numpy(float) for c in wanted if c not in (group_col, run_col)}
    if n_col is None:  # one model size, unknown: L(D) and L(C) only
        num[None] = np.ones(len(raw))
        if d_col is None:
            raise FitError("without --n, give the data column (--d): D = C/(6N) needs N")
    N, loss = num[n_col], num[loss_col]
    D = num[d_col] if d_col else num[c_col] / (6.0 * N)
    C = num[c_col] if c_col else 6.0 * N * D
    frame = columns.build(
        N=N, D=D, C=C, loss=loss, group=raw[group_col].astype(str).to_numpy() if group_col else "all",
        config=[f"N={v:.3g}" for v in N],
        run_id=raw[run_col].astype(str).to_numpy() if run_col else [f"row{i}" for i in range(len(raw))])
    dropped = []
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(frame[["N", "D", "C", "loss"]].to_numpy()).all(axis=1)
        ok &= (frame[["N", "D", "C", "loss"]].to_numpy() > 0).all(axis=1)
    for i in np.flatnonzero(~ok):
        dropped.append({"run_id": f"row{i}", "reason": f"non-finite or non-positive value (loss={loss[i]})"})
    frame = frame[ok]
    if frame.empty:
        raise FitError(f"{path.name}: no rows with finite, positive N, D, C and loss")
    if drop_top_loss:
        if drop_top_loss >= len(frame):
            raise FitError(f"--drop-top-loss {drop_top_loss} would drop all {len(frame)} usable rows")
        top = frame.sort_values("loss", ascending=False, kind="stable").index[:drop_top_loss]
        for i in top:
            dropped.append({"run_id": f"row{i}", "reason": f"among the {drop_top_loss} highest losses (--drop-top-loss)"})
        frame = frame.drop(top)
    return frame.reset_index(drop=True), dropped
