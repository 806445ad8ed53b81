"""Every law fitted to one frame of points, with a reason for each law that could not be.

Laws per group (variant): L(N,D) (L(D) instead for a group with one model size), L(C), the
pure power law, IsoFLOP; and with two or more groups the joint fits (shared exponents,
per-group coefficients) of L(N,D) and L(C). Every law uses every point of the frame it is
given (the caller's selection, e.g. each trial's final point), except L(C) and the pure power law:
by default they take each group's compute-efficient frontier of cells (lc_points="frontier";
"all" takes every point); each entry names its selection.
A FitSet remembers which frame rows each fit used, so the bootstrap can refit every law on a
resample by reweighting those rows (warm-started), without rebuilding anything.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fitting import isoflop
from fitting.errors import FitError
from fitting.honest import OK, SKIPPED
from fitting.keys import LawKey, StatKey
from fitting.laws import LAWS, FittedLaw, fit_law

JOINT = "joint"  # suffix of the law name for joint fits, e.g. "L(N,D) joint"
LC_POINTS = ("frontier", "all")  # L(C)'s points: the compute-efficient frontier of cells (default), or every point


@dataclass
class Entry:
    status: str  # OK | SKIPPED
    reason: str = ""
    fit: FittedLaw | None = None  # laws.LawFit or isoflop.IsoFlopFit
    rows: np.ndarray | None = None  # frame row indices the fit used
    selection: str = ""  # which points, in words
    n_available: int = 0  # frame rows it could have used (its group's, or all for a joint fit)


def compute_frontier(C: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """Boolean mask of points no cheaper-or-equal point beats: the compute-efficient frontier."""
    order = np.lexsort((loss, C))
    keep = np.zeros(len(C), bool)
    best = np.inf
    for i in order:
        if loss[i] < best:
            keep[i], best = True, loss[i]
    return keep


def cell_frontier(frame: pd.DataFrame) -> np.ndarray:
    """Boolean mask of the rows whose cell (same N and D: the seed replicates of one run) is on the
    compute-efficient frontier of the cells' mean (C, loss). Selecting cells, not single points, keeps
    every seed of a chosen cell, so the frontier does not pick the luckiest seed."""
    cell = pd.factorize(pd.MultiIndex.from_arrays([frame["N"].to_numpy(float), frame["D"].to_numpy(float)]))[0]
    means = frame.groupby(cell)[["C", "loss"]].mean()
    keep = compute_frontier(means["C"].to_numpy(), means["loss"].to_numpy())
    return keep[cell]


def _features(frame: pd.DataFrame, law: str) -> np.ndarray:
    return frame[list(LAWS[law][0])].to_numpy(float)


@dataclass
class FitSet:
    frame: pd.DataFrame
    strict: bool = False  # raise instead of skipping L(N,D) (the CSV CLI asks for it explicitly)
    base_selection: str = "every point"  # how the caller chose the frame's rows, in words
    lc_points: str = "frontier"  # "frontier" (per group, of cells) | "all"
    entries: dict[LawKey, Entry] = field(default_factory=dict)
    lc_selection: str = ""

    def __post_init__(self):
        f = self.frame.reset_index(drop=True)
        self.frame = f
        self.groups = sorted(f["group"].astype(str).unique())
        self.one_size = [g for g in self.groups if f.loc[f["group"] == g, "N"].nunique() == 1]
        self._fit_lnd()
        self._fit_lc()
        self._fit_isoflop()

    # -- construction ------------------------------------------------------------------------
    def _try(self, law, group, rows, selection="", strict=False):
        sub = self.frame.iloc[rows]
        try:
            labels = sub["group"].to_numpy(str) if group == JOINT else np.full(len(sub), group)
            fit = fit_law(law, _features(sub, law), sub["loss"].to_numpy(float), labels)
            entry = Entry(OK, fit=fit, rows=np.asarray(rows), selection=selection)
        except FitError as e:
            if strict:
                raise
            entry = Entry(SKIPPED, reason=str(e), rows=np.asarray(rows), selection=selection)
        entry.n_available = len(self.frame) if group == JOINT else len(self._rows(group))
        name = f"{law} {JOINT}" if group == JOINT else law
        self.entries[LawKey(name, group)] = entry

    def _rows(self, group):
        return np.flatnonzero(self.frame["group"].to_numpy(str) == group)

    def _fit_lnd(self):
        for grp in self.groups:
            if grp in self.one_size:
                # one model size: the N term is a constant absorbed into E, so fit L(D) and say so
                self.entries[LawKey("L(N,D)", grp)] = Entry(
                    SKIPPED, reason="only 1 distinct model sizes (N); exponent alpha is not identifiable "
                    "(need at least 3): L(D) fitted instead", rows=self._rows(grp),
                    selection=self.base_selection, n_available=len(self._rows(grp)))
                self._try("L(D)", grp, self._rows(grp), self.base_selection, strict=self.strict)
            else:
                self._try("L(N,D)", grp, self._rows(grp), self.base_selection, strict=self.strict)
        multi = [g for g in self.groups if g not in self.one_size]
        if len(multi) > 1:
            rows = np.flatnonzero(self.frame["group"].isin(multi).to_numpy())
            self._try("L(N,D)", JOINT, rows, self.base_selection)

    def _fit_lc(self):
        # L(C) is the loss the best allocation reaches at each compute (Kaplan's L(C_min), the
        # envelope Chinchilla's approach 1 reads off): points of a size trained too short or too
        # long for their compute lie above it, and a grid built for IsoFLOP (sizes on shared
        # budgets) is mostly such points. So L(C) takes each group's frontier, of cells (seed
        # replicates' means) rather than single points, which would select on seed noise. A group
        # with one model size has no allocation to choose, and the frontier of its curve would be
        # a running minimum (selecting on noise): it keeps every point.
        f = self.frame
        use = np.ones(len(f), bool)
        self.lc_selection = self.base_selection
        if self.lc_points == "frontier":
            for grp in self.groups:
                r = self._rows(grp)
                if grp not in self.one_size:
                    use[r] = cell_frontier(f.iloc[r])
            self.lc_selection = f"compute-efficient frontier of cells (seed means) of: {self.base_selection}"
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
                entry = Entry(OK, fit=isoflop.fit_isoflop(sub["N"], sub["C"], sub["loss"]))
            except FitError as e:
                entry = Entry(SKIPPED, reason=str(e))
            entry.rows, entry.selection, entry.n_available = r, self.base_selection, len(r)
            self.entries[LawKey(isoflop.NAME, grp)] = entry

    # -- use ---------------------------------------------------------------------------------
    def ok(self, law: str, group: str):
        e = self.entries.get((law, group))
        return e.fit if e is not None and e.status == OK else None

    def refit(self, weights: np.ndarray, keys=None) -> dict[LawKey, FittedLaw | None]:
        """LawKey -> the refitted law, or None when the resample cannot identify it (e.g.
        every run of one model size left out). keys: only these entries."""
        out = {}
        for key, e in self.entries.items():
            if e.status != OK or (keys is not None and key not in keys):
                continue
            try:
                out[key] = e.fit.resample(weights[e.rows])
            except FitError:
                out[key] = None
        return out

    def current(self) -> dict[LawKey, FittedLaw]:
        return {k: e.fit for k, e in self.entries.items() if e.status == OK}


def param_stats(fits: dict) -> dict[StatKey, float]:
    """StatKey(law, group, parameter) -> value for every fitted parameter; None fits are left
    out (the bootstrap counts a missing key as a failed resample)."""
    out = {}
    for (law, group), fit in fits.items():
        if fit is None:
            continue
        # a joint fit reports each group's coefficients next to the shared exponents
        for name in (fit.groups if group == JOINT else [group]):
            out.update({StatKey(law, name, k): v for k, v in fit.params(name).items()})
    return out
