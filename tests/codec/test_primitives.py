"""MQTT data primitives (both twins): Variable Byte Integer (1.5.5), UTF-8
Encoded Strings (1.5.4), topic names/filters (4.7).

Vectors come from the MQTT 3.1.1 and 5.0 specifications; the statement a test
checks is named in its name or docstring.
"""

from __future__ import annotations

import importlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mqttfast._impl import NO_EXTENSIONS
from mqttfast.codec.constants import ReasonCode
from mqttfast.codec.errors import MalformedPacket, MQTTError

# --- Variable Byte Integer (1.5.5) ------------------------------------------

# Table 1.5.5 (5.0) / Table 2.4 (3.1.1): the edges of each encoded size.
VARINT_TABLE = [
    (0, b"\x00"),
    (127, b"\x7f"),
    (128, b"\x80\x01"),
    (16_383, b"\xff\x7f"),
    (16_384, b"\x80\x80\x01"),
    (2_097_151, b"\xff\xff\x7f"),
    (2_097_152, b"\x80\x80\x80\x01"),
    (268_435_455, b"\xff\xff\xff\x7f"),
]


@pytest.mark.parametrize("value,encoded", VARINT_TABLE)
def test_varint_table_1_5_5_encode(impl, value, encoded):
    assert impl.encode_varint(value) == encoded


@pytest.mark.parametrize("value,encoded", VARINT_TABLE)
def test_varint_table_1_5_5_decode(impl, value, encoded):
    assert impl.decode_varint(encoded, 0) == (value, len(encoded))


@pytest.mark.parametrize("buftype", [bytes, bytearray, memoryview])
def test_varint_decode_at_offset_from_any_buffer(impl, buftype):
    buf = buftype(b"\x30\xff\x7f\x99")
    assert impl.decode_varint(buf, 1) == (16_383, 3)
    assert impl.decode_varint(memoryview(b"\x30\xff\x7f\x99")[1:], 0) == (16_383, 2)


@pytest.mark.parametrize("partial", [b"", b"\x80", b"\xff\xff", b"\xff\xff\xff"])
def test_varint_incomplete_returns_none(impl, partial):
    """A Remaining Length still arriving is not an error: ask for more bytes."""
    assert impl.decode_varint(partial, 0) is None
    assert impl.decode_varint(b"\x10" + partial, 1) is None


def test_varint_position_past_end_returns_none(impl):
    assert impl.decode_varint(b"\x01", 1) is None
    assert impl.decode_varint(b"\x01", 5) is None


def test_varint_negative_position_is_a_caller_bug(impl):
    with pytest.raises(ValueError):
        impl.decode_varint(b"\x01", -1)


@pytest.mark.parametrize(
    "data",
    [b"\xff\xff\xff\xff\x7f", b"\x80\x80\x80\x80\x01", b"\xff\xff\xff\xff"],
)
def test_varint_more_than_four_bytes_is_malformed_MQTT_1_5_5_1(impl, data):
    """At most four bytes: a fourth byte with the continuation bit is malformed,
    even before a fifth byte arrives."""
    with pytest.raises(MalformedPacket) as exc:
        impl.decode_varint(data, 0)
    assert exc.value.reason_code == ReasonCode.MALFORMED_PACKET


@pytest.mark.parametrize("data", [b"\x80\x00", b"\xff\x00", b"\x80\x80\x00", b"\x81\x80\x80\x00"])
def test_varint_non_minimal_is_malformed_MQTT_1_5_5_1(impl, data):
    """[MQTT-1.5.5-1] The encoded value MUST use the minimum number of bytes."""
    with pytest.raises(MalformedPacket) as exc:
        impl.decode_varint(data, 0)
    assert exc.value.reason_code == 0x81
    assert "[MQTT-1.5.5-1]" in str(exc.value)


@pytest.mark.parametrize("value", [-1, 268_435_456, 2**40, 2**70])
def test_varint_encode_out_of_range(impl, value):
    with pytest.raises(ValueError):
        impl.encode_varint(value)


@given(st.integers(0, 268_435_455), st.binary(max_size=3))
def test_varint_roundtrip_property(impl, value, tail):
    enc = impl.encode_varint(value)
    assert 1 <= len(enc) <= 4
    assert impl.decode_varint(enc + tail, 0) == (value, len(enc))
    # every strict prefix is "need more"
    for cut in range(len(enc)):
        assert impl.decode_varint(enc[:cut], 0) is None


@given(st.binary(max_size=8), st.integers(0, 8))
def test_varint_random_bytes_only_raise_malformed(impl, data, pos):
    try:
        res = impl.decode_varint(data, pos)
    except MalformedPacket:
        return
    if res is not None:
        value, nxt = res
        assert impl.encode_varint(value) == bytes(data[pos:nxt])


# --- UTF-8 Encoded Strings (1.5.4) ------------------------------------------


def test_utf8_spec_example_U_2A6D4(impl):
    """Figure 1.6 (3.1.1) / 1-1 (5.0): "A" followed by U+2A6D4 is
    0x00 0x05 0x41 0xF0 0xAA 0x9B 0x94 on the wire."""
    wire = bytes([0x00, 0x05, 0x41, 0xF0, 0xAA, 0x9B, 0x94])
    length = int.from_bytes(wire[:2], "big")
    assert impl.decode_utf8(wire[2 : 2 + length]) == "A\U0002a6d4"
    assert impl.decode_utf8(memoryview(wire)[2:]) == "A\U0002a6d4"
    assert impl.decode_utf8(bytearray(wire[2:])) == "A\U0002a6d4"


@pytest.mark.parametrize(
    "text", ["", "a/b", "héllo", "日本語/トピック", "\U0001f600", "x" * 70_000, "\x7f\x01"]
)
def test_utf8_valid_strings_decode(impl, text):
    assert impl.decode_utf8(text.encode()) == text


@pytest.mark.parametrize(
    "data",
    [b"\x00", b"abc\x00", b"\x00def", b"a" * 20 + b"\x00" + b"b" * 20],
)
def test_utf8_null_character_is_malformed_MQTT_1_5_4_2(impl, data):
    """[MQTT-1.5.4-2] A UTF-8 Encoded String MUST NOT include U+0000."""
    with pytest.raises(MalformedPacket, match=r"MQTT-1\.5\.4-2"):
        impl.decode_utf8(data)


@pytest.mark.parametrize(
    "data",
    [
        b"\xed\xa0\x80",  # U+D800 encoded CESU-style
        b"\xed\xbf\xbf",  # U+DFFF
        b"\xed\xa0\xbd\xed\xb8\x80",  # surrogate pair for U+1F600, CESU-8
        b"ok\xed\xb0\x80",
    ],
)
def test_utf8_surrogates_are_malformed_MQTT_1_5_4_1(impl, data):
    """[MQTT-1.5.4-1] The data MUST NOT include encodings of U+D800..U+DFFF."""
    with pytest.raises(MalformedPacket, match=r"MQTT-1\.5\.4-1"):
        impl.decode_utf8(data)


@pytest.mark.parametrize(
    "data",
    [
        b"\xc0\x80",  # overlong U+0000 (Java "modified UTF-8")
        b"\xc1\xbf",  # overlong U+007F
        b"\xe0\x80\xaf",  # overlong "/"
        b"\xf0\x82\x82\xac",  # overlong U+20AC
        b"\xf4\x90\x80\x80",  # U+110000, beyond Unicode
        b"\xf5\x80\x80\x80",
        b"\xff",
        b"\x80",  # continuation without lead
        b"\xc3",  # truncated 2-byte
        b"\xe6\x97",  # truncated 3-byte
        b"\xf0\xaa\x9b",  # truncated 4-byte (the spec example, cut)
        b"A\xf0\xaa\x9b",
        b"\xc3\x28",  # bad continuation
    ],
)
def test_utf8_ill_formed_is_malformed_MQTT_1_5_4_1(impl, data):
    """[MQTT-1.5.4-1] Ill-formed UTF-8 (overlong, truncated, > U+10FFFF) is
    a Malformed Packet."""
    with pytest.raises(MalformedPacket) as exc:
        impl.decode_utf8(data)
    assert exc.value.reason_code == ReasonCode.MALFORMED_PACKET


def test_utf8_ill_formed_wins_over_null(impl):
    with pytest.raises(MalformedPacket, match=r"MQTT-1\.5\.4-1"):
        impl.decode_utf8(b"\x00" + b"a" * 30 + b"\xc0\x80")


@given(st.text())
def test_utf8_roundtrip_property(impl, text):
    data = text.encode("utf-8", "surrogatepass")
    bad = "\x00" in text or any(0xD800 <= ord(c) <= 0xDFFF for c in text)
    if bad:
        with pytest.raises(MalformedPacket):
            impl.decode_utf8(data)
    else:
        assert impl.decode_utf8(data) == text


@given(st.binary(max_size=24))
def test_utf8_random_bytes_match_python_strict_codec(impl, data):
    try:
        expected = data.decode("utf-8")
    except UnicodeDecodeError:
        expected = None
    if expected is None or "\x00" in expected:
        with pytest.raises(MalformedPacket):
            impl.decode_utf8(data)
    else:
        assert impl.decode_utf8(data) == expected


@pytest.mark.parametrize(
    "text",
    [
        "\x01",
        "a\x1fb",
        "\x7f",
        "\x80",
        "\x9f",
        "\ufdd0",
        "\ufdef",
        "\ufffe",
        "\uffff",
        "\U0001fffe",
        "\U0010ffff",
        "ok\U0002fffe",
    ],
)
def test_discouraged_code_points_1_5_4(impl, text):
    """1.5.4: control characters and non-characters SHOULD NOT be sent."""
    assert impl.has_discouraged_code_points(text) is True


@pytest.mark.parametrize(
    "text", ["", "plain/topic", " ", "\xa0", "\ufdcf", "\ufdf0", "\ufffd", "\U0002a6d4", "é"]
)
def test_not_discouraged_code_points(impl, text):
    assert impl.has_discouraged_code_points(text) is False


@given(st.text())
def test_discouraged_matches_definition(impl, text):
    def discouraged(c: str) -> bool:
        cp = ord(c)
        return (
            0x01 <= cp <= 0x1F
            or 0x7F <= cp <= 0x9F
            or 0xFDD0 <= cp <= 0xFDEF
            or (cp & 0xFFFE) == 0xFFFE
        )

    assert impl.has_discouraged_code_points(text) is any(discouraged(c) for c in text)


# --- Topic names and filters (4.7) ------------------------------------------

VALID_NAMES = [
    "sport/tennis/player1",
    "sport/tennis/player1/ranking",
    "/finance",
    "/",
    "//",
    "sport/",
    " ",
    "$SYS/broker/clients",
    "ünïcode/トピック",
    "a" * 65_535,
]


@pytest.mark.parametrize("topic", VALID_NAMES)
def test_valid_topic_names(impl, topic):
    assert impl.validate_topic_name(topic) is None
    assert impl.validate_topic_name(topic.encode()) is None


def _reason(fn, arg) -> int:
    with pytest.raises(MQTTError) as exc:
        fn(arg)
    return exc.value.reason_code


@pytest.mark.parametrize("topic", ["sport/+", "#", "sport/tennis/#", "a+b", "x#"])
def test_topic_name_with_wildcard_is_invalid_MQTT_3_3_2_2(impl, topic):
    """[MQTT-3.3.2-2] / [MQTT-4.7.1-1] no wildcards in a Topic Name: 0x90."""
    assert _reason(impl.validate_topic_name, topic) == ReasonCode.TOPIC_NAME_INVALID


def test_empty_topic_name_and_filter_MQTT_4_7_3_1(impl):
    """[MQTT-4.7.3-1] Topic Names and Filters MUST be at least one character."""
    assert _reason(impl.validate_topic_name, "") == 0x90
    assert _reason(impl.validate_topic_filter, "") == 0x8F
    assert _reason(impl.validate_topic_name, b"") == 0x90


def test_null_character_in_topic_MQTT_4_7_3_2(impl):
    """[MQTT-4.7.3-2] Topic Names and Filters MUST NOT include U+0000."""
    with pytest.raises(MQTTError, match=r"MQTT-4\.7\.3-2") as exc:
        impl.validate_topic_name("a/\x00/b")
    assert exc.value.reason_code == 0x90
    assert _reason(impl.validate_topic_filter, "a/\x00/#") == 0x8F


def test_topic_longer_than_65535_bytes_MQTT_4_7_3_3(impl):
    """[MQTT-4.7.3-3] at most 65,535 bytes once UTF-8 encoded (not characters)."""
    assert _reason(impl.validate_topic_name, "a" * 65_536) == 0x90
    assert _reason(impl.validate_topic_filter, "a" * 65_536) == 0x8F
    assert _reason(impl.validate_topic_name, "é" * 32_768) == 0x90  # 65,536 bytes
    impl.validate_topic_name("é" * 32_767 + "a")  # 65,535 bytes: fine
    impl.validate_topic_filter("é" * 32_766 + "/#")


def test_topic_with_lone_surrogate_is_invalid(impl):
    """A str with a lone surrogate has no UTF-8 form [MQTT-1.5.4-1]."""
    assert _reason(impl.validate_topic_name, "a\ud800") == 0x90
    assert _reason(impl.validate_topic_filter, "a\udfff/#") == 0x8F


def test_topic_bytes_not_utf8_is_invalid(impl):
    assert _reason(impl.validate_topic_name, b"a\xc0\x80") == 0x90
    assert _reason(impl.validate_topic_filter, bytearray(b"\xed\xa0\x80/+")) == 0x8F


VALID_FILTERS = [
    "sport/tennis/player1/#",
    "sport/#",
    "#",
    "+",
    "sport/tennis/+",
    "+/tennis/#",
    "sport/+/player1",
    "+/+",
    "/+",
    "+/",
    "$SYS/#",
    "$share/group/a/+",
    "a//b",
]


@pytest.mark.parametrize("filt", VALID_FILTERS)
def test_valid_topic_filters_4_7_1(impl, filt):
    assert impl.validate_topic_filter(filt) is None
    assert impl.validate_topic_filter(memoryview(filt.encode())) is None


@pytest.mark.parametrize("filt", ["sport/tennis#", "sport/tennis/#/ranking", "#/", "##", "a/#b"])
def test_hash_not_alone_last_is_invalid_MQTT_4_7_1_2(impl, filt):
    """[MQTT-4.7.1-2] '#' on its own (or after a separator) and last."""
    with pytest.raises(MQTTError, match=r"MQTT-4\.7\.1-2") as exc:
        impl.validate_topic_filter(filt)
    assert exc.value.reason_code == ReasonCode.TOPIC_FILTER_INVALID


@pytest.mark.parametrize("filt", ["sport+", "sport/+tennis", "++", "a/b+/c", "+a"])
def test_plus_not_whole_level_is_invalid_MQTT_4_7_1_3(impl, filt):
    """[MQTT-4.7.1-3] '+' MUST occupy an entire level of the filter."""
    with pytest.raises(MQTTError, match=r"MQTT-4\.7\.1-3") as exc:
        impl.validate_topic_filter(filt)
    assert exc.value.reason_code == 0x8F


# --- Topic matching (4.7.1, 4.7.2) ------------------------------------------

MATCH_CASES = [
    # 4.7.1.2: "sport/tennis/player1/#" matches these
    ("sport/tennis/player1/#", "sport/tennis/player1", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
    ("sport/tennis/player1/#", "sport/tennis/player2", False),
    # "sport/#" also matches the singular "sport" (parent level)
    ("sport/#", "sport", True),
    ("sport/#", "sport/", True),
    ("#", "sport/tennis", True),
    ("#", "/", True),
    # 4.7.1.3: "sport/tennis/+" matches one level only
    ("sport/tennis/+", "sport/tennis/player1", True),
    ("sport/tennis/+", "sport/tennis/player2", True),
    ("sport/tennis/+", "sport/tennis/player1/ranking", False),
    ("sport/tennis/+", "sport/tennis", False),
    # "sport/+" does not match "sport" but matches "sport/"
    ("sport/+", "sport", False),
    ("sport/+", "sport/", True),
    ("+", "sport", True),
    ("+", "/finance", False),
    # "+/+" and "/+" both match "/finance"
    ("+/+", "/finance", True),
    ("/+", "/finance", True),
    ("+/monitor/Clients", "a/monitor/Clients", True),
    ("+/tennis/#", "sport/tennis/player1/ranking", True),
    ("sport/+/player1", "sport/tennis/player1", True),
    ("sport/+/player1", "sport/tennis/player2", False),
    ("a/+/+/d", "a/b/c/d", True),
    ("a//b", "a//b", True),
    ("+//+", "a//b", True),
    # exact filters
    ("sport/tennis", "sport/tennis", True),
    ("sport/tennis", "sport/Tennis", False),
    ("sport/tennis", "sport/tennis/", False),
    ("ACCOUNTS", "Accounts", False),
    ("/finance", "finance", False),
    ("é/+", "é/ü", True),
]


@pytest.mark.parametrize("filt,topic,expected", MATCH_CASES)
def test_topic_matches_4_7(impl, filt, topic, expected):
    assert impl.topic_matches(filt, topic) is expected
    assert impl.topic_matches(filt.encode(), topic.encode()) is expected


DOLLAR_CASES = [
    ("#", "$SYS/broker/clients", False),
    ("+/monitor/Clients", "$SYS/monitor/Clients", False),
    ("+", "$SYS", False),
    ("+/#", "$SYS/a", False),
    ("$SYS/#", "$SYS/monitor/Clients", True),
    ("$SYS/monitor/+", "$SYS/monitor/Clients", True),
    ("$SYS/#", "$SYS", True),
    ("$share/#", "$share/x", True),
    ("a/+", "a/$b", True),
    ("a/#", "a/$b/c", True),
]


@pytest.mark.parametrize("filt,topic,expected", DOLLAR_CASES)
def test_dollar_topics_not_matched_by_leading_wildcard_MQTT_4_7_2_1(impl, filt, topic, expected):
    """[MQTT-4.7.2-1] The Server MUST NOT match Topic Filters starting with a
    wildcard character (# or +) with Topic Names beginning with a $."""
    assert impl.topic_matches(filt, topic) is expected


def _reference_match(filt: str, topic: str) -> bool:
    """Straightforward recursive definition of 4.7, independent of both twins."""
    if filt[:1] in ("+", "#") and topic[:1] == "$":
        return False

    def rec(f: list[str], t: list[str]) -> bool:
        if not f:
            return not t
        if f[0] == "#":
            return True
        if not t:
            return False
        return (f[0] == "+" or f[0] == t[0]) and rec(f[1:], t[1:])

    return rec(filt.split("/"), topic.split("/"))


_level = st.sampled_from(["a", "b", "", "$x", "é", "aa"])
_topics = st.lists(_level, min_size=1, max_size=5).map("/".join).filter(bool)
_filters = (
    st.lists(st.sampled_from(["a", "b", "", "+", "$x", "é"]), min_size=1, max_size=5)
    .flatmap(lambda lv: st.booleans().map(lambda h: "/".join(lv + (["#"] if h else []))))
    .filter(bool)
)


@given(_filters, _topics)
@settings(max_examples=400)
def test_topic_matches_agrees_with_reference(impl, filt, topic):
    impl.validate_topic_filter(filt)
    assert impl.topic_matches(filt, topic) is _reference_match(filt, topic)


# --- Twins agree on every input, errors included ----------------------------


def _outcome(fn, *args):
    try:
        return ("ok", fn(*args))
    except MQTTError as exc:
        return (type(exc).__name__, int(exc.reason_code), exc.message)
    except (ValueError, TypeError) as exc:
        return (type(exc).__name__,)


@pytest.mark.skipif(NO_EXTENSIONS, reason="MQTTFAST_NO_EXTENSIONS=1: only the pure twin exists")
@given(
    st.binary(max_size=12),
    st.text(alphabet=st.sampled_from("ab/+#$\x00é\ud800\x01\ufffe"), max_size=8),
    st.text(alphabet=st.sampled_from("ab/+#$\x00é\ud800"), max_size=8),
    st.integers(0, 12),
)
@settings(max_examples=500)
def test_cython_and_pure_twins_agree(data, text, other, pos):
    cy = importlib.import_module("mqttfast.codec._primitives")
    py = importlib.import_module("mqttfast.codec._primitives_py")
    for name, args in [
        ("decode_varint", (data, pos)),
        ("decode_utf8", (data,)),
        ("validate_topic_name", (data,)),
        ("validate_topic_filter", (data,)),
        ("validate_topic_name", (text,)),
        ("validate_topic_filter", (text,)),
        ("has_discouraged_code_points", (text,)),
        ("topic_matches", (text, other)),
        (
            "topic_matches",
            (text.encode("utf-8", "surrogatepass"), other.encode("utf-8", "surrogatepass")),
        ),
    ]:
        assert _outcome(getattr(cy, name), *args) == _outcome(getattr(py, name), *args), (
            name,
            args,
        )


@pytest.mark.parametrize("value", [1.5, 200.0, "7", None])
def test_varint_encode_rejects_non_integers(impl, value):
    with pytest.raises(TypeError):
        impl.encode_varint(value)


@pytest.mark.parametrize("fn", ["validate_topic_name", "validate_topic_filter", "decode_utf8"])
def test_non_text_input_is_a_type_error_not_an_mqtt_error(impl, fn):
    """None is a caller bug, not an empty topic from the network."""
    with pytest.raises(TypeError):
        getattr(impl, fn)(None)
