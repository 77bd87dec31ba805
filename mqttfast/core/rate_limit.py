"""The broker's rate limiters, in one module:

* :class:`PublishRateLimiter`: PUBLISH packets per second per client
  (``BrokerSettings.max_publish_rate``);
* :class:`LoginRateLimiter`: failed logins per source address, with exponential
  back-off (``[auth.rate_limit]``; used by :mod:`mqttfast.app.security.auth`).

Publish rate limit: back-pressure, not loss.

Every client has a token bucket holding up to ``max(1, rate)`` tokens (one second's
worth: a burst that size passes untouched) and refilling at ``rate`` tokens per
second. Each PUBLISH received takes one token. The packets of one socket read are
already decoded when the bucket runs dry, so they are all handled and the bucket
goes into debt; reading from that client's socket is then paused until the debt is
repaid, so the long-run rate never exceeds ``rate``. Nothing is dropped and the
client is not disconnected (what EMQX's rate limiter does). Resuming happens on the
broker's timer (``BrokerCore.tick``, every 0.5 s under the transport), so a throttled
client waits at least until the next tick. Each pause counts once in
``Stats.publish_throttled``.

Pausing goes through ``Connection.blocked_by``, the set the output back-pressure
uses, with a marker object: a subscriber releasing its publishers does not resume a
throttled client early, and keep alive is not enforced while reading is paused (the
client cannot be heard). Nothing here runs while the limit is 0.
"""

from __future__ import annotations

import ipaddress
import logging
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .outbound import hold_reading, let_go
from .states import CLOSED

if TYPE_CHECKING:
    from .broker import BrokerCore
    from .connection import Connection

log = logging.getLogger("mqttfast.core")


class _Throttle:
    """Stands in ``Connection.blocked_by`` for the rate limiter; ``Connection.unblock``
    expects every member to have ``paused_publishers``."""

    __slots__ = ()
    paused_publishers: set[Any] = set()

    def __repr__(self) -> str:
        return "<publish rate limit>"


THROTTLE = _Throttle()


class PublishRateLimiter:
    __slots__ = ("broker", "buckets", "paused")

    def __init__(self, broker: BrokerCore) -> None:
        self.broker = broker
        # conn -> [tokens, last refill time]; weak so a closed connection leaves no trace.
        self.buckets: weakref.WeakKeyDictionary[Connection, list[float]] = (
            weakref.WeakKeyDictionary()
        )
        # conn -> when its debt is repaid (reading resumes at the first tick after).
        self.paused: dict[Connection, float] = {}

    def consume(self, conn: Connection) -> None:
        """One PUBLISH received from ``conn``; called only when the limit is on."""
        rate = self.broker.settings.max_publish_rate
        now = self.broker.clock()
        burst = rate if rate > 1 else 1
        bucket = self.buckets.get(conn)
        if bucket is None:
            bucket = self.buckets[conn] = [float(burst), now]
        tokens = bucket[0] + (now - bucket[1]) * rate
        if tokens > burst:
            tokens = burst
        tokens -= 1.0
        bucket[0] = tokens
        bucket[1] = now
        if tokens >= 0:
            return
        resume_at = now - tokens / rate
        blocked: AbstractSet[Any] = conn.blocked_by  # subscribers, and markers such as THROTTLE
        if conn in self.paused:
            self.paused[conn] = resume_at  # the rest of an already-read batch: more debt
            if THROTTLE in blocked:
                return
            # Connection.unblock() resumed it meanwhile (we sent it a QoS 1/2 message and
            # must read the ack): pause again. Safe, unlike a subscriber's pause: the
            # throttle always ends on the timer.
        else:
            self.paused[conn] = resume_at
            self.broker.stats.publish_throttled += 1
            log.debug(
                "client %s (%s): publish rate over %s/s; reading paused %.2f s",
                conn.client_id,
                conn.peer,
                rate,
                resume_at - now,
            )
        hold_reading(conn, THROTTLE)

    def tick(self, now: float) -> None:
        for conn, resume_at in list(self.paused.items()):
            if conn.state == CLOSED:
                del self.paused[conn]
            elif now >= resume_at:
                del self.paused[conn]
                let_go(conn, THROTTLE, now)


# ---------------------------------------------------------------------------- failed logins
# Per-source failed-login limiter with exponential back-off and bounded memory.
#
# Each source key (see :func:`source_key`) has a failure score that leaks away
# over time (``forgive_per_second``). The first ``burst`` failures cost nothing;
# every failure beyond that blocks the source for ``base_delay * 2**k`` seconds
# (k = failures beyond the burst, capped at ``max_delay``). While blocked, the
# broker should refuse the CONNECT *before* checking any password, so a blocked
# source cannot keep guessing and cannot make the broker burn CPU on hashing.
#
# Memory is bounded: at most ``max_entries`` sources are tracked, least recently
# seen evicted first. The clock is injectable for tests.


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
        return float(max(0.0, entry.blocked_until - float(self.clock())))

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
        steps = min(63, int(excess + 0.999999) - 1)
        delay = min(self.max_delay, self.base_delay * float(2**steps))
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


__all__ = ["PublishRateLimiter", "THROTTLE", "LoginRateLimiter", "source_key"]
