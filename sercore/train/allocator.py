"""Keep freed memory in the process on CPU runs: glibc malloc settings, set once per process.

A CPU training step allocates and frees feature maps of tens of MB (the area CNN's first maps are
16 x 32 x 256 x 81 floats = 42 MB each, a dozen per step). glibc serves a block above its mmap threshold
with a fresh mmap and unmaps it on free, so every step faults in new zeroed pages: on the shared 2-core
machine an out-of-place ReLU of such a map took 118 ms, in place 16 ms, and a default-profile area-cnn step
ran 1.3x (idle) to 1.5x (loaded) faster with these settings (benchmarks/cpu_speedups.py, before and after
in one process). M_MMAP_THRESHOLD = 1 GiB serves such blocks from the heap, M_TRIM_THRESHOLD keeps the freed
heap instead of returning it, so later steps reuse pages already mapped. Numbers are unchanged (only where
the bytes live); the process keeps its peak heap until it exits. glibc only (Linux); elsewhere a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
MMAP_THRESHOLD = 1 << 30      # blocks up to 1 GiB come from the heap
TRIM_THRESHOLD = 2 ** 31 - 1  # the largest int mallopt takes: freed heap is not given back
_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Set the two thresholds (module docstring) once; True when glibc accepted them, False where there is
    no glibc mallopt (the run goes on with the system allocator as it is)."""
    global _applied
    if _applied is None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):
            _applied = False
        else:
            mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
            _applied = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
                bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _applied
