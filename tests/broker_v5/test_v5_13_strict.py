"""Protocol strictness for MQTT 5.0 (issue 14), on a real socket.

Malformed packets get DISCONNECT 0x81, protocol errors DISCONNECT 0x82 (4.13), a
bad CONNECT a CONNACK with the most specific code; then the connection closes.
The 3.1.1 counterparts are in tests/broker/test_15_strict.py; docs/conformance.md
lists every case. ``mosquitto_deviation`` marks where mosquitto 2.0.11 differs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mqttfast.codec import encode
from mqttfast.codec.packets import (
    Connack,
    Connect,
    Disconnect,
    Properties,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Subscription,
    Unsubscribe,
    Will,
)
from tests.helpers.broker import BrokerProcess
from tests.helpers.rawclient import ConnectionClosed, RawClient

MALFORMED, PROTOCOL_ERROR = 0x81, 0x82
CONTROL = ["\x01", "\x1f", "\x7f", "\x85", "\x9f"]  # C0, DEL, C1 (1.5.4)


@pytest.fixture
def configured(tmp_path: Path) -> Iterator[object]:
    """``configured(toml_text)`` -> a started mqttfast broker with that config file."""
    procs: list[BrokerProcess] = []

    def make(text: str) -> BrokerProcess:
        conf = tmp_path / f"broker{len(procs)}.toml"
        conf.write_text(text)
        proc = BrokerProcess(["--config", str(conf)])
        procs.append(proc)
        return proc.start()

    yield make
    for proc in procs:
        assert proc.running()
        proc.stop()
        proc.cleanup()


# ---------------------------------------------------------------- 1. empty topic filters


@pytest.mark.parametrize("filters", [["", "a/b"], ["a/b", ""], ["a", "b", ""]])
def test_subscribe_with_an_empty_filter_is_malformed(v5, filters: list[str]) -> None:
    """[MQTT-4.7.3-1] topic filters are at least one character long: a SUBSCRIBE with an
    empty one (first or later) is malformed -> DISCONNECT 0x81 and close, not SUBACK."""
    c = v5("s-empty")
    c.send_packet(Subscribe(1, [Subscription(f, 0) for f in filters]))
    assert c.expect_closed() == MALFORMED


@pytest.mark.parametrize("filters", [[""], ["a/b", ""]])
def test_unsubscribe_with_an_empty_filter_is_malformed(v5, filters: list[str]) -> None:
    """[MQTT-4.7.3-1] an empty filter in UNSUBSCRIBE: DISCONNECT 0x81, no UNSUBACK."""
    c = v5("u-empty")
    c.send_packet(Unsubscribe(1, filters))
    assert c.expect_closed() == MALFORMED


@pytest.mark.parametrize("bad", ["$share/group/", "$share//f", "$share/g#/f", "$share/g"])
@pytest.mark.mosquitto_deviation(
    "mosquitto 2.0.11 subscribes $share/group/, $share//f, $share/g as plain filters "
    "(SUBACK 0) and answers $share/g#/f with DISCONNECT 0x81"
)
def test_malformed_shared_filter_is_a_protocol_error(v5, bad: str) -> None:
    """[MQTT-4.8.2-1] [MQTT-4.8.2-2] a $share filter needs a ShareName (no wildcards)
    and a topic filter after it: otherwise DISCONNECT 0x82 Protocol Error, not 0x8F."""
    c = v5("share-bad")
    c.send_packet(Subscribe(1, [Subscription("ok/1", 0), Subscription(bad, 0)]))
    assert c.expect_closed() == PROTOCOL_ERROR


@pytest.mark.mosquitto_deviation("mosquitto 2.0.11 answers UNSUBACK 0x11 (no subscription)")
def test_malformed_shared_filter_in_unsubscribe_is_a_protocol_error(v5) -> None:
    """[MQTT-4.8.2-2] the same for UNSUBSCRIBE: DISCONNECT 0x82."""
    c = v5("share-bad-u")
    c.send_packet(Unsubscribe(1, ["$share//f"]))
    assert c.expect_closed() == PROTOCOL_ERROR


# ---------------------------------------------------------------- 2. wrong acknowledgements


def _delivered(v5, qos: int) -> tuple[RawClient, Publish]:
    sub = v5(f"ack-sub-{qos}")
    sub.subscribe(("t/ack", qos))
    pub = v5(f"ack-pub-{qos}")
    pub.publish("t/ack", b"m", qos=qos)
    msg = sub.recv_publish(ack=False)
    assert msg.qos == qos
    return sub, msg


@pytest.mark.parametrize("wrong", [Pubrec, Pubcomp])
@pytest.mark.mosquitto_deviation("mosquitto 2.0.11 closes without a DISCONNECT")
def test_wrong_ack_for_qos1_is_a_protocol_error(v5, wrong: type) -> None:
    """4.3.2: only PUBACK answers a QoS 1 PUBLISH: PUBREC or PUBCOMP for its in-flight
    packet id -> DISCONNECT 0x82 (a PUBREC used to get a PUBREL as if it were QoS 2)."""
    sub, msg = _delivered(v5, 1)
    sub.send_packet(wrong(msg.packet_id))
    assert sub.expect_closed() == PROTOCOL_ERROR


@pytest.mark.parametrize("wrong", [Puback, Pubcomp])
@pytest.mark.mosquitto_deviation("mosquitto 2.0.11 closes without a DISCONNECT")
def test_wrong_ack_for_qos2_awaiting_pubrec_is_a_protocol_error(v5, wrong: type) -> None:
    """4.3.3: a QoS 2 PUBLISH awaits PUBREC: PUBACK or PUBCOMP -> DISCONNECT 0x82."""
    sub, msg = _delivered(v5, 2)
    sub.send_packet(wrong(msg.packet_id))
    assert sub.expect_closed() == PROTOCOL_ERROR


@pytest.mark.parametrize(
    "wrong",
    [
        pytest.param(
            Puback,
            marks=pytest.mark.mosquitto_deviation("mosquitto 2.0.11 closes without DISCONNECT"),
        ),
        pytest.param(
            Pubrec,
            marks=pytest.mark.mosquitto_deviation(
                "mosquitto 2.0.11 answers a PUBREC awaiting PUBCOMP with another PUBREL"
            ),
        ),
    ],
)
def test_wrong_ack_for_qos2_awaiting_pubcomp_is_a_protocol_error(v5, wrong: type) -> None:
    """4.3.3: after PUBREL only PUBCOMP completes: PUBACK or PUBREC -> DISCONNECT 0x82."""
    sub, msg = _delivered(v5, 2)
    sub.send_packet(Pubrec(msg.packet_id))
    sub.recv_until(Pubrel, packet_id=msg.packet_id)
    sub.send_packet(wrong(msg.packet_id))
    assert sub.expect_closed() == PROTOCOL_ERROR


@pytest.mark.mosquitto_deviation("mosquitto 2.0.11 answers an unknown PUBREC with PUBREL 0x00")
def test_acks_for_unknown_ids_unchanged(v5) -> None:
    """Packet ids not in flight stay as before: PUBREC -> PUBREL 0x92 (Packet Identifier
    not found), PUBACK and PUBCOMP ignored; the connection stays up."""
    c = v5("unknown-ids")
    c.send_packet(Puback(4242))
    c.send_packet(Pubcomp(4243))
    c.send_packet(Pubrec(4244))
    assert c.recv_until(Pubrel, packet_id=4244).reason_code == 0x92
    assert c.is_open()


# ---------------------------------------------------------------- 3. control characters


@pytest.mark.parametrize("ch", CONTROL)
def test_control_character_in_topic_name_is_malformed(v5, ch: str) -> None:
    """1.5.4: control characters SHOULD NOT be sent and MAY be treated as malformed; by
    default a PUBLISH topic with one gets DISCONNECT 0x81 and nothing is delivered."""
    sub = v5("cc-sub")
    sub.subscribe("#")
    c = v5("cc-pub")
    c.send_packet(Publish(f"a{ch}b", b"x", qos=1, packet_id=1))
    assert c.expect_closed() == MALFORMED
    sub.expect_no_packet(0.3)


@pytest.mark.parametrize("ch", CONTROL)
def test_control_character_in_filter_is_malformed(v5, ch: str) -> None:
    """1.5.4: a control character in a SUBSCRIBE / UNSUBSCRIBE filter: DISCONNECT 0x81."""
    c = v5("cc-filter")
    c.send_packet(Subscribe(1, [Subscription(f"a/{ch}", 0)]))
    assert c.expect_closed() == MALFORMED
    u = v5("cc-unsub")
    u.send_packet(Unsubscribe(1, [f"{ch}/#"]))
    assert u.expect_closed() == MALFORMED


@pytest.mark.parametrize(
    "field,code",
    [
        pytest.param(
            "client_id",
            0x85,
            marks=pytest.mark.mosquitto_deviation("mosquitto 2.0.11 closes without CONNACK"),
        ),
        pytest.param(
            "username",
            MALFORMED,
            marks=pytest.mark.mosquitto_deviation("mosquitto 2.0.11 closes without CONNACK"),
        ),
        pytest.param(
            "will_topic",
            MALFORMED,
            marks=pytest.mark.mosquitto_deviation("mosquitto 2.0.11 closes without CONNACK"),
        ),
    ],
)
def test_control_character_in_connect_refused(tcp, field: str, code: int) -> None:
    """1.5.4: a control character in the client identifier -> CONNACK 0x85 (Client
    Identifier not valid); in the user name or will topic -> CONNACK 0x81; then close."""
    kwargs: dict = {"client_id": "cc-conn"}
    if field == "client_id":
        kwargs["client_id"] = "cc\x1b[2Jconn"
    elif field == "username":
        kwargs["username"] = "user\r\nforged log line"
    else:
        kwargs["will"] = Will("will/\x07", b"w")
    c = tcp()
    c.send_packet(Connect(protocol_version=5, **kwargs))
    assert c.expect_refused_connect() == code


@pytest.mark.mqttfast_only("mqtt.allow_control_characters is an mqttfast setting")
def test_allow_control_characters_restores_acceptance(configured) -> None:
    """``mqtt.allow_control_characters = true`` accepts them everywhere (the behaviour
    before issue 14); U+0000 stays malformed [MQTT-1.5.4-2]."""
    proc = configured("[mqtt]\nallow_control_characters = true\n")
    with RawClient(proc.port, 5) as sub, RawClient(proc.port, 5) as pub:
        sub.connect("sub\x01", username="u\x7f", will=Will("w\x1f", b"x"))
        assert sub.subscribe(("a\x85/#", 1)).reason_codes == [1]
        pub.connect("pub")
        pub.publish("a\x85/b\x01", b"ok", qos=1)
        got = sub.recv_publish()
        assert (got.topic, got.payload) == ("a\x85/b\x01", b"ok")
        pub.send(b"\x30\x07\x00\x03a\x00b\x00x")  # v5 PUBLISH "a\0b", no properties
        assert pub.expect_closed() == MALFORMED


# ---------------------------------------------------------------- 4. client's Maximum Packet Size


def _connack_bytes(c: RawClient, connack: Connack) -> int:
    return len(encode(connack, 5))


@pytest.mark.parametrize("limit", [8, 64, 1024])
def test_connack_never_exceeds_client_maximum_packet_size(tcp, limit: int) -> None:
    """[MQTT-3.1.2-24] the server never sends a packet larger than the client's Maximum
    Packet Size, CONNACK included: it fits, or the connection closes without it."""
    c = tcp()
    c.send_packet(
        Connect("mps-ok", protocol_version=5, properties=Properties(maximum_packet_size=limit))
    )
    try:
        connack = c.expect(Connack)
    except ConnectionClosed:
        return  # closing without a CONNACK that does not fit is allowed
    assert _connack_bytes(c, connack) <= limit


@pytest.mark.parametrize("limit", [2, 4])
def test_connack_that_cannot_fit_is_not_sent(tcp, limit: int) -> None:
    """[MQTT-3.1.2-24] [MQTT-3.1.2-25] a client allowing fewer bytes than the smallest
    CONNACK (5) gets no CONNACK: the connection is closed without sending it."""
    c = tcp()
    c.send_packet(
        Connect("mps-tiny", protocol_version=5, properties=Properties(maximum_packet_size=limit))
    )
    assert c.expect_refused_connect() is None


@pytest.mark.mqttfast_only("the Reason String of a refusing CONNACK is mqttfast's text")
def test_refusing_connack_drops_reason_string_to_fit(tcp) -> None:
    """[MQTT-3.2.2-19] the Reason String is not sent when it would make the CONNACK exceed
    the client's Maximum Packet Size: the same refusal comes without it (5 bytes)."""
    big = tcp()
    big.send_packet(
        Connect(
            "mps-auth",
            protocol_version=5,
            properties=Properties(authentication_method="NO-SUCH", maximum_packet_size=1024),
        )
    )
    full = big.expect(Connack)
    assert full.reason_code == 0x8C and full.properties and full.properties.reason_string
    small = tcp()
    small.send_packet(
        Connect(
            "mps-auth",
            protocol_version=5,
            properties=Properties(authentication_method="NO-SUCH", maximum_packet_size=5),
        )
    )
    bare = small.expect(Connack)
    assert bare.reason_code == 0x8C and bare.properties is None
    assert small.expect_closed() is None


def _disconnect_for_wildcard_publish(c: RawClient) -> Disconnect:
    c.send_packet(Publish("a/+", b"x"))
    pkt = c.expect(Disconnect)
    assert c.expect_closed() is None
    return pkt


def test_disconnect_within_client_maximum_packet_size(v5) -> None:
    """[MQTT-3.1.2-24] [MQTT-3.14.2-3] a DISCONNECT never exceeds the client's Maximum
    Packet Size: its Reason String is left out when it would."""
    c = v5("mps-disc", properties=Properties(maximum_packet_size=16))
    pkt = _disconnect_for_wildcard_publish(c)
    assert pkt.reason_code >= 0x80  # mqttfast: 0x90, mosquitto: 0x82
    assert len(encode(pkt, 5)) <= 16


@pytest.mark.mqttfast_only("mosquitto 2.0.11 sends the oversized SUBACK")
def test_suback_too_large_for_client_is_not_sent(v5) -> None:
    """[MQTT-3.1.2-24] a SUBACK for 20 filters (25 bytes) is not sent to a client allowing
    16: the connection closes instead (a bare DISCONNECT fits), never an oversized packet;
    the same client subscribing to one filter gets its SUBACK."""
    ok = v5("mps-suback-ok", properties=Properties(maximum_packet_size=16))
    ok.send_packet(Subscribe(1, [Subscription("one/filter", 1)]))
    assert ok.expect(Suback).reason_codes == [1]
    c = v5("mps-suback", properties=Properties(maximum_packet_size=16))
    c.send_packet(Subscribe(1, [Subscription(f"f/{i}", 0) for i in range(20)]))
    pkt = c.expect(Disconnect)
    assert len(encode(pkt, 5)) <= 16
    assert c.expect_closed() is None


@pytest.mark.mqttfast_only("the Reason String of a DISCONNECT is mqttfast's text")
def test_disconnect_keeps_reason_string_when_it_fits(v5) -> None:
    """The control case: with room for it the DISCONNECT carries the Reason String."""
    c = v5("mps-disc-big", properties=Properties(maximum_packet_size=1024))
    pkt = _disconnect_for_wildcard_publish(c)
    assert pkt.reason_code == 0x90 and pkt.properties and pkt.properties.reason_string


# ---------------------------------------------------------------- 5. 3.1 leniency stays 3.1-only


@pytest.mark.parametrize("nibble,reserved", [(0x0F, False), (0x00, True)], ids=["flags", "res"])
@pytest.mark.mosquitto_deviation("mosquitto 2.0.11 closes without CONNACK")
def test_v5_connect_with_flag_bits_is_malformed(tcp, nibble: int, reserved: bool) -> None:
    """[MQTT-2.1.3-1] [MQTT-3.1.2-3] the MQTT 3.1 leniency does not reach 5.0: fixed-header
    flag bits or the reserved CONNECT flag -> CONNACK 0x81 and close."""
    data = bytearray(encode(Connect("strict-5", protocol_version=5), 5))
    data[0] |= nibble
    if reserved:
        data[2 + 6 + 1] |= 0x01
    c = tcp()
    c.send(bytes(data))
    assert c.expect_refused_connect() == MALFORMED


# ---------------------------------------------------------------- 6. close hygiene

RECEIVE_MAXIMUM = 10


def _over_receive_maximum(port: int) -> int | str | None:
    """One run: connect, publish RECEIVE_MAXIMUM + 1 QoS 2 messages in one write, then
    read, answering each PUBREC with its PUBREL as a QoS 2 client does. Returns the
    DISCONNECT reason code read, the name of the error a send or read failed with, or
    None when the connection ended without a DISCONNECT."""
    with RawClient(port, 5) as c:
        c.connect("burst")
        c.send_packets(
            Publish("t/burst", b"x" * 100, qos=2, packet_id=i)
            for i in range(1, RECEIVE_MAXIMUM + 2)
        )
        pubrecs = 0
        try:
            while True:
                pkt = c.recv_packet(timeout=3.0)
                if isinstance(pkt, Disconnect):
                    assert pubrecs == RECEIVE_MAXIMUM
                    return pkt.reason_code
                if isinstance(pkt, Pubrec):
                    pubrecs += 1
                    c.send_packet(Pubrel(pkt.packet_id))
        except ConnectionClosed:
            return None
        except OSError as err:  # broken pipe / reset: the broker closed with input unread
            return type(err).__name__


@pytest.mark.mqttfast_only("needs a small receive maximum (mqttfast TOML)")
@pytest.mark.timeout(120)
def test_disconnect_reason_survives_the_close(configured) -> None:
    """[MQTT-3.3.4-9] one QoS 2 PUBLISH over Receive Maximum -> DISCONNECT 0x93, and
    [MQTT-4.13.1-1] / 4.13.2 the client must be able to read it: the broker half-closes
    and drains input instead of closing with unread data (which makes the kernel send
    RST and lose the DISCONNECT). 50 runs, every one reads 0x93."""
    proc = configured(f"[limits]\nreceive_maximum = {RECEIVE_MAXIMUM}\n")
    seen = [_over_receive_maximum(proc.port) for _ in range(50)]
    assert seen == [0x93] * 50, seen
