"""Per-connection protocol state and packet dispatch (mosquitto's read_handle.c).

The transport creates one :class:`Connection` per socket through
``Broker.connection_made(sink)`` and feeds it decoded packets. The
connection writes bytes to the sink; it never sees a socket.

States: AWAIT_CONNECT -> (AUTHENTICATING ->) CONNECTED -> CLOSED.
Before CONNACK only CONNECT (and AUTH during enhanced authentication) is
accepted; anything else closes the connection [MQTT-3.1.0-1]. A second
CONNECT is a protocol violation [MQTT-3.1.0-2].
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mqttfast.codec import encode, publish_parts
from mqttfast.codec.constants import CONNACK_REASON_CODES, DISCONNECT_REASON_CODES, ReasonCode
from mqttfast.codec.errors import MQTTError
from mqttfast.codec.packets import Connack, Disconnect, Properties, Pubrel

from .message import Message

if TYPE_CHECKING:
    from .broker import Broker
    from .session import Session

log = logging.getLogger("mqttfast.core")

AWAIT_CONNECT = 0
AUTHENTICATING = 1
CONNECTED = 2
CLOSED = 3
# CONNECT read, waiting for a deferred authentication (Hooks.begin_authenticate); reading
# is paused and packets already decoded behind the CONNECT are held [MQTT-3.1.4-5].
AUTH_WAIT = 4


class Sink:
    """What the transport provides (documentation of the seam; duck-typed)."""

    def write(self, data: bytes) -> None: ...
    def writelines(self, parts: Any) -> None: ...
    def close(self) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def get_write_buffer_size(self) -> int: ...


class Connection:
    __slots__ = (
        "broker",
        "sink",
        "peer",
        "state",
        "protocol_version",
        "v5",
        "client_id",
        "username",
        "session",
        "created_at",
        "last_rx",
        "keep_alive",
        "keepalive_limit",
        "send_window",
        "max_packet_out",
        "alias_out_max",
        "aliases_out",
        "next_alias",
        "aliases_in",
        "will",
        "will_delay",
        "connect_expiry",
        "problem_info",
        "congested",
        "paused_publishers",
        "blocked_by",
        "blocking_since",
        "stuck",
        "auth_method",
        "auth_state",
        "pending_connect",
        "assigned_id",
        "cert_identity",
        "held",
        "__weakref__",
    )

    def __init__(self, broker: Broker, sink: Any, peer: str = "?") -> None:
        self.broker = broker
        self.sink = sink
        self.peer = peer
        self.state = AWAIT_CONNECT
        self.protocol_version = 4
        self.v5 = False
        self.client_id = ""
        self.username: str | None = None
        self.session: Session | None = None
        now = broker.clock()
        self.created_at = now
        self.last_rx = now
        self.keep_alive = 0
        self.keepalive_limit = 0.0  # seconds of silence tolerated; 0 = none
        self.send_window = broker.settings.inflight_window
        self.max_packet_out = 0  # client's Maximum Packet Size; 0 = no limit
        self.alias_out_max = 0
        self.aliases_out: dict[str, int] = {}
        self.next_alias = 1
        self.aliases_in: dict[int, str] = {}
        self.will = None
        self.will_delay = 0
        self.connect_expiry = 0  # Session Expiry from CONNECT (for DISCONNECT rule)
        self.problem_info = True
        self.congested = False
        self.paused_publishers: set[Connection] = set()  # publishers paused because of us
        self.blocked_by: set[Connection] = set()  # subscribers that paused us
        self.blocking_since = 0.0  # when we first paused a publisher (0 = we pause none)
        self.stuck = False  # paused publishers longer than allowed: stop pausing
        self.auth_method: str | None = None
        self.auth_state: Any = None
        self.pending_connect: Any = None
        self.assigned_id = False
        # Set by a listener with use_identity_as_username: the client certificate's
        # identity ("" = none); None = the listener does not use certificates as usernames.
        self.cert_identity: str | None = None
        self.held: list | None = None  # packets behind a CONNECT in AUTH_WAIT

    def __repr__(self) -> str:
        return f"<Connection {self.client_id or '-'} {self.peer}>"

    # -- transport-facing ---------------------------------------------------

    def packets_received(self, pkts: Any) -> None:
        self.last_rx = self.broker.clock()
        handlers = HANDLERS
        for pkt in pkts:
            if self.state >= CLOSED:
                if self.state == CLOSED:
                    return
                self.held.append(pkt)  # AUTH_WAIT: handled once the CONNECT is accepted
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

    def writing_paused(self) -> None:
        self.congested = True

    def writing_resumed(self) -> None:
        self.congested = False
        self.stuck = False
        session = self.session
        if session is not None and session.conn is self and (session.queue or session.backlog):
            session.pump(self.broker.clock())  # releases publishers once the queue is short
        else:
            self.release_publishers()

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
        broker.connections.discard(self)
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

    # -- back-pressure ------------------------------------------------------

    def block_publisher(self, publisher: Connection) -> None:
        """Pause reading from a publisher while this (subscriber) connection is congested
        or its queue is long. A publisher that has QoS 1/2 messages in flight toward it
        is not paused: we must keep reading its acknowledgements (or two clients
        publishing to each other would wait on each other forever)."""
        if (
            publisher is self
            or self.stuck
            or publisher.state == CLOSED
            or publisher in self.paused_publishers
        ):
            return
        psession = publisher.session
        if psession is not None and psession.inflight:
            return
        if not self.paused_publishers:
            self.blocking_since = self.broker.clock()
        self.paused_publishers.add(publisher)
        publisher.blocked_by.add(self)
        if len(publisher.blocked_by) == 1:
            publisher.sink.pause_reading()

    def release_publishers(self) -> None:
        if not self.paused_publishers:
            return
        now = self.broker.clock()
        for pub in self.paused_publishers:
            pub.blocked_by.discard(self)
            if not pub.blocked_by and pub.state != CLOSED:
                pub.last_rx = now  # it could not send PINGREQ while paused
                pub.sink.resume_reading()
        self.paused_publishers.clear()
        self.blocking_since = 0.0

    def unblock(self) -> None:
        """Resume reading from this connection whoever paused it (it has acks to send us)."""
        if not self.blocked_by:
            return
        for sub in self.blocked_by:
            sub.paused_publishers.discard(self)
        self.blocked_by.clear()
        if self.state != CLOSED:
            self.last_rx = self.broker.clock()
            self.sink.resume_reading()

    def check_stuck(self, now: float) -> None:
        """A subscriber that keeps publishers paused too long (it does not read, or does
        not acknowledge) stops pausing them: from then on it only has its own bounds
        (output hard limit, queue limit) and others flow again. It pauses publishers
        again once it has drained."""
        if (
            self.paused_publishers
            and now - self.blocking_since > self.broker.settings.max_publisher_pause
        ):
            log.info(
                "client %s (%s): not keeping up; publishers no longer wait for it",
                self.client_id,
                self.peer,
            )
            self.stuck = True
            self.release_publishers()

    def over_hard_limit(self) -> bool:
        return self.congested and (
            self.sink.get_write_buffer_size() > self.broker.settings.output_hard_limit
        )

    # -- writing ------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        self.broker.stats.bytes_sent += len(data)
        self.sink.write(data)

    def send_packet(self, pkt: Any) -> None:
        self._write(encode(pkt, self.protocol_version))

    def send_pubrel(self, pid: int) -> None:
        if self.v5:
            self.send_packet(Pubrel(pid))
        else:
            self._write(b"\x62\x02" + pid.to_bytes(2, "big"))

    def encode_publish(
        self,
        msg: Message,
        qos: int,
        retain: bool,
        sub_ids: tuple[int, ...] | None,
        dup: bool,
        now: float,
        cache: dict | None,
        allow_expired: bool = False,
    ) -> tuple[bytes, bytes] | None:
        """The (head, tail) of a PUBLISH for this client, or None when it must be
        dropped: expired (v5 message expiry) or larger than the client's Maximum
        Packet Size [MQTT-3.1.2-25]. Shapes are cached per fan-out in ``cache``."""
        if not self.v5:
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
                self.broker.stats.dropped_expired += 1
                return None
            # (now + interval) - now can exceed interval by a float ulp; without the
            # epsilon ceil() would forward 61 for a 60 s expiry [MQTT-3.3.2-6].
            remaining = max(1, math.ceil(left - 1e-6))
        topic = msg.topic
        alias = None
        new_alias = False
        evicted = None
        if self.alias_out_max:
            # Server -> client aliases (3.3.2.3.4), least recently used replaced once all
            # of the client's Topic Alias Maximum are in use. aliases_out keeps LRU order.
            aliases = self.aliases_out
            alias = aliases.get(topic)
            if alias is None:
                new_alias = True
                if self.next_alias <= self.alias_out_max:
                    alias = self.next_alias
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
        if self.max_packet_out:
            size = len(parts[0]) + len(parts[1]) + (2 if qos else 0)
            if size > self.max_packet_out:
                self.broker.stats.dropped_too_large += 1
                return None
        if new_alias:
            # Commit the alias only now that the packet carrying it will be sent.
            if evicted is not None:
                del self.aliases_out[evicted]
            else:
                self.next_alias += 1
            self.aliases_out[topic] = alias  # type: ignore[assignment]
        return parts

    def write_publish(self, parts: tuple[bytes, bytes], pid: int) -> None:
        head, tail = parts
        stats = self.broker.stats
        stats.publish_sent += 1
        size = len(head) + len(tail) + 2
        stats.bytes_sent += size
        qos = (head[0] >> 1) & 3
        stats.publish_sent_qos[qos] += 1
        stats.publish_bytes_sent_qos[qos] += size
        self.sink.writelines((head, pid.to_bytes(2, "big"), tail))

    def send_qos0(
        self,
        msg: Message,
        retain: bool,
        sub_ids: tuple[int, ...] | None,
        now: float,
        cache: dict | None,
    ) -> None:
        if (
            self.congested
            and self.sink.get_write_buffer_size() > self.broker.settings.output_hard_limit
        ):
            stats = self.broker.stats
            stats.dropped_qos0_buffer_full += 1
            if stats.dropped_qos0_buffer_full % 10000 == 1:  # a limit hit, not a log flood
                log.warning(
                    "client %s (%s): output buffer over the hard limit; QoS 0 message "
                    "dropped (%d so far, all clients)",
                    self.client_id,
                    self.peer,
                    stats.dropped_qos0_buffer_full,
                    extra={
                        "client_id": self.client_id,
                        "peer": self.peer,
                        "reason": "output buffer full",
                    },
                )
            return
        parts = self.encode_publish(msg, 0, retain, sub_ids, False, now, cache)
        if parts is None:
            return
        head = parts[0]
        self.broker.stats.qos0_sent(1, len(head))
        self.sink.write(head)

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
        elif self.keepalive_limit and not self.blocked_by:
            if now - self.last_rx > self.keepalive_limit:
                # [MQTT-3.1.2-24] 1.5x the keep alive without a control packet.
                log.info("client %s (%s): keep alive timeout; closing", self.client_id, self.peer)
                self.close(ReasonCode.KEEP_ALIVE_TIMEOUT)


Handler = Callable[[Connection, Any], None]
# Filled by connection_handlers (avoids an import cycle).
HANDLERS: dict[type, Handler] = {}
