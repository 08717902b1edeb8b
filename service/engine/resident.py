"""This process's resident memory, read from /proc, and glibc's heap given back before it is read.

Lives with the engine because opening a model measures what each provider's session costs in memory
(runtime.choose_fastest reports it beside the speed); ops/malloc builds the worker's trims and budget on it.
Not glibc (musl, macOS): nothing to trim, and the reading is whatever /proc gives (0 where there is none).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from functools import cache


@cache
def libc() -> ctypes.CDLL | None:
    """The C library that holds malloc, when it is glibc (the only one with mallopt/malloc_trim)."""
    with contextlib.suppress(OSError):
        lib = ctypes.CDLL(None)
        if hasattr(lib, "mallopt") and hasattr(lib, "malloc_trim"):
            return lib
    return None


def trim() -> bool:
    """Give the heap's free pages back to the kernel (`malloc_trim(0)`); True when some were."""
    lib = libc()
    return bool(lib.malloc_trim(0)) if lib is not None else False


def rss_mib() -> float:
    """This process's resident size, from /proc (0 where there is none)."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def settled_mib() -> float:
    """The resident size once freed heap is given back: what the live objects really hold, so the
    difference of two readings is what was kept in between (a session's weights), not garbage."""
    trim()
    return rss_mib()
