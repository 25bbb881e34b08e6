"""Keep freed memory in the process: glibc's allocator otherwise hands every large tensor back
to the kernel (munmap, or a trim of the heap top) and the next step faults its pages in again,
zeroed.

A training step allocates and frees the same large buffers (a rollout's stage caches, the
stacked primal and tangent rows of NCF, the per-stage records of a hand-written reverse pass)
thousands of times per step. Measured on ODEBench-10A, `ncf-baseline`, one RK4 inner step at
one thread (AMD EPYC, issue 23): 10.1-14.2 s of profiled CPU time with glibc's defaults,
7.3-7.6 s with the heap's trim threshold at 1 GiB and the mmap threshold at its 32 MiB maximum
(elementwise products of [100, 4, 256] from 436 to 92 µs each). The price is a resident size
that stays at its peak instead of falling between steps. Numbers are unchanged: only where the
memory comes from differs.
"""

from __future__ import annotations

import ctypes
import ctypes.util

# mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
TRIM_THRESHOLD = 2**30
MMAP_THRESHOLD = 2**25  # glibc's upper limit for this parameter on 64-bit systems


def keep_freed_memory() -> bool:
    """Raise glibc's trim and mmap thresholds for this process; False where there is no
    glibc (macOS, musl) and nothing was changed."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) and mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    )
