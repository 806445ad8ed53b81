"""The names the fits are filed under: a fitted law, and a statistic the bootstrap resamples.

A statistic is a law's parameter (StatKey("L(C)", "foveated", "alpha")) or a quantity derived
from the laws (StatKey(CROSSOVER, "foveated vs baseline", "C")). One typed key for both, built
by the modules that compute a statistic and read by those that report it, so no module has to
spell, join or split a name it did not make.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

# derived quantities (fitting/derived.py summarize): what a StatKey names besides a law
ALLOCATION = "allocation"  # whose: a group; which: N_exponent, D_exponent, G, N_opt, D_opt
CROSSOVER = "crossover"  # whose: a pair; which: "C"
CROSSOVER_IN_DATA = "crossover_in_data"  # whose: a pair; which: "any"; 1 when a crossing lies in the data
RATIO = "ratio"  # whose: a pair; which: "loss"
MULTIPLIER = "multiplier"  # whose: a pair; which: "ref_to_match_treat" | "treat_to_match_ref"
EXPONENT_DIFF = "exponent_diff"  # whose: a pair; which: "alpha"
CURVE = "curve"  # whose: a group; which: "L(C)"; the fitted loss on the compute grid (the plots' bands)
# quantities whose value is 0 or 1 in every resample: the bootstrap also counts the ones
INDICATORS = frozenset({CROSSOVER_IN_DATA})


class LawKey(NamedTuple):
    """One fitted law: its name ("L(C)", "L(N,D) joint", "isoflop") and its group ("joint" for
    a joint fit). A tuple, so FitSet.entries[("L(C)", "foveated")] reads as it always did."""

    law: str
    group: str

    def label(self) -> str:
        """How fits.json names the law in bootstrap.not_converged and the notes."""
        return f"{self.law}|{self.group}"


@dataclass(frozen=True)
class StatKey:
    """One bootstrap statistic: `what` (a law's name or a derived quantity above), `whose` (a
    group, or a pair of arms: pair_key), `which` (the parameter, or which form of the quantity)."""

    what: str
    whose: str
    which: str

    @property
    def is_indicator(self) -> bool:
        return self.what in INDICATORS


def pair_key(t: str, r: str) -> str:
    """How a (treatment, reference) pair is named in fits.json and in its statistics."""
    return f"{t} vs {r}"


def of_pair(what: str, t: str, r: str, which: str) -> StatKey:
    return StatKey(what, pair_key(t, r), which)
