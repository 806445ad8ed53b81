"""The named scaling laws, their identifiability checks, and a fitted-law object.

    "L(N,D)"  L = E + A/N^alpha + B/D^beta          (Chinchilla Approach 3)
    "L(D)"    L = E + B/D^beta                      (one model size: loss vs data)
    "L(C)"    L = E + A*C^-alpha
    "power"   L = A*C^-alpha                        (no irreducible term)

A fit over several groups (variants) shares the exponents and keeps E, A, B per group: the
"joint" fit, which asks whether one set of exponents describes both variants.

Every fitted law (LawFit here, IsoFlopFit in isoflop.py) offers the same small interface, the
`FittedLaw` protocol: FitSet, the bootstrap and fits.json use only that, so no law is
special-cased by name outside its own module.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from fitting import engine, honest
from fitting.errors import FitError
from fitting.keys import StatKey
from fitting.threads import single_threaded

# law -> (feature names, exponent names, coefficient names, has irreducible term E)
LAWS = {
    "L(N,D)": (("N", "D"), ("alpha", "beta"), ("A", "B"), True),
    "L(D)": (("D",), ("beta",), ("B",), True),
    "L(C)": (("C",), ("alpha",), ("A",), True),
    "power": (("C",), ("alpha",), ("A",), False),
}
# law name -> its form in words (report.md's "Fitted laws"); a joint fit is "<law> joint"
FORMS = {
    "L(N,D)": "L = E + A/N^alpha + B/D^beta",
    "L(N,D) joint": "L(N,D), alpha and beta shared by the variants",
    "L(D)": "L = E + B/D^beta (one model size)",
    "L(C)": "L = E + A C^-alpha",
    "L(C) joint": "L(C), alpha shared by the variants",
    "power": "L = A C^-alpha",
}
# exponent name -> what the user would call the variable it scales
_WHAT = {"N": "model sizes (N)", "D": "data sizes (D)", "C": "compute budgets (C)"}
NEGLIGIBLE = 1e-4  # a term (or E) below this fraction of the lowest loss at every point is gone:
# it moves no prediction by more than 0.01%, far below any evaluation's standard error (~1%)


def param_names(law: str) -> list[str]:
    _, exps, coefs, with_E = LAWS[law]
    return (["E"] if with_E else []) + list(coefs) + list(exps)


def check_fittable(law: str, features: np.ndarray, group_idx: np.ndarray, names: list[str]) -> None:
    """Raise FitError (one line) when the data cannot identify the law's parameters."""
    feats, exps, _, with_E = LAWS[law]
    n_params = len(exps) + len(names) * (len(exps) + int(with_E))
    n = len(group_idx)
    if n <= n_params:
        raise FitError(f"{law}: {n} points for {n_params} parameters; need at least {n_params + 1}")
    # A power term's exponent needs 3 distinct values of its variable when E is free
    # (E, A, alpha from one curve), 2 without E (a line in log-log).
    need = 3 if with_E else 2
    for gi, name in enumerate(names):
        sel = group_idx == gi
        for j, (feat, exp) in enumerate(zip(feats, exps)):
            distinct = len(np.unique(np.round(features[sel, j], 9)))
            if distinct < need:
                where = f" for {name}" if name else ""
                raise FitError(
                    f"{law}{where}: only {distinct} distinct {_WHAT[feat]}; exponent {exp} "
                    f"is not identifiable (need at least {need})"
                )


class FittedLaw(Protocol):
    """What FitSet, the bootstrap and fits.json ask of a fitted law."""

    groups: list[str]
    refit_cost: float  # relative cost of one bootstrap refit per point (balances the workers)
    converged: bool  # False: a bootstrap refit that stopped at its evaluation budget

    def params(self, group: str | None = None) -> dict[str, float]:
        """Parameter name -> value, for one group."""

    def resample(self, weights: np.ndarray) -> "FittedLaw":
        """The law refitted with per-point weights; FitError when the resample cannot identify it."""

    def record(self, group: str, boot, law: str) -> dict:
        """fits.json fields of one group: params, n_points, ci95, flags, ... (boot: the
        bootstrap's Resamples, its statistics under StatKey(law, group, parameter))."""


@dataclass
class LawFit:
    """A fitted law: parameters per group plus what is needed to refit or predict."""

    law: str
    groups: list[str]  # group names ("" for an ungrouped fit)
    theta: np.ndarray
    objective: float  # summed Huber loss on log residuals
    logx: np.ndarray = field(repr=False)  # (n, k) log features
    L: np.ndarray = field(repr=False)
    g: np.ndarray = field(repr=False)  # group index per point
    delta: float = engine.DELTA
    converged: bool = True  # False: a bootstrap refit that stopped at its evaluation budget

    @property
    def model(self) -> engine.Model:
        k = len(LAWS[self.law][0])
        return engine.Model(k, len(self.groups), LAWS[self.law][3])

    @property
    def n_points(self) -> int:
        return len(self.L)

    def params(self, group: str | None = None) -> dict[str, float]:
        """Natural-scale parameters of one group (E, A, B, alpha, beta)."""
        gi = self.groups.index(group if group is not None else self.groups[0])
        _, exps, coefs, with_E = LAWS[self.law]
        alphas, coef = self.model.unpack(self.theta)
        out = {"E": float(np.exp(coef[gi, -1]))} if with_E else {}
        out.update({c: float(np.exp(coef[gi, j])) for j, c in enumerate(coefs)})
        out.update({e: float(alphas[j]) for j, e in enumerate(exps)})
        return out

    def predict(self, *features, group: str | None = None) -> np.ndarray:
        """Loss at natural-scale features (N, D) or (C,), broadcast together."""
        arrs = np.broadcast_arrays(*[np.asarray(f, float) for f in features])
        logx = np.stack([np.log(a).ravel() for a in arrs], axis=1)
        gi = self.groups.index(group if group is not None else self.groups[0])
        y = self.model.predict_log(self.theta, logx, np.full(len(logx), gi))
        return np.exp(y).reshape(arrs[0].shape)

    def residuals(self) -> np.ndarray:
        """Log residuals log L - log L_hat of the fitted points."""
        return np.log(self.L) - self.model.predict_log(self.theta, self.logx, self.g)

    def at_bound(self) -> np.ndarray:
        """Bool per theta entry: an exponent on its box bound, or a log-coefficient whose term
        (or E) is negligible at every fitted point (its optimum lies at -inf: a bound too)."""
        m = self.model
        out = np.zeros(m.size, bool)
        alphas, coef = m.unpack(self.theta)
        for j, a in enumerate(alphas):
            out[j] = engine.at_exponent_bound(a)
        floor = NEGLIGIBLE * self.L.min()
        for gi in range(m.n_groups):
            sel = self.g == gi
            if not sel.any():
                continue
            for j in range(m.per_group):
                xs = self.logx[sel, j] if j < m.k else np.zeros(sel.sum())
                a = alphas[j] if j < m.k else 0.0
                term = np.exp(coef[gi, j] - a * xs)
                out[m.k + gi * m.per_group + j] = bool(np.all(term < floor))
        return out

    @property
    def exponent_names(self) -> tuple[str, ...]:
        return tuple(LAWS[self.law][1])

    @property
    def coefficient_exponents(self) -> dict[str, str]:
        """Coefficient -> the exponent of its term (A -> alpha, B -> beta)."""
        _, exps, coefs, _ = LAWS[self.law]
        return dict(zip(coefs, exps))

    def params_at_bound(self, group: str | None = None) -> dict[str, bool]:
        """Parameter name -> at its bound (see at_bound), for one group."""
        gi = self.groups.index(group if group is not None else self.groups[0])
        _, exps, coefs, with_E = LAWS[self.law]
        m, b = self.model, self.at_bound()
        base = m.k + gi * m.per_group
        out = {"E": bool(b[base + m.k])} if with_E else {}
        out.update({c: bool(b[base + j]) for j, c in enumerate(coefs)})
        out.update({e: bool(b[j]) for j, e in enumerate(exps)})
        return out

    @property
    def refit_cost(self) -> float:
        return float(self.model.size)

    def resample(self, weights: np.ndarray) -> "LawFit":
        """refit, after checking that the points with weight > 0 still identify the law (e.g. a
        resample that left out every run of one model size does not)."""
        pos = weights > 0
        # also refuses a resample in which a group lost every point (0 distinct sizes)
        check_fittable(self.law, np.exp(self.logx[pos]), self.g[pos], self.groups)
        return self.refit(weights)

    def record(self, group: str, boot, law: str) -> dict:
        p = self.params(group)
        rec = dict(params=p, n_points=int(self.n_points), objective=self.objective,
                   rms_log_residual=float(np.sqrt(np.mean(self.residuals() ** 2))))
        ci = {k: boot.ci95(StatKey(law, group, k)) for k in param_names(self.law)}
        lmin = float(self.L[self.g == self.groups.index(group)].min())
        rec["flags"], rec["ci95"] = honest.param_flags(self, group, p, ci, lmin)
        rec["min_loss"] = lmin
        spread = {k: boot.get(StatKey(law, group, k)) for k in p}
        rec["sd"] = {k: s.sd for k, s in spread.items() if s is not None and rec["ci95"].get(k) is not None}
        return rec

    def refit(self, weights: np.ndarray) -> "LawFit":
        """Bootstrap fast path: same points, new integer weights, warm start at this fit, the
        parameters at a bound held there (a resample cannot give them an interval anyway)."""
        theta, obj, ok = engine.refit(self.theta, self.model, self.logx, self.L, self.g, weights,
                                      self.delta, frozen=self.at_bound())
        return LawFit(self.law, self.groups, theta, obj, self.logx, self.L, self.g, self.delta, ok)


@single_threaded
def fit_law(law: str, features, loss, groups=None, delta: float = engine.DELTA, n_starts: int = 8) -> LawFit:
    """Fit `law` to natural-scale features ((n, k) or (n,)) and losses, per-group coefficients.

    groups: None for one group, else an array of labels; with several labels the exponents are
    shared (the joint fit). Raises FitError for non-positive inputs or unidentifiable laws.
    """
    L = np.asarray(loss, float)
    X = np.asarray(features, float).reshape(len(L), -1)
    if X.shape[1] != len(LAWS[law][0]):
        raise FitError(f"{law} needs {len(LAWS[law][0])} feature column(s), got {X.shape[1]}")
    bad = ~(np.isfinite(L) & (L > 0) & np.all(np.isfinite(X) & (X > 0), axis=1))
    if bad.any():
        raise FitError(f"{law}: {int(bad.sum())} point(s) with non-finite or non-positive values")
    labels = np.array([""] * len(L)) if groups is None else np.asarray(groups).astype(str)
    names = sorted(set(labels.tolist()))
    g = np.searchsorted(names, labels)
    check_fittable(law, X, g, names)
    model = engine.Model(X.shape[1], len(names), LAWS[law][3])
    theta, obj = engine.fit_multistart(model, np.log(X), L, g, delta=delta, n_starts=n_starts)
    return LawFit(law, names, theta, obj, np.log(X), L, g, delta)


# -- closed forms derived from a fitted L(N,D) -------------------------------------------------


def allocation_constant(p: dict[str, float]) -> float:
    """G = (alpha A / (beta B))^(1/(alpha+beta)); NaN when an exponent or a coefficient is 0 (a
    flat direction of the fit, which a bootstrap refit can land on: there is no trade-off to
    optimise) or G overflows a float."""
    a, b, A, B = p["alpha"], p["beta"], p["A"], p["B"]
    if not (a > 0 and b > 0 and A > 0 and B > 0):
        return float("nan")
    try:
        return (a * A / (b * B)) ** (1.0 / (a + b))
    except OverflowError:
        return float("nan")


def optimal_allocation(p: dict[str, float], C, flops_per_nd: float = 6.0):
    """Compute-optimal N and D for budgets C under C = k*N*D (k = 6 for a dense LM).

    Minimising A/N^alpha + B/D^beta subject to N*D = C/k gives
    N_opt = G (C/k)^(beta/(alpha+beta)), G = (alpha A / (beta B))^(1/(alpha+beta)).
    """
    a, b = p["alpha"], p["beta"]
    G = allocation_constant(p)
    if np.isnan(G):
        nan = np.full(np.shape(C), np.nan)
        return nan, nan
    budget = np.asarray(C, float) / flops_per_nd
    n_opt = G * budget ** (b / (a + b))
    return n_opt, budget / n_opt


def inverse_lc(p: dict[str, float], loss):
    """Compute at which L(C) = E + A C^-alpha reaches `loss` (inf where loss <= E)."""
    loss = np.asarray(loss, float)
    gap = loss - p.get("E", 0.0)
    if not p["alpha"] > 0:  # a flat law (a bootstrap refit can land there): E + A at any compute
        return np.where(gap >= p["A"], 0.0, np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        c = (p["A"] / gap) ** (1.0 / p["alpha"])
    return np.where(gap > 0, c, np.inf)
