"""Numerical core: robust fits of sums of power laws in log space.

Every law in this module is a special case of

    log L_i = LSE( a[g_i, 0] - alpha_0 * x_i0, ..., a[g_i, k-1] - alpha_{k-1} * x_i,k-1, e[g_i] )

i.e. L = E_g + sum_j A_gj * X_j^-alpha_j with x = log X, exponents shared by all groups and
coefficients per group. k=2 with x=(log N, log D) is Chinchilla's Approach 3; k=1 with
x=log C is L(C); dropping the e term gives a pure power law; G>1 groups is the joint fit
with shared exponents. Fitting in log space (the LSE parametrisation) keeps E, A, B positive
without bounds and makes residuals relative, which is what a loss curve's noise looks like.

Objective: Huber(delta) on log residuals, SUMMED over points (optionally weighted by
integer bootstrap counts). We minimise it divided by delta: same minimiser, but the values
are O(n) instead of O(n*delta), so L-BFGS-B's relative stopping test (which divides by
max(|f|, 1)) does not declare victory while the fit is still moving.

Starts: variable projection. For fixed exponents the model is linear in (E, A_j), so a dense
grid over exponents with the coefficients solved by non-negative least squares (weighted to
approximate relative error) finds the basin cheaply and fully vectorised; the best few grid
points seed L-BFGS-B with an analytic gradient and tight tolerances.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

DELTA = 1e-3  # Hoffmann et al.'s Huber threshold on log residuals
LBFGS_OPTIONS = dict(ftol=1e-15, gtol=1e-10, maxiter=10_000, maxfun=50_000, maxcor=20)
# Bootstrap refits start at the full-data optimum and get a bounded budget: a refit that moves
# far (a well-identified resample: ~80 evaluations on Chinchilla) converges well inside it,
# while one wandering along a flat direction of a badly identified law stops there and is
# counted as not converged (fits.json reports the count) instead of costing seconds.
REFIT_OPTIONS = dict(LBFGS_OPTIONS, ftol=1e-12, gtol=1e-8, maxiter=100, maxfun=150)
EXPONENT_BOUNDS = (0.0, 10.0)
BOUND_RTOL = 1e-6  # a parameter this close (relative; absolute at 0) to a bound is "at bound"


def at_exponent_bound(x: float) -> bool:
    """x lies on (within BOUND_RTOL of) either end of EXPONENT_BOUNDS."""
    lo, hi = EXPONENT_BOUNDS
    return abs(x - lo) <= BOUND_RTOL * max(abs(lo), 1.0) or abs(x - hi) <= BOUND_RTOL * abs(hi)


@dataclass(frozen=True)
class Model:
    """Shape of the parameter vector: k shared exponents, then per group (a_0..a_k-1[, e])."""

    k: int  # number of power-law terms
    n_groups: int = 1
    with_E: bool = True  # irreducible loss term present

    @property
    def per_group(self) -> int:
        return self.k + int(self.with_E)

    @property
    def size(self) -> int:
        return self.k + self.n_groups * self.per_group

    def unpack(self, theta):
        alphas = theta[: self.k]
        coef = theta[self.k :].reshape(self.n_groups, self.per_group)
        return alphas, coef

    def pack(self, alphas, coef) -> np.ndarray:
        return np.concatenate([np.asarray(alphas, float), np.asarray(coef, float).ravel()])

    def bounds(self):
        return [EXPONENT_BOUNDS] * self.k + [(None, None)] * (self.n_groups * self.per_group)

    def terms(self, theta, x, g):
        """(n, k[+1]) log-terms whose logsumexp is the predicted log loss."""
        alphas, coef = self.unpack(theta)
        c = coef[g]  # (n, per_group)
        z = c[:, : self.k] - x * alphas
        return np.concatenate([z, c[:, self.k :]], axis=1) if self.with_E else z

    def predict_log(self, theta, x, g) -> np.ndarray:
        z = self.terms(theta, x, g)
        m = z.max(axis=1, keepdims=True)
        return (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))[:, 0]


def huber(r, delta=DELTA):
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def objective(theta, model: Model, x, y, g, w, delta=DELTA):
    """Summed Huber loss / delta and its analytic gradient (lean: it runs ~10^6 times)."""
    k = model.k
    alphas = theta[:k]
    coef = theta[k:].reshape(model.n_groups, model.per_group)
    z = coef[g]  # (n, per-term) fancy index: a copy
    z[:, :k] -= x * alphas
    m = z.max(axis=1)
    ez = np.exp(z - m[:, None])
    s = ez.sum(axis=1)
    r = y - (m + np.log(s))
    c = np.clip(r, -delta, delta)  # psi(r)
    # Huber: 0.5 r^2 inside delta, delta (|r| - delta/2) outside == 0.5 c^2 + delta (|r| - |c|)
    f = float(w @ (0.5 * c * c + delta * (np.abs(r) - np.abs(c)))) / delta
    cs = ez * (-w * c / (delta * s))[:, None]  # d f / d z
    grad_alpha = -(cs[:, :k] * x).sum(axis=0)
    if model.n_groups == 1:
        grad_coef = cs.sum(axis=0)
    else:
        grad_coef = (np.arange(model.n_groups)[:, None] == g[None, :]) @ cs
    return f, np.concatenate([grad_alpha, grad_coef.ravel()])


def minimize_from(theta0, model, x, y, g, w, delta=DELTA, frozen=None, options=None):
    """L-BFGS-B from theta0; `frozen` (bool mask) pins those entries at their theta0 value.
    Returns (theta, objective, converged)."""
    theta0 = np.asarray(theta0, float)
    bounds = model.bounds()
    if frozen is not None:
        bounds = [(t, t) if f else b for t, f, b in zip(theta0, frozen, bounds)]
    res = minimize(
        objective, theta0, args=(model, x, y, g, w, delta), jac=True,
        method="L-BFGS-B", bounds=bounds, options=options or LBFGS_OPTIONS,
    )
    return res.x, float(res.fun), bool(res.success)


# -- variable projection starts --------------------------------------------------------------


def _nnls_small(gram, rhs, yy):
    """Batched NNLS for <=3 unknowns by enumerating supports.

    gram (C, m, m), rhs (C, m), yy (C,): minimise yy - 2 c.rhs + c' gram c over c >= 0.
    The NNLS optimum is the unconstrained LS solution on its support, and every feasible
    support's LS solution is a feasible point, so the best feasible support is the optimum.
    """
    n_c, m = rhs.shape
    best_sse = np.full(n_c, np.inf)
    best = np.zeros((n_c, m))
    scale = np.einsum("cii->c", gram) / m + 1e-300
    for size in range(1, m + 1):
        for support in itertools.combinations(range(m), size):
            idx = list(support)
            gs = gram[:, idx][:, :, idx] + 1e-12 * scale[:, None, None] * np.eye(size)
            sol = np.linalg.solve(gs, rhs[:, idx][:, :, None])[:, :, 0]
            sse = yy - np.einsum("ci,ci->c", sol, rhs[:, idx])
            ok = np.all(sol >= 0, axis=1) & (sse < best_sse)
            best_sse = np.where(ok, sse, best_sse)
            full = np.zeros((n_c, m))
            full[:, idx] = sol
            best[ok] = full[ok]
    return best, best_sse


def exponent_grid(k: int, n: int | None = None) -> np.ndarray:
    """Dense grid over exponents: finer than Hoffmann's {0, 0.5, ..., 2} and wider."""
    n = n or (161 if k == 1 else 41)
    axis = np.linspace(0.0, 2.5, n)
    return np.array(list(itertools.product(axis, repeat=k)))


def varpro_starts(model: Model, x, L, g, w, top=8, delta=DELTA, grid=None):
    """Best `top` parameter vectors from exponent grid x per-group NNLS coefficients."""
    grid = exponent_grid(model.k) if grid is None else grid
    y = np.log(L)
    # Row weights 1/L turn absolute into ~relative (log) residuals; sqrt(w) for counts.
    u = np.sqrt(w) / L
    floor = 1e-3 * np.median(L)  # keep every term alive so the optimiser can use it
    thetas, objs = [], []
    chunk = max(1, int(2_000_000 // max(1, len(L) * (model.k + 1))))
    for start in range(0, len(grid), chunk):
        al = grid[start : start + chunk]  # (C, k)
        # basis (C, n, m): power terms X^-alpha = exp(-alpha x), then the constant for E
        basis = np.exp(-al[:, None, :] * x[None, :, :])
        if model.with_E:
            basis = np.concatenate([basis, np.ones(basis.shape[:2] + (1,))], axis=2)
        coefs = np.empty((len(al), model.n_groups, model.per_group))
        for grp in range(model.n_groups):
            sel = g == grp
            bw = basis[:, sel, :] * u[sel][None, :, None]
            lw = L[sel] * u[sel]
            gram = np.einsum("cni,cnj->cij", bw, bw)
            rhs = np.einsum("cni,n->ci", bw, lw)
            c, _ = _nnls_small(gram, rhs, np.full(len(al), lw @ lw))
            # floors: a term with zero coefficient would have zero gradient in log space
            med = np.median(basis[:, sel, :], axis=1)
            coefs[:, grp, :] = np.maximum(c, floor / np.maximum(med, 1e-300))
        logc = np.log(coefs)[:, g, :]  # (C, n, per_group)
        z = logc[:, :, : model.k] - al[:, None, :] * x[None]
        if model.with_E:
            z = np.concatenate([z, logc[:, :, model.k :]], axis=2)
        m = z.max(axis=2, keepdims=True)
        yhat = (m + np.log(np.exp(z - m).sum(axis=2, keepdims=True)))[:, :, 0]
        objs.append((w * huber(y - yhat, delta)).sum(axis=1))
        thetas.extend(model.pack(al[ci], np.log(coefs[ci])) for ci in range(len(al)))
    objs = np.concatenate(objs)
    order = np.argsort(objs)
    return [thetas[i] for i in order[:top]]


def hoffmann_starts(model: Model, x, y, g, w, top=4, delta=DELTA):
    """Best `top` points of Hoffmann et al.'s published start grid (one group only)."""
    if model.n_groups != 1:
        return []
    ex = np.arange(0.0, 2.01, 0.5)
    aa = np.arange(0.0, 25.1, 5.0)
    ee = np.arange(-1.0, 1.01, 0.5) if model.with_E else np.array([np.nan])
    cand = np.array(list(itertools.product(*([ex] * model.k + [aa] * model.k + [ee]))))
    if not model.with_E:
        cand = cand[:, :-1]
    z = cand[:, None, model.k : 2 * model.k] - cand[:, None, : model.k] * x[None]
    if model.with_E:
        z = np.concatenate([z, np.broadcast_to(cand[:, None, -1:], z.shape[:2] + (1,))], axis=2)
    m = z.max(axis=2, keepdims=True)
    yhat = (m + np.log(np.exp(z - m).sum(axis=2, keepdims=True)))[:, :, 0]
    objs = (w * huber(y - yhat, delta)).sum(axis=1)
    return [cand[i] for i in np.argsort(objs)[:top]]


def fit_multistart(model: Model, x, L, g=None, w=None, delta=DELTA, n_starts=8):
    """Multi-start robust fit; returns (theta, summed Huber objective)."""
    x = np.asarray(x, float).reshape(len(L), -1)
    L = np.asarray(L, float)
    g = np.zeros(len(L), int) if g is None else np.asarray(g, int)
    w = np.ones(len(L)) if w is None else np.asarray(w, float)
    y = np.log(L)
    starts = varpro_starts(model, x, L, g, w, top=n_starts, delta=delta)
    starts += hoffmann_starts(model, x, y, g, w, delta=delta)
    best_theta, best_f = None, np.inf
    for theta0 in starts:
        theta, f, _ = minimize_from(theta0, model, x, y, g, w, delta)
        if f < best_f:
            best_theta, best_f = theta, f
    return best_theta, best_f * delta


def refit(theta0, model: Model, x, L, g=None, w=None, delta=DELTA, frozen=None):
    """Fast path for the bootstrap: one bounded L-BFGS-B run warm-started at theta0, with the
    `frozen` entries (parameters at a bound in the full fit) held fixed.
    Returns (theta, summed Huber objective, converged)."""
    x = np.asarray(x, float).reshape(len(L), -1)
    g = np.zeros(len(L), int) if g is None else np.asarray(g, int)
    w = np.ones(len(L)) if w is None else np.asarray(w, float)
    theta, f, ok = minimize_from(theta0, model, x, np.log(L), g, w, delta, frozen, REFIT_OPTIONS)
    return theta, f * delta, ok
