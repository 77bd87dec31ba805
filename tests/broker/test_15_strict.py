"""Protocol strictness for MQTT 3.1 / 3.1.1 (issue 14), on a real socket.

3.1.1 has no reason codes: what the specification calls malformed or a protocol
error closes the connection (4.8.0 / [MQTT-4.8.0-1]), without a reply. The same
cases for MQTT 5 are in tests/broker_v5/test_v5_13_strict.py; docs/conformance.md
lists them all. Tests marked ``mosquitto_deviation`` follow the specification
where mosquitto 2.0.11 does something else (the reason says what).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mqttfast.codec import encode
from mqttfast.codec.packets import (
    Connack,
    Connect,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Subscribe,
    Subscription,
    Unsubscribe,
    Will,
)
from tests.helpers.broker import BrokerProcess
from tests.helpers.rawclient import RawClient

CONTROL = ["\x01", "\x1f", "\x7f", "\x85", "\x9f"]  # C0, DEL, C1 (1.5.4)


@pytest.fixture
def lenient(tmp_path: Path) -> Iterator[BrokerProcess]:
    """A broker with ``mqtt.allow_control_characters = true`` (mqttfast's TOML)."""
    conf = tmp_path / "lenient.toml"
    conf.write_text("[mqtt]\nallow_control_characters = true\n")
    proc = BrokerProcess(["--config", str(conf)])
    proc.start()
    try:
        yield proc
        assert proc.running()
    finally:
        proc.stop()
        proc.cleanup()


# ---------------------------------------------------------------- 1. empty topic filters


@pytest.mark.parametrize("filters", [["", "a/b"], ["a/b", ""], ["a", "b", ""]])
def test_subscribe_with_an_empty_filter_closes(raw, filters: list[str]) -> None:
    """[MQTT-4.7.3-1] every topic filter is at least one character long: a SUBSCRIBE
    with an empty one (first or later) is malformed and the connection is closed, and
    none of its filters is subscribed."""
    c = raw(client_id="s-empty")
    c.send_packet(Subscribe(1, [Subscription(f, 0) for f in filters]))
    assert c.expect_closed() is None
    observer = raw(client_id="obs")
    observer.subscribe("a/b")
    pub = raw(client_id="pub")
    pub.publish("a/b", b"x", qos=1)
    assert observer.recv_publish().topic == "a/b"


@pytest.mark.parametrize("filters", [[""], ["a/b", ""]])
def test_unsubscribe_with_an_empty_filter_closes(raw, filters: list[str]) -> None:
    """[MQTT-4.7.3-1] an empty filter in UNSUBSCRIBE is malformed: closed, no UNSUBACK."""
    c = raw(client_id="u-empty")
    c.subscribe("a/b")
    c.send_packet(Unsubscribe(2, filters))
    assert c.expect_closed() is None


_MOSQ_SHARE = pytest.mark.mosquitto_deviation(
    "mosquitto 2.0.11 treats it as a plain filter for 3.1.1 (SUBACK 0)"
)


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param("$share/group/", marks=_MOSQ_SHARE),
        pytest.param("$share//f", marks=_MOSQ_SHARE),
        "$share/g+/f",
    ],
)
def test_malformed_shared_filter_closes(raw, bad: str) -> None:
    """[MQTT-4.8.2-1] [MQTT-4.8.2-2] a ShareName of at least one character without
    wildcards, followed by '/' and a topic filter: otherwise a protocol error (closed,
    not a per-filter refusal), for SUBSCRIBE and UNSUBSCRIBE alike."""
    c = raw(client_id="share-bad")
    c.send_packet(Subscribe(1, [Subscription("ok/1", 0), Subscription(bad, 0)]))
    assert c.expect_closed() is None
    u = raw(client_id="share-bad-u")
    u.send_packet(Unsubscribe(1, [bad]))
    assert u.expect_closed() is None


# ---------------------------------------------------------------- 2. wrong acknowledgements


def _delivered(raw, qos: int) -> tuple[RawClient, Publish]:
    sub = raw(client_id=f"ack-sub-{qos}")
    sub.subscribe(("t/ack", qos))
    pub = raw(client_id=f"ack-pub-{qos}")
    pub.publish("t/ack", b"m", qos=qos)
    msg = sub.recv_publish(ack=False)
    assert msg.qos == qos
    return sub, msg


@pytest.mark.parametrize("wrong", [Pubrec, Pubcomp])
def test_wrong_ack_for_qos1_closes(raw, wrong: type) -> None:
    """4.3.2: a QoS 1 PUBLISH is answered by PUBACK only; PUBREC or PUBCOMP for its
    in-flight packet id is a protocol error (closed; before: PUBREC got a PUBREL)."""
    sub, msg = _delivered(raw, 1)
    sub.send_packet(wrong(msg.packet_id))
    assert sub.expect_closed() is None


@pytest.mark.parametrize("wrong", [Puback, Pubcomp])
def test_wrong_ack_for_qos2_awaiting_pubrec_closes(raw, wrong: type) -> None:
    """4.3.3: a QoS 2 PUBLISH is answered by PUBREC; PUBACK or PUBCOMP for its in-flight
    packet id is a protocol error (closed)."""
    sub, msg = _delivered(raw, 2)
    sub.send_packet(wrong(msg.packet_id))
    assert sub.expect_closed() is None


@pytest.mark.parametrize(
    "wrong",
    [
        Puback,
        pytest.param(
            Pubrec,
            marks=pytest.mark.mosquitto_deviation(
                "mosquitto 2.0.11 answers a PUBREC awaiting PUBCOMP with another PUBREL"
            ),
        ),
    ],
)
def test_wrong_ack_for_qos2_awaiting_pubcomp_closes(raw, wrong: type) -> None:
    """4.3.3: after PUBREL only PUBCOMP completes the flow; PUBACK or PUBREC for that
    packet id is a protocol error (closed)."""
    sub, msg = _delivered(raw, 2)
    sub.send_packet(Pubrec(msg.packet_id))
    sub.recv_until(Pubrel, packet_id=msg.packet_id)
    sub.send_packet(wrong(msg.packet_id))
    assert sub.expect_closed() is None


def test_right_acks_and_unknown_ids_stay_connected(raw) -> None:
    """Unknown packet ids are tolerated as before (a late ack after a resend is normal):
    PUBACK/PUBCOMP are ignored, PUBREC gets a PUBREL; the right acks finish the flows."""
    c = raw(client_id="unknown-ids")
    c.send_packet(Puback(4242))
    c.send_packet(Pubcomp(4243))
    c.send_packet(Pubrec(4244))
    assert c.recv_until(Pubrel, packet_id=4244).packet_id == 4244
    assert c.is_open()
    sub, msg = _delivered(raw, 2)
    sub.ack(msg)
    assert sub.is_open()


# ---------------------------------------------------------------- 3. control characters


@pytest.mark.parametrize("ch", CONTROL)
def test_control_character_in_topic_name_closes(raw, ch: str) -> None:
    """1.5.4: U+0001-U+001F and U+007F-U+009F SHOULD NOT be sent and MAY be treated as
    malformed; by default they are (closed, nothing delivered)."""
    sub = raw(client_id="cc-sub")
    sub.subscribe("#")
    c = raw(client_id="cc-pub")
    c.send_packet(Publish(f"a{ch}b", b"x"))
    assert c.expect_closed() is None
    sub.expect_no_packet(0.3)


@pytest.mark.parametrize("ch", CONTROL)
def test_control_character_in_filter_closes(raw, ch: str) -> None:
    """1.5.4: a control character in a SUBSCRIBE or UNSUBSCRIBE topic filter: closed."""
    c = raw(client_id="cc-filter")
    c.send_packet(Subscribe(1, [Subscription(f"a/{ch}", 0)]))
    assert c.expect_closed() is None
    u = raw(client_id="cc-unsub")
    u.send_packet(Unsubscribe(1, [f"{ch}/#"]))
    assert u.expect_closed() is None


@pytest.mark.parametrize(
    "field", ["client_id", "username", "will_topic"], ids=["client-id", "user", "will"]
)
def test_control_character_in_connect_closes(raw, field: str) -> None:
    """1.5.4: a control character in the client identifier, user name or will topic of
    a 3.1.1 CONNECT: closed without CONNACK (3.1.1 has no code for malformed)."""
    kwargs: dict = {"client_id": "cc-conn"}
    if field == "client_id":
        kwargs["client_id"] = "cc\x1b[2Jconn"
    elif field == "username":
        kwargs["username"] = "user\r\nforged log line"
    else:
        kwargs["will"] = Will("will/\x07", b"w")
    c = raw()
    c.send_packet(Connect(protocol_version=4, **kwargs))
    assert c.expect_refused_connect() is None


@pytest.mark.mqttfast_only("mqtt.allow_control_characters is an mqttfast setting")
def test_allow_control_characters_restores_acceptance(lenient: BrokerProcess) -> None:
    """``mqtt.allow_control_characters = true``: control characters are accepted in
    topic names, filters, client ids, user names and will topics (the pre-issue-14
    behaviour)."""
    with RawClient(lenient.port) as sub, RawClient(lenient.port) as pub:
        sub.connect("sub\x01", username="u\x7f", will=Will("w\x1f", b"x"))
        assert sub.subscribe(("a\x85/#", 1)).reason_codes == [1]
        pub.connect("pub")
        pub.publish("a\x85/b\x01", b"ok", qos=1)
        got = sub.recv_publish()
        assert (got.topic, got.payload) == ("a\x85/b\x01", b"ok")


def _nul_and_surrogate_topics_close(port: int) -> None:
    for topic in (b"a\x00b", b"a\xed\xa0\x80b"):
        with RawClient(port) as c:
            c.connect("nul")
            c.send(b"\x30" + bytes((2 + len(topic) + 1,)) + len(topic).to_bytes(2, "big"))
            c.send(topic + b"x")
            assert c.expect_closed() is None


def test_nul_and_surrogates_malformed(broker: BrokerProcess) -> None:
    """[MQTT-1.5.4-1] [MQTT-1.5.4-2] U+0000 and UTF-16 surrogates (encoded D800-DFFF)
    in a topic name are malformed: closed."""
    _nul_and_surrogate_topics_close(broker.port)


@pytest.mark.mqttfast_only("mqtt.allow_control_characters is an mqttfast setting")
def test_nul_and_surrogates_malformed_even_when_lenient(lenient: BrokerProcess) -> None:
    """[MQTT-1.5.4-1] [MQTT-1.5.4-2] allow_control_characters does not let U+0000 or
    surrogates through."""
    _nul_and_surrogate_topics_close(lenient.port)


# ---------------------------------------------------------------- 5. MQTT 3.1 leniency


def _connect31(flags_nibble: int = 0, reserved: bool = False) -> bytes:
    data = bytearray(encode(Connect("old-device", protocol_version=3, clean_start=True), 3))
    data[0] |= flags_nibble
    if reserved:
        data[2 + 8 + 1] |= 0x01  # connect flags: after the name "MQIsdp" and the level
    return bytes(data)


@pytest.mark.parametrize(
    "nibble,reserved",
    [(0x0F, False), (0x08, False), (0x01, False), (0x00, True), (0x0F, True)],
    ids=["dup-qos-retain", "dup", "retain", "reserved-flag", "all"],
)
def test_mqtt31_connect_with_legacy_flag_bits_is_accepted(raw, nibble: int, reserved: bool) -> None:
    """MQTT 3.1 (MQIsdp) did not call fixed-header flag bits or the reserved CONNECT flag
    errors and old devices send them: accepted (CONNACK 0, session usable)."""
    c = raw(version=3)
    c.send(_connect31(nibble, reserved))
    assert c.expect(Connack).reason_code == 0
    assert c.is_open()


@pytest.mark.parametrize(
    "nibble,reserved", [(0x0F, False), (0x01, False), (0x00, True)], ids=["flags", "bit0", "res"]
)
def test_mqtt311_connect_with_flag_bits_closes(raw, nibble: int, reserved: bool) -> None:
    """[MQTT-2.1.3-1] [MQTT-3.1.2-3] MQTT 3.1.1 stays strict: fixed-header flag bits or
    the reserved CONNECT flag make the CONNECT malformed (closed without CONNACK)."""
    data = bytearray(encode(Connect("strict-311", protocol_version=4), 4))
    data[0] |= nibble
    if reserved:
        data[2 + 6 + 1] |= 0x01  # after the name "MQTT" and the level
    c = raw()
    c.send(bytes(data))
    assert c.expect_refused_connect() is None
