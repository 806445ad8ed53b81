"""Run the fits with single-threaded BLAS.

The fits are thousands of tiny problems (5 parameters, a few hundred points). Inside L-BFGS-B
each iteration makes small LAPACK calls, and a multi-threaded OpenBLAS wakes its thread pool
for every one of them: on a busy 2-core machine that made 1,000 bootstrap refits ~20x slower
than with one thread. So the public entry points pin OpenBLAS (numpy's and scipy's copies) to
one thread while they run and restore the previous setting afterwards. Found through the
loaded libraries (Linux /proc/self/maps); elsewhere this is a no-op.
"""
from __future__ import annotations

import ctypes
import functools
from contextlib import contextmanager


@functools.lru_cache(maxsize=1)
def _openblas_controls() -> tuple:
    """(get, set) function pairs of every OpenBLAS loaded in this process."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower() and ".so" in line}
    except OSError:
        return ()
    controls = []
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("64_", ""):
                get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                set_ = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                if get is not None and set_ is not None:
                    controls.append((get, set_))
    return tuple(controls)


@contextmanager
def single_threaded_blas():
    import numpy  # noqa: F401  (load numpy's and scipy's BLAS before looking for them)
    import scipy.linalg  # noqa: F401

    controls = _openblas_controls()
    before = [get() for get, _ in controls]
    for _, set_ in controls:
        set_(1)
    try:
        yield
    finally:
        for (_, set_), n in zip(controls, before):
            set_(n)


def single_threaded(fn):
    """Decorator form of single_threaded_blas()."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with single_threaded_blas():
            return fn(*args, **kwargs)
    return wrapper
