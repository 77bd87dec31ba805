"""Per-source failed-login limiter with exponential back-off and bounded memory.

Each source key (see :func:`source_key`) has a failure score that leaks away
over time (``forgive_per_second``). The first ``burst`` failures cost nothing;
every failure beyond that blocks the source for ``base_delay * 2**k`` seconds
(k = failures beyond the burst, capped at ``max_delay``). While blocked, the
broker should refuse the CONNECT *before* checking any password, so a blocked
source cannot keep guessing and cannot make the broker burn CPU on hashing.

Memory is bounded: at most ``max_entries`` sources are tracked, least recently
seen evicted first. The clock is injectable for tests.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["LoginRateLimiter", "source_key"]


def source_key(host: str | None, ipv6_prefix: int = 64) -> str:
    """The limiter key for a peer address.

    IPv6 clients usually own a whole /64, so they are grouped by prefix;
    IPv4-mapped IPv6 addresses count as their IPv4 address; unix sockets and
    unparseable names are used as they are.
    """
    if not host:
        return "<local>"
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        net = ipaddress.IPv6Network((addr, ipv6_prefix), strict=False)
        return str(net)
    return str(addr)


@dataclass(slots=True)
class _Entry:
    score: float = 0.0
    updated: float = 0.0
    blocked_until: float = 0.0


class LoginRateLimiter:
    def __init__(
        self,
        burst: int = 5,
        base_delay: float = 1.0,
        max_delay: float = 300.0,
        forgive_per_second: float = 1 / 60,
        max_entries: int = 65536,
        reset_on_success: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if (
            burst < 0
            or base_delay <= 0
            or max_delay < base_delay
            or forgive_per_second < 0
            or max_entries < 1
        ):
            raise ValueError("invalid rate limiter parameters")
        self.burst = burst
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.forgive_per_second = forgive_per_second
        self.max_entries = max_entries
        self.reset_on_success = reset_on_success
        self.clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self.blocked_attempts = 0  # attempts refused while blocked (for metrics)
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _decayed(self, entry: _Entry, now: float) -> None:
        if now > entry.updated:
            entry.score = max(0.0, entry.score - (now - entry.updated) * self.forgive_per_second)
            entry.updated = now

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` may try again (0.0 = allowed now)."""
        entry = self._entries.get(key)
        if entry is None:
            return 0.0
        return max(0.0, entry.blocked_until - self.clock())

    def allowed(self, key: str) -> bool:
        """May ``key`` attempt a login now? Counts refused attempts; never extends the block."""
        if self.retry_after(key) > 0.0:
            self.blocked_attempts += 1
            return False
        return True

    def record_failure(self, key: str) -> float:
        """Count a failed login; returns the resulting block time in seconds (0 if none)."""
        now = self.clock()
        entry = self._entries.get(key)
        if entry is None:
            entry = _Entry(updated=now)
            self._entries[key] = entry
            if len(self._entries) > self.max_entries:
                self._evict()
        else:
            self._entries.move_to_end(key)
            self._decayed(entry, now)
        entry.score += 1.0
        excess = entry.score - self.burst
        if excess <= 0:
            return 0.0
        # Score may be fractional after decay; round up so back-off never shrinks early.
        delay = min(self.max_delay, self.base_delay * 2 ** min(63, int(excess + 0.999999) - 1))
        entry.blocked_until = max(entry.blocked_until, now + delay)
        return delay

    def record_success(self, key: str) -> None:
        """A good login. Clears the source's record only with ``reset_on_success``.

        Off by default: otherwise one valid account would let its holder
        reset the counter between guesses at other accounts. Failures still
        leak away at ``forgive_per_second``.
        """
        if self.reset_on_success:
            self._entries.pop(key, None)

    def _evict(self) -> None:
        # Prefer dropping the oldest entry that is no longer blocked; fall back to the oldest.
        now = self.clock()
        for i, (key, entry) in enumerate(self._entries.items()):
            if i >= 16:
                break
            if entry.blocked_until <= now:
                del self._entries[key]
                self.evictions += 1
                return
        self._entries.popitem(last=False)
        self.evictions += 1

    def prune(self) -> int:
        """Drop entries that are unblocked and fully forgiven; call from a periodic tick."""
        now = self.clock()
        stale = []
        for key, entry in self._entries.items():
            self._decayed(entry, now)
            if entry.score <= 0.0 and entry.blocked_until <= now:
                stale.append(key)
        for key in stale:
            del self._entries[key]
        return len(stale)
