"""Keep freed memory in the process for the next allocation instead of handing it back to the system.

glibc's malloc gives every block above its mmap threshold (128 KiB, adapting up to 32 MiB) pages of its
own and unmaps them on free. A training step on eight 256 x 256 crops allocates and frees activations of
30-130 MB, so every step faults all of their pages in again, and on a CPU that is a large part of the
step: with freed memory kept for reuse a TCuP-GAN step on the real EM crops takes 2.0 s instead of 3.3 s
on 2 cores, and a MONAI U-Net's step gains alike, for a peak memory 25-45% higher (docs/benchmarks.md).
GPU memory has its own caching allocator and is not affected.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

__all__ = ["reuse_freed_memory"]

log = logging.getLogger(__name__)

# mallopt's parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
# glibc's own variables for these settings: where the user set them, theirs stand
_USER_SETTINGS = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_")
_TRIM_THRESHOLD = 2**30  # a free block of 1 GiB at the top of the heap still goes back to the system

_in_effect = False


def reuse_freed_memory() -> bool:
    """Serve large CPU tensors from the heap and return freed memory to the system only in 1 GiB pieces,
    for this whole process (glibc on Linux; elsewhere, or where the user set glibc's ``MALLOC_*``
    variables or preloaded another allocator, nothing changes). Training and ``predict`` call it; safe
    to call again. Returns whether the setting is in effect.

    To keep glibc's defaults (less memory held between steps, slower steps), start the process with
    ``MALLOC_MMAP_MAX_=65536`` (glibc's default).
    """
    global _in_effect
    if _in_effect or not sys.platform.startswith("linux") or any(k in os.environ for k in _USER_SETTINGS):
        return _in_effect
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl, a preloaded allocator without mallopt)
        return False
    _in_effect = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    log.debug("freed memory kept for reuse: %s", _in_effect)
    return _in_effect
