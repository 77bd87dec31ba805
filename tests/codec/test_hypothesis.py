"""Property-based tests of the codec (hypothesis), run against both twins.

* Round trip: every valid packet of every type, for protocol versions 3, 4 and 5
  (with MQTT 5 properties wherever PROPERTY_TABLE allows them), encodes to bytes
  that decode to an equal packet, whole and in any chunking.
* Robustness: random bytes and mutated valid packets fed to ``Decoder`` (whole and
  in random chunks) raise nothing but ``MQTTError`` [issue 2: "never any other
  exception, never a hang"].
* Differential: the Cython twin (``_codec``) and the pure twin (``_codec_py``) give
  the same packets, or the same reason code, on every input; their encoders give
  the same bytes.

Example counts are bounded so the module runs in well under a minute.
"""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import string
import tracemalloc
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mqttfast._impl import NO_EXTENSIONS
from mqttfast.codec.constants import (
    AUTH_REASON_CODES,
    CONNACK_REASON_CODES,
    DISCONNECT_REASON_CODES,
    MAX_REMAINING_LENGTH,
    PROPERTY_TABLE,
    PUBACK_REASON_CODES,
    PUBCOMP_REASON_CODES,
    PUBREC_REASON_CODES,
    PUBREL_REASON_CODES,
    SUBACK_REASON_CODES,
    UNSUBACK_REASON_CODES,
    WILL_PROPERTIES,
    PacketType,
    PropertyType,
)
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

pytestmark = pytest.mark.timeout(180)

_FAST = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_MORE = settings(_FAST, max_examples=250)

VERSIONS = (3, 4, 5)

# --------------------------------------------------------------------------- strategies

# MQTT UTF-8 (1.5.4): any Unicode scalar value except U+0000 (surrogates are not
# scalar values). Discouraged code points (controls, non-characters) are legal.
_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
_TOPIC_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00+#/")


def mqtt_text(min_size: int = 0, max_size: int = 12) -> st.SearchStrategy[str]:
    # Mostly readable ASCII (shrinks well), sometimes anything.
    return st.one_of(
        st.text(
            string.ascii_letters + string.digits + "-_ .", min_size=min_size, max_size=max_size
        ),
        st.text(_CHARS, min_size=min_size, max_size=max_size),
    )


_level = st.one_of(
    st.sampled_from(["a", "b", "sensor", "", "$SYS", "ü", "\u0394", "x y"]),
    st.text(_TOPIC_CHARS, max_size=6),
)
# A topic name [MQTT-4.7.1-1]: no wildcards, at least one character [MQTT-4.7.3-1].
topic_names = st.lists(_level, min_size=1, max_size=5).map("/".join).filter(bool)


@st.composite
def topic_filters(draw: Any) -> str:
    """A valid topic filter: '+' alone in a level, '#' alone in the last level [MQTT-4.7.1-2/3]."""
    levels = draw(st.lists(st.one_of(_level, st.just("+")), min_size=1, max_size=5))
    if draw(st.booleans()):
        levels.append("#")
    filt = "/".join(levels)
    assume(filt and not filt.startswith("$share/"))
    return filt


_packet_ids = st.integers(1, 65535)
_u8_bool = st.integers(0, 1)


def _property_value(pid: int, vtype: PropertyType, ptype: int) -> st.SearchStrategy[Any]:
    if vtype == PropertyType.BYTE:
        return _u8_bool  # every one-byte property is 0 or 1 (payload format, requests, availability, max QoS)
    if vtype == PropertyType.TWO_BYTE_INT:
        # 0 is a protocol error for receive maximum and topic alias (3.1.2.11.3, 3.3.2.3.4).
        return st.integers(1 if pid in (0x21, 0x23) else 0, 65535)
    if vtype == PropertyType.FOUR_BYTE_INT:
        return st.integers(1 if pid == 0x27 else 0, 0xFFFFFFFF)
    if (
        vtype == PropertyType.VARINT
    ):  # subscription identifier: one in SUBSCRIBE, several in PUBLISH
        ids = st.integers(1, MAX_REMAINING_LENGTH)
        return st.lists(ids, min_size=1, max_size=1 if ptype == PacketType.SUBSCRIBE else 3)
    if vtype == PropertyType.UTF8:
        if pid in (0x08,):  # response topic is a topic name
            return topic_names
        return mqtt_text()
    if vtype == PropertyType.BINARY:
        return st.binary(max_size=16)
    return st.lists(st.tuples(mqtt_text(max_size=6), mqtt_text(max_size=6)), min_size=1, max_size=3)


@st.composite
def properties_for(draw: Any, ptype: int, version: int) -> Properties | None:
    """None or a non-empty Properties with only the properties ``ptype`` may carry (2.2.2.2)."""
    if version != 5 or draw(st.integers(0, 3)) == 0:
        return None
    allowed = [
        (pid, name, vtype) for pid, (name, vtype, where) in PROPERTY_TABLE.items() if ptype in where
    ]
    chosen = draw(
        st.lists(st.sampled_from(allowed), min_size=1, max_size=len(allowed), unique=True)
    )
    values = {name: draw(_property_value(pid, vtype, ptype)) for pid, name, vtype in chosen}
    # Authentication data without a method is a protocol error (3.1.2.11.10).
    if (
        values.get("authentication_data") is not None
        and values.get("authentication_method") is None
    ):
        values["authentication_method"] = "SCRAM-SHA-1"
    return Properties(**values)


@st.composite
def connects(draw: Any, version: int) -> Connect:
    will = None
    if draw(st.booleans()):
        will = Will(
            draw(topic_names),
            draw(st.binary(max_size=20)),
            draw(st.integers(0, 2)),
            draw(st.booleans()),
            draw(properties_for(WILL_PROPERTIES, version)),
        )
    username = draw(st.none() | mqtt_text())
    # Before MQTT 5 a password needs a user name [MQTT-3.1.2-22].
    password = (
        draw(st.none() | st.binary(max_size=20)) if (username is not None or version == 5) else None
    )
    return Connect(
        draw(mqtt_text(max_size=23)),
        version,
        draw(st.booleans()),
        draw(st.integers(0, 65535)),
        username,
        password,
        will,
        draw(properties_for(PacketType.CONNECT, version)),
    )


@st.composite
def connacks(draw: Any, version: int) -> Connack:
    if version == 5:
        reason = draw(st.sampled_from(sorted(CONNACK_REASON_CODES)))
    else:
        reason = draw(st.integers(0, 5))
    # Session present only with a successful CONNACK [MQTT-3.2.2-4].
    session_present = draw(st.booleans()) if reason == 0 else False
    return Connack(session_present, reason, draw(properties_for(PacketType.CONNACK, version)))


@st.composite
def publishes(draw: Any, version: int) -> Publish:
    qos = draw(st.integers(0, 2))
    props = draw(properties_for(PacketType.PUBLISH, version))
    topic = draw(topic_names)
    # MQTT 5: an empty topic name is legal when a topic alias is present (3.3.2.3.4).
    if props is not None and props.topic_alias is not None and draw(st.booleans()):
        topic = ""
    return Publish(
        topic,
        draw(st.binary(max_size=64)),
        qos,
        draw(st.booleans()),
        draw(st.booleans()) if qos else False,  # DUP only with QoS > 0 [MQTT-3.3.1-2]
        draw(_packet_ids) if qos else 0,
        props,
    )


def acks(cls: type, reasons: frozenset[int], version: int) -> st.SearchStrategy[Any]:
    if version != 5:
        return st.builds(cls, _packet_ids)
    return st.builds(
        cls, _packet_ids, st.sampled_from(sorted(reasons)), properties_for(cls.packet_type, version)
    )


@st.composite
def subscribes(draw: Any, version: int) -> Subscribe:
    subs = []
    for filt in draw(st.lists(topic_filters(), min_size=1, max_size=4)):
        if version == 5:
            subs.append(
                Subscription(
                    filt,
                    draw(st.integers(0, 2)),
                    draw(st.booleans()),
                    draw(st.booleans()),
                    draw(st.integers(0, 2)),
                )
            )
        else:
            subs.append(Subscription(filt, draw(st.integers(0, 2))))
    return Subscribe(draw(_packet_ids), subs, draw(properties_for(PacketType.SUBSCRIBE, version)))


@st.composite
def subacks(draw: Any, version: int) -> Suback:
    codes = sorted(SUBACK_REASON_CODES) if version == 5 else [0, 1, 2, 0x80]
    return Suback(
        draw(_packet_ids),
        draw(st.lists(st.sampled_from(codes), min_size=1, max_size=5)),
        draw(properties_for(PacketType.SUBACK, version)),
    )


@st.composite
def unsubscribes(draw: Any, version: int) -> Unsubscribe:
    return Unsubscribe(
        draw(_packet_ids),
        draw(st.lists(topic_filters(), min_size=1, max_size=4)),
        draw(properties_for(PacketType.UNSUBSCRIBE, version)),
    )


@st.composite
def unsubacks(draw: Any, version: int) -> Unsuback:
    if version != 5:  # 3.1.1 UNSUBACK has no payload (3.11.3)
        return Unsuback(draw(_packet_ids))
    codes = draw(st.lists(st.sampled_from(sorted(UNSUBACK_REASON_CODES)), min_size=1, max_size=5))
    return Unsuback(draw(_packet_ids), codes, draw(properties_for(PacketType.UNSUBACK, version)))


def disconnects(version: int) -> st.SearchStrategy[Disconnect]:
    if version != 5:
        return st.just(Disconnect())
    return st.builds(
        Disconnect,
        st.sampled_from(sorted(DISCONNECT_REASON_CODES)),
        properties_for(PacketType.DISCONNECT, version),
    )


def auths() -> st.SearchStrategy[Auth]:
    return st.builds(
        Auth, st.sampled_from(sorted(AUTH_REASON_CODES)), properties_for(PacketType.AUTH, 5)
    )


def client_packets(version: int) -> st.SearchStrategy[Any]:
    """Packets a client sends after CONNECT (what a server-side decoder accepts)."""
    options = [
        publishes(version),
        acks(Puback, PUBACK_REASON_CODES, version),
        acks(Pubrec, PUBREC_REASON_CODES, version),
        acks(Pubrel, PUBREL_REASON_CODES, version),
        acks(Pubcomp, PUBCOMP_REASON_CODES, version),
        subscribes(version),
        unsubscribes(version),
        st.just(Pingreq()),
        disconnects(version),
    ]
    if version == 5:
        options.append(auths())
    return st.one_of(options)


def any_packets(version: int) -> st.SearchStrategy[Any]:
    """Every packet type valid for ``version`` (what a client-side decoder accepts)."""
    return st.one_of(
        client_packets(version),
        connects(version),
        connacks(version),
        subacks(version),
        unsubacks(version),
        st.just(Pingresp()),
    )


versioned_packets = st.sampled_from(VERSIONS).flatmap(
    lambda v: st.tuples(st.just(v), any_packets(v))
)


@st.composite
def chunked(draw: Any, data: bytes) -> list[bytes]:
    """``data`` cut at random points (possibly inside the fixed header)."""
    if len(data) < 2:
        return [data]
    cuts = sorted(set(draw(st.lists(st.integers(1, len(data) - 1), max_size=6))))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@st.composite
def session_streams(draw: Any) -> tuple[int, bytes]:
    """A valid client->server byte stream (CONNECT first), as the pure encoder writes it."""
    from mqttfast.codec import _codec_py

    version = draw(st.sampled_from(VERSIONS))
    pkts = [draw(connects(version))] + draw(st.lists(client_packets(version), max_size=4))
    return version, b"".join(_codec_py.encode(p, version) for p in pkts)


@st.composite
def mutated(draw: Any, data: bytes) -> bytes:
    """``data`` with a few random edits: flip, overwrite, insert, delete, truncate."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        if not buf:
            op = "insert"
        i = draw(st.integers(0, max(len(buf) - 1, 0)))
        if op == "flip":
            buf[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            buf[i] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF, 0xC0, 0x26, 0x0B]))
        elif op == "insert":
            buf[i:i] = draw(st.binary(min_size=1, max_size=3))
        elif op == "delete":
            del buf[i]
        else:
            del buf[i:]
    return bytes(buf)


# --------------------------------------------------------------------------- helpers


def feed_all(decoder: Any, chunks: list[bytes]) -> tuple[list[Any], int | None]:
    """Feed every chunk; return (all packets decoded, reason code of the error or None).

    Anything other than MQTTError propagates and fails the test.
    """
    out: list[Any] = []
    for chunk in chunks:
        try:
            out.extend(decoder.feed(chunk))
        except MQTTError as err:
            out.extend(err.packets)
            return out, int(err.reason_code)
    return out, None


@pytest.fixture(scope="module")
def twins() -> tuple[Any, Any]:
    """(Cython twin, pure twin) codec modules, imported directly: the differential tests need both.

    A missing extension fails these tests (never skips), unless MQTTFAST_NO_EXTENSIONS asks for
    the pure twin only.
    """
    if NO_EXTENSIONS:
        pytest.skip("MQTTFAST_NO_EXTENSIONS is set: only the pure twin is under test")
    return (
        importlib.import_module("mqttfast.codec._codec"),
        importlib.import_module("mqttfast.codec._codec_py"),
    )


# --------------------------------------------------------------------------- round trip


@_MORE
@given(vp=versioned_packets, data=st.data())
def test_round_trip_every_packet_type(impl: Any, vp: tuple[int, Any], data: Any) -> None:
    """encode -> decode gives back an equal packet, whole and in random chunks."""
    version, pkt = vp
    wire = impl.encode(pkt, version)
    assert impl.Decoder(protocol_version=version).feed(wire) == [pkt]
    assert feed_all(impl.Decoder(protocol_version=version), data.draw(chunked(wire))) == (
        [pkt],
        None,
    )


@_FAST
@given(vp=versioned_packets)
def test_round_trip_byte_by_byte(impl: Any, vp: tuple[int, Any]) -> None:
    version, pkt = vp
    wire = impl.encode(pkt, version)
    dec = impl.Decoder(protocol_version=version)
    got = []
    for i in range(len(wire)):
        got += dec.feed(wire[i : i + 1])
    assert got == [pkt]
    assert dec.feed(b"") == []


@_FAST
@given(version=st.sampled_from(VERSIONS), data=st.data())
def test_round_trip_stream_of_packets(impl: Any, version: int, data: Any) -> None:
    """Several packets in one buffer, cut anywhere, decode in order."""
    pkts = data.draw(st.lists(any_packets(version), min_size=1, max_size=6))
    wire = b"".join(impl.encode(p, version) for p in pkts)
    assert feed_all(impl.Decoder(protocol_version=version), data.draw(chunked(wire))) == (
        pkts,
        None,
    )
    # Any bytes-like input is accepted.
    assert impl.Decoder(protocol_version=version).feed(bytearray(wire)) == pkts
    assert impl.Decoder(protocol_version=version).feed(memoryview(wire)) == pkts


@_FAST
@given(version=st.sampled_from(VERSIONS), data=st.data())
def test_decoder_does_not_keep_views_of_caller_buffers(impl: Any, version: int, data: Any) -> None:
    """The caller may reuse its receive buffer after ``feed`` returns (asyncio BufferedProtocol
    does): partial input must be copied, and decoded packets must not alias the buffer."""
    pkts = data.draw(st.lists(any_packets(version), min_size=1, max_size=4))
    wire = b"".join(impl.encode(p, version) for p in pkts)
    dec = impl.Decoder(protocol_version=version)
    got: list[Any] = []
    scratch = bytearray(len(wire))
    for chunk in data.draw(chunked(wire)):
        scratch[: len(chunk)] = chunk
        view = memoryview(scratch)[: len(chunk)]
        got += dec.feed(view)
        view.release()
        scratch[:] = b"\xee" * len(scratch)  # the caller overwrites its buffer
    assert got == pkts


@_FAST
@given(version=st.sampled_from(VERSIONS), data=st.data())
def test_server_side_decoder_learns_version_from_connect(
    impl: Any, version: int, data: Any
) -> None:
    """A server decoder (protocol_version=None) takes its version from the first CONNECT [MQTT-3.1.0-1]."""
    connect = data.draw(connects(version))
    rest = data.draw(st.lists(client_packets(version), max_size=4))
    wire = b"".join(impl.encode(p, version) for p in [connect, *rest])
    dec = impl.Decoder()
    assert feed_all(dec, data.draw(chunked(wire))) == ([connect, *rest], None)
    assert dec.protocol_version == version


@_FAST
@given(version=st.sampled_from(VERSIONS), pkt=st.data())
def test_publish_fast_paths_match_encode(impl: Any, version: int, pkt: Any) -> None:
    """encode_publish and publish_parts write the same bytes as encode(Publish)."""
    p = pkt.draw(publishes(version))
    wire = impl.encode(p, version)
    assert (
        impl.encode_publish(
            p.topic, p.payload, p.qos, p.retain, p.dup, p.packet_id, p.properties, version
        )
        == wire
    )
    head, tail = impl.publish_parts(
        p.topic, p.payload, p.qos, p.retain, p.dup, p.properties, version
    )
    if p.qos:
        assert head + p.packet_id.to_bytes(2, "big") + tail == wire
    else:
        assert (head, tail) == (wire, b"")


@_FAST
@given(vp=versioned_packets)
def test_size_limit_is_checked_at_fixed_header(impl: Any, vp: tuple[int, Any]) -> None:
    """A packet one byte over max_packet_size raises 0x95 once its fixed header is in, before the body."""
    version, pkt = vp
    wire = impl.encode(pkt, version)
    header_len = 2
    while wire[header_len - 1] & 0x80:
        header_len += 1
    assert impl.Decoder(protocol_version=version, max_packet_size=len(wire)).feed(wire) == [pkt]
    dec = impl.Decoder(protocol_version=version, max_packet_size=len(wire) - 1)
    assert feed_all(dec, [wire[:header_len]]) == ([], 0x95)


@_FAST
@given(version=st.sampled_from(VERSIONS), data=st.data())
def test_error_carries_packets_decoded_before_it(impl: Any, version: int, data: Any) -> None:
    """Valid packets followed by a reserved type-0 packet [MQTT-2.1.2]: MQTTError 0x81 whose
    ``packets`` are the valid ones, in order, when all arrive in one feed."""
    pkts = data.draw(st.lists(any_packets(version), max_size=4))
    wire = b"".join(impl.encode(p, version) for p in pkts) + b"\x00\x00"
    with pytest.raises(MQTTError) as info:
        impl.Decoder(protocol_version=version).feed(wire)
    assert int(info.value.reason_code) == 0x81
    assert info.value.packets == pkts


@_FAST
@given(version=st.sampled_from(VERSIONS), data=st.data())
def test_server_decoder_requires_connect_first(impl: Any, version: int, data: Any) -> None:
    """[MQTT-3.1.0-1] The first packet from a client must be CONNECT: anything else is a protocol
    error (0x82) before any packet is returned."""
    pkt = data.draw(any_packets(version).filter(lambda p: not isinstance(p, Connect)))
    wire = impl.encode(pkt, version)
    assert feed_all(impl.Decoder(), data.draw(chunked(wire))) == ([], 0x82)


@_FAST
@given(version=st.sampled_from(VERSIONS), data=st.data())
def test_server_decoder_rejects_second_connect(impl: Any, version: int, data: Any) -> None:
    """[MQTT-3.1.0-2] A second CONNECT is a protocol error (0x82); the first is still returned."""
    first, second = data.draw(connects(version)), data.draw(connects(version))
    wire = impl.encode(first, version) + impl.encode(second, version)
    assert feed_all(impl.Decoder(), data.draw(chunked(wire))) == ([first], 0x82)


@settings(_FAST, max_examples=40)
@given(declared=st.integers(1000, MAX_REMAINING_LENGTH), sent=st.integers(0, 4000))
def test_declared_length_is_not_preallocated(impl: Any, declared: int, sent: int) -> None:
    """A PUBLISH announcing up to 256 MiB buffers only the bytes that arrived (a peer cannot make
    the broker allocate by lying in the fixed header)."""
    head = bytes((0x30,)) + impl.encode_varint(declared)
    body = (b"\x00\x01a" + b"x" * sent)[: declared - 1]
    dec = impl.Decoder(protocol_version=4)
    tracemalloc.start()
    try:
        assert dec.feed(head + body) == []
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert dec.buffered == len(head) + len(body)
    assert peak < 64 * 1024 + 4 * len(body)


# --------------------------------------------------------------------------- robustness


@_MORE
@given(version=st.sampled_from((None, 3, 4, 5)), blob=st.binary(max_size=300), data=st.data())
def test_random_bytes_raise_only_mqtt_error(
    impl: Any, version: int | None, blob: bytes, data: Any
) -> None:
    feed_all(impl.Decoder(protocol_version=version), [blob])
    feed_all(impl.Decoder(protocol_version=version), data.draw(chunked(blob)))


@_MORE
@given(stream=session_streams(), data=st.data())
def test_mutated_sessions_raise_only_mqtt_error(
    impl: Any, stream: tuple[int, bytes], data: Any
) -> None:
    """Edited valid client streams, fed to a server decoder, never raise anything else."""
    _, wire = stream
    bad = data.draw(mutated(wire))
    feed_all(impl.Decoder(), [bad])
    feed_all(impl.Decoder(), data.draw(chunked(bad)))


@_MORE
@given(vp=versioned_packets, data=st.data())
def test_mutated_packets_raise_only_mqtt_error(impl: Any, vp: tuple[int, Any], data: Any) -> None:
    version, pkt = vp
    bad = data.draw(mutated(impl.encode(pkt, version)))
    feed_all(impl.Decoder(protocol_version=version), [bad])
    feed_all(impl.Decoder(protocol_version=version), data.draw(chunked(bad)))


@_FAST
@given(version=st.sampled_from((3, 4, 5)), blob=st.binary(max_size=64))
def test_decoder_stays_failed_after_error(impl: Any, version: int, blob: bytes) -> None:
    """After an error the decoder raises again on the next feed (the connection must close)."""
    dec = impl.Decoder(protocol_version=version)
    _, code = feed_all(dec, [blob])
    if code is not None:
        with pytest.raises(MQTTError) as info:
            dec.feed(b"\xc0\x00")
        assert int(info.value.reason_code) == code


# --------------------------------------------------------------------------- differential


def _outcome(mod: Any, version: int | None, chunks: list[bytes]) -> tuple[list[Any], int | None]:
    return feed_all(mod.Decoder(protocol_version=version), chunks)


@_MORE
@given(version=st.sampled_from((None, 3, 4, 5)), blob=st.binary(max_size=200), data=st.data())
def test_twins_agree_on_random_bytes(
    twins: tuple[Any, Any], version: int | None, blob: bytes, data: Any
) -> None:
    cy, py = twins
    chunks = data.draw(chunked(blob))
    assert _outcome(cy, version, chunks) == _outcome(py, version, chunks)


@_FAST
@given(vp=versioned_packets, limit=st.integers(2, 80), data=st.data())
def test_twins_agree_under_a_packet_size_limit(
    twins: tuple[Any, Any], vp: tuple[int, Any], limit: int, data: Any
) -> None:
    """Same packets or the same 0x95 with any max_packet_size, whatever the chunking."""
    cy, py = twins
    version, pkt = vp
    wire = py.encode(pkt, version) * 2
    chunks = data.draw(chunked(wire))
    outcomes = [
        feed_all(mod.Decoder(protocol_version=version, max_packet_size=limit), chunks)
        for mod in (cy, py)
    ]
    assert outcomes[0] == outcomes[1]
    expect_ok = len(wire) // 2 <= limit
    assert outcomes[1] == (([pkt, pkt], None) if expect_ok else ([], 0x95))


@_MORE
@given(stream=session_streams(), data=st.data())
def test_twins_agree_on_mutated_sessions(
    twins: tuple[Any, Any], stream: tuple[int, bytes], data: Any
) -> None:
    cy, py = twins
    _, wire = stream
    bad = data.draw(mutated(wire))
    chunks = data.draw(chunked(bad))
    assert _outcome(cy, None, chunks) == _outcome(py, None, chunks)


@_MORE
@given(vp=versioned_packets, data=st.data())
def test_twins_agree_on_mutated_packets(
    twins: tuple[Any, Any], vp: tuple[int, Any], data: Any
) -> None:
    cy, py = twins
    version, pkt = vp
    bad = data.draw(mutated(py.encode(pkt, version)))
    assert _outcome(cy, version, [bad]) == _outcome(py, version, [bad])


@_MORE
@given(vp=versioned_packets)
def test_twins_encode_identical_bytes(twins: tuple[Any, Any], vp: tuple[int, Any]) -> None:
    cy, py = twins
    version, pkt = vp
    assert cy.encode(pkt, version) == py.encode(pkt, version)
    if isinstance(pkt, Publish):
        args = (pkt.topic, pkt.payload, pkt.qos, pkt.retain, pkt.dup, pkt.properties, version)
        assert cy.publish_parts(*args) == py.publish_parts(*args)


_WILD_INTS = [-1, 3, 255, 256, 65535, 65536, 70000, 2**28, 2**32, 2**64]


@st.composite
def wild_packets(draw: Any) -> tuple[int, Any]:
    """A valid packet with one integer field (or one integer property) set out of its range."""
    version, pkt = draw(versioned_packets)
    int_fields = [
        f.name
        for f in dataclasses.fields(pkt)
        if isinstance(getattr(pkt, f.name), int)
        and not isinstance(getattr(pkt, f.name), bool)
        and f.name != "protocol_version"
    ]
    props = getattr(pkt, "properties", None)
    int_props = [
        f.name
        for f in dataclasses.fields(Properties)
        if props is not None and isinstance(getattr(props, f.name), int)
    ]
    assume(int_fields or int_props)
    name = draw(st.sampled_from(int_fields + int_props))
    value = draw(st.sampled_from(_WILD_INTS))
    if name in int_fields:
        return version, dataclasses.replace(pkt, **{name: value})
    return version, dataclasses.replace(pkt, properties=dataclasses.replace(props, **{name: value}))


def _encode_outcome(mod: Any, pkt: Any, version: int) -> tuple[str, Any]:
    try:
        return "bytes", mod.encode(pkt, version)
    except (ValueError, TypeError, OverflowError) as exc:
        return "error", type(exc).__name__


@_MORE
@given(vp=wild_packets())
def test_twins_agree_on_out_of_range_fields(twins: tuple[Any, Any], vp: tuple[int, Any]) -> None:
    """An out-of-range packet id, reason code, QoS or property value: both encoders write the
    same bytes or raise the same exception type (a silently truncated packet id is a wrong
    packet on the wire)."""
    cy, py = twins
    version, pkt = vp
    assert _encode_outcome(cy, pkt, version) == _encode_outcome(py, pkt, version)


@pytest.mark.parametrize("value", [-1, 256, 2**63, 2**64])
def test_twins_agree_on_a_one_byte_property_beyond_a_c_long(
    twins: tuple[Any, Any], value: int
) -> None:
    """Found by the test above: 2**64 as Payload Format Indicator was an OverflowError in
    the Cython twin (the C conversion) and a ValueError in the pure one."""
    pkt = Publish("a", b"", 0, properties=Properties(payload_format_indicator=value))
    for mod in twins:
        assert _encode_outcome(mod, pkt, 5) == ("error", "ValueError")


# --------------------------------------------------------------------------- primitives


@_FAST
@given(value=st.integers(0, MAX_REMAINING_LENGTH), prefix=st.binary(max_size=3))
def test_varint_round_trip(impl: Any, value: int, prefix: bytes) -> None:
    enc = impl.encode_varint(value)
    assert 1 <= len(enc) <= 4
    assert impl.decode_varint(prefix + enc, len(prefix)) == (value, len(prefix) + len(enc))
    assert impl.decode_varint(prefix + enc[:-1], len(prefix)) is None  # incomplete -> need more


@_FAST
@given(blob=st.binary(max_size=6))
def test_varint_decode_random_bytes(impl: Any, blob: bytes) -> None:
    """Random bytes: a value, None (need more) or MalformedPacket [MQTT-1.5.5-1]; an accepted
    encoding is the minimal one."""
    try:
        res = impl.decode_varint(blob, 0)
    except MQTTError as err:
        assert int(err.reason_code) == 0x81
        return
    if res is not None:
        value, end = res
        assert impl.encode_varint(value) == blob[:end]  # only minimal encodings are accepted


def _ref_matches(filt: str, topic: str) -> bool:
    """Reference topic matching (4.7.1, [MQTT-4.7.2-1])."""
    if topic.startswith("$") and filt[:1] in ("+", "#"):
        return False
    f, t = filt.split("/"), topic.split("/")
    for i, level in enumerate(f):
        if level == "#":
            return True
        if i >= len(t):
            return False
        if level != "+" and level != t[i]:
            return False
    return len(f) == len(t)


_small_level = st.sampled_from(["a", "b", "", "$SYS", "+"])


@_MORE
@given(filt=topic_filters(), topic=topic_names)
def test_topic_matches_reference(impl: Any, filt: str, topic: str) -> None:
    assert impl.topic_matches(filt, topic) == _ref_matches(filt, topic)


@_FAST
@given(
    filt=st.lists(_small_level, min_size=1, max_size=4).map("/".join).filter(bool),
    topic=st.lists(st.sampled_from(["a", "b", "", "$SYS"]), min_size=1, max_size=4)
    .map("/".join)
    .filter(bool),
    hash_tail=st.booleans(),
)
def test_topic_matches_reference_dense(impl: Any, filt: str, topic: str, hash_tail: bool) -> None:
    """Small alphabets so that matches are frequent: the wildcard rules get exercised."""
    if hash_tail:
        filt += "/#"
    assert impl.topic_matches(filt, topic) == _ref_matches(filt, topic)


@_FAST
@given(
    entries=st.lists(st.tuples(topic_filters(), st.integers(0, 5)), max_size=12),
    removals=st.lists(st.integers(0, 20), max_size=4),
    topics=st.lists(topic_names, min_size=1, max_size=5),
)
def test_topic_tree_agrees_with_topic_matches(
    impl: Any, entries: list[tuple[str, int]], removals: list[int], topics: list[str]
) -> None:
    """TopicTree.match returns exactly the (filter, key) entries whose filter matches the topic."""
    if getattr(impl, "TopicTree", None) is None:
        pytest.fail(f"{impl.flavour} twin has no TopicTree yet")
    tree = impl.TopicTree()
    model: dict[tuple[str, int], str] = {}
    for filt, key in entries:
        value = f"{filt}|{key}"
        assert tree.insert(filt, key, value) == ((filt, key) not in model)
        model[(filt, key)] = value
    for r in removals:
        if entries:
            filt, key = entries[r % len(entries)]
            assert tree.remove(filt, key) == ((filt, key) in model)
            model.pop((filt, key), None)
    assert len(tree) == len(model)
    for topic in topics:
        got = sorted(tree.match(topic), key=repr)
        want = sorted(((k, v) for (f, k), v in model.items() if _ref_matches(f, topic)), key=repr)
        assert got == want
