"""Numbers as report.md prints them: a value, its interval, and the flags that qualify it."""
from __future__ import annotations

import math

from fitting.honest import NO_CI, ZERO_WIDTH


def fmt(v, digits=4) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, str):
        return {"inf": "∞", "-inf": "-∞"}.get(v, v)
    if isinstance(v, float) and (math.isnan(v)):
        return "n/a"
    return f"{v:.{digits}g}"


def with_ci(v, ci, flags=()) -> str:
    """value [lo, hi]; a flagged value says why it has no interval; a zero-width one is no CI."""
    tags = [f for f in flags if f != NO_CI]
    if ci and ci[0] is not None and ci[1] is not None and ci[0] == ci[1]:
        tags.append(ZERO_WIDTH)
        ci = None
    if not ci or ci[0] is None or ci[1] is None:
        return fmt(v) + (f" ({'; '.join(tags)})" if tags else f" ({NO_CI})" if NO_CI in flags else "")
    return f"{fmt(v)} [{fmt(ci[0])}, {fmt(ci[1])}]" + (f" ({'; '.join(tags)})" if tags else "")
