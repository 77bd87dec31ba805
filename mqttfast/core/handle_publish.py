"""Incoming PUBLISH and the QoS acknowledgement packets (3.3-3.7, 4.3)."""

from __future__ import annotations

from mqttfast.codec.constants import ReasonCode
from mqttfast.codec.packets import Puback, Pubcomp, Publish, Pubrec, Pubrel

from .connection import CONNECTED, Connection, log
from .hooks import Hooks
from .message import (
    AWAIT_ACK,
    AWAIT_COMP,
    Message,
    forwardable_properties,
    response_topic_error,
)

_PINGRESP = b"\xd0\x00"
_ALLOW_ALL = Hooks.authorise_publish  # not overridden: every publish is allowed


def _ack(conn: Connection, cls: type, first: int, pid: int, rc: int) -> None:
    if rc == 0 or not conn.v5:
        # The common case is fixed: type byte, length 2, packet id (3.4.2.1: reason
        # code and properties may be omitted when 0x00 and none).
        conn._write(bytes((first, 2)) + pid.to_bytes(2, "big"))
    else:
        conn.send_packet(cls(pid, rc))


def _intercepted(conn: Connection, msg: Message, pid: int) -> None:
    """Hooks.message_received decides now or later; then route and acknowledge."""
    session = conn.session
    rc = conn.broker.hooks.message_received(
        conn, msg, lambda code: publish_decided(conn, session, msg, pid, code)
    )
    if rc is not None:
        publish_decided(conn, session, msg, pid, rc)


def publish_decided(conn: Connection, session, msg: Message, pid: int, rc: int) -> None:  # type: ignore[no-untyped-def]
    """Route ``msg`` unless ``rc`` (a PUBACK reason code) dropped it, then acknowledge.
    A publisher gone meanwhile gets no ack; its QoS 2 id is still remembered in the
    session so a re-sent PUBLISH is not forwarded twice [MQTT-4.3.3-9]."""
    broker = conn.broker
    qos = msg.qos
    if not rc:
        stats = broker.stats
        dropped_before = stats.dropped_queue_full
        matched = broker.router.publish(
            msg, broker.clock(), conn if conn.state == CONNECTED else None
        )
        if conn.v5:
            if matched == 0:
                rc = ReasonCode.NO_MATCHING_SUBSCRIBERS
            elif qos and stats.dropped_queue_full - dropped_before >= matched:
                rc = ReasonCode.QUOTA_EXCEEDED
    elif not conn.v5:
        rc = 0  # 3.1.1 has no way to say why: a normal ack, the message dropped (as ACLs)
    if qos == 2 and rc < 0x80 and session is not None:
        session.await_pubrel(pid)
        if session.persisted:
            broker.storage.qos2_put(session, pid)
    if conn.state != CONNECTED or not qos:
        return
    if qos == 1:
        _ack(conn, Puback, 0x40, pid, rc)
    else:
        _ack(conn, Pubrec, 0x50, pid, rc)


def _refuse_long_topic(conn: Connection, qos: int, pid: int, limit: int) -> None:
    """A Topic Name longer than max_topic_length. Not malformed, so v5 QoS 1/2 gets
    PUBACK/PUBREC 0x90 Topic Name invalid and stays connected (3.4.2.1); QoS 0 has no
    ack, so the client learns it from DISCONNECT 0x90 (3.14.2.1) rather than losing
    messages silently. 3.x has no reason codes: the connection is closed (4.13.1)."""
    conn.broker.stats.topic_too_long += 1
    log.info("client %s (%s): topic over %d bytes refused", conn.client_id, conn.peer, limit)
    if conn.v5 and qos:
        _ack(
            conn,
            Puback if qos == 1 else Pubrec,
            0x40 if qos == 1 else 0x50,
            pid,
            ReasonCode.TOPIC_NAME_INVALID,
        )
    else:
        conn.close(ReasonCode.TOPIC_NAME_INVALID)


def handle_publish(conn: Connection, pkt: Publish) -> None:
    if conn.state != CONNECTED:
        conn.violation(ReasonCode.PROTOCOL_ERROR, "PUBLISH before CONNACK")
        return
    broker = conn.broker
    settings = broker.settings
    stats = broker.stats
    stats.publish_received += 1
    if settings.max_publish_rate:
        broker.publish_limiter.consume(conn)  # back-pressure only: handled all the same
    qos = pkt.qos
    stats.publish_received_qos[qos] += 1
    stats.payload_bytes_received_qos[qos] += len(pkt.payload)
    topic = pkt.topic
    props = pkt.properties
    expires_at = None
    now = None

    if props is not None:
        if props.subscription_identifier is not None:
            # [MQTT-3.3.4-6] a client PUBLISH must not carry a Subscription Identifier.
            conn.violation(ReasonCode.PROTOCOL_ERROR, "PUBLISH with subscription identifier")
            return
        rt = props.response_topic
        if rt is not None:
            problem = response_topic_error(rt, settings.allow_control_characters)
            if problem is not None:
                conn.violation(*problem)
                return
        alias = props.topic_alias
        if alias is not None:
            # [MQTT-3.3.2-8/9] 0 or above our Topic Alias Maximum is invalid.
            if alias == 0 or alias > settings.topic_alias_maximum:
                conn.violation(ReasonCode.TOPIC_ALIAS_INVALID, f"topic alias {alias}")
                return
            aliases = conn.aliases_in
            if aliases is None:
                aliases = conn.aliases_in = {}  # created on first use
            if topic:
                aliases[alias] = topic
            else:
                known = aliases.get(alias)
                if known is None:
                    conn.violation(ReasonCode.PROTOCOL_ERROR, f"unknown topic alias {alias}")
                    return
                topic = known
        if props.message_expiry_interval is not None:
            now = broker.clock()
            expires_at = now + props.message_expiry_interval
        if props.payload_format_indicator == 1:
            try:
                pkt.payload.decode("utf-8")
            except UnicodeDecodeError:
                # 3.3.2.3.2: the receiver may reject it with 0x99.
                if qos == 0:
                    conn.violation(ReasonCode.PAYLOAD_FORMAT_INVALID, "payload is not UTF-8")
                else:
                    _ack(
                        conn,
                        Puback if qos == 1 else Pubrec,
                        0x40 if qos == 1 else 0x50,
                        pkt.packet_id,
                        ReasonCode.PAYLOAD_FORMAT_INVALID,
                    )
                return
    if not topic:
        conn.violation(ReasonCode.PROTOCOL_ERROR, "empty topic without alias")
        return
    if settings.max_topic_levels and topic.count("/") >= settings.max_topic_levels:
        # Not malformed, but not accepted here (3.4.2.1 0x90); 3.1.1 cannot be told.
        stats.topic_levels_refused += 1
        if qos:
            _ack(
                conn,
                Puback if qos == 1 else Pubrec,
                0x40 if qos == 1 else 0x50,
                pkt.packet_id,
                ReasonCode.TOPIC_NAME_INVALID,
            )
        return
    if settings.max_topic_length and len(topic.encode()) > settings.max_topic_length:
        _refuse_long_topic(conn, qos, pkt.packet_id, settings.max_topic_length)
        return
    if qos > settings.maximum_qos:
        conn.violation(ReasonCode.QOS_NOT_SUPPORTED, f"QoS {qos} not supported")
        return
    if pkt.retain and not settings.retain_available:
        conn.violation(ReasonCode.RETAIN_NOT_SUPPORTED, "retain not supported")
        return

    session = conn.session
    assert session is not None  # CONNECTED
    pid = pkt.packet_id
    if qos == 2:
        awaiting = session.awaiting_pubrel
        if pid in awaiting and not (
            broker.router.tracks_qos2 and broker.router.qos2_resent(conn, pid)
        ):
            # A re-sent QoS 2 PUBLISH is not forwarded again [MQTT-4.3.3-9/10].
            _ack(conn, Pubrec, 0x50, pid, 0)
            return
        if conn.v5 and pid not in awaiting and len(awaiting) >= settings.receive_maximum:
            # [MQTT-3.3.4-9] more unacknowledged QoS 2 than our Receive Maximum.
            conn.violation(ReasonCode.RECEIVE_MAXIMUM_EXCEEDED, "receive maximum exceeded")
            return

    hooks = broker.hooks
    # (the default hooks allow every publish: no call for them, one frame less per message)
    allowed = not topic.startswith("$SYS") and (
        type(hooks).authorise_publish is _ALLOW_ALL
        or hooks.authorise_publish(conn, topic, qos, pkt.retain)
    )
    rc = 0
    if allowed:
        if now is None:
            now = broker.clock()
        msg = Message(
            topic,
            pkt.payload,
            qos,
            pkt.retain,
            # (no call for the common property-less PUBLISH: one Python frame less per message)
            forwardable_properties(props) if props is not None else None,
            expires_at,
            conn.client_id,
        )
        if hooks.messages:  # plug-ins see (may change or drop) the message first
            _intercepted(conn, msg, pid)
            return
        dropped_before = stats.dropped_queue_full
        router = broker.router
        if qos == 2 and router.tracks_qos2:
            router.qos2_publish(conn, pid, pkt.dup)
        matched = router.publish(msg, now, conn)
        if conn.v5:
            if matched == 0:
                rc = ReasonCode.NO_MATCHING_SUBSCRIBERS
            elif qos and stats.dropped_queue_full - dropped_before >= matched:
                # Every matching session's queue was full: the message went nowhere.
                rc = ReasonCode.QUOTA_EXCEEDED
    else:
        # Not authorised: dropped; v5 learns why, 3.1.1 gets a normal ack (as mosquitto).
        rc = ReasonCode.NOT_AUTHORIZED if conn.v5 else 0

    if qos == 1:
        _ack(conn, Puback, 0x40, pid, rc)
    elif qos == 2:
        if rc < 0x80:
            session.await_pubrel(pid)
            if session.persisted:  # exactly once across a restart: PUBREC after commit
                broker.storage.qos2_put(session, pid)
        _ack(conn, Pubrec, 0x50, pid, rc)


def _wrong_ack(conn: Connection, kind: str, pid: int, expected: int, qos: int) -> bool:
    """True (and the connection closed) if ``pid`` is in flight but not in the state this
    acknowledgement answers: PUBACK only ends QoS 1 (4.3.2), PUBREC only answers a QoS 2
    PUBLISH, PUBCOMP only a PUBREL (4.3.3). A protocol error (0x82); ids not in flight
    at all are left to the handlers (late acks after a resend are normal)."""
    session = conn.session
    d = session.inflight.get(pid) if session is not None else None
    if d is None or (d.qos == qos and d.state == expected):
        return False
    conn.violation(
        ReasonCode.PROTOCOL_ERROR,
        f"{kind} for packet id {pid} in flight as QoS {d.qos}"
        + (" awaiting PUBCOMP" if d.state == AWAIT_COMP else ""),
    )
    return True


def handle_puback(conn: Connection, pkt: Puback) -> None:
    if conn.state != CONNECTED:
        conn.violation(ReasonCode.PROTOCOL_ERROR, "PUBACK before CONNACK")
        return
    session = conn.session
    assert session is not None  # CONNECTED
    # An unknown id is ignored (a late ack after a redelivery, for instance); a known one
    # in another state is checked only when the common case did not apply (hot path).
    if not session.puback(pkt.packet_id, conn.broker.clock()):
        _wrong_ack(conn, "PUBACK", pkt.packet_id, AWAIT_ACK, 1)


def handle_pubrec(conn: Connection, pkt: Pubrec) -> None:
    if conn.state != CONNECTED:
        conn.violation(ReasonCode.PROTOCOL_ERROR, "PUBREC before CONNACK")
        return
    # Checked first (session.pubrec() would take a PUBREC awaiting PUBCOMP as a repeat),
    # inline: one lookup on the QoS 2 path, the call only for a wrong acknowledgement.
    session = conn.session
    assert session is not None  # CONNECTED
    d = session.inflight.get(pkt.packet_id)
    if d is not None and (d.qos != 2 or d.state != AWAIT_ACK):
        _wrong_ack(conn, "PUBREC", pkt.packet_id, AWAIT_ACK, 2)
        return
    failed = pkt.reason_code >= 0x80
    known = session.pubrec(pkt.packet_id, failed, conn.broker.clock())
    if failed:
        return
    if known or not conn.v5:
        conn.send_pubrel(pkt.packet_id)
    else:
        conn.send_packet(Pubrel(pkt.packet_id, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND))


def handle_pubrel(conn: Connection, pkt: Pubrel) -> None:
    if conn.state != CONNECTED:
        conn.violation(ReasonCode.PROTOCOL_ERROR, "PUBREL before CONNACK")
        return
    session = conn.session
    assert session is not None  # CONNECTED
    pid = pkt.packet_id
    if session.pubrel_received(pid):
        if session.persisted:
            conn.broker.storage.qos2_delete(session, pid)
        _ack(conn, Pubcomp, 0x70, pid, 0)
    else:
        _ack(conn, Pubcomp, 0x70, pid, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND)


def handle_pubcomp(conn: Connection, pkt: Pubcomp) -> None:
    if conn.state != CONNECTED:
        conn.violation(ReasonCode.PROTOCOL_ERROR, "PUBCOMP before CONNACK")
        return
    session = conn.session
    assert session is not None  # CONNECTED
    if not session.pubcomp(pkt.packet_id, conn.broker.clock()):
        _wrong_ack(conn, "PUBCOMP", pkt.packet_id, AWAIT_COMP, 2)


def handle_pingreq(conn: Connection, pkt: object) -> None:
    if conn.state != CONNECTED:
        conn.violation(ReasonCode.PROTOCOL_ERROR, "PINGREQ before CONNACK")
        return
    conn._write(_PINGRESP)
