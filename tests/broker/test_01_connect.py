"""CONNECT / CONNACK (MQTT 3.1.1 section 3.1, 3.2; MQTT 3.1 "MQIsdp")."""

from __future__ import annotations

import struct

import pytest

from mqttfast.codec.packets import Connack, Pingresp, Publish, Subscribe, Subscription
from tests.helpers.rawclient import RawClient


def mqtt_str(s: bytes | str) -> bytes:
    if isinstance(s, str):
        s = s.encode()
    return struct.pack("!H", len(s)) + s


def raw_connect(
    name: bytes = b"MQTT",
    level: int = 4,
    flags: int = 0x02,
    keep_alive: int = 60,
    payload: bytes = mqtt_str("raw-client"),
) -> bytes:
    """A CONNECT built byte by byte, for fields an encoder would refuse to write."""
    body = mqtt_str(name) + bytes([level, flags]) + struct.pack("!H", keep_alive) + payload
    assert len(body) < 128
    return bytes([0x10, len(body)]) + body


def test_connect_accepted_connack_first(raw) -> None:
    """[MQTT-3.1.4-4] a valid CONNECT is acknowledged with return code 0;
    [MQTT-3.2.0-1] the first packet from the server is CONNACK."""
    c = raw()
    c.send(raw_connect())
    pkt = c.recv_packet()
    assert isinstance(pkt, Connack)
    assert pkt.reason_code == 0
    assert c.is_open()


def test_clean_session_connack_session_present_0(raw) -> None:
    """[MQTT-3.2.2-1] CleanSession=1 -> Session Present 0."""
    ack = raw().connect("cs1", clean_start=True)
    assert ack.session_present is False


def test_mqtt31_mqisdp_connect(raw) -> None:
    """MQTT 3.1: protocol name "MQIsdp", level 3 is accepted and the client can pub/sub."""
    c = raw(version=3)
    ack = c.connect("mqtt31client")
    assert ack.reason_code == 0 and ack.session_present is False
    assert c.subscribe(("v31/t", 1)).reason_codes == [1]
    c.publish("v31/t", b"hello 3.1", qos=1)
    pub = c.recv_publish()
    assert (pub.topic, pub.payload, pub.qos) == ("v31/t", b"hello 3.1", 1)


def test_mqtt31_and_311_clients_interoperate(raw) -> None:
    """A 3.1 publisher reaches a 3.1.1 subscriber and vice versa (same broker)."""
    old = raw(version=3, client_id="old")
    new = raw(client_id="new")
    new.subscribe("mix/#")
    old.subscribe("mix/#")
    old.publish("mix/a", b"from31", qos=1)
    new.publish("mix/b", b"from311", qos=1)
    assert {p.payload for p in new.recv_publishes(2)} == {b"from31", b"from311"}
    assert {p.payload for p in old.recv_publishes(2)} == {b"from31", b"from311"}


def test_first_packet_not_connect_closes(raw) -> None:
    """[MQTT-3.1.0-1] the first packet must be CONNECT; anything else closes the connection."""
    c = raw()
    c.send_packet(Publish(topic="a/b", payload=b"x"))
    assert c.expect_closed() is None


def test_first_packet_subscribe_closes(raw) -> None:
    """[MQTT-3.1.0-1] a SUBSCRIBE before CONNECT closes the connection, nothing answered."""
    c = raw()
    c.send_packet(Subscribe(packet_id=1, subscriptions=[Subscription("a", 0)]))
    c.expect_closed()


def test_second_connect_is_protocol_violation(raw) -> None:
    """[MQTT-3.1.0-2] a second CONNECT on a connection is a protocol violation -> close."""
    c = raw(client_id="twice")
    c.send(raw_connect(payload=mqtt_str("twice")))
    c.expect_closed()


def test_wrong_protocol_name_closes(raw) -> None:
    """[MQTT-3.1.2-1] an incorrect protocol name: the server does not go on as MQTT
    (it disconnects; it must not accept the connection)."""
    c = raw()
    c.send(raw_connect(name=b"MQTX"))
    c.expect_closed()


def test_unsupported_protocol_level_connack_1(raw) -> None:
    """[MQTT-3.1.2-2] unsupported protocol level -> CONNACK 0x01 then disconnect;
    [MQTT-3.2.2-4] Session Present 0 with a non-zero return code;
    [MQTT-3.2.2-5] the server closes after a non-zero return code."""
    c = raw()
    c.send(raw_connect(level=6))
    ack = c.expect(Connack)
    assert ack.reason_code == 0x01
    assert ack.session_present is False
    c.expect_closed()


def test_connect_reserved_flag_closes(raw) -> None:
    """[MQTT-3.1.2-3] the reserved flag in CONNECT must be 0, else disconnect."""
    c = raw()
    c.send(raw_connect(flags=0x03))
    c.expect_closed()


def test_will_qos_without_will_flag_closes(raw) -> None:
    """[MQTT-3.1.2-13] Will Flag 0 -> Will QoS must be 0; otherwise the connection is closed."""
    c = raw()
    c.send(raw_connect(flags=0x02 | 0x08))
    c.expect_closed()


def test_will_retain_without_will_flag_closes(raw) -> None:
    """[MQTT-3.1.2-15] Will Flag 0 -> Will Retain must be 0; otherwise close."""
    c = raw()
    c.send(raw_connect(flags=0x02 | 0x20))
    c.expect_closed()


def test_will_qos_3_closes(raw) -> None:
    """[MQTT-3.1.2-14] Will QoS must not be 3."""
    c = raw()
    payload = mqtt_str("willq3") + mqtt_str("will/t") + mqtt_str(b"bye")
    c.send(raw_connect(flags=0x02 | 0x04 | 0x18, payload=payload))
    c.expect_closed()


def test_password_without_username_closes(raw) -> None:
    """[MQTT-3.1.2-22] User Name Flag 0 -> Password Flag must be 0; otherwise close."""
    c = raw()
    payload = mqtt_str("nopwuser") + mqtt_str(b"secret")
    c.send(raw_connect(flags=0x02 | 0x40, payload=payload))
    c.expect_closed()


def test_username_and_password_accepted_by_default(raw) -> None:
    """Username/password go to the auth hook, which allows all by default
    (3.1.3.4 / 3.1.3.5 fields parsed; [MQTT-3.1.4-4] CONNACK 0)."""
    c = raw()
    ack = c.connect("withcreds", username="alice", password=b"s3cret")
    assert ack.reason_code == 0
    assert c.is_open()


def test_empty_client_id_clean_session_assigned(raw) -> None:
    """[MQTT-3.1.3-6] a zero-length ClientId with CleanSession=1 is accepted
    (the server assigns a unique id): two such clients coexist."""
    a = raw()
    b = raw()
    assert a.connect("", clean_start=True).reason_code == 0
    assert b.connect("", clean_start=True).reason_code == 0
    # Both stay connected: the assigned ids are distinct, no takeover happened.
    a.subscribe("anon/t")
    b.publish("anon/t", b"x")
    assert a.recv_publish().payload == b"x"
    assert b.is_open() and a.is_open()


def test_empty_client_id_persistent_session_rejected(raw) -> None:
    """[MQTT-3.1.3-8] a zero-length ClientId with CleanSession=0 -> CONNACK 0x02, then close."""
    c = raw()
    ack = c.connect("", clean_start=False, expect_rc=None)
    assert ack.reason_code == 0x02
    assert ack.session_present is False
    c.expect_closed()


def test_rejected_connect_data_after_is_not_processed(raw) -> None:
    """[MQTT-3.1.4-5] after a refused CONNECT the server processes nothing more:
    a PUBLISH sent right behind the refused CONNECT is not delivered."""
    sub = raw(client_id="watcher")
    sub.subscribe("after/refused")
    c = raw()
    c.send(
        raw_connect(flags=0x00, payload=mqtt_str(""))  # empty id + persistent: refused
        + bytes([0x30])
        + bytes([len(mqtt_str("after/refused")) + 4])
        + mqtt_str("after/refused")
        + b"evil"
    )
    ack = c.expect(Connack)
    assert ack.reason_code == 0x02
    c.expect_closed()
    sub.expect_no_packet(0.5)


def test_mqtt31_empty_client_id_rejected(raw) -> None:
    """MQTT 3.1 (3.1 spec, CONNECT payload): the client id must be 1-23 characters;
    an empty one is refused with CONNACK 2 (identifier rejected) [MQTT-3.1.3-9]."""
    c = raw(version=3)
    ack = c.connect("", clean_start=True, expect_rc=None)
    assert ack.reason_code == 0x02
    c.expect_closed()


def test_long_utf8_client_id_accepted(raw) -> None:
    """[MQTT-3.1.3-5] the server MAY allow ids longer than 23 bytes and other
    characters; a long UTF-8 id is accepted (mqttfast allows them, like mosquitto)."""
    c = raw()
    assert c.connect("client-" + "é" * 100 + "-x").reason_code == 0


def test_pingreq_pingresp(raw) -> None:
    """[MQTT-3.12.4-1] the server answers PINGREQ with PINGRESP."""
    c = raw(client_id="pinger")
    for _ in range(3):
        assert isinstance(c.ping(), Pingresp)


def test_disconnect_closes_connection(raw) -> None:
    """3.14.4: on DISCONNECT the server closes the network connection if the client
    has not (a SHOULD, which mqttfast follows), and answers nothing."""
    c = raw(client_id="leaver")
    c.send(bytes([0xE0, 0x00]))
    c.expect_closed()


def test_connect_split_across_writes(raw) -> None:
    """A CONNECT arriving one byte at a time is still a CONNECT (stream framing)."""
    c = raw()
    data = raw_connect(payload=mqtt_str("slowpoke"))
    for i in range(len(data)):
        c.send(data[i : i + 1])
    assert c.expect(Connack).reason_code == 0


def test_connect_and_publish_in_one_segment(raw) -> None:
    """Several packets in one TCP segment are all processed, in order."""
    sub = raw(client_id="seg-sub")
    sub.subscribe("seg/t")
    c = raw()
    topic = mqtt_str("seg/t")
    pub = bytes([0x30, len(topic) + 2]) + topic + b"hi"
    c.send(raw_connect(payload=mqtt_str("seg-pub")) + pub + bytes([0xC0, 0x00]))
    assert c.expect(Connack).reason_code == 0
    assert isinstance(c.recv_packet(), Pingresp)
    assert sub.recv_publish().payload == b"hi"


@pytest.mark.mqttfast_only("mosquitto has no configurable connect timeout")
@pytest.mark.broker_args("--connect-timeout", "1")
def test_connect_timeout_closes_silent_connection(raw, broker) -> None:
    """[MQTT-3.1.0-1] with 3.1.4: a connection that sends no CONNECT within the
    connect timeout is closed (and the broker keeps serving others)."""
    silent = raw()
    silent.expect_closed(timeout=4)
    other = RawClient(broker.port)
    try:
        assert other.connect("after-silent").reason_code == 0
    finally:
        other.close()


@pytest.mark.mqttfast_only("mosquitto has no configurable connect timeout")
@pytest.mark.broker_args("--connect-timeout", "1")
def test_connect_timeout_half_sent_connect(raw) -> None:
    """A half-sent CONNECT followed by silence is closed by the connect timeout."""
    c = raw()
    c.send(raw_connect()[:7])
    c.expect_closed(timeout=4)


@pytest.mark.mosquitto_deviation("mosquitto 2.0.11 accepts MQTT 3.1 client ids longer than 23")
def test_mqtt31_client_id_longer_than_23_rejected(raw) -> None:
    """MQTT 3.1 (3.1 spec, CONNECT): "If the Client ID contains more than 23 characters,
    the server responds with CONNACK return code 2" (3.1.1 relaxed this only for 3.1.1)."""
    c = raw(version=3)
    ack = c.connect("x" * 24, expect_rc=None)
    assert ack.reason_code == 0x02
    c.expect_closed()
    ok = raw(version=3)
    assert ok.connect("y" * 23).reason_code == 0
