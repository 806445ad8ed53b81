"""Chinchilla Approach 2: IsoFLOP profiles.

Points are bucketed by compute (a budget = runs whose C agree within a factor BUCKET_FACTOR),
each bucket with at least 3 model sizes gets a parabola of loss in log N whose vertex is that
budget's optimal size, and log N_opt = log G + a log C is fitted across budgets.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fitting import honest
from fitting.errors import FitError
from fitting.keys import StatKey

NAME = "isoflop"
FORM = "IsoFLOP minima: N_opt = G C^a"

BUCKET_FACTOR = 1.25  # runs within 25% of a budget's smallest C share that budget
MIN_SIZES = 3  # a parabola through fewer sizes has no free residual and no honest minimum
MIN_BUDGETS = 3  # N_opt(C) through fewer budgets' minima is a line through two points: fitted, but flagged


def buckets(C: np.ndarray, factor: float = BUCKET_FACTOR) -> np.ndarray:
    """Bucket index per point: greedy clusters in sorted log C, each spanning <= `factor`."""
    order = np.argsort(C)
    out = np.empty(len(C), int)
    idx, start = -1, -np.inf
    for i in order:
        if np.log(C[i]) - start > np.log(factor):
            idx, start = idx + 1, np.log(C[i])
        out[i] = idx
    return out


def _vertex(x: np.ndarray, loss: np.ndarray, w: np.ndarray) -> tuple[str, float, np.ndarray]:
    """One budget's profile: a parabola of loss in x = log N. Returns (side, x_opt, coefficients):
    side "between" when its minimum lies within the sizes tried, else "smallest" / "largest" (a
    concave or flat profile: the end with the lower fitted loss)."""
    c = np.polyfit(x, loss, 2, w=np.sqrt(w))
    if c[0] > 0:
        x_opt = -c[1] / (2 * c[0])
        side = "smallest" if x_opt < x.min() else "largest" if x_opt > x.max() else "between"
        return side, x_opt, c
    ends = np.polyval(c, [x.min(), x.max()])
    return ("smallest" if ends[0] <= ends[1] else "largest"), np.nan, c


def _profiles(N, C, loss, w, bucket):
    """Per budget: (its points, its number of sizes, and with >= MIN_SIZES sizes its _vertex, else
    None). The one walk over budgets both fit_isoflop and unbracketed_side read."""
    for b in np.unique(bucket):
        sel = (bucket == b) & (w > 0)
        n_sizes = len(np.unique(N[sel]))
        yield sel, n_sizes, (_vertex(np.log(N[sel]), loss[sel], w[sel]) if n_sizes >= MIN_SIZES else None)


def unbracketed_side(N, C, loss) -> str | None:
    """"smallest" ("largest") when no budget holding >= MIN_SIZES sizes has its profile's minimum
    between them and every one has it at or beyond its smallest (largest) size (fit_isoflop's
    rule); None when some budget brackets it, the sides differ, or no budget holds enough sizes."""
    N, C, loss = (np.asarray(v, float) for v in (N, C, loss))
    sides = {v[0] for _, _, v in _profiles(N, C, loss, np.ones(len(N)), buckets(C)) if v is not None}
    return sides.pop() if len(sides) == 1 and "between" not in sides else None


@dataclass
class IsoFlopFit:
    """N_opt = G C^a through each budget's optimal size (the FittedLaw interface of laws.py)."""

    a: float
    G: float
    budgets: list[dict]  # per budget: C, N_opt, loss_opt, n_sizes
    N: np.ndarray = field(repr=False)  # the points it was fitted to (for a bootstrap refit)
    C: np.ndarray = field(repr=False)
    loss: np.ndarray = field(repr=False)
    groups: list[str] = field(default_factory=lambda: [""])
    refit_cost: float = 8.0  # a handful of polynomial fits per budget
    converged: bool = True  # closed-form fits: nothing to stop early

    def params(self, group: str | None = None) -> dict[str, float]:
        return {"a": self.a, "G": self.G}

    def resample(self, weights: np.ndarray) -> "IsoFlopFit":
        return fit_isoflop(self.N, self.C, self.loss, weights)

    def record(self, group: str, boot, law: str) -> dict:
        rec = dict(params=self.params(), n_points=int(len(self.N)), budgets=self.budgets, objective=None)
        rec["ci95"] = ci = {k: boot.ci95(StatKey(law, group, k)) for k in ("a", "G")}
        rec["flags"] = {k: [honest.ZERO_WIDTH] if honest.zero_width(rec["params"][k], ci[k]) else [] for k in ci}
        rec["ci95"] = {k: (None if rec["flags"][k] else v) for k, v in ci.items()}
        if len(self.budgets) < MIN_BUDGETS:  # the interval stays: it says how far the two minima move
            rec["flags"]["a"].append(honest.TWO_BUDGETS)
        return rec


def fit_isoflop(N, C, loss, weights=None, bucket=None) -> IsoFlopFit:
    """Optimal N per budget and the exponent a of N_opt ~ C^a; FitError when impossible."""
    N, C, loss = (np.asarray(v, float) for v in (N, C, loss))
    w = np.ones(len(N)) if weights is None else np.asarray(weights, float)
    bucket = buckets(C) if bucket is None else bucket
    rows, most = [], 0
    for sel, n_sizes, vertex in _profiles(N, C, loss, w, bucket):
        most = max(most, n_sizes)
        if vertex is None or vertex[0] != "between":
            continue  # too few sizes, or no minimum between them (beyond them, or a concave or flat profile)
        _, x_opt, (c2, c1, c0) = vertex
        c_budget = float(np.exp(np.average(np.log(C[sel]), weights=w[sel])))
        rows.append({"C": c_budget, "N_opt": float(np.exp(x_opt)), "loss_opt": float(c0 - c1 * c1 / (4 * c2)),
                     "n_sizes": int(n_sizes)})
    if most < MIN_SIZES:
        raise FitError(f"IsoFLOP needs >= {MIN_SIZES} model sizes sharing a compute budget; "
                       f"the best budget has {most} (runs within {BUCKET_FACTOR - 1:.0%} in compute share a budget: "
                       "choose each size's step counts so that sizes meet on common budgets)")
    if len(rows) < 2:
        raise FitError(f"IsoFLOP: {len(rows)} budget(s) with a bracketed minimum; need >= 2 to fit N_opt(C)")
    lc = np.log([r["C"] for r in rows])
    ln = np.log([r["N_opt"] for r in rows])
    a, logG = np.polyfit(lc, ln, 1)
    return IsoFlopFit(float(a), float(np.exp(logG)), rows, N, C, loss)
