"""Bad input raises MQTTError with the right reason code, and nothing else.

Each case names the normative statement (or spec section) it checks. Reason
codes: 0x81 malformed packet, 0x82 protocol error, 0x84 unsupported protocol
version, 0x90 topic name invalid, 0x94 topic alias invalid, 0x95 packet too
large.
"""

from __future__ import annotations

from typing import Any

import pytest

from mqttfast.codec.errors import MalformedPacket, MQTTError, PacketTooLarge, ProtocolError
from mqttfast.codec.packets import Connect, Pingreq, Puback, Publish

from .test_vectors import VECTORS, h

MALFORMED, PROTOCOL, VERSION, TOPIC, ALIAS, TOO_LARGE = 0x81, 0x82, 0x84, 0x90, 0x94, 0x95
SERVER = None  # a server-side decoder: the CONNECT decides the version

CONNECT_V4 = h("10 0D 00 04 'MQTT' 04 02 00 3C 00 01 'c'")
CONNECT_V5 = h("10 0E 00 04 'MQTT' 05 02 00 3C 00 00 01 'c'")


def connect(version: int, flags: int, rest: str = "00 01 'c'", props: str = "") -> bytes:
    """A CONNECT with the given flag byte and payload (hex), keep alive 60."""
    body = h("00 04 'MQTT'") + bytes((version, flags)) + h("00 3C")
    if version == 5:
        p = h(props)
        body += bytes((len(p),)) + p
    body += h(rest)
    return bytes((0x10, len(body))) + body


CASES: list[tuple[str, int | None, bytes, int]] = [
    # ---- fixed header and remaining length
    ("MQTT-1.5.5-1 remaining length over four bytes", 4, h("30 FF FF FF FF 01"), MALFORMED),
    ("MQTT-1.5.5-1 non-minimal remaining length", 4, h("C0 80 00"), MALFORMED),
    ("2.1.2 reserved packet type 0", 4, h("00 00"), MALFORMED),
    ("2.1.2 AUTH is reserved before MQTT 5", 4, h("F0 00"), MALFORMED),
    ("MQTT-2.1.3-1 reserved flags in PUBACK", 4, h("41 02 00 01"), MALFORMED),
    ("MQTT-2.1.3-1 PUBREL flags must be 0010", 4, h("60 02 00 01"), MALFORMED),
    ("MQTT-2.1.3-1 SUBSCRIBE flags must be 0010", 4, h("80 06 00 01 00 01 't' 00"), MALFORMED),
    ("MQTT-2.1.3-1 UNSUBSCRIBE flags must be 0010", 4, h("A0 05 00 01 00 01 't'"), MALFORMED),
    ("MQTT-2.1.3-1 reserved flags in PINGREQ", 4, h("C1 00"), MALFORMED),
    ("MQTT-2.1.3-1 reserved flags in DISCONNECT", 5, h("E2 00"), MALFORMED),
    ("MQTT-2.1.3-1 reserved flags in CONNECT", SERVER, h("11") + CONNECT_V4[1:], MALFORMED),
    ("MQTT-3.3.1-4 PUBLISH with QoS 3", 4, h("36 05 00 01 't' 00 01"), MALFORMED),
    ("MQTT-3.3.1-2 DUP set on QoS 0 PUBLISH", 4, h("38 03 00 01 't'"), MALFORMED),
    # ---- packet identifiers
    ("MQTT-2.2.1-3 packet id 0 in QoS 1 PUBLISH", 4, h("32 05 00 01 't' 00 00"), PROTOCOL),
    ("MQTT-2.2.1-3 packet id 0 in QoS 2 PUBLISH v5", 5, h("34 06 00 01 't' 00 00 00"), PROTOCOL),
    ("MQTT-2.2.1-3 packet id 0 in PUBACK", 4, h("40 02 00 00"), PROTOCOL),
    ("MQTT-2.2.1-3 packet id 0 in PUBREC", 5, h("50 02 00 00"), PROTOCOL),
    ("MQTT-2.2.1-3 packet id 0 in PUBREL", 4, h("62 02 00 00"), PROTOCOL),
    ("MQTT-2.2.1-3 packet id 0 in PUBCOMP", 4, h("70 02 00 00"), PROTOCOL),
    ("MQTT-2.2.1-3 packet id 0 in SUBSCRIBE", 4, h("82 06 00 00 00 01 't' 00"), PROTOCOL),
    ("MQTT-2.2.1-3 packet id 0 in UNSUBSCRIBE", 4, h("A2 05 00 00 00 01 't'"), PROTOCOL),
    ("MQTT-2.2.1-3 packet id 0 in SUBACK", 4, h("90 03 00 00 00"), PROTOCOL),
    ("MQTT-2.2.1-3 packet id 0 in UNSUBACK", 4, h("B0 02 00 00"), PROTOCOL),
    # ---- CONNECT
    ("MQTT-3.1.0-1 first packet must be CONNECT", SERVER, h("C0 00"), PROTOCOL),
    ("MQTT-3.1.0-1 PUBLISH before CONNECT", SERVER, h("30 03 00 01 't'"), PROTOCOL),
    ("MQTT-3.1.0-2 second CONNECT", SERVER, CONNECT_V4 + CONNECT_V4, PROTOCOL),
    ("3.2 a server does not receive CONNACK", SERVER, CONNECT_V4 + h("20 02 00 00"), PROTOCOL),
    ("3.9 a server does not receive SUBACK", SERVER, CONNECT_V4 + h("90 03 00 01 00"), PROTOCOL),
    ("3.13 a server does not receive PINGRESP", SERVER, CONNECT_V5 + h("D0 00"), PROTOCOL),
    (
        "MQTT-3.1.2-1 unknown protocol name",
        SERVER,
        h("10 0D 00 04 'MQTX' 04 02 00 3C 00 01 'c'"),
        PROTOCOL,
    ),
    ("MQTT-3.1.2-2 unsupported protocol level 6", SERVER, connect(6, 0x02), VERSION),
    ("MQTT-3.1.2-2 level 3 needs protocol name MQIsdp", SERVER, connect(3, 0x02), VERSION),
    (
        "MQTT-3.1.2-2 MQIsdp with level 4",
        SERVER,
        h("10 0F 00 06 'MQIsdp' 04 02 00 3C 00 01 'c'"),
        VERSION,
    ),
    ("MQTT-3.1.2-3 CONNECT reserved flag bit 0", SERVER, connect(4, 0x03), MALFORMED),
    ("MQTT-3.1.2-3 CONNECT reserved flag bit 0 v5", SERVER, connect(5, 0x01), MALFORMED),
    ("MQTT-3.1.2-13 will QoS without will flag", SERVER, connect(4, 0x0A), MALFORMED),
    ("MQTT-3.1.2-15 will retain without will flag", SERVER, connect(4, 0x22), MALFORMED),
    ("MQTT-3.1.2-14 will QoS 3", SERVER, connect(4, 0x1E, "00 01 'c' 00 01 'w' 00 00"), MALFORMED),
    ("MQTT-3.1.2-11 v5 will QoS without will flag", SERVER, connect(5, 0x12), MALFORMED),
    (
        "MQTT-3.1.2-22 password without user name in 3.1.1",
        SERVER,
        connect(4, 0x42, "00 01 'c' 00 01 'p'"),
        MALFORMED,
    ),
    ("MQTT-3.1.3-4 client id is not UTF-8", SERVER, connect(4, 0x02, "00 01 FF"), MALFORMED),
    (
        "MQTT-3.1.3-11 user name is not UTF-8",
        SERVER,
        connect(4, 0x82, "00 01 'c' 00 02 C0 AF"),
        MALFORMED,
    ),
    (
        "MQTT-3.3.2-2 wildcard in will topic",
        SERVER,
        connect(4, 0x06, "00 01 'c' 00 01 '#' 00 00"),
        TOPIC,
    ),
    (
        "3.1.3 CONNECT payload shorter than its flags say",
        SERVER,
        connect(4, 0xC2, "00 01 'c' 00 01 'u'"),
        MALFORMED,
    ),
    (
        "2.1.4 trailing bytes after CONNECT payload",
        SERVER,
        connect(4, 0x02, "00 01 'c' 00"),
        MALFORMED,
    ),
    ("3.1.2.11.3 receive maximum 0", SERVER, connect(5, 0x02, props="21 00 00"), PROTOCOL),
    (
        "3.1.2.11.4 maximum packet size 0",
        SERVER,
        connect(5, 0x02, props="27 00 00 00 00"),
        PROTOCOL,
    ),
    ("3.1.2.11.7 request problem information 2", SERVER, connect(5, 0x02, props="17 02"), PROTOCOL),
    (
        "3.1.2.11.6 request response information 2",
        SERVER,
        connect(5, 0x02, props="19 02"),
        PROTOCOL,
    ),
    (
        "3.1.2.11.10 authentication data without method",
        SERVER,
        connect(5, 0x02, props="16 00 01 'x'"),
        PROTOCOL,
    ),
    (
        "2.2.2.2 will delay interval not allowed in CONNECT properties",
        SERVER,
        connect(5, 0x02, props="18 00 00 00 01"),
        MALFORMED,
    ),
    (
        "2.2.2.2 topic alias not allowed in will properties",
        SERVER,
        connect(5, 0x06, "00 01 'c' 03 23 00 01 00 01 'w' 00 00"),
        MALFORMED,
    ),
    # ---- MQTT UTF-8 strings
    ("MQTT-1.5.4-1 ill-formed UTF-8 in topic", 4, h("30 05 00 02 C3 28 'x'"), MALFORMED),
    ("MQTT-1.5.4-1 UTF-16 surrogate in topic", 4, h("30 06 00 03 ED A0 80 'x'"), MALFORMED),
    ("MQTT-1.5.4-1 overlong UTF-8 in topic", 4, h("30 05 00 02 C0 AF 'x'"), MALFORMED),
    ("MQTT-1.5.4-2 U+0000 in topic", 4, h("30 05 00 02 'a' 00 'x'"), MALFORMED),
    ("MQTT-1.5.4-1 ill-formed UTF-8 in topic filter", 4, h("82 06 00 01 00 01 FF 00"), MALFORMED),
    (
        "MQTT-1.5.4-1 ill-formed UTF-8 in user property",
        5,
        h("40 0B 00 01 00 07 26 00 01 FE 00 01 'v'"),
        MALFORMED,
    ),
    # ---- PUBLISH
    ("MQTT-3.3.2-2 '#' in a PUBLISH topic name", 4, h("30 05 00 03 'a/#'"), TOPIC),
    ("MQTT-3.3.2-2 '+' in a PUBLISH topic name", 5, h("30 06 00 03 '+/a' 00"), TOPIC),
    ("MQTT-4.7.3-1 empty topic name in 3.1.1", 4, h("30 02 00 00"), TOPIC),
    ("3.3.2.3.4 empty topic name without topic alias in 5.0", 5, h("30 03 00 00 00"), PROTOCOL),
    ("3.3.2.1 topic length runs past the packet", 4, h("30 03 00 05 'a'"), MALFORMED),
    ("3.3.2.2 QoS 1 PUBLISH without room for a packet id", 4, h("32 04 00 01 't' 00"), MALFORMED),
    ("2.2.2 PUBLISH v5 without property length", 5, h("30 03 00 01 't'"), MALFORMED),
    ("3.3.2.3.4 topic alias 0", 5, h("30 07 00 01 't' 03 23 00 00"), ALIAS),
    ("3.3.2.3.2 payload format indicator 2", 5, h("30 06 00 01 't' 02 01 02"), PROTOCOL),
    ("2.2.2.2 unknown property identifier", 5, h("30 07 00 01 't' 03 7F 00 00"), MALFORMED),
    (
        "2.2.2.2 property not allowed in PUBLISH",
        5,
        h("30 09 00 01 't' 05 11 00 00 00 01"),
        MALFORMED,
    ),
    (
        "2.2.2.2 duplicated message expiry interval",
        5,
        h("30 0E 00 01 't' 0A 02 00 00 00 01 02 00 00 00 02"),
        PROTOCOL,
    ),
    ("2.2.2.2 duplicated topic alias", 5, h("30 0A 00 01 't' 06 23 00 01 23 00 02"), PROTOCOL),
    (
        "2.2.2.2 property value runs past the properties",
        5,
        h("30 08 00 01 't' 02 02 00 00 00"),
        MALFORMED,
    ),
    ("2.2.2.1 property length runs past the packet", 5, h("30 05 00 01 't' 09 01"), MALFORMED),
    (
        "1.5.5 subscription identifier varint over four bytes",
        5,
        h("30 0B 00 01 't' 07 0B FF FF FF FF 7F 00"),
        MALFORMED,
    ),
    ("3.3.2.3.8 subscription identifier 0 in PUBLISH", 5, h("30 06 00 01 't' 02 0B 00"), PROTOCOL),
    # ---- acknowledgements
    ("3.4.2 PUBACK remaining length 1", 5, h("40 01 00"), MALFORMED),
    ("3.4.2 PUBACK remaining length 3 in 3.1.1", 4, h("40 03 00 01 00"), MALFORMED),
    ("3.4.2.1 reason code 0x92 not allowed in PUBACK", 5, h("40 03 00 01 92"), PROTOCOL),
    ("3.5.2.1 reason code 0x04 not allowed in PUBREC", 5, h("50 03 00 01 04"), PROTOCOL),
    ("3.6.2.1 reason code 0x10 not allowed in PUBREL", 5, h("62 03 00 01 10"), PROTOCOL),
    ("3.7.2.1 reason code 0x80 not allowed in PUBCOMP", 5, h("70 03 00 01 80"), PROTOCOL),
    ("2.2.2.2 property not allowed in PUBACK", 5, h("40 06 00 01 00 02 01 01"), MALFORMED),
    ("2.1.4 trailing byte after PUBACK properties", 5, h("40 05 00 01 00 00 FF"), MALFORMED),
    ("3.2.2.1 CONNACK reserved acknowledge flags", 4, h("20 02 02 00"), MALFORMED),
    ("3.2.2.3 CONNACK return code 6 is reserved", 4, h("20 02 00 06"), PROTOCOL),
    ("MQTT-3.2.2-4 session present with a refusing CONNACK", 4, h("20 02 01 05"), PROTOCOL),
    ("3.2.2.2 reason code 0x01 not allowed in CONNACK", 5, h("20 03 00 01 00"), PROTOCOL),
    ("3.2.2 CONNACK remaining length 3 in 3.1.1", 4, h("20 03 00 00 00"), MALFORMED),
    ("2.2.2.2 property not allowed in CONNACK", 5, h("20 05 00 00 02 23 00"), MALFORMED),
    ("3.9.3 SUBACK return code 3 in 3.1.1", 4, h("90 03 00 01 03"), PROTOCOL),
    ("3.9.3 SUBACK reason code 0x03 in 5.0", 5, h("90 04 00 01 00 03"), PROTOCOL),
    ("3.9.3 SUBACK without return codes", 4, h("90 02 00 01"), PROTOCOL),
    ("3.11.3 UNSUBACK reason code 0x01", 5, h("B0 04 00 01 00 01"), PROTOCOL),
    ("3.11 UNSUBACK remaining length 3 in 3.1.1", 4, h("B0 03 00 01 00"), MALFORMED),
    # ---- SUBSCRIBE / UNSUBSCRIBE
    ("MQTT-3.8.3-3 SUBSCRIBE without topic filters", 4, h("82 02 00 01"), PROTOCOL),
    ("MQTT-3.8.3-3 SUBSCRIBE without topic filters v5", 5, h("82 03 00 01 00"), PROTOCOL),
    (
        "MQTT-3-8.3-4 reserved bits in requested QoS (3.1.1)",
        4,
        h("82 06 00 01 00 01 't' 04"),
        MALFORMED,
    ),
    ("MQTT-3-8.3-4 requested QoS 3 (3.1.1)", 4, h("82 06 00 01 00 01 't' 03"), MALFORMED),
    (
        "MQTT-3.8.3-5 reserved bits in subscription options (5.0)",
        5,
        h("82 07 00 01 00 00 01 't' 40"),
        MALFORMED,
    ),
    ("3.8.3.1 retain handling 3", 5, h("82 07 00 01 00 00 01 't' 30"), PROTOCOL),
    (
        "3.8.3.1 maximum QoS 3 in subscription options",
        5,
        h("82 07 00 01 00 00 01 't' 03"),
        MALFORMED,
    ),
    (
        "MQTT-3.8.3-4 no local on a shared subscription",
        5,
        h("82 0F 00 01 00 00 09 '$share/g/' 04"),
        PROTOCOL,
    ),
    ("3.8.3 topic filter without subscription options", 4, h("82 05 00 01 00 01 't'"), MALFORMED),
    ("3.8.2.1.2 subscription identifier 0", 5, h("82 09 00 01 02 0B 00 00 01 't' 00"), PROTOCOL),
    (
        "2.2.2.2 subscription identifier twice in SUBSCRIBE",
        5,
        h("82 0B 00 01 04 0B 01 0B 02 00 01 't' 00"),
        PROTOCOL,
    ),
    (
        "2.2.2.2 property not allowed in SUBSCRIBE",
        5,
        h("82 09 00 01 02 01 01 00 01 't' 00"),
        MALFORMED,
    ),
    ("MQTT-3.10.3-2 UNSUBSCRIBE without topic filters", 4, h("A2 02 00 01"), PROTOCOL),
    ("MQTT-3.10.3-2 UNSUBSCRIBE without topic filters v5", 5, h("A2 03 00 01 00"), PROTOCOL),
    (
        "3.10.3 UNSUBSCRIBE filter length runs past the packet",
        4,
        h("A2 05 00 01 00 05 't'"),
        MALFORMED,
    ),
    # ---- PINGREQ / PINGRESP / DISCONNECT / AUTH
    ("3.12 PINGREQ with a body", 4, h("C0 01 00"), MALFORMED),
    ("3.13 PINGRESP with a body", 5, h("D0 01 00"), MALFORMED),
    ("3.14 DISCONNECT with a body in 3.1.1", 4, h("E0 01 00"), MALFORMED),
    ("3.14.2.1 reason code 0x01 not allowed in DISCONNECT", 5, h("E0 01 01"), PROTOCOL),
    ("2.2.2.2 property not allowed in DISCONNECT", 5, h("E0 04 00 02 23 00"), MALFORMED),
    (
        "2.2.2.2 duplicated session expiry in DISCONNECT",
        5,
        h("E0 0C 00 0A 11 00 00 00 01 11 00 00 00 02"),
        PROTOCOL,
    ),
    ("3.15.2.1 reason code 0x01 not allowed in AUTH", 5, h("F0 02 01 00"), PROTOCOL),
    ("3.15.2.2.1 AUTH reason code without property length", 5, h("F0 01 18"), MALFORMED),
    ("2.2.2.2 property not allowed in AUTH", 5, h("F0 04 18 02 01 01"), MALFORMED),
    # ---- size limit
    ("3.1.2.11.4 remaining length announcing 256 MB", 4, h("30 FF FF FF 7F"), TOO_LARGE),
]


def _decoder(impl: Any, version: int | None) -> Any:
    return impl.Decoder(version, max_packet_size=1 << 20)


@pytest.mark.parametrize("name,version,data,reason", CASES, ids=[c[0] for c in CASES])
def test_malformed_input_is_rejected_with_reason_code(
    impl: Any, name: str, version: int | None, data: bytes, reason: int
) -> None:
    with pytest.raises(MQTTError) as info:
        _decoder(impl, version).feed(data)
    assert info.value.reason_code == reason, str(info.value)
    assert isinstance(str(info.value), str)


@pytest.mark.parametrize("name,version,data,reason", CASES, ids=[c[0] for c in CASES])
def test_malformed_input_byte_by_byte_gives_the_same_code(
    impl: Any, name: str, version: int | None, data: bytes, reason: int
) -> None:
    dec = _decoder(impl, version)
    with pytest.raises(MQTTError) as info:
        for i in range(len(data)):
            dec.feed(data[i : i + 1])
    assert info.value.reason_code == reason


def test_error_classes(impl: Any) -> None:
    """0x81 is MalformedPacket, 0x82 ProtocolError, 0x95 PacketTooLarge."""
    with pytest.raises(MalformedPacket):
        impl.Decoder(4).feed(h("C1 00"))
    with pytest.raises(ProtocolError):
        impl.Decoder(4).feed(h("40 02 00 00"))
    with pytest.raises(PacketTooLarge):
        impl.Decoder(4, max_packet_size=10).feed(h("30 0B"))


def test_errors_carry_the_packets_decoded_before_them(impl: Any) -> None:
    """A caller can still act on the good packets of the failing feed call."""
    good = impl.encode(Publish("a", b"1"), 4) + impl.encode(Pingreq(), 4)
    dec = impl.Decoder()
    assert dec.feed(CONNECT_V4) == [Connect("c", 4, True, 60)]
    with pytest.raises(MQTTError) as info:
        dec.feed(good + h("40 02 00 00") + good)
    assert info.value.reason_code == PROTOCOL
    assert info.value.packets == [Publish("a", b"1"), Pingreq()]


def test_error_in_first_packet_has_no_packets(impl: Any) -> None:
    with pytest.raises(MQTTError) as info:
        impl.Decoder(4).feed(h("38 03 00 01 't'"))
    assert info.value.packets == []


def test_too_large_error_carries_earlier_packets(impl: Any) -> None:
    dec = impl.Decoder(4, max_packet_size=64)
    with pytest.raises(PacketTooLarge) as info:
        dec.feed(h("40 02 00 01") + h("30 7F"))
    assert info.value.packets == [Puback(1)]


def test_decoder_stays_failed_after_an_error(impl: Any) -> None:
    """The connection must close; later input is not decoded as if nothing happened."""
    dec = impl.Decoder(4)
    with pytest.raises(MQTTError):
        dec.feed(h("C1 00"))
    with pytest.raises(MQTTError) as info:
        dec.feed(h("C0 00"))
    assert info.value.reason_code == MALFORMED
    assert info.value.packets == []


def test_duplicate_user_properties_and_subscription_ids_are_allowed(impl: Any) -> None:
    """3.3.2.3.7 / 3.3.2.3.8: these two may repeat in PUBLISH."""
    data = h("30 16 00 01 't' 12 26 00 01 'a' 00 01 'b' 26 00 01 'a' 00 01 'b' 0B 01 0B 01")
    (pkt,) = impl.Decoder(5).feed(data)
    assert pkt.properties.user_property == [("a", "b"), ("a", "b")]
    assert pkt.properties.subscription_identifier == [1, 1]


def test_discouraged_code_points_are_accepted(impl: Any) -> None:
    """1.5.4: control characters SHOULD NOT appear but are not malformed."""
    (pkt,) = impl.Decoder(4).feed(h("30 05 00 02 01 7F 'x'"))
    assert pkt.topic == "\x01\x7f"


def test_unsupported_version_is_0x84(impl: Any) -> None:
    """[MQTT-3.1.2-2] the broker answers with CONNACK 0x01 (3.1.1) / 0x84 (5.0)."""
    with pytest.raises(MQTTError) as info:
        impl.Decoder().feed(connect(7, 0x02))
    assert info.value.reason_code == 0x84 and type(info.value) is MQTTError


def test_every_first_byte_with_short_bodies_raises_only_mqtt_errors(impl: Any) -> None:
    """Exhaustive over header bytes: no other exception type, never a hang."""
    bodies = [b"", b"\x00", b"\x00\x01", b"\x00\x01t\x00\x01", b"\xff" * 6, b"\x00\x00\x00\x00\x00"]
    for version in (None, 3, 4, 5):
        for first in range(256):
            for body in bodies:
                data = bytes((first, len(body))) + body
                dec = impl.Decoder(version)
                try:
                    dec.feed(data)
                except MQTTError:
                    pass


@pytest.mark.parametrize("vec", VECTORS, ids=[v.name for v in VECTORS])
def test_truncated_and_padded_vectors_raise_only_mqtt_errors(impl: Any, vec: Any) -> None:
    """Lengths that disagree with the content (remaining length too short or too long)."""
    data = vec.data
    length_bytes = 2 if data[1] & 0x80 else 1
    body = data[1 + length_bytes :]
    if length_bytes == 2:
        return
    for cut in range(len(body)):
        shorter = bytes((data[0], cut)) + body[:cut]
        try:
            impl.Decoder(vec.version).feed(shorter)
        except MQTTError:
            pass
    padded = bytes((data[0], len(body) + 1)) + body + b"\x00"
    try:
        impl.Decoder(vec.version).feed(padded)
    except MQTTError:
        pass
