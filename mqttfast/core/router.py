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

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from . import outbound
from .message import Delivery, Message
from .retained import RetainedStore
from .subscriptions import SubEntry, SubscriptionStore

if TYPE_CHECKING:
    from .connection import Connection
    from .session import Session


EMPTY_SUBSCRIPTIONS: Mapping[str, SubEntry] = MappingProxyType({})


class DeliveryFilters:
    """What decides, per subscriber, whether and how fast a message is delivered; built
    by the broker core from its hooks and settings and handed to the router at
    construction (the same object stays shared, so a plug-in manager that installs
    ``deliver_check`` later changes it here, not through the router's attributes).

    ``receive_check(session, topic) -> bool``: read authorisation per delivery (ACLs),
    or None. ``deliver_check(session, msg) -> bool``: plug-ins' on_deliver, consulted
    only when ``receive_check`` is set too (so the delivery loop keeps one test).
    ``queue_high_water``: a subscriber's queue length above which the publisher feeding
    it is paused; ``queue_low_water``: below it, paused publishers are released.
    """

    __slots__ = ("receive_check", "deliver_check", "queue_high_water", "queue_low_water")

    def __init__(
        self,
        receive_check: Callable[[Session, str], bool] | None = None,
        deliver_check: Callable[[Session, Message], bool] | None = None,
        queue_high_water: int = 1000,
    ) -> None:
        self.receive_check = receive_check
        self.deliver_check = deliver_check
        self.queue_high_water = queue_high_water
        self.queue_low_water = queue_high_water // 2


class Router(Protocol):
    """Everything the broker core (and the embedding API, persistence recovery, a
    cluster backplane wrapping it) calls on a router. The delivery filters are not
    part of it: the core keeps them (``BrokerCore.filters``) and gives them to the
    LocalRouter it builds."""

    def hold_suback(self, conn: Connection, finish: Callable[[], None]) -> bool:
        """True if the router calls ``finish`` (SUBACK, retained messages) later itself;
        a cluster router does once the other nodes know a new interest. Local: False."""

    def bind_output(self, flusher: Any) -> None:
        """The transport built its output flusher (transport/tcp.py): a router may hold
        acknowledgements there (a cluster router until NATS has the message: its gate in
        front of the storage's, and, when it is the only one, ``flusher.gated``, the
        connections whose output it may hold). Local: no-op."""

    # True if the router wants ``qos2_publish`` before each QoS 2 PUBLISH is routed.
    tracks_qos2: bool

    def qos2_publish(self, conn: Connection, packet_id: int, dup: bool) -> None:
        """The next ``publish`` is of a QoS 2 PUBLISH of ``conn`` with this packet id
        and DUP flag (a cluster router tells a re-sent copy apart). Local: no-op."""

    def qos2_resent(self, conn: Connection, packet_id: int) -> bool:
        """``conn`` re-sent a QoS 2 PUBLISH whose packet id is not released yet: True if
        it must be routed again (a cluster router whose first forward may have been
        lost before its PUBREC could leave). Local: False, never [MQTT-4.3.3-9]."""

    def publish(self, msg: Message, now: float, publisher: Connection | None = None) -> int:
        """Store if retained, deliver to every matching subscription; return how
        many subscriptions received it (PUBACK 0x10 when 0)."""

    def subscribe(self, session: Session, entry: SubEntry) -> bool:
        """Add or replace; True when new."""

    def unsubscribe(self, session: Session, full_filter: str) -> bool:
        """Remove one subscription of a session by its full filter; True when it existed."""

    def drop_session(self, session: Session) -> None:
        """Forget every subscription of a session that ended."""

    def redistribute(self, deliveries: list[Delivery], exclude: str, now: float) -> None:
        """Give shared-subscription messages of a departed member to another member."""

    def retained_for(self, topic_filter: str, now: float) -> list[Message]:
        """The retained messages a new subscription to ``topic_filter`` receives."""


class LocalRouter:
    """Delivers to the sessions of this process (the outbound path is outbound.py)."""

    tracks_qos2 = False

    def __init__(
        self,
        sessions: dict[str, Session],
        subscriptions: SubscriptionStore,
        retained: RetainedStore,
        retain_available: bool = True,
        filters: DeliveryFilters | None = None,
    ) -> None:
        self.sessions = sessions
        self.subscriptions = subscriptions
        self.retained = retained
        self.retain_available = retain_available
        self.filters = filters if filters is not None else DeliveryFilters()

    # Read-through for older callers (plug-in manager); the filters object is the truth.
    @property
    def receive_check(self) -> Callable[[Session, str], bool] | None:
        return self.filters.receive_check

    @receive_check.setter
    def receive_check(self, check: Callable[[Session, str], bool] | None) -> None:
        self.filters.receive_check = check

    @property
    def deliver_check(self) -> Callable[[Session, Message], bool] | None:
        return self.filters.deliver_check

    @deliver_check.setter
    def deliver_check(self, check: Callable[[Session, Message], bool] | None) -> None:
        self.filters.deliver_check = check

    def hold_suback(self, conn: Connection, finish: Callable[[], None]) -> bool:
        return False  # one node: every interest is known at once

    def bind_output(self, flusher: Any) -> None:
        pass  # one node: an acknowledgement waits for nobody but the storage

    def qos2_publish(self, conn: Connection, packet_id: int, dup: bool) -> None:
        pass  # one node: the session's own packet ids tell re-sent copies apart

    def qos2_resent(self, conn: Connection, packet_id: int) -> bool:
        return False  # one node: what was handled was delivered

    def publish(self, msg: Message, now: float, publisher: Connection | None = None) -> int:
        if msg.retain and self.retain_available:
            self.retained.store(msg)
        subscriptions = self.subscriptions
        # SubscriptionStore.match's cache hit, inlined (one frame less per message)
        hit = subscriptions.cache.get(msg.topic)
        normal, shared = hit if hit is not None else subscriptions.match(msg.topic)
        if not normal and not shared:
            return 0
        sessions = self.sessions
        cache: dict[Any, tuple[bytes, bytes]] = {}
        filters = self.filters
        receive = filters.receive_check
        deliver = filters.deliver_check
        high = filters.queue_high_water
        count = 0
        if normal:
            count = outbound.fan_out(
                msg, normal, sessions, receive, deliver, high, publisher, now, cache
            )
        if not shared:
            return count
        topic = msg.topic
        mqos = msg.qos
        mretain = msg.retain
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
            outbound.delivered_shared(session, publisher, high)
        return count

    def redistribute(self, deliveries: list[Delivery], exclude: str, now: float) -> None:
        """Give shared-subscription messages of a departed member to another member."""
        receive = self.filters.receive_check
        for d in deliveries:
            group: Any = d.shared
            if not group.members:
                continue
            picked = group.pick(self.sessions, exclude=exclude)
            if picked is None:
                continue
            session, entry = picked
            if receive is not None and not receive(session, d.msg.topic):
                continue
            qos = entry.qos if entry.qos < d.msg.qos else d.msg.qos
            sub_ids = (entry.sub_id,) if entry.sub_id is not None else None
            session.deliver(d.msg, qos, d.retain, sub_ids, now, None, shared=group)

    def subscribe(self, session: Session, entry: SubEntry) -> bool:
        session.set_subscription(entry)
        return self.subscriptions.add(entry)

    def unsubscribe(self, session: Session, full_filter: str) -> bool:
        entry = session.pop_subscription(full_filter)
        if entry is None:
            return False
        return self.subscriptions.remove(entry.client_id, entry.topic_filter, entry.group)

    def drop_session(self, session: Session) -> None:
        self.subscriptions.remove_all(session.subscriptions.values())
        session.subscriptions = EMPTY_SUBSCRIPTIONS

    def retained_for(self, topic_filter: str, now: float) -> list[Message]:
        return self.retained.match(topic_filter, now)
