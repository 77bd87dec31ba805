"""CONNECT in MQTT 5: reason codes the server can answer with (3.2.2.2), CONNECT
properties that are protocol errors (3.1.2.11), and the rules for AUTH and
Authentication Method when no enhanced authentication is configured (4.12)."""

from __future__ import annotations

import pytest

from mqttfast.codec.packets import Auth, Connack, Connect, Properties, Will
from tests.helpers.rawclient import ConnectionClosed


def _connect_refused(c, expected_rc: int) -> None:
    """The server refuses the CONNECT: optionally a CONNACK with exactly
    ``expected_rc`` (4.13: it MAY send one), then it closes [MQTT-3.2.2-7];
    never a DISCONNECT before a successful CONNACK [MQTT-3.14.0-1]."""
    try:
        pkt = c.recv_packet(2.0)
    except ConnectionClosed:
        return
    assert isinstance(pkt, Connack), f"expected CONNACK {expected_rc:#x} or close, got {pkt!r}"
    assert pkt.reason_code == expected_rc, pkt
    assert pkt.session_present is False  # [MQTT-3.2.2-6]
    assert c.expect_closed() is None


def test_unknown_authentication_method_refused(tcp):
    """[MQTT-4.12.0-1]: a server that does not support the client's
    Authentication Method sends CONNACK 0x8C (Bad authentication method) or
    0x87 (Not authorized) and closes."""
    c = tcp()
    c.send_packet(
        Connect(
            client_id="auth-unknown",
            protocol_version=5,
            properties=Properties(authentication_method="NO-SUCH-METHOD-42"),
        )
    )
    pkt = c.expect(Connack)
    assert pkt.reason_code in (0x8C, 0x87), pkt
    assert c.expect_closed() is None


def test_no_authentication_method_in_connack_unless_requested(v5):
    """[MQTT-4.12.0-6]: without an Authentication Method in CONNECT the server
    sends none in CONNACK (and no AUTH packet)."""
    c = v5("auth-none")
    assert c.connack.properties is None or c.connack.properties.authentication_method is None
    c.expect_no_packet(0.3)


@pytest.mark.mosquitto_deviation(
    "mosquitto 2.0.11 closes without DISCONNECT 0x82 (4.13: SHOULD send it; issue 4 requires it)"
)
def test_auth_without_method_is_protocol_error(v5):
    """[MQTT-4.12.0-7] 3.15: an AUTH packet from a client whose CONNECT had no
    Authentication Method is a Protocol Error: DISCONNECT 0x82."""
    c = v5("auth-stray")
    c.send_packet(Auth(reason_code=0x19, properties=Properties(authentication_method="SCRAM")))
    assert c.expect_closed() == 0x82


def test_unsupported_protocol_version(tcp):
    """[MQTT-3.1.2-2]: a CONNECT with protocol version 6: the server MAY answer
    CONNACK 0x84 (Unsupported Protocol Version) and MUST close."""
    c = tcp()
    body = b"\x00\x04MQTT\x06\x02\x00\x3c\x00\x00\x03ver"
    c.send(bytes([0x10, len(body)]) + body)
    try:
        raw = c.sock.recv(16)
    except OSError:
        raw = b""
    if raw:
        # The CONNACK layout of an unknown version is not defined: accept the
        # MQTT 5 answer (reason code 0x84) or the 3.1.1 one (return code 0x01,
        # "unacceptable protocol version", which mosquitto sends).
        v5_answer = len(raw) >= 4 and raw[0] == 0x20 and raw[3] == 0x84
        assert v5_answer or raw == b"\x20\x02\x00\x01", raw
    assert c.sock.recv(16) == b""


def test_connect_reserved_flag_malformed(tcp):
    """[MQTT-3.1.2-3] [MQTT-3.1.4-1]: the reserved bit of the Connect Flags must
    be 0; otherwise the CONNECT is malformed: CONNACK 0x81 (optional) and close."""
    c = tcp()
    body = b"\x00\x04MQTT\x05\x03\x00\x3c\x00\x00\x03res"
    c.send(bytes([0x10, len(body)]) + body)
    _connect_refused(c, 0x81)


@pytest.mark.parametrize(
    "props, why",
    [
        (b"\x05\x11\x00\x00\x00\x0a", "control"),
        (b"\x0a\x11\x00\x00\x00\x0a\x11\x00\x00\x00\x0b", "Session Expiry Interval twice"),
        (b"\x03\x21\x00\x00", "Receive Maximum 0"),
        (b"\x05\x27\x00\x00\x00\x00", "Maximum Packet Size 0"),
        (b"\x02\x17\x02", "Request Problem Information 2"),
        (b"\x02\x19\x02", "Request Response Information 2"),
    ],
    ids=[
        "control",
        "session-expiry-twice",
        "receive-maximum-0",
        "max-packet-size-0",
        "request-problem-2",
        "request-response-2",
    ],
)
def test_connect_property_protocol_errors(tcp, props, why):
    """3.1.2.11: a repeated Session Expiry Interval, Receive Maximum 0, Maximum
    Packet Size 0, or Request Problem / Response Information other than 0/1
    are Protocol Errors: CONNACK 0x82 (optional) and close. The control case
    (one valid property) is accepted."""
    c = tcp()
    body = b"\x00\x04MQTT\x05\x02\x00\x3c" + props + b"\x00\x04prop"
    c.send(bytes([0x10, len(body)]) + body)
    if why == "control":
        assert c.expect(Connack).reason_code == 0
        return
    _connect_refused(c, 0x82)


@pytest.mark.broker_args("--max-packet-size", "512")
def test_connect_too_large(tcp):
    """3.1.2.11.4 / 4.13: a CONNECT larger than the server's Maximum Packet
    Size: CONNACK 0x95 (optional) and close."""
    c = tcp()
    c.send_packet(Connect(client_id="big", protocol_version=5, will=Will("big/will", b"w" * 2000)))
    _connect_refused(c, 0x95)


@pytest.mark.mosquitto_deviation(
    "mosquitto 2.0.11 accepts a will marked UTF-8 whose payload is not UTF-8"
)
def test_will_payload_format_invalid(tcp):
    """3.1.3.2.3 / 3.2.2.2: a will with Payload Format Indicator 1 whose payload
    is not valid UTF-8: the server that checks (issue 4 requires it) refuses
    the CONNECT with CONNACK 0x99 (Payload format invalid) and closes."""
    c = tcp()
    c.send_packet(
        Connect(
            client_id="willpfi",
            protocol_version=5,
            will=Will("willpfi/t", b"\xff\xfe", properties=Properties(payload_format_indicator=1)),
        )
    )
    pkt = c.expect(Connack)
    assert pkt.reason_code == 0x99, pkt
    assert c.expect_closed() is None
