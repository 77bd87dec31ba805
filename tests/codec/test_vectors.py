"""Byte-exact vectors for every control packet, MQTT 3.1 (CONNECT), 3.1.1 and 5.0.

Each vector is written out by hand from the specification's figures (the
spec's own examples where it gives one), decoded by ``Decoder`` and, when it
is the canonical form, re-encoded by ``encode`` to the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from mqttfast.codec.errors import MQTTError
from mqttfast.codec.packets import (
    Auth,
    Connack,
    Connect,
    Disconnect,
    Pingreq,
    Pingresp,
    Properties,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Subscription,
    Unsuback,
    Unsubscribe,
    Will,
)


def h(text: str) -> bytes:
    """Hex with spaces; quoted ASCII between single quotes: h("00 03 'a/b'")."""
    out = bytearray()
    for i, chunk in enumerate(text.split("'")):
        out += chunk.encode() if i % 2 else bytes.fromhex(chunk)
    return bytes(out)


@dataclass
class V:
    name: str
    version: int
    data: bytes
    packet: Any
    canonical: bool = True  # encode(packet) gives exactly ``data``


VECTORS = [
    # ---- MQTT 3.1 (protocol name MQIsdp, level 3)
    V(
        "connect-3.1",
        3,
        h("10 12 00 06 'MQIsdp' 03 02 00 3C 00 04 'test'"),
        Connect("test", 3, True, 60),
    ),
    V(
        "connect-3.1-user-will",
        3,
        h(
            "10 23 00 06 'MQIsdp' 03 EE 00 0A 00 03 'cid' 00 03 'w/t' 00 03 'bye' 00 02 'us' 00 02 'pw'"
        ),
        Connect("cid", 3, True, 10, "us", b"pw", Will("w/t", b"bye", 1, True)),
    ),
    # ---- MQTT 3.1.1
    V(
        "connect-3.1.1-minimal",
        4,
        h("10 10 00 04 'MQTT' 04 02 00 3C 00 04 'test'"),
        Connect("test", 4, True, 60),
    ),
    # 3.1.2.10: the spec's example variable header 00 04 MQTT 04 CE 00 0A.
    V(
        "connect-3.1.1-spec-example",
        4,
        h(
            "10 25 00 04 'MQTT' 04 CE 00 0A 00 03 'cid' 00 03 'w/t' 00 03 'bye' 00 04 'user' 00 04 'pass'"
        ),
        Connect("cid", 4, True, 10, "user", b"pass", Will("w/t", b"bye", 1, False)),
    ),
    V(
        "connect-3.1.1-persistent-empty-id",
        4,
        h("10 0C 00 04 'MQTT' 04 00 FF FF 00 00"),
        Connect("", 4, False, 65535),
    ),
    V("connack-3.1.1-session-present", 4, h("20 02 01 00"), Connack(True, 0)),
    V("connack-3.1.1-not-authorized", 4, h("20 02 00 05"), Connack(False, 5)),
    V("publish-3.1.1-qos0", 4, h("30 0A 00 03 'a/b' 'hello'"), Publish("a/b", b"hello")),
    # 3.3.2.3: the spec's example, topic a/b and packet identifier 10.
    V(
        "publish-3.1.1-qos1-spec-example",
        4,
        h("32 09 00 03 'a/b' 00 0A 'hi'"),
        Publish("a/b", b"hi", 1, packet_id=10),
    ),
    V(
        "publish-3.1.1-qos2-dup-retain",
        4,
        h("3D 07 00 01 't' FF FF 'x' 'y'"),
        Publish("t", b"xy", 2, retain=True, dup=True, packet_id=65535),
    ),
    V(
        "publish-3.1.1-empty-payload-retain",
        4,
        h("31 03 00 01 't'"),
        Publish("t", b"", 0, retain=True),
    ),
    # Remaining length 128 needs two bytes: 80 01 (2.2.3, table 2.4).
    V(
        "publish-3.1.1-remaining-length-128",
        4,
        h("30 80 01 00 01 't'") + bytes(range(125)),
        Publish("t", bytes(range(125))),
    ),
    V("publish-3.1.1-utf8-topic", 4, h("30 08 00 06") + "ä/€".encode() + b"", Publish("ä/€", b"")),
    V("puback-3.1.1", 4, h("40 02 00 0A"), Puback(10)),
    V("pubrec-3.1.1", 4, h("50 02 00 0B"), Pubrec(11)),
    V("pubrel-3.1.1", 4, h("62 02 00 0C"), Pubrel(12)),
    V("pubcomp-3.1.1", 4, h("70 02 01 00"), Pubcomp(256)),
    # 3.8.3.1: the spec's example, a/b QoS 1 and c/d QoS 2, packet identifier 10.
    V(
        "subscribe-3.1.1-spec-example",
        4,
        h("82 0E 00 0A 00 03 'a/b' 01 00 03 'c/d' 02"),
        Subscribe(10, [Subscription("a/b", 1), Subscription("c/d", 2)]),
    ),
    # 3.9.3: the spec's example payload: granted QoS 0, granted QoS 2, failure.
    V("suback-3.1.1-spec-example", 4, h("90 05 00 0A 00 02 80"), Suback(10, [0, 2, 0x80])),
    # 3.10.3.1: the spec's example, a/b and c/d.
    V(
        "unsubscribe-3.1.1-spec-example",
        4,
        h("A2 0C 00 0A 00 03 'a/b' 00 03 'c/d'"),
        Unsubscribe(10, ["a/b", "c/d"]),
    ),
    V("unsuback-3.1.1", 4, h("B0 02 00 0A"), Unsuback(10)),
    V("pingreq-3.1.1", 4, h("C0 00"), Pingreq()),
    V("pingresp-3.1.1", 4, h("D0 00"), Pingresp()),
    V("disconnect-3.1.1", 4, h("E0 00"), Disconnect()),
    # ---- MQTT 5.0
    # 3.1.2.11: the spec's example variable header, session expiry interval 10.
    V(
        "connect-5-spec-example",
        5,
        h("10 21 00 04 'MQTT' 05 C2 00 0A 05 11 00 00 00 0A 00 03 'cid' 00 04 'user' 00 04 'pass'"),
        Connect(
            "cid", 5, True, 10, "user", b"pass", properties=Properties(session_expiry_interval=10)
        ),
    ),
    V(
        "connect-5-will-properties",
        5,
        h(
            "10 1C 00 04 'MQTT' 05 36 00 00 00 00 01 'c' 07 01 01 18 00 00 00 05 00 01 'w' 00 01 'x'"
        ),
        Connect(
            "c",
            5,
            True,
            0,
            will=Will(
                "w", b"x", 2, True, Properties(payload_format_indicator=1, will_delay_interval=5)
            ),
        ),
    ),
    V(
        "connect-5-password-without-username",
        5,
        h("10 12 00 04 'MQTT' 05 40 00 3C 00 00 01 'c' 00 02 'pw'"),
        Connect("c", 5, False, 60, password=b"pw"),
    ),
    V(
        "connect-5-all-connect-properties",
        5,
        h(
            "10 32 00 04 'MQTT' 05 02 00 00 24"
            " 11 FF FF FF FF 15 00 02 'SC' 16 00 01 'd' 17 00 19 01 21 00 0A 22 00 05"
            " 26 00 01 'k' 00 01 'v' 27 00 00 10 00"
            " 00 01 'c'"
        ),
        Connect(
            "c",
            5,
            True,
            0,
            properties=Properties(
                session_expiry_interval=0xFFFFFFFF,
                authentication_method="SC",
                authentication_data=b"d",
                request_problem_information=0,
                request_response_information=1,
                receive_maximum=10,
                topic_alias_maximum=5,
                user_property=[("k", "v")],
                maximum_packet_size=4096,
            ),
        ),
    ),
    V("connack-5-success", 5, h("20 03 00 00 00"), Connack(False, 0)),
    V(
        "connack-5-properties",
        5,
        h("20 0E 01 00 0B 12 00 02 'ab' 21 00 14 22 00 0A"),
        Connack(
            True,
            0,
            Properties(assigned_client_identifier="ab", receive_maximum=20, topic_alias_maximum=10),
        ),
    ),
    V("connack-5-not-authorized", 5, h("20 03 00 87 00"), Connack(False, 0x87)),
    V(
        "connack-5-capabilities",
        5,
        h("20 15 00 00 12 13 00 1E 1F 00 02 'ok' 24 01 25 00 28 00 29 01 2A 00"),
        Connack(
            False,
            0,
            Properties(
                server_keep_alive=30,
                reason_string="ok",
                maximum_qos=1,
                retain_available=0,
                wildcard_subscription_available=0,
                subscription_identifier_available=1,
                shared_subscription_available=0,
            ),
        ),
    ),
    V("publish-5-qos0", 5, h("30 0B 00 03 'a/b' 00 'hello'"), Publish("a/b", b"hello")),
    V(
        "publish-5-qos1-properties",
        5,
        h("32 14 00 03 'a/b' 00 01 0A 23 00 05 26 00 01 'k' 00 01 'v' 'hi'"),
        Publish(
            "a/b",
            b"hi",
            1,
            packet_id=1,
            properties=Properties(topic_alias=5, user_property=[("k", "v")]),
        ),
    ),
    V(
        "publish-5-empty-topic-with-alias",
        5,
        h("30 07 00 00 03 23 00 05 'x'"),
        Publish("", b"x", properties=Properties(topic_alias=5)),
    ),
    V(
        "publish-5-request-response",
        5,
        h(
            "34 28 00 01 't' 00 02 20 01 01 02 00 00 00 3C 03 00 04 'json' 08 00 05 'reply'"
            " 09 00 02 'id' 0B 07 0B 80 01 '{}'"
        ),
        Publish(
            "t",
            b"{}",
            2,
            packet_id=2,
            properties=Properties(
                payload_format_indicator=1,
                message_expiry_interval=60,
                content_type="json",
                response_topic="reply",
                correlation_data=b"id",
                subscription_identifier=[7, 128],
            ),
        ),
    ),
    V("puback-5-short", 5, h("40 02 00 01"), Puback(1)),
    V("puback-5-reason-only", 5, h("40 03 00 01 10"), Puback(1, 0x10)),
    V(
        "puback-5-reason-string",
        5,
        h("40 09 00 01 10 05 1F 00 02 'no'"),
        Puback(1, 0x10, Properties(reason_string="no")),
    ),
    V("puback-5-empty-properties", 5, h("40 04 00 01 00 00"), Puback(1), canonical=False),
    V("pubrec-5-quota", 5, h("50 03 00 02 97"), Pubrec(2, 0x97)),
    V("pubrel-5-not-found", 5, h("62 03 00 03 92"), Pubrel(3, 0x92)),
    V("pubrel-5-short", 5, h("62 02 00 03"), Pubrel(3)),
    V(
        "pubcomp-5-user-property",
        5,
        h("70 0B 00 04 00 07 26 00 01 'a' 00 01 'b'"),
        Pubcomp(4, 0, Properties(user_property=[("a", "b")])),
    ),
    V(
        "subscribe-5-options",
        5,
        h("82 11 00 0A 02 0B 05 00 03 'a/b' 2D 00 03 'c/d' 00"),
        Subscribe(
            10,
            [Subscription("a/b", 1, True, True, 2), Subscription("c/d", 0)],
            Properties(subscription_identifier=[5]),
        ),
    ),
    V("suback-5", 5, h("90 06 00 0A 00 01 02 8F"), Suback(10, [1, 2, 0x8F])),
    V(
        "suback-5-reason-string",
        5,
        h("90 08 00 0A 04 1F 00 01 'x' A2"),
        Suback(10, [0xA2], Properties(reason_string="x")),
    ),
    V(
        "unsubscribe-5",
        5,
        h("A2 0D 00 0A 00 00 03 'a/b' 00 03 'c/d'"),
        Unsubscribe(10, ["a/b", "c/d"]),
    ),
    V("unsuback-5", 5, h("B0 05 00 0A 00 00 11"), Unsuback(10, [0, 0x11])),
    V("pingreq-5", 5, h("C0 00"), Pingreq()),
    V("pingresp-5", 5, h("D0 00"), Pingresp()),
    V("disconnect-5-short", 5, h("E0 00"), Disconnect()),
    V("disconnect-5-reason-only", 5, h("E0 01 04"), Disconnect(4)),
    V(
        "disconnect-5-session-expiry",
        5,
        h("E0 07 00 05 11 00 00 00 3C"),
        Disconnect(0, Properties(session_expiry_interval=60)),
    ),
    V(
        "disconnect-5-server-reference",
        5,
        h("E0 09 9C 07 1C 00 04 'host'"),
        Disconnect(0x9C, Properties(server_reference="host")),
    ),
    V("disconnect-5-empty-properties", 5, h("E0 02 00 00"), Disconnect(), canonical=False),
    V("auth-5-short", 5, h("F0 00"), Auth()),
    V(
        "auth-5-continue",
        5,
        h("F0 10 18 0E 15 00 05 'SCRAM' 16 00 03 'abc'"),
        Auth(0x18, Properties(authentication_method="SCRAM", authentication_data=b"abc")),
    ),
]

IDS = [v.name for v in VECTORS]


@pytest.mark.parametrize("vec", VECTORS, ids=IDS)
def test_decode_vector(impl: Any, vec: V) -> None:
    assert impl.Decoder(vec.version).feed(vec.data) == [vec.packet]


@pytest.mark.parametrize(
    "vec", [v for v in VECTORS if v.canonical], ids=[v.name for v in VECTORS if v.canonical]
)
def test_encode_vector(impl: Any, vec: V) -> None:
    assert impl.encode(vec.packet, vec.version) == vec.data


@pytest.mark.parametrize(
    "vec", [v for v in VECTORS if v.canonical], ids=[v.name for v in VECTORS if v.canonical]
)
def test_encoded_bytes_decode_back(impl: Any, vec: V) -> None:
    data = impl.encode(vec.packet, vec.version)
    assert impl.Decoder(vec.version).feed(data) == [vec.packet]


@pytest.mark.parametrize(
    "vec",
    [v for v in VECTORS if isinstance(v.packet, Connect)],
    ids=[v.name for v in VECTORS if isinstance(v.packet, Connect)],
)
def test_server_decoder_takes_version_from_connect(impl: Any, vec: V) -> None:
    """[MQTT-3.1.0-1] The first packet is CONNECT; its level sets the decoder's version."""
    dec = impl.Decoder()
    assert dec.protocol_version is None
    assert dec.feed(vec.data) == [vec.packet]
    assert dec.protocol_version == vec.version


def test_encode_acks_short_form_like_mosquitto(impl: Any) -> None:
    """3.4.2.1: reason code 0 and no properties may omit both (remaining length 2)."""
    for cls, first in ((Puback, 0x40), (Pubrec, 0x50), (Pubrel, 0x62), (Pubcomp, 0x70)):
        assert impl.encode(cls(7), 5) == bytes((first, 2, 0, 7))
        assert impl.encode(cls(7, 0, Properties()), 5) == bytes((first, 2, 0, 7))
    assert impl.encode(Disconnect(0, Properties()), 5) == b"\xe0\x00"
    assert impl.encode(Auth(0), 5) == b"\xf0\x00"


def test_encode_ignores_v5_fields_before_5(impl: Any) -> None:
    """MQTT 3.1.1 acknowledgements carry no reason code or properties."""
    props = Properties(reason_string="x")
    assert impl.encode(Puback(7, 0x80, props), 4) == h("40 02 00 07")
    assert impl.encode(Disconnect(0x8E, props), 4) == h("E0 00")
    assert impl.encode(Unsuback(7, [0x11], props), 4) == h("B0 02 00 07")
    assert impl.encode(Publish("t", b"p", 0, properties=Properties(topic_alias=1)), 4) == h(
        "30 04 00 01 't' 'p'"
    )


@pytest.mark.parametrize("version", [4, 5])
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_encode_publish_and_publish_parts_agree_with_encode(
    impl: Any, version: int, qos: int
) -> None:
    props = (
        Properties(message_expiry_interval=30, user_property=[("a", "b")]) if version == 5 else None
    )
    pkt = Publish(
        "s/1",
        b"\x00" * 64,
        qos,
        retain=True,
        dup=qos > 0,
        packet_id=513 if qos else 0,
        properties=props,
    )
    expected = impl.encode(pkt, version)
    assert (
        impl.encode_publish("s/1", b"\x00" * 64, qos, True, qos > 0, pkt.packet_id, props, version)
        == expected
    )
    head, tail = impl.publish_parts("s/1", b"\x00" * 64, qos, True, qos > 0, props, version)
    if qos:
        assert head + (513).to_bytes(2, "big") + tail == expected
    else:
        assert tail == b"" and head == expected
    assert impl.Decoder(version).feed(expected) == [pkt]


def test_publish_parts_serves_many_packet_ids(impl: Any) -> None:
    """The fan-out path: one encoding, a different packet id per subscriber."""
    head, tail = impl.publish_parts("a/b", memoryview(b"payload"), 1, False, False, None, 4)
    dec = impl.Decoder(4)
    stream = b"".join(head + pid.to_bytes(2, "big") + tail for pid in range(1, 300))
    assert [p.packet_id for p in dec.feed(stream)] == list(range(1, 300))


def test_encode_publish_accepts_bytes_like_payloads(impl: Any) -> None:
    for payload in (b"abc", bytearray(b"abc"), memoryview(b"abc")):
        assert impl.encode_publish("t", payload, 0) == h("30 06 00 01 't' 'abc'")


def test_encode_publish_requires_packet_id_for_qos1(impl: Any) -> None:
    """[MQTT-2.2.1-3] A QoS > 0 PUBLISH needs a non-zero packet identifier."""
    with pytest.raises(ValueError):
        impl.encode_publish("t", b"", 1, packet_id=0)
    with pytest.raises(ValueError):
        impl.encode_publish("t", b"", 3, packet_id=1)


@pytest.mark.parametrize(
    "length,encoded",
    [
        (0, "00"),
        (127, "7F"),
        (128, "80 01"),
        (16383, "FF 7F"),
        (16384, "80 80 01"),
        (2097151, "FF FF 7F"),
        (2097152, "80 80 80 01"),
    ],
)
def test_remaining_length_boundaries_from_spec_table(impl: Any, length: int, encoded: str) -> None:
    """2.2.3 table 2.4: remaining length boundaries of 1..4 byte encodings."""
    if length < 3:
        return  # too short for a PUBLISH; covered by PINGREQ below
    payload = b"p" * (length - 3)
    data = impl.encode_publish("t", payload, 0)
    assert data[1 : 1 + len(bytes.fromhex(encoded))] == bytes.fromhex(encoded)
    assert impl.Decoder(4).feed(data) == [Publish("t", payload)]


def test_large_remaining_length_round_trip(impl: Any) -> None:
    """2.2.3: 268435455 is the largest length; check a 4-byte length near 2 MiB quickly."""
    payload = bytes(2097152)
    data = impl.encode_publish("t", payload, 0)
    assert data[1:5] == bytes.fromhex("83 80 80 01")
    (pkt,) = impl.Decoder(4).feed(data)
    assert pkt.payload == payload


def test_encode_rejects_non_packets(impl: Any) -> None:
    with pytest.raises(TypeError):
        impl.encode(object(), 4)


def test_encode_auth_before_5_is_refused(impl: Any) -> None:
    with pytest.raises(ValueError):
        impl.encode(Auth(), 4)


def test_decoded_publish_payload_is_bytes(impl: Any) -> None:
    (pkt,) = impl.Decoder(4).feed(bytearray(h("30 06 00 01 't' 'abc'")))
    assert type(pkt.payload) is bytes and type(pkt.topic) is str


def test_mqtt_error_is_the_only_error_type(impl: Any) -> None:
    assert issubclass(impl.MQTTError if hasattr(impl, "MQTTError") else MQTTError, Exception)


def test_cython_twin_builds_packets_on_its_fast_path(impl: Any) -> None:
    """If packets.py changes shape, the Cython twin falls back to constructors; say so here."""
    if impl.flavour != "cython":
        return
    from mqttfast.codec import _codec

    assert _codec._fast_construction() == {
        "Publish": True,
        "Puback": True,
        "Pubrec": True,
        "Pubrel": True,
        "Pubcomp": True,
        "Properties": True,
        "Pingreq": True,
        "Pingresp": True,
        "Subscription": True,
        "Subscribe": True,
    }


def test_encode_survives_properties_mutated_during_encoding(impl: Any) -> None:
    """User code run by the encoder (a __bytes__) may change the properties: never a bad packet."""
    props = Properties(user_property=[("a", "b")])

    class Sneaky:
        def __bytes__(self) -> bytes:
            props.user_property = [("k" * 300, "v" * 300)] * 10  # grows the properties
            return b"cd"

    props.correlation_data = Sneaky()  # type: ignore[assignment]
    try:
        data = impl.encode(Publish("t", b"p", properties=props), 5)
    except ValueError:
        return  # the Cython twin notices the change between sizing and writing
    (pkt,) = impl.Decoder(5).feed(data)
    assert pkt.topic == "t" and pkt.payload == b"p"


@pytest.mark.parametrize("size", [0, 100, 509, 510, 511, 512, 513, 4000])
def test_publish_properties_of_any_size_round_trip(impl: Any, size: int) -> None:
    """Property sections below, at and above the Cython twin's 512-byte scratch buffer."""
    props = Properties(user_property=[("k", "v" * size)], correlation_data=bytearray(b"c" * size))
    pkt = Publish("t/x", b"payload", 1, packet_id=9, properties=props)
    data = impl.encode(pkt, 5)
    assert data == impl.encode_publish("t/x", b"payload", 1, False, False, 9, props, 5)
    head, tail = impl.publish_parts("t/x", b"payload", 1, False, False, props, 5)
    assert head + b"\x00\x09" + tail == data
    (got,) = impl.Decoder(5).feed(data)
    assert got.properties.user_property == [("k", "v" * size)]
    assert got.properties.correlation_data == b"c" * size
