"""Every law fitted to one frame of points, with a reason for each law that could not be.

Laws per group (variant): L(N,D), L(C), the pure power law, IsoFLOP; and with two or more
groups the joint fits (shared exponents, per-group coefficients) of L(N,D) and L(C).
A FitSet remembers which frame rows each fit used, so the bootstrap can refit every law on a
resample by reweighting those rows (warm-started), without rebuilding anything.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fitting import isoflop
from fitting.errors import FitError
from fitting.laws import LAWS, LawFit, check_fittable, fit_law

JOINT = "joint"  # suffix of the law name for joint fits, e.g. "L(N,D) joint"


@dataclass
class Entry:
    status: str  # "ok" | "skipped"
    reason: str = ""
    fit: LawFit | dict | None = None  # LawFit, or the IsoFLOP result dict
    rows: np.ndarray | None = None  # frame row indices the fit used
    selection: str = ""  # which points, in words


def compute_frontier(C: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """Boolean mask of points no cheaper-or-equal point beats: the compute-efficient frontier."""
    order = np.lexsort((loss, C))
    keep = np.zeros(len(C), bool)
    best = np.inf
    for i in order:
        if loss[i] < best:
            keep[i], best = True, loss[i]
    return keep


def _features(frame: pd.DataFrame, law: str) -> np.ndarray:
    return frame[list(LAWS[law][0])].to_numpy(float)


@dataclass
class FitSet:
    frame: pd.DataFrame
    strict: bool = False  # raise instead of skipping L(N,D) (the CSV CLI asks for it explicitly)
    entries: dict = field(default_factory=dict)  # (law, group) -> Entry
    lc_selection: str = ""

    def __post_init__(self):
        f = self.frame.reset_index(drop=True)
        self.frame = f
        self.groups = sorted(f["group"].astype(str).unique())
        self._fit_lnd()
        self._fit_lc()
        self._fit_isoflop()

    # -- construction ------------------------------------------------------------------------
    def _try(self, law, group, rows, selection="", strict=False):
        sub = self.frame.iloc[rows]
        try:
            labels = sub["group"].to_numpy(str) if group == JOINT else np.full(len(sub), group)
            fit = fit_law(law, _features(sub, law), sub["loss"].to_numpy(float), labels)
            entry = Entry("ok", fit=fit, rows=np.asarray(rows), selection=selection)
        except FitError as e:
            if strict:
                raise
            entry = Entry("skipped", reason=str(e), rows=np.asarray(rows), selection=selection)
        name = f"{law} {JOINT}" if group == JOINT else law
        self.entries[(name, group)] = entry

    def _rows(self, group):
        return np.flatnonzero(self.frame["group"].to_numpy(str) == group)

    def _fit_lnd(self):
        for grp in self.groups:
            self._try("L(N,D)", grp, self._rows(grp), "all fit points", strict=self.strict)
        if len(self.groups) > 1:
            self._try("L(N,D)", JOINT, np.arange(len(self.frame)), "all fit points")

    def _fit_lc(self):
        # L(C) describes the best loss reachable at each compute, so it is fitted on the
        # compute-efficient frontier; when any group's frontier is too short to fit, every
        # group uses all its points instead, so that the variants stay comparable.
        f = self.frame
        front = np.zeros(len(f), bool)
        for grp in self.groups:
            r = self._rows(grp)
            front[r] = compute_frontier(f["C"].to_numpy()[r], f["loss"].to_numpy()[r])
        short = [g for g in self.groups if front[self._rows(g)].sum() < 5]
        if short:
            use = np.ones(len(f), bool)
            self.lc_selection = (f"all fit points (compute frontier of {', '.join(short)} "
                                 "has < 5 points)")
        else:
            use, self.lc_selection = front, "compute-efficient frontier"
        for law in ("L(C)", "power"):
            for grp in self.groups:
                r = self._rows(grp)
                self._try(law, grp, r[use[r]], self.lc_selection)
        if len(self.groups) > 1:
            self._try("L(C)", JOINT, np.flatnonzero(use), self.lc_selection)

    def _fit_isoflop(self):
        f = self.frame
        for grp in self.groups:
            r = self._rows(grp)
            sub = f.iloc[r]
            try:
                res = isoflop.fit_isoflop(sub["N"], sub["C"], sub["loss"])
                self.entries[("isoflop", grp)] = Entry("ok", fit=res, rows=r, selection="all fit points")
            except FitError as e:
                self.entries[("isoflop", grp)] = Entry("skipped", reason=str(e), rows=r)

    # -- use ---------------------------------------------------------------------------------
    def ok(self, law: str, group: str):
        e = self.entries.get((law, group))
        return e.fit if e is not None and e.status == "ok" else None

    def refit(self, weights: np.ndarray) -> dict:
        """(law, group) -> refitted LawFit / IsoFLOP dict, or None when the resample cannot
        identify it (e.g. every run of one model size left out)."""
        out = {}
        for key, e in self.entries.items():
            if e.status != "ok":
                continue
            w = weights[e.rows]
            try:
                if key[0] == "isoflop":
                    sub = self.frame.iloc[e.rows]
                    out[key] = isoflop.fit_isoflop(sub["N"], sub["C"], sub["loss"], w)
                    continue
                pos = w > 0
                # also refuses a resample in which a group lost every point (0 distinct sizes)
                check_fittable(e.fit.law, np.exp(e.fit.logx[pos]), e.fit.g[pos], e.fit.groups)
                out[key] = e.fit.refit(w)
            except FitError:
                out[key] = None
        return out

    def current(self) -> dict:
        return {k: e.fit for k, e in self.entries.items() if e.status == "ok"}


def param_stats(fits: dict) -> dict[str, float]:
    """Flat 'law|group|param' -> value for every fitted parameter; None fits are left out
    (the bootstrap counts a missing key as a failed resample)."""
    out = {}
    for (law, group), fit in fits.items():
        if fit is None:
            continue
        if law == "isoflop":
            out.update({f"{law}|{group}|{k}": fit[k] for k in ("a", "G")})
            continue
        # a joint fit reports each group's coefficients next to the shared exponents
        for name in (fit.groups if group == JOINT else [group]):
            out.update({f"{law}|{name}|{k}": v for k, v in fit.params(name).items()})
    return out
