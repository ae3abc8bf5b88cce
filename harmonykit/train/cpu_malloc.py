"""glibc ``malloc`` settings for training on the CPU.

A CPU training iteration allocates and frees the same large activation buffers (tens of MiB
each) every step. With glibc's defaults, blocks above the dynamic mmap threshold are ``mmap``-ed
and returned to the kernel on ``free``, and the top of the heap is trimmed, so every iteration
page-faults its activations in again: ~300k minor faults and ~0.5 s of system time per
``charmnet_idih`` iteration (8 + 8 at 256², measured on a 2-core VM), about a quarter of the
step. :func:`keep_freed_memory` raises the mmap and trim thresholds so freed buffers stay in
the process and are reused (the step then takes ~0 minor faults; peak RSS grows by about the
size of one iteration's free pool, ~100 MiB there). The :class:`~harmonykit.train.Trainer`
calls it when it trains on the CPU; ``HARMONYKIT_MALLOC_TUNE=0`` turns it off. It is a no-op
(returns False) where the C library has no ``mallopt`` (not glibc: macOS, Windows, musl).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

__all__ = ["keep_freed_memory"]

_logger = logging.getLogger(__name__)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_done = False


def keep_freed_memory(mmap_threshold: int = 1 << 30) -> bool:
    """Set glibc's ``M_MMAP_THRESHOLD`` to ``mmap_threshold`` bytes and ``M_TRIM_THRESHOLD``
    to twice that, once per process. Returns True when applied (now or before)."""
    global _done
    if _done:
        return True
    if os.environ.get("HARMONYKIT_MALLOC_TUNE", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = bool(mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold))) and bool(mallopt(_M_TRIM_THRESHOLD, int(2 * mmap_threshold)))
    if ok:
        _done = True
        _logger.debug("glibc malloc: mmap threshold %d, trim threshold %d bytes", mmap_threshold, 2 * mmap_threshold)
    return ok
