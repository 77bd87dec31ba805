"""A fixed-bucket latency histogram: constant cost per sample, mergeable across processes.

1 us resolution below 1 ms, 10 us to 10 ms, 100 us to 100 ms, 1 ms to 1.1 s, one overflow
bucket. Percentiles report the bucket's upper edge (never optimistic).
"""

from __future__ import annotations

NBUCKETS = 1000 + 900 + 900 + 1000 + 1


def bucket(us: int) -> int:
    if us < 1000:
        return us if us > 0 else 0
    if us < 10_000:
        return 1000 + (us - 1000) // 10
    if us < 100_000:
        return 1900 + (us - 10_000) // 100
    if us < 1_100_000:
        return 2800 + (us - 100_000) // 1000
    return NBUCKETS - 1


def upper_edge(i: int) -> int:
    """Microseconds at the top of bucket ``i``."""
    if i < 1000:
        return i + 1
    if i < 1900:
        return 1000 + (i - 1000 + 1) * 10
    if i < 2800:
        return 10_000 + (i - 1900 + 1) * 100
    if i < NBUCKETS - 1:
        return 100_000 + (i - 2800 + 1) * 1000
    return 1_100_000


def new() -> list[int]:
    return [0] * NBUCKETS


def merge(into: list[int], other: list[int]) -> None:
    for i, n in enumerate(other):
        if n:
            into[i] += n


def percentile(h: list[int], p: float) -> int | None:
    """Microseconds below which ``p`` percent of samples fall; None without samples."""
    total = sum(h)
    if not total:
        return None
    rank = max(1, -(-total * p // 100))  # ceil(total * p / 100)
    seen = 0
    for i, n in enumerate(h):
        seen += n
        if seen >= rank:
            return upper_edge(i)
    return upper_edge(NBUCKETS - 1)
