"""Run the report's matrix products on one BLAS thread.

The bootstrap's products are many and small (a few hundred resamples × a few thousand columns), so OpenBLAS's
threads buy little, and on a busy machine (the 2-core development VMs, CI, a Celery worker next to the web
processes) its spinning threads more than doubled the CPU time and tripled the wall time of the benchmark
(bench/README.md, "Analytics"). One thread also fixes the order of floating-point sums, so a report does not
change in its last digits with the machine's core count.

numpy offers no way to set this at run time; like threadpoolctl, this finds the OpenBLAS library numpy loaded
and calls its `set_num_threads`. Where that is not possible (another BLAS, not Linux) it does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Iterator

import numpy  # noqa: F401 - loads the BLAS this module looks for

_SYMBOLS = (
    ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),  # numpy ≥ 2 wheels
    ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
    ("openblas_get_num_threads", "openblas_set_num_threads"),
)
_cache: list = []


def _openblas():
    if _cache:
        return _cache[0]
    found = None
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "openblas" in line.rsplit("/", 1)[-1].lower()})
    except OSError:
        paths = []
    for path in paths:
        if not path.startswith("/"):
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for getter, setter in _SYMBOLS:
            if hasattr(lib, getter) and hasattr(lib, setter):
                found = (getattr(lib, getter), getattr(lib, setter))
                break
        if found:
            break
    _cache.append(found)
    return found


@contextlib.contextmanager
def single_thread_blas() -> Iterator[None]:
    functions = _openblas()
    if functions is None:
        yield
        return
    get_threads, set_threads = functions
    previous = get_threads()
    set_threads(1)
    try:
        yield
    finally:
        set_threads(previous)
