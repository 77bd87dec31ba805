"""Per-connection protocol state and packet dispatch (mosquitto's read_handle.c).

The transport creates one :class:`Connection` per socket through
``BrokerCore.connection_made(sink)`` and feeds it decoded packets. The
connection writes bytes to the sink; it never sees a socket.

States: AWAIT_CONNECT -> (AUTHENTICATING ->) CONNECTED -> CLOSED.
Before CONNACK only CONNECT (and AUTH during enhanced authentication) is
accepted; anything else closes the connection [MQTT-3.1.0-1]. A second
CONNECT is a protocol violation [MQTT-3.1.0-2].
"""

from __future__ import annotations

import logging
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Any, Protocol

from mqttfast.codec import encode
from mqttfast.codec.constants import CONNACK_REASON_CODES, DISCONNECT_REASON_CODES, ReasonCode
from mqttfast.codec.errors import MQTTError
from mqttfast.codec.packets import Connack, Disconnect, Properties, Pubrel, Will

from . import outbound
from .rare import Rare, rare_store
from .sink import Sink
from .states import AUTH_WAIT, AUTHENTICATING, AWAIT_CONNECT, CLOSED, CONNECTED, ConnState

if TYPE_CHECKING:
    from .broker import BrokerCore
    from .session import Session

log = logging.getLogger("mqttfast.core")

_NOBODY: frozenset[Any] = frozenset()
_LIMITS: dict[float, float] = {0.0: 0.0}  # keep alive limits, shared (Connection.keepalive_limit)


class PeerSource(Protocol):
    """What a transport may give instead of the peer's address string: it makes the
    string when asked (logs, the admin API), so an idle connection does not hold one."""

    def peer_name(self) -> str: ...


# Re-exported for the handle_* modules (the states are ConnState members).
__all__ = ["AUTH_WAIT", "AUTHENTICATING", "AWAIT_CONNECT", "CLOSED", "CONNECTED", "Connection"]


# The Connection fields most connections never change from their defaults (v5 topic
# aliases, the will, enhanced authentication, back-pressure bookkeeping, ...): kept in one
# object created by the first write of a non-default value (rare.py; issue 17: 120 bytes
# less per idle connection).
_Rare = rare_store(
    "ConnectionRare",
    {
        # Topic aliases (v5 only), created on first use.
        "alias_out_max": 0,  # the client's Topic Alias Maximum
        "aliases_out": None,  # dict[str, int]
        "next_alias": 1,
        "aliases_in": None,  # dict[int, str]
        "will": None,
        "will_delay": 0,
        "connect_expiry": 0,  # Session Expiry from CONNECT (for the DISCONNECT rule)
        "problem_info": True,
        "blocking_since": 0.0,  # when we first paused a publisher (0 = we pause none)
        "stuck": False,  # paused publishers longer than allowed: stop pausing
        "auth_method": None,
        "auth_state": None,
        "pending_connect": None,
        "assigned_id": False,
        # Set by a listener with use_identity_as_username: the client certificate's
        # identity ("" = none); None = the listener does not use certificates as usernames.
        "cert_identity": None,
        "held": None,  # packets behind a CONNECT in AUTH_WAIT
        "deferred": None,  # packets read in the batch that paused us, not handled yet
    },
)


class Connection:
    __slots__ = (
        "broker",
        "sink",
        "_peer",
        "state",
        "protocol_version",
        "v5",
        "client_id",
        "username",
        "session",
        "created_at",
        "last_rx",
        "keep_alive",
        "_keepalive_limit",
        "send_window",
        "max_packet_out",
        "congested",
        "paused_publishers",
        "blocked_by",
        "_rare",
        "__weakref__",
    )

    # The fields kept in _rare (see _Rare above).
    alias_out_max: Rare[int] = Rare(_Rare, "alias_out_max")
    aliases_out: Rare[dict[str, int] | None] = Rare(_Rare, "aliases_out")
    next_alias: Rare[int] = Rare(_Rare, "next_alias")
    aliases_in: Rare[dict[int, str] | None] = Rare(_Rare, "aliases_in")
    will: Rare[Will | None] = Rare(_Rare, "will")
    will_delay: Rare[int] = Rare(_Rare, "will_delay")
    connect_expiry: Rare[int] = Rare(_Rare, "connect_expiry")
    problem_info: Rare[bool] = Rare(_Rare, "problem_info")
    blocking_since: Rare[float] = Rare(_Rare, "blocking_since")
    stuck: Rare[bool] = Rare(_Rare, "stuck")
    auth_method: Rare[str | None] = Rare(_Rare, "auth_method")
    auth_state: Rare[Any] = Rare(_Rare, "auth_state")
    pending_connect: Rare[Any] = Rare(_Rare, "pending_connect")
    assigned_id: Rare[bool] = Rare(_Rare, "assigned_id")
    cert_identity: Rare[str | None] = Rare(_Rare, "cert_identity")
    held: Rare[list[Any] | None] = Rare(_Rare, "held")
    deferred: Rare[list[Any] | None] = Rare(_Rare, "deferred")

    def __init__(self, broker: BrokerCore, sink: Sink, peer: str | PeerSource = "?") -> None:
        self.broker = broker
        self.sink = sink
        # The peer's address as a string, or an object that makes it on demand (the TCP
        # transport: a string per idle connection is ~64 bytes, and only logs read it).
        self._peer = peer
        self.state: ConnState = AWAIT_CONNECT
        self.protocol_version = 4
        self.v5 = False
        self.client_id = ""
        self.username: str | None = None
        self.session: Session | None = None
        now = broker.clock()
        self.created_at = now
        self.last_rx = now
        self.keep_alive = 0
        self._keepalive_limit = 0.0  # seconds of silence tolerated; 0 = none
        self.send_window = broker.settings.inflight_window
        self.max_packet_out = 0  # client's Maximum Packet Size; 0 = no limit
        self.congested = False
        # Back-pressure (outbound.py); the shared empty default is replaced by a set on
        # first use (an empty set is 216 bytes, and most connections never need one).
        self.paused_publishers: AbstractSet[Connection] = _NOBODY  # publishers paused by us
        self.blocked_by: AbstractSet[Any] = _NOBODY  # subscribers (or the rate limit) pausing us
        self._rare: Any = None  # a _Rare holding the fields above, once one is set

    @property
    def keepalive_limit(self) -> float:
        """Seconds of silence tolerated (1.5x the keep alive [MQTT-3.1.2-24]); 0 = none."""
        return self._keepalive_limit

    @keepalive_limit.setter
    def keepalive_limit(self, value: float) -> None:
        # One float object per distinct limit, shared by every connection (a float is 24
        # bytes, and nearly all clients use one of a few keep alives).
        limit = _LIMITS.get(value)
        if limit is None:
            limit = float(value)
            if len(_LIMITS) < 1024:
                _LIMITS[limit] = limit
        self._keepalive_limit = limit
        if limit:  # last_rx is kept only while it is read (below): start from now
            self.last_rx = self.broker.clock()

    @property
    def peer(self) -> str:
        """ "host:port" (or what the transport calls its peer); made on demand for TCP."""
        peer = self._peer
        return peer if type(peer) is str else peer.peer_name()  # type: ignore[union-attr]

    @peer.setter
    def peer(self, value: str) -> None:
        self._peer = value

    def __repr__(self) -> str:
        return f"<Connection {self.client_id or '-'} {self.peer}>"

    # -- transport-facing ---------------------------------------------------

    def packets_received(self, pkts: Any) -> None:
        if self._keepalive_limit:
            # Only the keep alive check reads it (a new float is 24 bytes per connection).
            self.last_rx = self.broker.clock()
        handlers = self.broker.handlers
        for pkt in pkts:
            if self.state >= CLOSED:
                if self.state == CLOSED:
                    return
                rare = self._rare  # AUTH_WAIT: handled once the CONNECT is accepted
                assert rare is not None and rare.held is not None
                held = rare.held
                held.append(pkt)
                continue
            handler = handlers.get(type(pkt))
            try:
                if handler is None:
                    self.violation(ReasonCode.PROTOCOL_ERROR, f"unexpected {type(pkt).__name__}")
                else:
                    handler(self, pkt)
            except MQTTError as err:
                self.violation(err.reason_code, err.message)
            except Exception as exc:  # a bug must cost one connection, not the broker
                log.error(
                    "client %s (%s): internal error %r handling %s; closing",
                    self.client_id,
                    self.peer,
                    exc,
                    type(pkt).__name__,
                )
                log.debug("internal error", exc_info=True)
                self.close(ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR)
            if self.blocked_by:
                # Paused by this packet (a subscriber it feeds is backed up, the rate
                # limit, ...): the rest of this read waits too. Pausing the socket stops
                # only the next read, and one read can hold thousands of small PUBLISHes
                # (a client flushing its offline queue), enough to overflow the queue the
                # pause protects.
                self._defer(pkts, pkt)
                return

    def _defer(self, pkts: Any, last: Any) -> None:
        for i, p in enumerate(pkts):  # by identity: equal packets can repeat
            if p is last:
                rest = list(pkts[i + 1 :])
                if rest:
                    self.deferred = rest
                return

    def resume_deferred(self) -> None:
        """Handle what ``packets_received`` put aside once reading is allowed again (the
        transport calls it when it resumes reading, before any newer read)."""
        rare = self._rare
        if rare is None or not rare.deferred or self.blocked_by:
            return
        pkts = rare.deferred
        rare.deferred = None
        self.packets_received(pkts)

    def packet_received(self, pkt: Any) -> None:
        self.packets_received((pkt,))

    def protocol_violation(self, err: MQTTError, protocol_version: int | None = None) -> None:
        """The decoder rejected the input. Before CONNACK answer with a CONNACK
        code where the protocol asks for one (0x84 -> 3.1.1 code 1 [MQTT-3.1.2-2],
        v5 -> the reason code); after it, v5 gets DISCONNECT with the code."""
        if self.state == CLOSED:
            return
        if self.state == AWAIT_CONNECT:
            self.broker.stats.protocol_errors += 1
            log.info(
                "connection %s: bad CONNECT: %s; closing",
                self.peer,
                err,
                extra={"peer": self.peer, "reason": str(err), "reason_code": int(err.reason_code)},
            )
            code = int(err.reason_code)
            if code == ReasonCode.UNSUPPORTED_PROTOCOL_VERSION:
                # Answer in the newest form the client can read: a v5 CONNACK only if it asked v5.
                self._write(
                    encode(
                        Connack(False, 0x84 if protocol_version == 5 else 1),
                        5 if protocol_version == 5 else 4,
                    )
                )
            elif protocol_version == 5:
                if code not in CONNACK_REASON_CODES:
                    code = ReasonCode.UNSPECIFIED_ERROR
                self._write(encode(Connack(False, code), 5))
            self.close(None, will=False)
            return
        self.violation(err.reason_code, err.message)

    def connection_lost(self) -> None:
        if self.state != CLOSED:
            log.info(
                "client %s (%s) connection lost",
                self.client_id or "-",
                self.peer,
                extra={"client_id": self.client_id, "peer": self.peer, "reason": "connection lost"},
            )
        self._teardown(publish_will=True)

    # -- errors and closing -------------------------------------------------

    def violation(self, reason_code: int, message: str) -> None:
        """Close this connection for a protocol violation, with one log line."""
        self.broker.stats.protocol_errors += 1
        log.info(
            "client %s (%s): protocol violation: %s (0x%02X); closing",
            self.client_id or "-",
            self.peer,
            message,
            int(reason_code),
            extra={
                "client_id": self.client_id,
                "peer": self.peer,
                "reason": message,
                "reason_code": int(reason_code),
            },
        )
        # A Reason String is always allowed in DISCONNECT (3.14.2.2.3).
        self.close(
            reason_code, properties=Properties(reason_string=message[:200]) if self.v5 else None
        )

    def close(
        self,
        reason_code: int | None = None,
        will: bool = True,
        properties: Properties | None = None,
    ) -> None:
        """Close from the server side. v5 clients past CONNACK get DISCONNECT with
        the reason code first [MQTT-4.13.1-1]; the will is published unless told not."""
        if self.state == CLOSED:
            return
        if reason_code is not None and self.v5 and self.state == CONNECTED:
            code = int(reason_code)
            if code not in DISCONNECT_REASON_CODES:
                code = ReasonCode.PROTOCOL_ERROR if code < 0x80 else ReasonCode.UNSPECIFIED_ERROR
            if properties is not None and self.max_packet_out:
                # [MQTT-3.14.2-3] no Reason String that would exceed the client's limit.
                if len(encode(Disconnect(code, properties), 5)) > self.max_packet_out:
                    properties = None
            self.send_packet(Disconnect(code, properties))
        self.sink.close()
        self._teardown(publish_will=will, reason_code=reason_code, by="server")

    def _teardown(
        self, publish_will: bool, reason_code: int | None = None, by: str = "network"
    ) -> None:
        if self.state == CLOSED:
            return
        was_connected = self.state == CONNECTED
        self.state = CLOSED
        broker = self.broker
        broker.connections.pop(self, None)
        broker.pending.discard(self)
        self.release_publishers()
        self.unblock()
        self.congested = False
        session = self.session
        if was_connected and session is not None and session.conn is self:
            broker.session_disconnected(session, self, publish_will)
        self.session = None
        if was_connected and broker.hooks.events:
            broker.hooks.client_disconnected(self, reason_code, by)

    # -- writing ------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        self.broker.stats.bytes_sent += len(data)
        self.sink.write(data)

    def send_packet(self, pkt: Any) -> None:
        data = encode(pkt, self.protocol_version)
        limit = self.max_packet_out
        if limit and len(data) > limit:
            self._too_large_for_client(pkt, len(data))
            return
        self._write(data)

    def _too_large_for_client(self, pkt: Any, size: int) -> None:
        """[MQTT-3.1.2-24] a packet the client's Maximum Packet Size cannot take (a SUBACK
        for many filters, say; Reason Strings are dropped before it comes to this) is not
        sent: the client would wait for it forever, so the connection is closed."""
        log.warning(
            "client %s: %s of %d bytes exceeds its Maximum Packet Size (%d); closing",
            self.client_id,
            type(pkt).__name__.upper(),
            size,
            self.max_packet_out,
        )
        if isinstance(pkt, Disconnect) or self.max_packet_out < 4:
            self.close(None)  # not even a bare DISCONNECT fits
        else:
            self.close(ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR)

    def send_pubrel(self, pid: int) -> None:
        if self.v5:
            self.send_packet(Pubrel(pid))
        else:
            self._write(b"\x62\x02" + pid.to_bytes(2, "big"))

    # The outbound path (outbound.py) as methods: encoding, QoS 0, back-pressure.
    encode_publish = outbound.encode_publish
    write_publish = outbound.write_publish
    send_qos0 = outbound.send_qos0
    over_hard_limit = outbound.over_hard_limit
    block_publisher = outbound.block_publisher
    release_publishers = outbound.release_publishers
    unblock = outbound.unblock
    check_stuck = outbound.check_stuck
    writing_paused = outbound.writing_paused
    writing_resumed = outbound.writing_resumed

    # -- timers -------------------------------------------------------------

    def check_timeouts(self, now: float) -> None:
        if self.state == AWAIT_CONNECT or self.state == AUTHENTICATING or self.state == AUTH_WAIT:
            if now - self.created_at > self.broker.settings.connect_timeout:
                self.broker.stats.connect_timeouts += 1
                log.info(
                    "connection %s: no CONNECT within %.1f s; closing",
                    self.peer,
                    self.broker.settings.connect_timeout,
                )
                self.close(None, will=False)
        elif self._keepalive_limit and not self.blocked_by:
            if now - self.last_rx > self._keepalive_limit:
                # [MQTT-3.1.2-24] 1.5x the keep alive without a control packet.
                log.info("client %s (%s): keep alive timeout; closing", self.client_id, self.peer)
                self.close(ReasonCode.KEEP_ALIVE_TIMEOUT)
