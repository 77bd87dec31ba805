"""Flow control (4.9): Receive Maximum both ways; Maximum Packet Size both
ways (3.1.2.11.4, 3.2.2.3.6)."""

from __future__ import annotations

import pytest

from mqttfast.codec.packets import Properties, Puback, Publish, Pubrec


@pytest.mark.mosquitto_deviation(
    "mosquitto 2.0.11 has 3 unacknowledged QoS 1 PUBLISH out to a client with Receive Maximum 2 after one PUBACK (violates [MQTT-3.3.4-9])"
)
def test_server_respects_client_receive_maximum(v5):
    """[MQTT-3.3.4-9] [MQTT-4.9.0-2]: the server never has more unacknowledged
    QoS 1 PUBLISH packets to a client than the client's Receive Maximum; each
    PUBACK frees one slot; all messages arrive in order in the end."""
    s = v5("rmx", properties=Properties(receive_maximum=2))
    s.subscribe(("rmx/t", 1))
    p = v5("rmx-pub")
    for i in range(6):
        p.publish("rmx/t", b"%d" % i, qos=1)
    first = [s.recv_publish(ack=False) for _ in range(2)]
    s.expect_no_packet(0.5)
    s.send_packet(Puback(packet_id=first[0].packet_id))
    third = s.recv_publish(ack=False)
    s.expect_no_packet(0.5)
    s.send_packet(Puback(packet_id=first[1].packet_id))
    s.send_packet(Puback(packet_id=third.packet_id))
    rest = s.recv_publishes(3)
    assert [m.payload for m in first + [third] + rest] == [b"%d" % i for i in range(6)]


def test_server_receive_maximum_counts_qos2_until_pubcomp(v5):
    """[MQTT-3.3.4-9]: a QoS 2 PUBLISH stays unacknowledged until PUBCOMP
    (PUBREC < 0x80 does not free the slot); with Receive Maximum 1 the second
    message waits for the first PUBCOMP."""
    from mqttfast.codec.packets import Pubcomp, Pubrel

    s = v5("rmx2", properties=Properties(receive_maximum=1))
    s.subscribe(("rmx2/t", 2))
    p = v5("rmx2-pub")
    p.publish("rmx2/t", b"a", qos=2)
    p.publish("rmx2/t", b"b", qos=2)
    first = s.recv_publish(ack=False)
    s.send_packet(Pubrec(packet_id=first.packet_id))
    s.recv_until(Pubrel, packet_id=first.packet_id)
    s.expect_no_packet(0.5)
    s.send_packet(Pubcomp(packet_id=first.packet_id))
    assert s.recv_publish().payload == b"b"


def test_quota_zero_does_not_block_other_packets(v5):
    """[MQTT-3.3.4-10] [MQTT-4.9.0-3]: with the send quota used up the server
    still answers other packets (PINGRESP, SUBACK) at once."""
    s = v5("rmxq", properties=Properties(receive_maximum=1))
    s.subscribe(("rmxq/t", 1))
    p = v5("rmxq-pub")
    p.publish("rmxq/t", b"a", qos=1)
    p.publish("rmxq/t", b"b", qos=1)
    s.recv_publish(ack=False)
    s.ping(timeout=1.0)
    assert s.subscribe(("rmxq/other", 0), timeout=1.0).reason_codes == [0]


@pytest.mark.broker_args("--max-inflight", "5")
@pytest.mark.mosquitto_deviation(
    "mosquitto 2.0.11 answers the extra QoS 2 PUBLISH with PUBREC 0x97 instead of DISCONNECT 0x93"
)
def test_client_exceeding_server_receive_maximum_gets_0x93(v5):
    """3.3.4 / [MQTT-3.3.4-7]: a client MUST NOT have more unacknowledged QoS 2
    PUBLISH packets than the server's Receive Maximum; one more and the server
    sends DISCONNECT 0x93 (Receive Maximum exceeded). The broker is started
    with --max-inflight 5, which must give a Receive Maximum below 65535
    (65535 could not be exceeded with distinct packet identifiers)."""
    c = v5("rmx-over")
    rm = (c.connack.properties and c.connack.properties.receive_maximum) or 65535
    assert rm < 1000, f"server Receive Maximum {rm} not configurable via --max-inflight"
    for pid in range(1, rm + 1):
        c.send_packet(Publish(topic="rmx-over/t", payload=b"x", qos=2, packet_id=pid))
        c.recv_until(Pubrec, packet_id=pid)
    # PUBRECs received but no PUBREL: all rm messages are still unacknowledged.
    c.send_packet(Publish(topic="rmx-over/t", payload=b"x", qos=2, packet_id=rm + 1))
    assert c.expect_closed() == 0x93


def test_message_too_large_for_subscriber_is_dropped_for_it_only(v5):
    """[MQTT-3.1.2-27] [MQTT-3.1.2-28]: the server MUST NOT send a packet larger
    than the client's Maximum Packet Size; it discards it for that client (as
    if sent) but delivers it to other subscribers, and later small messages
    still reach the small client."""
    small = v5("mps-small", properties=Properties(maximum_packet_size=128))
    big = v5("mps-big")
    small.subscribe(("mps/t", 1))
    big.subscribe(("mps/t", 1))
    p = v5("mps-pub")
    p.publish("mps/t", b"x" * 500, qos=1)
    p.publish("mps/t", b"small", qos=1)
    assert [m.payload for m in big.recv_publishes(2)] == [b"x" * 500, b"small"]
    pub = small.recv_publish()
    assert pub.payload == b"small"
    small.expect_no_packet(0.3)


def test_retained_too_large_for_subscriber_not_sent(v5):
    """[MQTT-3.1.2-27]: the limit also applies to retained messages sent on
    subscribe."""
    v5("mpsr-pub").publish("mpsr/big", b"y" * 400, qos=1, retain=True)
    v5("mpsr-pub2").publish("mpsr/small", b"s", qos=1, retain=True)
    c = v5("mpsr", properties=Properties(maximum_packet_size=100))
    c.subscribe(("mpsr/#", 1))
    assert c.recv_publish().payload == b"s"
    c.expect_no_packet(0.3)


@pytest.mark.broker_args("--max-packet-size", "1024")
def test_client_packet_over_server_maximum_gets_0x95(v5):
    """[MQTT-3.2.2-15] 3.2.2.3.6 / 4.13: a packet larger than the server's
    Maximum Packet Size is an error; the server sends DISCONNECT 0x95 (Packet
    too large) and closes; a packet just under the limit is accepted."""
    c = v5("mps-over")
    assert c.connack.properties.maximum_packet_size == 1024
    ok = c.publish("mpso/t", b"a" * 900, qos=1)
    assert ok.reason_code in (0x00, 0x10)
    c.send_packet(Publish(topic="mpso/t", payload=b"b" * 2000, qos=1, packet_id=7))
    assert c.expect_closed() == 0x95


@pytest.mark.broker_args("--max-packet-size", "1024")
def test_oversized_packet_does_not_disturb_others(v5):
    """4.13: the error closes only that connection; another client carries on."""
    other = v5("mps-other")
    other.subscribe(("mpsd/t", 0))
    bad = v5("mps-bad")
    bad.send_packet(Publish(topic="mpsd/t", payload=b"b" * 4000))
    assert bad.expect_closed() == 0x95
    other.expect_no_packet(0.2)
    v5("mps-good").publish("mpsd/t", b"fine")
    assert other.recv_publish().payload == b"fine"


def test_pubrec_error_frees_receive_maximum_slot(v5):
    """[MQTT-3.3.4-9] [MQTT-4.3.3-4] [MQTT-4.4.0-2]: a PUBREC with a reason code
    >= 0x80 acknowledges the QoS 2 PUBLISH: its slot is free again (the next
    message comes with Receive Maximum 1), no PUBREL follows, and it is not
    retransmitted."""
    from mqttfast.codec.packets import Pubrel

    s = v5("rmxe", properties=Properties(receive_maximum=1))
    s.subscribe(("rmxe/t", 2))
    p = v5("rmxe-pub")
    p.publish("rmxe/t", b"refused", qos=2)
    p.publish("rmxe/t", b"next", qos=2)
    first = s.recv_publish(ack=False)
    assert first.payload == b"refused"
    s.send_packet(Pubrec(packet_id=first.packet_id, reason_code=0x80))
    nxt = s.recv_publish()
    assert nxt.payload == b"next"
    s.expect_no_packet(0.5)
    assert not any(isinstance(x, Pubrel) and x.packet_id == first.packet_id for x in s.pending)
