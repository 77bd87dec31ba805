"""Reason codes on acknowledgements and on server-sent DISCONNECT (2.4, 4.13)."""

from __future__ import annotations

import signal

import pytest

from mqttfast.codec.packets import Connect, Pubcomp, Publish, Pubrel
from tests.helpers.broker import BrokerProcess
from tests.helpers.rawclient import RawClient


def test_puback_no_matching_subscribers(v5):
    """3.4.2.1: PUBACK 0x10 (No matching subscribers) when nobody subscribes;
    0x00 when someone does [MQTT-3.4.2-1]."""
    c = v5("rc-puback")
    assert c.publish("rc/nobody", b"x", qos=1).reason_code == 0x10
    c.subscribe(("rc/somebody", 0))
    assert c.publish("rc/somebody", b"x", qos=1).reason_code == 0x00


@pytest.mark.mosquitto_deviation(
    "mosquitto 2.0.11 sends 0x10 on PUBACK but 0x00 on PUBREC (0x10 is a MAY; issue 4 requires it)"
)
def test_pubrec_no_matching_subscribers(v5):
    """3.5.2.1: PUBREC 0x10 when nobody subscribes [MQTT-3.5.2-1]; the flow
    still completes with PUBCOMP 0x00 [MQTT-4.3.3-11]."""
    c = v5("rc-pubrec")
    rec = c.publish("rc/nobody2", b"x", qos=2, complete=False)
    assert rec.reason_code == 0x10
    c.send_packet(Pubrel(packet_id=rec.packet_id))
    assert c.recv_until(Pubcomp, packet_id=rec.packet_id).reason_code == 0


@pytest.mark.mosquitto_deviation(
    "mosquitto 2.0.11 answers a PUBREL for an unknown id with PUBCOMP 0x00, not 0x92"
)
def test_pubrel_unknown_packet_id(v5):
    """3.7.2.1: PUBREL for a packet identifier the server does not know gets
    PUBCOMP 0x92 (Packet Identifier not found)."""
    c = v5("rc-pubrel")
    c.send_packet(Pubrel(packet_id=4242))
    assert c.recv_until(Pubcomp, packet_id=4242).reason_code == 0x92


@pytest.mark.mosquitto_deviation(
    "mosquitto 2.0.11 closes the connection on an invalid filter instead of SUBACK 0x8F for it"
)
def test_suback_reason_code_per_filter(v5):
    """[MQTT-3.8.4-6] [MQTT-3.9.3-1] [MQTT-3.9.3-2]: one reason code per filter,
    in order: the granted QoS, or 0x8F for an invalid filter ('#' not last,
    '+' not alone in its level), without failing the valid ones."""
    c = v5("rc-suback")
    suback = c.subscribe(("rc/a", 0), ("rc/#/b", 1), ("rc/b", 1), ("rc/x+/c", 2), ("rc/c", 2))
    assert suback.reason_codes == [0, 0x8F, 1, 0x8F, 2]


def test_unsuback_no_subscription_existed(v5):
    """3.11.3 [MQTT-3.11.3-1] [MQTT-3.11.3-2]: UNSUBACK has one code per filter,
    in order: 0x11 (No subscription existed) or 0x00."""
    c = v5("rc-unsuback")
    c.subscribe(("rc/sub", 1))
    assert c.unsubscribe("rc/none", "rc/sub", "rc/sub").reason_codes == [0x11, 0x00, 0x11]


@pytest.mark.mosquitto_deviation(
    "mosquitto 2.0.11 closes the taken-over connection without DISCONNECT 0x8E"
)
def test_takeover_disconnect_0x8e(v5):
    """[MQTT-3.1.4-3]: a new connection with the same ClientID makes the server
    send DISCONNECT 0x8E (Session taken over) to the old one and close it;
    [MQTT-3.14.2-2]: a server DISCONNECT carries no Session Expiry Interval."""
    from mqttfast.codec.packets import Disconnect

    old = v5("rc-take", session_expiry=30)
    v5("rc-take", clean_start=False, session_expiry=30)
    pkt = old.recv_packet(2.0)
    assert isinstance(pkt, Disconnect), pkt
    assert pkt.reason_code == 0x8E
    assert pkt.properties is None or pkt.properties.session_expiry_interval is None
    assert old.expect_closed() is None


def test_malformed_packet_disconnect_0x81(v5):
    """[MQTT-1.5.4-1] 4.13: a topic that is not well-formed UTF-8 makes the
    PUBLISH malformed; the server sends DISCONNECT 0x81 and closes."""
    c = v5("rc-malformed")
    c.send(bytes([0x30, 5, 0, 2, 0xC3, 0x28, 0]))
    assert c.expect_closed() == 0x81


def test_reserved_flags_disconnect_0x81(v5):
    """[MQTT-2.1.3-1] [MQTT-3.8.1-1]: a SUBSCRIBE whose fixed-header flags are
    not 0010 is malformed: DISCONNECT 0x81."""
    c = v5("rc-flags")
    c.send(bytes([0x80, 10, 0, 1, 0, 0, 4]) + b"rc/t" + bytes([0]))
    assert c.expect_closed() == 0x81


@pytest.mark.mosquitto_deviation(
    "mosquitto 2.0.11 closes without DISCONNECT 0x82 (4.13: SHOULD send it; issue 4 requires it)"
)
def test_second_connect_protocol_error_0x82(v5):
    """[MQTT-3.1.0-2]: a second CONNECT is a Protocol Error: DISCONNECT 0x82
    and close."""
    c = v5("rc-twice")
    c.send_packet(Connect(client_id="rc-twice", protocol_version=5))
    assert c.expect_closed() == 0x82


def test_topic_name_with_wildcard_rejected(v5):
    """[MQTT-3.3.2-2] [MQTT-4.7.0-1]: a Topic Name with a wildcard is invalid:
    the spec gives no specific reason code for it, so the server answers
    either 0x90 (Topic Name invalid, on PUBACK or DISCONNECT) or DISCONNECT
    0x82 (Protocol Error, 4.13, as mosquitto does), and delivers nothing."""
    s = v5("rc-wsub")
    s.subscribe(("rc/#", 1))
    c = v5("rc-wild")
    c.send_packet(Publish(topic="rc/+", payload=b"x", qos=1, packet_id=1))
    pkt = c.recv_packet(2.0)
    assert pkt.reason_code == 0x90 or (
        type(pkt).__name__ == "Disconnect" and pkt.reason_code == 0x82
    ), pkt
    s.expect_no_packet(0.3)


@pytest.mark.mosquitto_deviation(
    "mosquitto 2.0.11 closes a Keep Alive 1 connection only after ~6 s and without DISCONNECT 0x8D"
)
def test_keep_alive_timeout_disconnect_0x8d(v5):
    """[MQTT-3.1.2-24] 4.13: no packet within 1.5 x Keep Alive: DISCONNECT 0x8D
    (Keep Alive timeout), then close. PINGREQ in time keeps it open."""
    c = v5("rc-ka", keep_alive=1)
    if c.connack.properties and c.connack.properties.server_keep_alive not in (None, 1):
        pytest.fail(f"unexpected Server Keep Alive {c.connack.properties.server_keep_alive}")
    c.ping()
    assert c.expect_closed(timeout=3.0) == 0x8D


@pytest.mark.mosquitto_deviation(
    "mosquitto 2.0.11 closes connections on SIGTERM without DISCONNECT 0x8B"
)
def test_sigterm_disconnect_0x8b():
    """4.13 / issue 7: on SIGTERM the server sends DISCONNECT 0x8B (Server
    shutting down) to connected MQTT 5 clients and exits."""
    with BrokerProcess() as b:
        c = RawClient(b.port, version=5)
        try:
            c.connect("rc-term")
            c.subscribe(("rc/term", 0))
            b.signal(signal.SIGTERM)
            assert c.expect_closed(timeout=5.0) == 0x8B
        finally:
            c.close()
        b.proc.wait(5)


def test_server_never_disconnects_before_connack(tcp):
    """[MQTT-3.14.0-1] [MQTT-3.1.0-1]: a first packet that is not CONNECT is
    answered by closing the connection, never by a DISCONNECT (none may precede
    a successful CONNACK)."""
    c = tcp()
    c.send_packet(Publish(topic="t", payload=b"x"))
    assert c.expect_closed() is None


def test_disconnect_with_will_message_0x04(v5):
    """3.14.2.1: a client DISCONNECT with 0x04 (Disconnect with Will Message)
    makes the server publish the will."""
    from mqttfast.codec.packets import Will

    w = v5("rc-04-watch")
    w.subscribe(("rc/will04", 0))
    c = v5("rc-04", will=Will("rc/will04", b"bye"))
    c.disconnect(reason_code=0x04)
    assert w.recv_publish().payload == b"bye"


def test_normal_disconnect_discards_will(v5):
    """[MQTT-3.14.4-3] [MQTT-3.1.2-10]: DISCONNECT 0x00 discards the will."""
    from mqttfast.codec.packets import Will

    w = v5("rc-00-watch")
    w.subscribe(("rc/will00", 0))
    c = v5("rc-00", will=Will("rc/will00", b"bye"))
    c.disconnect(reason_code=0x00)
    w.expect_no_packet(0.6)


def test_negative_puback_not_retransmitted(v5):
    """[MQTT-4.4.0-2]: a PUBLISH answered with PUBACK >= 0x80 counts as
    acknowledged: it is not resent when the session resumes."""
    from mqttfast.codec.packets import Puback

    s = v5("rc-negack", session_expiry=60)
    s.subscribe(("rc/negack", 1))
    v5("rc-negack-pub").publish("rc/negack", b"no thanks", qos=1)
    pub = s.recv_publish(ack=False)
    s.send_packet(Puback(packet_id=pub.packet_id, reason_code=0x83))
    s.ping()
    s.close()
    again = v5("rc-negack", clean_start=False, session_expiry=60)
    assert again.connack.session_present is True
    again.expect_no_packet(0.6)
