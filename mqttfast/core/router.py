"""The one routing seam: every message the broker accepts goes through ``Router.publish``.

:class:`LocalRouter` delivers to sessions of this process. A multi-process or
multi-node backplane implements the same interface (forwarding to peers and
delivering locally) without touching sessions, connections or the codec.

Fan-out encodes once per distinct shape: the per-message ``cache`` dict
handed to ``Session.deliver`` maps (QoS, retain, dup, properties shape) to the
``(head, tail)`` of ``mqttfast.codec.publish_parts``; every subscriber of that
shape gets the same bytes objects (only the 2-byte packet id differs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from .message import Message
from .retained import RetainedStore
from .subscriptions import SubEntry, SubscriptionStore

if TYPE_CHECKING:
    from .connection import Connection
    from .session import Session


class Router(Protocol):
    def hold_suback(self, conn: Connection, finish: Callable[[], None]) -> bool:
        """True if the router calls ``finish`` (SUBACK, retained messages) later itself;
        a cluster router does once the other nodes know a new interest. Local: False."""

    def publish(self, msg: Message, now: float, publisher: Connection | None = None) -> int:
        """Store if retained, deliver to every matching subscription; return how
        many subscriptions received it (PUBACK 0x10 when 0)."""

    def subscribe(self, session: Session, entry: SubEntry) -> bool:
        """Add or replace; True when new."""

    def unsubscribe(self, session: Session, full_filter: str) -> bool: ...

    def drop_session(self, session: Session) -> None:
        """Forget every subscription of a session that ended."""

    def retained_for(self, topic_filter: str, now: float) -> list[Message]: ...


class LocalRouter:
    def __init__(
        self,
        sessions: dict[str, Session],
        subscriptions: SubscriptionStore,
        retained: RetainedStore,
        retain_available: bool = True,
    ) -> None:
        self.sessions = sessions
        self.subscriptions = subscriptions
        self.retained = retained
        self.retain_available = retain_available
        # Queue length of an online subscriber above which its publishers are paused.
        self.queue_high_water = 1000
        # hooks.authorise_receive(session, topic) when the broker's hooks check deliveries.
        self.receive_check: Any = None
        # Plug-ins' on_deliver(session, msg) -> bool; only consulted when receive_check is
        # set too (mqttfast.plugins sets both), so the loop keeps a single test.
        self.deliver_check: Any = None

    def hold_suback(self, conn: Connection, finish: Callable[[], None]) -> bool:
        return False  # one node: every interest is known at once

    def publish(self, msg: Message, now: float, publisher: Connection | None = None) -> int:
        if msg.retain and self.retain_available:
            self.retained.store(msg)
        normal, shared = self.subscriptions.match(msg.topic)
        if not normal and not shared:
            return 0
        sessions = self.sessions
        cache: dict = {}
        origin = msg.origin
        mqos = msg.qos
        mretain = msg.retain
        count = 0
        high = self.queue_high_water
        receive = self.receive_check
        deliver = self.deliver_check
        topic = msg.topic
        sent0 = bytes0 = 0
        stats0 = None
        for t in normal:
            if t.no_local and t.client_id == origin:
                t = t.without_no_local()  # type: ignore[assignment]
                if t is None:
                    continue
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
                # Fast path (what session.deliver -> send_qos0 does here, minus three calls
                # per delivery): QoS 0 to a 3.1.1 client with room gets the bytes shared by
                # every subscriber of this shape; stats are added once after the loop.
                key = (0, mretain and t.retain_as_published, False)
                parts = cache.get(key)
                if parts is None:
                    parts = conn.encode_publish(msg, 0, key[1], None, False, now, cache)
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
                and (conn.congested or len(session.queue) > high)
            ):
                conn.block_publisher(publisher)
        if stats0 is not None:
            stats0.qos0_sent(sent0, bytes0)
        for group in shared:
            picked = group.pick(sessions)
            if picked is None:
                continue
            session, entry = picked
            if receive is not None and (
                not receive(session, topic) or (deliver is not None and not deliver(session, msg))
            ):
                continue
            qos = entry.qos if entry.qos < mqos else mqos
            sub_ids = (entry.sub_id,) if entry.sub_id is not None else None
            session.deliver(
                msg, qos, mretain and entry.retain_as_published, sub_ids, now, cache, shared=group
            )
            count += 1
            conn = session.conn
            if (
                conn is not None
                and publisher is not None
                and (conn.congested or len(session.queue) > high)
            ):
                conn.block_publisher(publisher)
        return count

    def redistribute(self, deliveries: list, exclude: str, now: float) -> None:
        """Give shared-subscription messages of a departed member to another member."""
        for d in deliveries:
            group = d.shared
            if not group.members:
                continue
            picked = group.pick(self.sessions, exclude=exclude)
            if picked is None:
                continue
            session, entry = picked
            if self.receive_check is not None and not self.receive_check(session, d.msg.topic):
                continue
            qos = entry.qos if entry.qos < d.msg.qos else d.msg.qos
            sub_ids = (entry.sub_id,) if entry.sub_id is not None else None
            session.deliver(d.msg, qos, d.retain, sub_ids, now, None, shared=group)

    def subscribe(self, session: Session, entry: SubEntry) -> bool:
        full = entry.full_filter
        session.subscriptions[full] = entry
        return self.subscriptions.add(entry)

    def unsubscribe(self, session: Session, full_filter: str) -> bool:
        entry = session.subscriptions.pop(full_filter, None)
        if entry is None:
            return False
        return self.subscriptions.remove(entry.client_id, entry.topic_filter, entry.group)

    def drop_session(self, session: Session) -> None:
        self.subscriptions.remove_all(session.subscriptions.values())
        session.subscriptions.clear()

    def retained_for(self, topic_filter: str, now: float) -> list[Message]:
        return self.retained.match(topic_filter, now)
