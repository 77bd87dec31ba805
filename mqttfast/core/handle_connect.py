"""CONNECT, AUTH and DISCONNECT handling (3.1, 3.2, 3.14, 3.15, 4.12)."""

from __future__ import annotations

import logging
import secrets

from mqttfast.codec import encode
from mqttfast.codec.constants import SESSION_EXPIRY_NEVER, ReasonCode
from mqttfast.codec.packets import Auth, Connack, Connect, Disconnect, Properties

from .connection import AUTH_WAIT, AUTHENTICATING, AWAIT_CONNECT, CONNECTED, Connection
from .hooks import AUTH_CONTINUE, AUTH_SUCCESS, AuthStep, connack_code_for
from .message import response_topic_error

log = logging.getLogger("mqttfast.core")


def _send_connack(conn: Connection, ack: Connack) -> bool:
    """Send ``ack`` within the client's Maximum Packet Size [MQTT-3.1.2-24]: the Reason
    String and User Properties are dropped first ([MQTT-3.2.2-19], [MQTT-3.2.2-20]); if even
    that CONNACK does not fit, nothing is sent and False returned (the caller closes)."""
    limit = conn.max_packet_out
    if limit and conn.v5:
        size = len(encode(ack, 5))
        props = ack.properties
        if size > limit and props is not None:
            props = props.copy()
            props.reason_string = None
            props.user_property = None
            ack = Connack(ack.session_present, ack.reason_code, None if props.is_empty() else props)
            size = len(encode(ack, 5))
        if size > limit:
            log.info(
                "connection %s client %r: CONNACK of %d bytes exceeds the client's maximum "
                "packet size %d; closing without it",
                conn.peer,
                conn.client_id,
                size,
                limit,
                extra={"client_id": conn.client_id, "peer": conn.peer, "reason": "connack size"},
            )
            return False
    conn.send_packet(ack)
    return True


def _refuse(conn: Connection, code: int, why: str, properties: Properties | None = None) -> None:
    """CONNACK with a failure code, then close; no will [MQTT-3.2.2-5]."""
    log.info(
        "connection %s client %r refused: %s (0x%02X)",
        conn.peer,
        conn.client_id,
        why,
        code,
        extra={
            "client_id": conn.client_id,
            "peer": conn.peer,
            "reason": why,
            "reason_code": int(code),
        },
    )
    if code in (0x86, 0x87, 0x8C, 0x9F):  # bad credentials, not authorised, bad method, banned
        conn.broker.stats.auth_failures += 1
    rc = connack_code_for(conn.protocol_version, code)
    # A refused CONNACK never has Session Present set [MQTT-3.2.2-4].
    if conn.v5 and conn.problem_info:
        # Request Problem Information (default 1) allows a Reason String (3.2.2.3.10).
        properties = properties or Properties()
        properties.reason_string = why[:200]
    _send_connack(conn, Connack(False, rc, properties if conn.v5 else None))
    conn.close(None, will=False)


def handle_connect(conn: Connection, pkt: Connect) -> None:
    if conn.state != AWAIT_CONNECT:
        # [MQTT-3.1.0-2] a second CONNECT is a protocol violation.
        conn.violation(ReasonCode.PROTOCOL_ERROR, "second CONNECT")
        return
    broker = conn.broker
    settings = broker.settings
    ver = pkt.protocol_version
    conn.protocol_version = ver
    conn.v5 = ver == 5
    conn.username = pkt.username
    props = pkt.properties
    cid = pkt.client_id
    conn.client_id = cid
    if props is not None and props.request_problem_information == 0:
        conn.problem_info = False
    if props is not None and props.maximum_packet_size:
        conn.max_packet_out = props.maximum_packet_size  # bounds a refusing CONNACK too

    if not cid:
        if ver == 3:
            # MQTT 3.1: the identifier must be 1 to 23 characters.
            return _refuse(conn, ReasonCode.CLIENT_IDENTIFIER_NOT_VALID, "empty client id (3.1)")
        if not pkt.clean_start:
            # [MQTT-3.1.3-8] empty id with a persistent session: identifier rejected
            # (3.1.1 code 2; v5 0x85).
            return _refuse(
                conn,
                ReasonCode.CLIENT_IDENTIFIER_NOT_VALID,
                "empty client id with persistent session",
            )
        if not settings.allow_zero_length_client_id:
            return _refuse(conn, ReasonCode.CLIENT_IDENTIFIER_NOT_VALID, "empty client id")
        # [MQTT-3.1.3-6/7] assign a unique identifier.
        cid = settings.client_id_prefix + secrets.token_hex(8)
        while cid in broker.sessions:
            cid = settings.client_id_prefix + secrets.token_hex(8)
        conn.client_id = cid
        conn.assigned_id = True
    elif ver == 3 and len(cid) > 23:
        return _refuse(
            conn, ReasonCode.CLIENT_IDENTIFIER_NOT_VALID, "client id over 23 characters (3.1)"
        )

    if props is not None:
        if props.receive_maximum == 0 or props.maximum_packet_size == 0:
            # [MQTT-3.1.2-?] zero is a protocol error for both.
            return _refuse(
                conn, ReasonCode.PROTOCOL_ERROR, "receive maximum or maximum packet size 0"
            )

    will = pkt.will
    if will is not None:
        if will.qos > settings.maximum_qos:
            return _refuse(conn, ReasonCode.QOS_NOT_SUPPORTED, "will QoS not supported")
        if will.retain and not settings.retain_available:
            return _refuse(conn, ReasonCode.RETAIN_NOT_SUPPORTED, "will retain not supported")
        wp = will.properties
        rt = wp.response_topic if wp is not None else None
        if rt is not None:
            # The will is published as a PUBLISH carrying it: the same rules apply.
            problem = response_topic_error(rt, settings.allow_control_characters)
            if problem is not None:
                return _refuse(conn, problem[0], f"will {problem[1]}")
        if wp is not None and wp.payload_format_indicator == 1:
            try:
                will.payload.decode("utf-8")
            except UnicodeDecodeError:
                # 3.1.3.2.3: a will announced as UTF-8 that is not: 0x99.
                return _refuse(conn, ReasonCode.PAYLOAD_FORMAT_INVALID, "will payload not UTF-8")

    if conn.v5 and props is not None and props.authentication_method is not None:
        method = props.authentication_method
        step = broker.hooks.auth_start(conn, method, props.authentication_data)
        if step is None:
            return _refuse(
                conn, ReasonCode.BAD_AUTHENTICATION_METHOD, f"unknown auth method {method!r}"
            )
        conn.auth_method = method
        conn.pending_connect = pkt
        _auth_step(conn, step, reauth=False)
        return

    if settings.server_reference is not None:
        # 4.11 server redirection: "use another server" (0x9C) or "server moved" (0x9D).
        code = ReasonCode.SERVER_MOVED if settings.server_moved else ReasonCode.USE_ANOTHER_SERVER
        return _refuse(
            conn,
            code,
            f"redirected to {settings.server_reference}",
            Properties(server_reference=settings.server_reference),
        )

    identity = conn.cert_identity
    if identity is not None:
        # use_identity_as_username: the verified client certificate authenticates the
        # client and names it; no certificate -> refused (as mosquitto does).
        if not identity:
            return _refuse(conn, ReasonCode.BAD_USER_NAME_OR_PASSWORD, "no certificate identity")
        conn.username = identity
        accept(conn, pkt, None)
        return

    rc = broker.hooks.begin_authenticate(
        conn, pkt.username, pkt.password, lambda code: _authenticated(conn, pkt, code)
    )
    if rc is None:
        # Deferred: no CONNACK and no reading until the answer (held packets wait).
        conn.state = AUTH_WAIT
        conn.held = []
        conn.sink.pause_reading()
        return
    if rc:
        return _refuse(conn, rc, "authentication failed")
    accept(conn, pkt, None)


def _authenticated(conn: Connection, pkt: Connect, rc: int) -> None:
    """The answer of a deferred authentication (on the broker's thread)."""
    if conn.state != AUTH_WAIT:
        return  # closed meanwhile (connect timeout, connection lost, shutdown)
    held = conn.held
    conn.held = None
    conn.state = AWAIT_CONNECT
    try:
        if rc:
            # [MQTT-3.1.4-5] nothing sent after a refused CONNECT is processed.
            _refuse(conn, rc, "authentication failed")
            return
        accept(conn, pkt, None)
    except Exception:  # a bug must cost one connection, not the broker
        log.exception(
            "client %s (%s): internal error after authentication; closing",
            conn.client_id,
            conn.peer,
        )
        conn.close(ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR, will=False)
        return
    if conn.state == CONNECTED:
        conn.sink.resume_reading()
        if held:
            conn.packets_received(held)


def _auth_step(conn: Connection, step: AuthStep, reauth: bool) -> None:
    conn.auth_state = step.state
    if step.status == AUTH_CONTINUE:
        if not reauth:
            conn.state = AUTHENTICATING
        conn.send_packet(
            Auth(
                ReasonCode.CONTINUE_AUTHENTICATION,
                Properties(authentication_method=conn.auth_method, authentication_data=step.data),
            )
        )
    elif step.status == AUTH_SUCCESS:
        if reauth or conn.state == CONNECTED:
            conn.send_packet(
                Auth(
                    ReasonCode.SUCCESS,
                    Properties(
                        authentication_method=conn.auth_method, authentication_data=step.data
                    ),
                )
            )
        else:
            pkt = conn.pending_connect
            conn.pending_connect = None
            accept(conn, pkt, step.data)
    else:
        if conn.state == CONNECTED:
            conn.close(step.reason_code)
        else:
            conn.state = AWAIT_CONNECT
            _refuse(conn, step.reason_code, "enhanced authentication failed")


def handle_auth(conn: Connection, pkt: Auth) -> None:
    """AUTH (3.15): continue an exchange or start re-authentication (4.12.1)."""
    props = pkt.properties
    method = props.authentication_method if props is not None else None
    if not conn.v5 or conn.auth_method is None or method != conn.auth_method:
        # [MQTT-4.12.0-?] AUTH without (or with a different) method is a protocol error.
        conn.violation(ReasonCode.PROTOCOL_ERROR, "AUTH with unexpected authentication method")
        return
    data = props.authentication_data if props is not None else None
    hooks = conn.broker.hooks
    if pkt.reason_code == ReasonCode.CONTINUE_AUTHENTICATION:
        if conn.auth_state is None and conn.state == CONNECTED:
            conn.violation(ReasonCode.PROTOCOL_ERROR, "AUTH continue without exchange")
            return
        _auth_step(
            conn,
            hooks.auth_continue(conn, method, data, conn.auth_state),
            reauth=conn.state == CONNECTED,
        )
    elif pkt.reason_code == ReasonCode.REAUTHENTICATE and conn.state == CONNECTED:
        step = hooks.auth_start(conn, method, data)
        if step is None:
            conn.close(ReasonCode.BAD_AUTHENTICATION_METHOD)
            return
        _auth_step(conn, step, reauth=True)
    else:
        conn.violation(ReasonCode.PROTOCOL_ERROR, f"AUTH reason 0x{pkt.reason_code:02X} here")


def accept(conn: Connection, pkt: Connect, auth_data: bytes | None) -> None:
    broker = conn.broker
    settings = broker.settings
    now = broker.clock()
    cid = conn.client_id
    props = pkt.properties
    v5 = conn.v5

    will = pkt.will
    if will is not None and (
        will.topic.startswith("$SYS")
        or not broker.hooks.authorise_publish(conn, will.topic, will.qos, will.retain)
    ):
        # A will is a publication: refused at CONNECT when the client could not publish
        # it, so it cannot be used around the ACL (mosquitto does the same).
        conn.state = AWAIT_CONNECT
        _refuse(conn, ReasonCode.NOT_AUTHORIZED, f"will topic {will.topic!r} not authorised")
        return

    # Session expiry: v5 from the property (capped), 3.x from clean session.
    expiry_capped = False
    if v5:
        expiry = props.session_expiry_interval if props and props.session_expiry_interval else 0
        if expiry > settings.max_session_expiry:
            expiry = settings.max_session_expiry
            expiry_capped = True
    else:
        expiry = 0 if pkt.clean_start else settings.persistent_session_expiry
    conn.connect_expiry = expiry

    # [MQTT-3.1.4-2] session takeover: the existing connection is closed.
    session = broker.sessions.get(cid)
    if session is not None and session.conn is not None:
        old = session.conn
        log.info("client %s: taken over by %s", cid, conn.peer)
        old.close(ReasonCode.SESSION_TAKEN_OVER)
        session = broker.sessions.get(cid)  # may have ended with the old connection

    session_present = False
    if session is not None:
        if pkt.clean_start:
            broker.end_session(session, now)
            session = None
        else:
            session_present = True
            broker.resume_session(session)
    if session is None:
        session = broker.new_session(cid)

    session.expiry_interval = expiry
    session.expires_at = None
    session.conn = conn
    session.username = conn.username  # for authorise_receive while offline too
    conn.session = session
    broker.storage.session_update(session)  # persisted iff expiry > 0 (durable storage only)

    # Keep alive [MQTT-3.1.2-24]; v5 may be overridden by Server Keep Alive.
    keep_alive = pkt.keep_alive
    server_keep_alive = None
    if v5:
        if settings.server_keep_alive is not None and settings.server_keep_alive != keep_alive:
            keep_alive = server_keep_alive = settings.server_keep_alive
        elif keep_alive > settings.max_keepalive or (
            keep_alive == 0 and settings.max_keepalive < 65535
        ):
            keep_alive = server_keep_alive = settings.max_keepalive
    conn.keep_alive = keep_alive
    conn.keepalive_limit = keep_alive * settings.keepalive_factor

    conn.will = pkt.will
    if pkt.will is not None and pkt.will.properties is not None:
        conn.will_delay = pkt.will.properties.will_delay_interval or 0

    if v5 and props is not None:
        if props.receive_maximum is not None:
            conn.send_window = min(settings.inflight_window, props.receive_maximum)
        if props.maximum_packet_size is not None:
            conn.max_packet_out = props.maximum_packet_size
        if props.topic_alias_maximum and settings.outgoing_topic_aliases:
            conn.alias_out_max = props.topic_alias_maximum

    conn.state = CONNECTED
    broker.connection_accepted(conn)

    ack_props = None
    if v5:
        ack_props = Properties()
        if conn.assigned_id:
            ack_props.assigned_client_identifier = cid
        if expiry_capped:
            ack_props.session_expiry_interval = expiry
        if settings.receive_maximum < 65535:
            ack_props.receive_maximum = settings.receive_maximum
        if settings.maximum_qos < 2:
            ack_props.maximum_qos = settings.maximum_qos
        if not settings.retain_available:
            ack_props.retain_available = 0
        if settings.max_packet_size < 268435460:
            ack_props.maximum_packet_size = settings.max_packet_size
        if settings.topic_alias_maximum:
            ack_props.topic_alias_maximum = settings.topic_alias_maximum
        if not settings.wildcard_subscription_available:
            ack_props.wildcard_subscription_available = 0
        if not settings.subscription_identifier_available:
            ack_props.subscription_identifier_available = 0
        if not settings.shared_subscription_available:
            ack_props.shared_subscription_available = 0
        if server_keep_alive is not None:
            ack_props.server_keep_alive = server_keep_alive
        if (
            props is not None
            and props.request_response_information
            and settings.response_information is not None
        ):
            ack_props.response_information = settings.response_information
        if conn.auth_method is not None:
            ack_props.authentication_method = conn.auth_method
            ack_props.authentication_data = auth_data
        if ack_props.is_empty():
            ack_props = None
    # MQTT 3.1 has no Session Present flag.
    if not _send_connack(
        conn, Connack(session_present and conn.protocol_version >= 4, 0, ack_props)
    ):
        conn.close(None, will=False)
        return
    log.info(
        "client %s connected from %s (v%d, clean=%s, keepalive=%d)",
        cid,
        conn.peer,
        conn.protocol_version,
        pkt.clean_start,
        keep_alive,
        extra={"client_id": cid, "peer": conn.peer, "protocol": conn.protocol_version},
    )

    if session_present:
        session.resend_inflight(conn, now)
        session.pump(now)
    if broker.hooks.events:
        broker.hooks.client_connected(conn)


def handle_disconnect(conn: Connection, pkt: Disconnect) -> None:
    """Client DISCONNECT: close without the will [MQTT-3.1.2-10], except v5 0x04."""
    if conn.state != CONNECTED:
        conn.close(None, will=False)
        return
    props = pkt.properties
    if conn.v5 and props is not None and props.session_expiry_interval is not None:
        new = props.session_expiry_interval
        if conn.connect_expiry == 0 and new != 0:
            # [MQTT-3.14.2-2] cannot turn a non-persistent session into a persistent one.
            conn.violation(ReasonCode.PROTOCOL_ERROR, "DISCONNECT sets session expiry after 0")
            return
        session = conn.session
        if session is not None:
            session.expiry_interval = min(new, conn.broker.settings.max_session_expiry)
    with_will = conn.v5 and pkt.reason_code == ReasonCode.DISCONNECT_WITH_WILL_MESSAGE
    log.info(
        "client %s disconnected (reason 0x%02X)",
        conn.client_id,
        pkt.reason_code,
        extra={
            "client_id": conn.client_id,
            "peer": conn.peer,
            "reason": "client disconnect",
            "reason_code": int(pkt.reason_code),
        },
    )
    conn.sink.close()
    conn._teardown(publish_will=with_will, reason_code=pkt.reason_code, by="client")


__all__ = ["handle_connect", "handle_auth", "handle_disconnect", "accept", "SESSION_EXPIRY_NEVER"]
