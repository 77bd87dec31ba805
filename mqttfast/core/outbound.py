"""The outbound path, in one place: encoding a PUBLISH for one client, the QoS 0 fast
path, the QoS 1/2 in-flight window and queue, and back-pressure (a congested or
backed-up subscriber pauses reading from the publishers that feed it).

The router calls :func:`fan_out` for the normal subscriptions a message matched and
``session.deliver`` (this module's :func:`deliver`) for shared ones; sessions call
:func:`pump` when the window opens (acknowledgement, reconnect, output drained). The
state lives in :class:`Connection` (slots ``congested``, ``paused_publishers``,
``blocked_by``, ``send_window``; ``blocking_since`` and ``stuck`` in its on-demand side
object, core/rare.py) and :class:`Session` (``queue``, ``inflight``, ``backlog``); only
this module changes it. Connection and
Session expose these functions as methods (class attributes, so no extra call).

Back-pressure in one paragraph: a subscriber whose transport buffer is over its high
water (``congested``) or whose queue is over ``DeliveryFilters.queue_high_water``
pauses reading from the publisher of the message (``block_publisher``); it releases
them all when it drains below the low water (``pump``) or when the transport says it
can write again (``writing_resumed``). A subscriber that keeps publishers paused longer
than ``max_publisher_pause`` is ``stuck`` and stops pausing (``check_stuck``).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from mqttfast.codec import publish_parts
from mqttfast.codec.packets import Properties

from .message import Delivery, Message
from .states import CLOSED

if TYPE_CHECKING:
    from .connection import Connection
    from .session import Session
    from .subscriptions import Target

log = logging.getLogger("mqttfast.core")

Parts = tuple[bytes, bytes]

# An online subscriber's queue may reach this many times its limits with messages of a
# publisher it has paused (``_in_margin``).
PAUSE_MARGIN = 4

# -- encoding ------------------------------------------------------------------


def encode_publish(
    conn: Connection,
    msg: Message,
    qos: int,
    retain: bool,
    sub_ids: tuple[int, ...] | None,
    dup: bool,
    now: float,
    cache: dict[Any, Parts] | None,
    allow_expired: bool = False,
) -> Parts | None:
    """The (head, tail) of a PUBLISH for this client, or None when it must be
    dropped: expired (v5 message expiry) or larger than the client's Maximum
    Packet Size [MQTT-3.1.2-25]. Shapes are cached per fan-out in ``cache``."""
    if not conn.v5:
        key: Any = (qos, retain, dup)
        parts = cache.get(key) if cache is not None else None
        if parts is None:
            parts = publish_parts(msg.topic, msg.payload, qos, retain, dup, None, 4)
            if cache is not None:
                cache[key] = parts
        return parts
    remaining = None
    if msg.expires_at is not None:
        left = msg.expires_at - now
        if left <= 0 and not allow_expired:
            conn.broker.stats.dropped_expired += 1
            return None
        # (now + interval) - now can exceed interval by a float ulp; without the
        # epsilon ceil() would forward 61 for a 60 s expiry [MQTT-3.3.2-6].
        remaining = max(1, math.ceil(left - 1e-6))
    topic = msg.topic
    alias = None
    new_alias = False
    evicted = None
    if conn.alias_out_max:
        # Server -> client aliases (3.3.2.3.4), least recently used replaced once all
        # of the client's Topic Alias Maximum are in use. aliases_out keeps LRU order.
        aliases = conn.aliases_out
        if aliases is None:
            aliases = conn.aliases_out = {}
        alias = aliases.get(topic)
        if alias is None:
            new_alias = True
            if conn.next_alias <= conn.alias_out_max:
                alias = conn.next_alias
            else:
                evicted = next(iter(aliases))
                alias = aliases[evicted]
        else:
            del aliases[topic]
            aliases[topic] = alias
    send_topic = "" if (alias is not None and not new_alias) else topic
    key = (qos, retain, dup, sub_ids, remaining, alias, send_topic == "")
    parts = cache.get(key) if cache is not None else None
    if parts is None:
        props = msg.properties
        if sub_ids is not None or remaining is not None or alias is not None:
            props = props.copy() if props is not None else Properties()
            if sub_ids is not None:
                props.subscription_identifier = list(sub_ids)
            props.message_expiry_interval = remaining
            props.topic_alias = alias
        parts = publish_parts(send_topic, msg.payload, qos, retain, dup, props, 5)
        if cache is not None:
            cache[key] = parts
    if conn.max_packet_out:
        size = len(parts[0]) + len(parts[1]) + (2 if qos else 0)
        if size > conn.max_packet_out:
            conn.broker.stats.dropped_too_large += 1
            return None
    if new_alias:
        # Commit the alias only now that the packet carrying it will be sent.
        aliases_out = conn.aliases_out
        assert aliases_out is not None and alias is not None
        if evicted is not None:
            del aliases_out[evicted]
        else:
            conn.next_alias += 1
        aliases_out[topic] = alias
    return parts


def write_publish(conn: Connection, parts: Parts, pid: int) -> None:
    """Write a QoS 1/2 PUBLISH (the shared head and tail around this client's packet id)."""
    head, tail = parts
    stats = conn.broker.stats
    stats.publish_sent += 1
    size = len(head) + len(tail) + 2
    stats.bytes_sent += size
    qos = (head[0] >> 1) & 3
    stats.publish_sent_qos[qos] += 1
    stats.publish_bytes_sent_qos[qos] += size
    conn.sink.writelines((head, pid.to_bytes(2, "big"), tail))


def over_hard_limit(conn: Connection) -> bool:
    return conn.congested and (
        conn.sink.get_write_buffer_size() > conn.broker.settings.output_hard_limit
    )


def send_qos0(
    conn: Connection,
    msg: Message,
    retain: bool,
    sub_ids: tuple[int, ...] | None,
    now: float,
    cache: dict[Any, Parts] | None,
) -> None:
    """QoS 0: written now, or dropped (counted) while the output is over its hard limit."""
    if (
        conn.congested
        and conn.sink.get_write_buffer_size() > conn.broker.settings.output_hard_limit
    ):
        stats = conn.broker.stats
        stats.dropped_qos0_buffer_full += 1
        if stats.dropped_qos0_buffer_full % 10000 == 1:  # a limit hit, not a log flood
            log.warning(
                "client %s (%s): output buffer over the hard limit; QoS 0 message "
                "dropped (%d so far, all clients)",
                conn.client_id,
                conn.peer,
                stats.dropped_qos0_buffer_full,
                extra={
                    "client_id": conn.client_id,
                    "peer": conn.peer,
                    "reason": "output buffer full",
                },
            )
        return
    parts = encode_publish(conn, msg, 0, retain, sub_ids, False, now, cache)
    if parts is None:
        return
    head = parts[0]
    conn.broker.stats.qos0_sent(1, len(head))
    conn.sink.write(head)


# -- fan-out -------------------------------------------------------------------


def fan_out(
    msg: Message,
    targets: Iterable[Target],
    sessions: dict[str, Session],
    receive: Any,
    deliver: Any,
    high_water: int,
    publisher: Connection | None,
    now: float,
    cache: dict[Any, Parts],
) -> int:
    """Deliver ``msg`` to the normal (non-shared) subscriptions it matched; return how
    many received it. ``receive(session, topic)`` / ``deliver(session, msg)`` are the
    router's filters (None: everyone may read). QoS 0 to a 3.1.1 client with room is
    written inline with bytes shared by every subscriber of that shape (stats added
    once after the loop); everything else goes through ``session.deliver``."""
    origin = msg.origin
    mqos = msg.qos
    mretain = msg.retain
    topic = msg.topic
    count = 0
    sent0 = bytes0 = 0
    stats0 = None
    for t in targets:
        if t.no_local and t.client_id == origin:
            kept = t.without_no_local()
            if kept is None:
                continue
            t = kept
        session = sessions.get(t.client_id)
        if session is None:
            continue
        if receive is not None and (
            not receive(session, topic) or (deliver is not None and not deliver(session, msg))
        ):
            continue  # ACL: this client may not read this topic
        qos = t.qos if t.qos < mqos else mqos
        conn = session.conn
        # [MQTT-3.3.1-9] RETAIN=0 to established subscriptions, unless
        # Retain As Published (v5, 3.8.3.1).
        if qos == 0 and conn is not None and not conn.v5 and not conn.congested:
            key = (0, mretain and t.retain_as_published, False)
            parts = cache.get(key)
            if parts is None:  # encode_publish's 3.1.1 branch, inlined (a frame less)
                parts = publish_parts(topic, msg.payload, 0, key[1], False, None, 4)
                cache[key] = parts
            head = parts[0]
            conn.sink.write(head)
            sent0 += 1
            bytes0 += len(head)
            stats0 = conn.broker.stats
        else:
            session.deliver(msg, qos, mretain and t.retain_as_published, t.sub_ids, now, cache)
        count += 1
        if (
            conn is not None
            and publisher is not None
            and (conn.congested or len(session.queue) > high_water)
        ):
            block_publisher(conn, publisher)
    if stats0 is not None:
        stats0.qos0_sent(sent0, bytes0)
    return count


def delivered_shared(session: Session, publisher: Connection | None, high_water: int) -> None:
    """After a shared-subscription delivery: pause the publisher if this member is backed up."""
    conn = session.conn
    if (
        conn is not None
        and publisher is not None
        and (conn.congested or len(session.queue) > high_water)
    ):
        block_publisher(conn, publisher)


# -- one session: deliver, in-flight window, queue ------------------------------


def deliver(
    session: Session,
    msg: Message,
    qos: int,
    retain: bool,
    sub_ids: tuple[int, ...] | None,
    now: float,
    cache: dict[Any, Parts] | None = None,
    shared: object | None = None,
) -> None:
    """Send now, queue, or drop one message for this client (``Session.deliver``)."""
    conn = session.conn
    if qos == 0:
        if conn is not None:
            send_qos0(conn, msg, retain, sub_ids, now, cache)
        return
    if (
        conn is not None
        and not session.queue
        and len(session.inflight) < conn.send_window
        and not (conn.congested and over_hard_limit(conn))
    ):
        send_new(session, conn, Delivery(msg, qos, retain, sub_ids, shared), now, cache)
    else:
        enqueue(session, Delivery(msg, qos, retain, sub_ids, shared))


def send_new(
    session: Session, conn: Connection, d: Delivery, now: float, cache: dict[Any, Parts] | None
) -> None:
    """Put a QoS 1/2 message in flight: packet id, record, write."""
    parts = encode_publish(conn, d.msg, d.qos, d.retain, d.sub_ids, False, now, cache)
    if parts is None:  # too large for this client or expired: treated as delivered
        if session.persisted:  # a queued one was recorded
            session.broker.storage.delivery_remove(session, d)
        return
    pid = session.alloc_pid()
    session.set_inflight(pid, d)
    if session.persisted:
        session.broker.storage.delivery_put(session, d, pid)
    write_publish(conn, parts, pid)
    if conn.blocked_by:
        unblock(conn)  # it must read our acknowledgements


def enqueue(session: Session, d: Delivery) -> bool:
    """Queue a QoS 1/2 message; False (dropped, counted) when the queue is full."""
    settings = session.broker.settings
    limit = settings.max_queued_messages
    blimit = settings.max_queued_bytes
    size = len(d.msg.payload)
    queue = session.queue
    if (
        (limit and len(queue) >= limit) or (blimit and session.queued_bytes + size > blimit)
    ) and not _in_margin(session, d.msg, len(queue), session.queued_bytes + size):
        session.dropped += 1
        session.broker.stats.dropped_queue_full += 1
        if session.dropped == 1 or session.dropped % 1000 == 0:  # a limit hit, not a log flood
            log.warning(
                "client %s: queue full (%d messages, %d bytes); message dropped (%d so far)",
                session.client_id,
                len(queue),
                session.queued_bytes,
                session.dropped,
                extra={
                    "client_id": session.client_id,
                    "reason": "queue full",
                    "dropped": session.dropped,
                },
            )
        return False
    if not queue:
        queue = session.queue = deque()  # created on first use (see Session.__init__)
    assert isinstance(queue, deque)
    queue.append(d)
    session.queued_bytes += size
    if session.persisted:
        session.broker.storage.delivery_put(session, d, 0)
    return True


def _in_margin(session: Session, msg: Message, n: int, nbytes: int) -> bool:
    """Over the queue limit, a message of a publisher this (online) subscriber has
    paused is still queued, up to PAUSE_MARGIN times the limits: it was on its way when
    the pause was asked for. A local publisher stops at once (its read waits,
    Connection.packets_received); one on another node a NATS round trip later, and a
    node that was cut off from NATS sends what it acknowledged meanwhile at once."""
    conn = session.conn
    if conn is None or not conn.paused_publishers:
        return False
    settings = session.broker.settings
    limit = settings.max_queued_messages
    blimit = settings.max_queued_bytes
    if (limit and n >= limit * PAUSE_MARGIN) or (blimit and nbytes > blimit * PAUSE_MARGIN):
        return False
    origin = msg.origin
    return any(p.client_id == origin for p in conn.paused_publishers)


def pump(session: Session, now: float) -> None:
    """Move queued messages into the in-flight window, oldest first [MQTT-4.6.0-*];
    release paused publishers once the queue is short and the output not congested."""
    conn = session.conn
    if conn is None:
        return
    queue = session.queue
    if isinstance(queue, deque) and queue:
        window = conn.send_window
        storage = session.broker.storage if session.persisted else None
        # session.inflight is re-read: the first send replaces the shared empty mapping.
        while queue and len(session.inflight) < window and not over_hard_limit(conn):
            d = queue.popleft()
            session.queued_bytes -= len(d.msg.payload)
            msg = d.msg
            if msg.expires_at is not None and now >= msg.expires_at:
                session.broker.stats.dropped_expired += 1
                if storage is not None:
                    storage.delivery_remove(session, d)
                continue
            send_new(session, conn, d, now, None)  # recorded in flight (or removed)
    # backlog and stuck live in the side objects (rare.py): reading them through the
    # descriptor costs ~75 ns, and this runs once per QoS 1/2 message; without a side
    # object both are at their defaults (no backlog, not stuck).
    if session._rare is not None and session.backlog and not queue:
        drain_backlog(session, now)
    if not conn.congested and len(queue) <= session.broker.filters.queue_low_water:
        if conn._rare is not None:
            conn.stuck = False
        if conn.paused_publishers:
            release_publishers(conn)


def drain_backlog(session: Session, now: float) -> None:
    """Send owed retained messages while the client can take them: QoS 0 until the
    output buffer is congested, QoS 1/2 while the in-flight window has room. The
    rest waits for writing_resumed / acknowledgements (both call pump)."""
    conn = session.conn
    backlog = session.backlog
    if conn is None or not backlog:
        return
    window = conn.send_window
    while backlog and not conn.congested:
        msg, qos, sub_ids = backlog[0]
        if qos:
            if len(session.inflight) >= window or session.queue:
                break
            backlog.popleft()
            if msg.expires_at is not None and now >= msg.expires_at:
                continue
            send_new(session, conn, Delivery(msg, qos, True, sub_ids), now, None)
        else:
            backlog.popleft()
            send_qos0(conn, msg, True, sub_ids, now, None)
    if not backlog:
        session.backlog = None


# -- back-pressure ---------------------------------------------------------------


def writing_paused(conn: Connection) -> None:
    """The transport's buffer is over its high water."""
    conn.congested = True


def writing_resumed(conn: Connection) -> None:
    """The transport drained: send what waits, then let publishers go."""
    conn.congested = False
    conn.stuck = False
    session = conn.session
    if session is not None and session.conn is conn and (session.queue or session.backlog):
        pump(session, conn.broker.clock())  # releases publishers once the queue is short
    else:
        release_publishers(conn)


def block_publisher(conn: Connection, publisher: Connection) -> None:
    """Pause reading from a publisher while this (subscriber) connection is congested
    or its queue is long. A publisher that has QoS 1/2 messages in flight toward it
    is not paused: we must keep reading its acknowledgements (or two clients
    publishing to each other would wait on each other forever)."""
    paused = conn.paused_publishers
    if publisher is conn or conn.stuck or publisher.state == CLOSED or publisher in paused:
        return
    psession = publisher.session
    if psession is not None and psession.inflight:
        return
    if not isinstance(paused, set):
        paused = conn.paused_publishers = set()  # created on first use
    if not paused:
        conn.blocking_since = conn.broker.clock()
    paused.add(publisher)
    hold_reading(publisher, conn)


def hold_reading(conn: Connection, holder: Any) -> None:
    """Stop reading from ``conn`` on behalf of ``holder`` (a subscriber's connection, or
    a marker such as the rate limiter's or the plug-ins'): reading stops with the first
    holder and resumes when the last one lets go. The one place ``blocked_by`` is made."""
    blocked = conn.blocked_by
    if not isinstance(blocked, set):
        blocked = conn.blocked_by = set()  # created on first use
    blocked.add(holder)
    if len(blocked) == 1:
        conn.sink.pause_reading()


def let_go(conn: Connection, holder: Any, now: float) -> bool:
    """Undo ``hold_reading(conn, holder)``: reading resumes once nobody else holds it.
    False if ``holder`` did not hold it (released already, or ``unblock`` cleared it)."""
    blocked = conn.blocked_by
    if holder not in blocked:
        return False
    assert isinstance(blocked, set)  # non-empty: created by hold_reading
    blocked.discard(holder)
    if not blocked and conn.state != CLOSED and conn.sink is not None:
        conn.last_rx = now  # it could not send PINGREQ while paused
        conn.sink.resume_reading()
    return True


def release_publishers(conn: Connection) -> None:
    """Resume every publisher this connection paused (unless another still pauses it)."""
    paused = conn.paused_publishers
    if not paused:
        return
    assert isinstance(paused, set)  # non-empty: created by block_publisher
    now = conn.broker.clock()
    for pub in paused:
        blocked = pub.blocked_by
        assert isinstance(blocked, set)  # it holds conn
        blocked.discard(conn)
        if not blocked and pub.state != CLOSED:
            pub.last_rx = now  # it could not send PINGREQ while paused
            pub.sink.resume_reading()
    paused.clear()
    conn.blocking_since = 0.0


def unblock(conn: Connection) -> None:
    """Resume reading from this connection whoever paused it (it has acks to send us)."""
    blocked_by = conn.blocked_by
    if not blocked_by:
        return
    assert isinstance(blocked_by, set)  # non-empty: created on first use
    for sub in blocked_by:
        paused = sub.paused_publishers
        if isinstance(paused, set):
            paused.discard(conn)
    blocked_by.clear()
    if conn.state != CLOSED:
        conn.last_rx = conn.broker.clock()
        conn.sink.resume_reading()


def check_stuck(conn: Connection, now: float) -> None:
    """A subscriber that keeps publishers paused too long (it does not read, or does
    not acknowledge) stops pausing them: from then on it only has its own bounds
    (output hard limit, queue limit) and others flow again. It pauses publishers
    again once it has drained."""
    if (
        conn.paused_publishers
        and now - conn.blocking_since > conn.broker.settings.max_publisher_pause
    ):
        log.info(
            "client %s (%s): not keeping up; publishers no longer wait for it",
            conn.client_id,
            conn.peer,
        )
        conn.stuck = True
        release_publishers(conn)
