"""Back-pressure across nodes: a subscriber that cannot keep up pauses the publisher
feeding it, also when that publisher is connected to another node.

On one node, a subscriber whose output is congested or whose queue is over the high
water pauses reading from the publisher of the message (core/outbound.py,
``block_publisher``) and releases it when it drained. NATS core has no flow control, so
before this a publisher on another node went on at full speed and, once the
subscriber's queue was full (``max_queued_messages``), QoS 1/2 messages already
acknowledged to their publisher were dropped.

* Subscriber's node: a message from another node carries its publisher's client id
  (``Mqtt-Origin``). The router hands the core a :class:`RemotePublisher` for it (one per
  client id, kept while it is paused or recently used), which the core pauses and
  releases exactly as it would a local connection. Pausing it publishes
  ``<ctl>.bp`` ``1\\0<node>\\0<client id>``, releasing it ``0\\0...``. The core's
  own bound applies unchanged: a subscriber that keeps publishers paused longer than
  ``max_publisher_pause`` stops pausing them (``check_stuck``).
* Every node receives those (client ids are unique in the cluster); the node where that
  client is connected stops reading from it on behalf of the pausing node
  (``hold_reading`` with a :class:`RemoteHold` marker, so local pauses, the rate limiter
  and plug-ins keep their own say) until the release; as locally, a publisher with QoS
  1/2 messages in flight toward it is not paused (two clients publishing to each other
  would wait on each other).
* A release may be lost (the pausing node died or lost NATS): a hold ends after
  ``HOLD_MAX`` seconds unless a new pause refreshed it; every hold of a node ends when
  it is declared dead, and all of them when this node loses NATS.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from mqttfast.core.outbound import hold_reading, let_go
from mqttfast.core.states import CLOSED, CONNECTED

log = logging.getLogger("mqttfast.cluster")

HOLD_MAX = 5.0  # seconds a remote pause lasts without being renewed
PROXIES_MAX = 4096  # remote publishers remembered (the paused ones are always kept)


class RemotePublisher:
    """Stands in the core's back-pressure for a publisher connected to another node
    (the attributes ``block_publisher`` / ``release_publishers`` read); its "reading" is
    the pause that node applies on this one's request."""

    __slots__ = ("client_id", "blocked_by", "last_rx", "send", "sink")

    state = CONNECTED  # never CLOSED: its node says when it goes
    session = None  # no QoS 1/2 in flight toward it here

    def __init__(self, client_id: str, send: Callable[[bool, str], None]) -> None:
        self.client_id = client_id
        self.blocked_by: Any = frozenset()  # hold_reading makes it a set
        self.last_rx = 0.0
        self.send = send
        self.sink = self

    def pause_reading(self) -> None:
        self.send(True, self.client_id)

    def resume_reading(self) -> None:
        self.send(False, self.client_id)

    def __repr__(self) -> str:
        return f"<remote publisher {self.client_id!r}>"


class RemoteHold:
    """Stands in ``Connection.blocked_by`` for a node that paused a local publisher;
    ``outbound.unblock`` expects every member to have ``paused_publishers``."""

    __slots__ = ("node",)
    paused_publishers: frozenset[Any] = frozenset()

    def __init__(self, node: str) -> None:
        self.node = node

    def __repr__(self) -> str:
        return f"<paused by node {self.node}>"


class Pressure:
    """Both sides of the cross-node pause for one node."""

    def __init__(self, node_id: str, publish: Callable[[bytes], None]) -> None:
        self.node_id = node_id
        self.publish = publish  # a control message to every node (NATS, fire and forget)
        self.proxies: dict[str, RemotePublisher] = {}
        self.markers: dict[str, RemoteHold] = {}
        # node -> {local connection: deadline}
        self.held: dict[str, dict[Any, float]] = {}
        self.stats = {"remote_pauses_sent": 0, "remote_pauses_applied": 0}

    # -- the subscriber's node -------------------------------------------------

    def publisher(self, client_id: str) -> RemotePublisher:
        """The stand-in for ``client_id``'s connection on another node."""
        proxy = self.proxies.get(client_id)
        if proxy is None:
            if len(self.proxies) >= PROXIES_MAX:
                self.proxies = {c: p for c, p in self.proxies.items() if p.blocked_by}
            proxy = self.proxies[client_id] = RemotePublisher(client_id, self._send)
        return proxy

    def _send(self, on: bool, client_id: str) -> None:
        if on:
            self.stats["remote_pauses_sent"] += 1
        self.publish(b"\0".join((b"1" if on else b"0", self.node_id.encode(), client_id.encode())))

    # -- the publisher's node --------------------------------------------------

    def received(self, data: bytes, core: Any, now: float) -> None:
        """A pause or release from another node (every node gets it)."""
        try:
            flag, node_b, cid_b = data.split(b"\0", 2)
            node, cid = node_b.decode(), cid_b.decode()
        except ValueError:
            return
        if node == self.node_id:
            return
        session = core.sessions.get(cid)
        conn = session.conn if session is not None else None
        held = self.held.get(node)
        if flag == b"0":
            if held is not None and conn is not None and held.pop(conn, None) is not None:
                let_go(conn, self.markers[node], now)
            return
        if conn is None or conn.state != CONNECTED or session.inflight:
            return
        marker = self.markers.get(node)
        if marker is None:
            marker = self.markers[node] = RemoteHold(node)
        if held is None:
            held = self.held[node] = {}
        if conn not in held:
            hold_reading(conn, marker)
            self.stats["remote_pauses_applied"] += 1
        held[conn] = now + HOLD_MAX

    def expire(self, now: float) -> None:
        """(heartbeat) holds whose release never came, and closed connections."""
        for node, held in self.held.items():
            late = [c for c, t in held.items() if t <= now or c.state == CLOSED]
            for conn in late:
                del held[conn]
                if let_go(conn, self.markers[node], now) and conn.state != CLOSED:
                    log.info("cluster: pause of %s by node %s expired", conn.client_id, node)

    def release_node(self, node: str, now: float) -> None:
        """``node`` is gone (dead): nothing it paused stays paused."""
        held = self.held.pop(node, None)
        marker = self.markers.get(node)
        if held and marker is not None:
            for conn in held:
                let_go(conn, marker, now)

    def release_all(self, now: float) -> None:
        """This node lost NATS: no release can reach it."""
        for node in list(self.held):
            self.release_node(node, now)

    def paused_here(self) -> int:
        return sum(len(h) for h in self.held.values())
