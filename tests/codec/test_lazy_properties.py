"""A decoded MQTT 5 PUBLISH behaves the same whether its properties were built at
decode time (pure twin) or are built on first read (Cython twin, issue 17).

Every test runs on both twins (``impl``): the observable behaviour is the
contract, laziness is an implementation detail of the Cython twin. The last
tests look at that detail directly, so that a change which silently makes the
Cython twin eager again fails here rather than only in a benchmark.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import pickle
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mqttfast._impl import NO_EXTENSIONS
from mqttfast.codec.errors import MalformedPacket, MQTTError, ProtocolError
from mqttfast.codec.packets import Properties, Publish

FULL = Properties(
    payload_format_indicator=1,
    message_expiry_interval=60,
    content_type="application/octet-stream",
    response_topic="reply/here",
    correlation_data=b"\x00\x01corr",
    subscription_identifier=None,  # client to server: not allowed [MQTT-3.3.4-6] (broker check)
    topic_alias=7,
    user_property=[("trace", "abc123"), ("trace", "dup"), ("k", "")],
)
FIELDS = [f.name for f in dataclasses.fields(Properties)]


def decoded(impl: Any, props: Properties | None = FULL, topic: str = "a/b") -> Publish:
    data = impl.encode(Publish(topic, b"payload", 1, False, False, 9, props), 5)
    (pkt,) = impl.Decoder(5).feed(data)
    return pkt  # type: ignore[no-any-return]


def test_every_field_reads_back(impl: Any) -> None:
    pkt = decoded(impl)
    assert pkt.properties == FULL
    for name in FIELDS:
        assert getattr(pkt.properties, name) == getattr(FULL, name), name


@pytest.mark.parametrize("first", ["eq", "repr", "encode", "field", "copy", "pickle", "replace"])
def test_any_first_access_gives_the_same_packet(impl: Any, first: str) -> None:
    """Whatever touches the packet first, everything after sees the same values."""
    pkt = decoded(impl)
    reference = Publish("a/b", b"payload", 1, False, False, 9, FULL)
    if first == "eq":
        assert pkt == reference
    elif first == "repr":
        assert repr(pkt) == repr(reference)
    elif first == "encode":
        assert impl.encode(pkt, 5) == impl.encode(reference, 5)
    elif first == "field":
        assert pkt.properties.content_type == "application/octet-stream"
    elif first == "copy":
        assert copy.copy(pkt) == reference
    elif first == "pickle":
        assert pickle.loads(pickle.dumps(pkt)) == reference
    else:
        assert dataclasses.replace(pkt, topic="x/y").properties == FULL
    assert pkt == reference
    assert repr(pkt) == repr(reference)
    assert impl.encode(pkt, 5) == impl.encode(reference, 5)


def test_properties_are_built_once(impl: Any) -> None:
    """Two reads give the same object: a change made through one is seen by the next."""
    pkt = decoded(impl)
    assert pkt.properties is pkt.properties


def test_mutation_after_access_is_kept_and_encoded(impl: Any) -> None:
    pkt = decoded(impl)
    pkt.properties.content_type = "text/plain"
    pkt.properties.user_property.append(("added", "1"))
    pkt.properties.topic_alias = None
    assert pkt.properties.content_type == "text/plain"
    (again,) = impl.Decoder(5).feed(impl.encode(pkt, 5))
    assert again.properties.content_type == "text/plain"
    assert again.properties.user_property == FULL.user_property + [("added", "1")]
    assert again.properties.topic_alias is None
    assert again == pkt


def test_replacing_properties_before_any_read(impl: Any) -> None:
    """Assigning the field before it was read wins over the decoded bytes."""
    pkt = decoded(impl)
    pkt.properties = None
    assert pkt.properties is None
    assert impl.encode(pkt, 5) == impl.encode(Publish("a/b", b"payload", 1, packet_id=9), 5)
    pkt = decoded(impl)
    pkt.properties = Properties(content_type="r")
    assert impl.encode(pkt, 5) == impl.encode(
        Publish("a/b", b"payload", 1, packet_id=9, properties=Properties(content_type="r")), 5
    )


def test_copies_before_access(impl: Any) -> None:
    """copy.copy shares the Properties (a shallow copy, as for any packet); deepcopy
    and pickle give independent, equal ones."""
    pkt = decoded(impl)
    shallow = copy.copy(pkt)
    assert shallow.properties is pkt.properties
    deep = copy.deepcopy(decoded(impl))
    original = decoded(impl)
    clone = pickle.loads(pickle.dumps(original, protocol=pickle.HIGHEST_PROTOCOL))
    for other in (deep, clone):
        assert other == pkt
        other.properties.user_property.append(("x", "y"))
        assert other != pkt
    assert original.properties == FULL
    assert type(clone.properties) is Properties


def test_properties_do_not_depend_on_the_fed_buffer(impl: Any) -> None:
    """The decoder parses straight from the caller's buffer: the packet must keep its own
    copy of the property bytes, whatever happens to that buffer later."""
    buf = bytearray(impl.encode(Publish("a/b", b"p", 1, packet_id=3, properties=FULL), 5))
    (pkt,) = impl.Decoder(5).feed(buf)
    buf[:] = bytes(len(buf))
    assert pkt.properties == FULL


def test_packets_decoded_before_an_error_are_whole(impl: Any) -> None:
    good = impl.encode(Publish("a/b", b"p", 1, packet_id=3, properties=FULL), 5)
    dec = impl.Decoder(5)
    with pytest.raises(MalformedPacket) as info:
        dec.feed(good + bytes.fromhex("00 00"))  # reserved packet type 0
    (pkt,) = info.value.packets
    assert pkt.properties == FULL


def test_constructed_packets_are_untouched(impl: Any) -> None:
    props = Properties(content_type="c")
    pkt = Publish("t", b"", 0, properties=props)
    assert pkt.properties is props
    assert Publish("t").properties is None
    with pytest.raises(AttributeError):
        _ = Publish.__new__(Publish).properties
    with pytest.raises(TypeError):
        Publish.__dict__["properties"].__get__(object(), object)


def test_no_properties_and_empty_section(impl: Any) -> None:
    """An empty property section decodes to None on both twins (2.2.2)."""
    assert decoded(impl, None).properties is None
    (pkt,) = impl.Decoder(5).feed(bytes.fromhex("30 04 00 01 74 00"))
    assert pkt.properties is None


# ---- malformed properties are still refused while decoding, with the same codes

TOPIC_A = "00 01 74"  # topic "t"


def publish_v5(props_hex: str, topic_hex: str = TOPIC_A) -> bytes:
    body = bytes.fromhex(topic_hex)
    props = bytes.fromhex(props_hex)
    body += bytes((len(props),)) + props
    return bytes((0x30, len(body))) + body


@pytest.mark.parametrize(
    "props_hex,topic_hex,error,code",
    [
        ("03 00 02 C3 28", TOPIC_A, MalformedPacket, 0x81),  # [MQTT-1.5.4-1] content type
        ("26 00 01 6B 00 02 76 00", TOPIC_A, MalformedPacket, 0x81),  # [MQTT-1.5.4-2] U+0000
        ("26 00 01 6B 00 05 76", TOPIC_A, MalformedPacket, 0x81),  # pair runs past the end
        ("08 00 03 61 2B 62", TOPIC_A, None, None),  # response topic: no decoder check
        ("03 00 01 61 03 00 01 62", TOPIC_A, ProtocolError, 0x82),  # 2.2.2.2 twice
        ("23 00 00", TOPIC_A, MQTTError, 0x94),  # topic alias 0 (3.3.2.3.4)
        ("11 00 00 00 01", TOPIC_A, MalformedPacket, 0x81),  # 2.2.2.2 not allowed in PUBLISH
        ("01 02", TOPIC_A, ProtocolError, 0x82),  # payload format indicator 2
        ("0B 00", TOPIC_A, ProtocolError, 0x82),  # subscription identifier 0
        ("7F", TOPIC_A, MalformedPacket, 0x81),  # unknown identifier
        ("02 00 00", TOPIC_A, MalformedPacket, 0x81),  # four-byte value cut short
        ("02 00 00 00 3C", "00 00", ProtocolError, 0x82),  # 3.3.2.1 empty topic, no alias
        ("23 00 05", "00 00", None, None),  # empty topic with an alias is fine
    ],
)
def test_malformed_properties_refused_at_decode(
    impl: Any, props_hex: str, topic_hex: str, error: type[MQTTError] | None, code: int | None
) -> None:
    data = publish_v5(props_hex, topic_hex)
    if error is None:
        (pkt,) = impl.Decoder(5).feed(data)
        assert pkt.properties is not None
        return
    with pytest.raises(error) as info:
        impl.Decoder(5).feed(data)
    assert info.value.reason_code == code


# ---- any access order over random properties agrees with building eagerly

_str = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=8)
_props = st.builds(
    Properties,
    payload_format_indicator=st.none() | st.integers(0, 1),
    message_expiry_interval=st.none() | st.integers(0, 2**32 - 1),
    content_type=st.none() | _str,
    response_topic=st.none() | _str.filter(lambda s: s and "+" not in s and "#" not in s),
    correlation_data=st.none() | st.binary(max_size=8),
    topic_alias=st.none() | st.integers(1, 65535),
    user_property=st.none() | st.lists(st.tuples(_str, _str), min_size=1, max_size=3),
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(props=_props, order=st.permutations(FIELDS))
def test_random_properties_in_any_order(impl: Any, props: Properties, order: list[str]) -> None:
    pkt = decoded(impl, props)
    expected = None if props.is_empty() else props
    if expected is None:
        assert pkt.properties is None
        return
    for name in order:
        assert getattr(pkt.properties, name) == getattr(expected, name), name
    assert pkt == Publish("a/b", b"payload", 1, False, False, 9, expected)


# ---- the Cython twin really is lazy


def _slot_value(pkt: Publish) -> Any:
    """The raw content of the ``properties`` slot, bypassing the lazy descriptor."""
    return Publish.__dict__["properties"].member.__get__(pkt, Publish)


def test_cython_decode_builds_no_properties() -> None:
    """The Cython twin keeps the property bytes and builds the Properties on first read."""
    if NO_EXTENSIONS:  # pure build: Publish.properties is the dataclass's own slot
        assert type(Publish.__dict__["properties"]).__name__ == "member_descriptor"
        return
    cy = importlib.import_module("mqttfast.codec._codec")
    pkt = decoded(cy)
    assert type(_slot_value(pkt)) is not Properties  # pending bytes, not built yet
    props = pkt.properties
    assert _slot_value(pkt) is props  # built once, then stored in the slot
    with pytest.raises(TypeError):
        pickle.dumps(_slot_value(decoded(cy)))
