"""Keep freed read buffers in the heap (glibc's malloc; elsewhere nothing is done).

Each read hands the event loop a new bytes object of up to 256 KiB (uvloop's read size).
With glibc's dynamic thresholds such buffers come from the top of the heap, and a free
heap top larger than twice the largest buffer freed so far (~512 KiB) goes back to the
kernel; the next read faults it in again, a page at a time. With 16 KiB payloads that
happened every few messages (issue 17, fan-in 16 KiB, perf stat per message received):
the load generator's subscriber took 4.6 page faults and ~32 us of CPU (0.07 and ~17 us
with steady_heap), the broker 0.71 faults and 13.7 us (0 and 12.5 us). Page faults cost
most when the machine is slow, which is when that cell swung the most.
"""

from __future__ import annotations

import sys

# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

MiB = 1 << 20


def steady_heap(trim: int, mmap: int = 4 * MiB) -> bool:
    """Keep up to ``trim`` bytes of free heap top, and serve allocations below ``mmap``
    bytes from the heap (fixed thresholds: glibc stops adjusting them). False when not
    done (not Linux, not glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes  # (preloaded before a privilege drop: process.PRELOAD_MODULES)

        mallopt = ctypes.CDLL(None).mallopt
    except (ImportError, OSError, AttributeError):  # musl and others have no mallopt
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap)) and bool(mallopt(_M_TRIM_THRESHOLD, trim))
