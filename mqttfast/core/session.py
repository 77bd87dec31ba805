"""Session state that outlives a network connection (4.1), and outgoing QoS delivery.

A session holds the client's subscriptions, the outgoing QoS 1/2 messages in
flight (by packet id, in send order, for redelivery with DUP after a
reconnect [MQTT-4.4.0-1]), the queue of QoS 1/2 messages waiting for the
in-flight window or for the client to come back, and the packet ids of
incoming QoS 2 messages that await PUBREL (exactly once, method B of 4.3.3:
the message is forwarded on PUBLISH and the id remembered so a re-sent
PUBLISH is not forwarded again).

Queue limit (mosquitto's behaviour): when ``max_queued_messages`` or
``max_queued_bytes`` is reached, the NEW message is dropped for this session
and counted (``Session.dropped``, ``Stats.dropped_queue_full``). QoS 0
messages are never queued for an offline client, and are dropped (counted in
``Stats.dropped_qos0_buffer_full``) while the client's output buffer is over
the hard limit.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from . import outbound
from .message import AWAIT_ACK, AWAIT_COMP, Delivery, Message
from .rare import Rare, rare_store
from .subscriptions import SubEntry

log = logging.getLogger("mqttfast.core")

if TYPE_CHECKING:
    from .broker import BrokerCore
    from .connection import Connection

_NO_IDS: frozenset[int] = frozenset()
_EMPTY: Mapping[Any, Any] = MappingProxyType({})


# Session fields a connected clean session never changes from their defaults (expiry
# while offline, a delayed will, the retained backlog, the drop count): kept in one object
# created by the first write of a non-default value (rare.py; issue 17).
_Rare = rare_store(
    "SessionRare",
    {
        "expiry_interval": 0,
        "expires_at": None,  # set while offline
        "pending_will": None,  # v5 delayed will
        "will_at": None,
        "dropped": 0,
        # Retained messages owed for a SUBSCRIBE, fed out as the window and the output
        # buffer allow (a '#' over 100,000 retained must neither drop nor flood).
        "backlog": None,
    },
)


class Session:
    __slots__ = (
        "client_id",
        "broker",
        "subscriptions",
        "inflight",
        "next_pid",
        "queue",
        "queued_bytes",
        "awaiting_pubrel",
        "conn",
        "persisted",
        "username",
        "_rare",
    )

    # The fields kept in _rare (see _Rare above).
    expiry_interval: Rare[int] = Rare(_Rare, "expiry_interval")
    expires_at: Rare[float | None] = Rare(_Rare, "expires_at")
    pending_will: Rare[Message | None] = Rare(_Rare, "pending_will")
    will_at: Rare[float | None] = Rare(_Rare, "will_at")
    dropped: Rare[int] = Rare(_Rare, "dropped")
    backlog: Rare[deque[tuple[Message, int, tuple[int, ...] | None]] | None] = Rare(
        _Rare, "backlog"
    )

    def __init__(self, client_id: str, broker: BrokerCore) -> None:
        self.client_id = client_id
        self.broker = broker
        # Created on first use, like the queue below; the shared empty default is a
        # read-only mapping, so writing to it by mistake fails instead of leaking.
        self.subscriptions: Mapping[str, SubEntry] = _EMPTY  # full filter -> entry
        self.inflight: Mapping[int, Delivery] = _EMPTY  # packet id -> delivery, in send order
        self.next_pid = 0
        # Created on first use (a deque costs ~760 bytes, a set 216): most sessions never
        # queue and never receive QoS 2. The shared empty defaults are immutable.
        self.queue: deque[Delivery] | tuple[()] = ()
        self.queued_bytes = 0
        self.awaiting_pubrel: AbstractSet[int] = _NO_IDS  # incoming QoS 2 ids
        self.conn: Connection | None = None
        self.persisted = False  # recorded by broker.storage (set by the storage itself)
        self.username: str | None = None  # of the last connection (for authorise_receive)
        self._rare: Any = None  # a _Rare holding the fields above, once one is set
        # (No created_at: nothing read it, and a float is 24 bytes per session.)

    # -- outgoing -----------------------------------------------------------

    def await_pubrel(self, pid: int) -> None:
        """Remember an incoming QoS 2 packet id until its PUBREL [MQTT-4.3.3-9]."""
        ids = self.awaiting_pubrel
        if isinstance(ids, set):
            ids.add(pid)
        else:
            self.awaiting_pubrel = {pid}

    def pubrel_received(self, pid: int) -> bool:
        """Forget an incoming QoS 2 packet id; False when it was not awaited."""
        ids = self.awaiting_pubrel
        if pid not in ids:
            return False
        assert isinstance(ids, set)
        ids.discard(pid)
        return True

    def set_inflight(self, pid: int, d: Delivery) -> None:
        """Record a message in flight under its packet id (send order is kept)."""
        inflight = self.inflight
        if not isinstance(inflight, dict):
            inflight = self.inflight = {}
        inflight[pid] = d

    def drop_inflight(self, pid: int) -> None:
        """Forget an acknowledged (or dropped) message in flight; the id must be there."""
        inflight = self.inflight
        assert isinstance(inflight, dict)
        del inflight[pid]

    def set_subscription(self, entry: SubEntry) -> None:
        subs = self.subscriptions
        if not isinstance(subs, dict):
            subs = self.subscriptions = {}
        subs[entry.full_filter] = entry

    def pop_subscription(self, full_filter: str) -> SubEntry | None:
        subs = self.subscriptions
        return subs.pop(full_filter, None) if isinstance(subs, dict) else None

    def restore_queued(self, d: Delivery) -> None:
        """Put back a queued message read from storage (no limits: it was accepted)."""
        if not self.queue:
            self.queue = deque()
        assert isinstance(self.queue, deque)
        self.queue.append(d)
        self.queued_bytes += len(d.msg.payload)

    def has_room(self) -> bool:
        conn = self.conn
        return conn is not None and not self.queue and len(self.inflight) < conn.send_window

    def alloc_pid(self) -> int:
        """Next free packet id, skipping ids still in flight [MQTT-2.3.1-2]."""
        pid = self.next_pid
        inflight = self.inflight
        while True:
            pid = pid + 1 if pid < 65535 else 1
            if pid not in inflight:
                self.next_pid = pid
                return pid

    # The outbound path (outbound.py) as methods: deliver, queue, in-flight window.
    deliver = outbound.deliver
    enqueue = outbound.enqueue
    pump = outbound.pump
    drain_backlog = outbound.drain_backlog

    def add_retained(
        self, msg: Message, qos: int, sub_ids: tuple[int, ...] | None, now: float
    ) -> None:
        """Owe one retained message (RETAIN=1) for a subscription; sent by drain_backlog."""
        if self.backlog is None:
            self.backlog = deque()
        self.backlog.append((msg, qos, sub_ids))

    def backlog_to_queue(self) -> None:
        """Connection gone: QoS 1/2 retained messages still owed join the (bounded) queue."""
        backlog = self.backlog
        self.backlog = None
        if backlog:
            for msg, qos, sub_ids in backlog:
                if qos:
                    self.enqueue(Delivery(msg, qos, True, sub_ids))

    def resend_inflight(self, conn: Connection, now: float) -> None:
        """On session resumption: PUBLISH again with DUP=1 what was not acknowledged,
        PUBREL again what awaits PUBCOMP, in the original order [MQTT-4.4.0-1]."""
        for pid, d in list(self.inflight.items()):
            if d.state == AWAIT_ACK:
                parts = conn.encode_publish(
                    d.msg, d.qos, d.retain, d.sub_ids, True, now, None, allow_expired=True
                )
                if parts is None:
                    self.drop_inflight(pid)
                    if self.persisted:
                        self.broker.storage.delivery_remove(self, d)
                    continue
                conn.write_publish(parts, pid)
            else:
                conn.send_pubrel(pid)

    # -- acknowledgements ---------------------------------------------------

    def puback(self, pid: int, now: float) -> bool:
        d = self.inflight.get(pid)
        if d is None or d.qos != 1:
            return False
        self.drop_inflight(pid)
        if self.persisted:
            self.broker.storage.delivery_remove(self, d)
        self.pump(now)
        return True

    def pubrec(self, pid: int, failed: bool, now: float) -> bool:
        """True if the id is known. A failure reason code ends the flow (4.3.3)."""
        d = self.inflight.get(pid)
        if d is None or d.qos != 2:
            return False
        if failed:
            self.drop_inflight(pid)
            if self.persisted:
                self.broker.storage.delivery_remove(self, d)
            self.pump(now)
        else:
            d.state = AWAIT_COMP
            if self.persisted:
                self.broker.storage.delivery_put(self, d, pid)
        return True

    def pubcomp(self, pid: int, now: float) -> bool:
        d = self.inflight.get(pid)
        if d is None or d.state != AWAIT_COMP:
            return False
        self.drop_inflight(pid)
        if self.persisted:
            self.broker.storage.delivery_remove(self, d)
        self.pump(now)
        return True

    def take_shared_deliveries(self, include_inflight: bool) -> list[Delivery]:
        """Remove and return messages that came through shared subscriptions, so
        another member can have them (4.8.2): queued ones of any QoS (never sent) and
        in-flight QoS 1 ones; in-flight QoS 2 ones are dropped with the session."""
        out = [d for d in self.queue if d.shared is not None]
        if out:
            self.queue = deque(d for d in self.queue if d.shared is None) or ()
            self.queued_bytes = sum(len(d.msg.payload) for d in self.queue)
        if include_inflight:
            for pid, d in list(self.inflight.items()):
                # Only QoS 1: a QoS 2 message already sent must not go to another
                # member when this session ends [MQTT-4.8.2-5].
                if d.shared is not None and d.qos == 1:
                    self.drop_inflight(pid)
                    out.append(d)
        if out and self.persisted:
            for d in out:
                self.broker.storage.delivery_remove(self, d)
        return out
