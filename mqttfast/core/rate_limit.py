"""Per-client publish rate limit (``BrokerSettings.max_publish_rate``): back-pressure,
not loss.

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

import logging
import weakref
from typing import TYPE_CHECKING, Any

from .states import CLOSED as _CLOSED

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
        blocked = conn.blocked_by
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
        if not isinstance(blocked, set):
            blocked = conn.blocked_by = set()  # created on first use (Connection.__init__)
        blocked.add(THROTTLE)
        if len(blocked) == 1:
            conn.sink.pause_reading()

    def tick(self, now: float) -> None:
        for conn, resume_at in list(self.paused.items()):
            if conn.state == _CLOSED:
                del self.paused[conn]
            elif now >= resume_at:
                del self.paused[conn]
                blocked = conn.blocked_by
                if isinstance(blocked, set):
                    blocked.discard(THROTTLE)
                if not blocked:
                    conn.last_rx = now  # it could not send PINGREQ while paused
                    conn.sink.resume_reading()
