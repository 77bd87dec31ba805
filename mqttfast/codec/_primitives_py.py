"""MQTT data primitives, pure-Python twin of ``_primitives.pyx``.

Variable Byte Integers (1.5.5), UTF-8 Encoded Strings (1.5.4), topic name and
filter validation (4.7.1, 4.7.3) and topic filter matching (4.7.2).

Both twins raise the same exception classes with the same messages and check
faults in the same order, so a test (or a differential fuzzer) can compare them.
Order of checks for topics: empty, not UTF-8, longer than 65535 bytes, U+0000,
then wildcard rules.
"""

from __future__ import annotations

import re

from .constants import MAX_REMAINING_LENGTH, MAX_STRING_LENGTH, ReasonCode
from .errors import MalformedPacket, MQTTError

__all__ = [
    "decode_varint",
    "encode_varint",
    "decode_utf8",
    "has_discouraged_code_points",
    "validate_topic_name",
    "validate_topic_filter",
    "topic_matches",
]

BytesLike = bytes | bytearray | memoryview

# Messages shared word for word with the Cython twin.
MSG_VARINT_TOO_LONG = "variable byte integer longer than 4 bytes [MQTT-1.5.5-1]"
MSG_VARINT_NON_MINIMAL = "variable byte integer not minimally encoded [MQTT-1.5.5-1]"
MSG_VARINT_RANGE = "variable byte integer out of range 0..268435455"
MSG_UTF8_INVALID = "malformed UTF-8 string [MQTT-1.5.4-1]"
MSG_UTF8_NUL = "UTF-8 string contains U+0000 [MQTT-1.5.4-2]"
MSG_TOPIC_EMPTY = "topic name is empty [MQTT-4.7.3-1]"
MSG_TOPIC_INVALID_UTF8 = "topic name is not valid UTF-8 [MQTT-1.5.4-1]"
MSG_TOPIC_TOO_LONG = "topic name longer than 65535 bytes [MQTT-4.7.3-3]"
MSG_TOPIC_NUL = "topic name contains U+0000 [MQTT-4.7.3-2]"
MSG_TOPIC_WILDCARD = "topic name contains a wildcard [MQTT-3.3.2-2]"
MSG_FILTER_EMPTY = "topic filter is empty [MQTT-4.7.3-1]"
MSG_FILTER_INVALID_UTF8 = "topic filter is not valid UTF-8 [MQTT-1.5.4-1]"
MSG_FILTER_TOO_LONG = "topic filter longer than 65535 bytes [MQTT-4.7.3-3]"
MSG_FILTER_NUL = "topic filter contains U+0000 [MQTT-4.7.3-2]"
MSG_FILTER_HASH = "'#' must be alone in the last level of a topic filter [MQTT-4.7.1-2]"
MSG_FILTER_PLUS = "'+' must occupy a whole level of a topic filter [MQTT-4.7.1-3]"

# One-byte encodings are by far the most common; hand out shared objects.
_SMALL_VARINTS = tuple(bytes((i,)) for i in range(128))

# Code points the spec says a UTF-8 string SHOULD NOT contain (1.5.4): C0 and
# C1 controls and the Unicode non-characters (U+FDD0..U+FDEF, U+xFFFE/U+xFFFF).
_DISCOURAGED = re.compile(
    "[\x01-\x1f\x7f-\x9f\ufdd0-\ufdef"
    + "".join(chr((plane << 16) | 0xFFFE) + chr((plane << 16) | 0xFFFF) for plane in range(17))
    + "]"
)


def decode_varint(buf: BytesLike, pos: int = 0) -> tuple[int, int] | None:
    """Decode a Variable Byte Integer starting at ``buf[pos]``.

    Returns ``(value, next_pos)``, or ``None`` when ``buf`` ends before the
    last byte of the integer (the caller waits for more input).
    """
    if pos < 0:
        raise ValueError("pos must not be negative")
    n = len(buf)
    if pos >= n:
        return None
    b = buf[pos]
    if b < 0x80:
        return b, pos + 1
    value = b & 0x7F
    shift = 7
    for p in range(pos + 1, pos + 4):
        if p >= n:
            return None
        b = buf[p]
        if b < 0x80:
            if b == 0:
                # A zero last byte adds nothing: a shorter encoding existed.
                raise MalformedPacket(MSG_VARINT_NON_MINIMAL)
            return value | (b << shift), p + 1
        value |= (b & 0x7F) << shift
        shift += 7
    raise MalformedPacket(MSG_VARINT_TOO_LONG)


def encode_varint(value: int) -> bytes:
    """Encode ``value`` (0..268435455) as a minimal Variable Byte Integer."""
    if 0 <= value < 128:
        return _SMALL_VARINTS[value]
    if value < 0 or value > MAX_REMAINING_LENGTH:
        raise ValueError(MSG_VARINT_RANGE)
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def decode_utf8(buf: BytesLike) -> str:
    """Decode an MQTT UTF-8 string body (the bytes after its length prefix).

    Python's strict UTF-8 codec already rejects overlong forms, code points
    above U+10FFFF and encoded surrogates [MQTT-1.5.4-1]; U+0000 is left to us
    [MQTT-1.5.4-2].
    """
    try:
        s = str(buf, "utf-8")
    except UnicodeDecodeError:
        raise MalformedPacket(MSG_UTF8_INVALID) from None
    if "\x00" in s:
        raise MalformedPacket(MSG_UTF8_NUL)
    return s


def has_discouraged_code_points(s: str) -> bool:
    """True if ``s`` holds a control character or a Unicode non-character (1.5.4)."""
    return _DISCOURAGED.search(s) is not None


def _as_text(value: str | BytesLike, reason: int, message: str) -> str:
    if isinstance(value, str):
        return value
    try:
        return str(value, "utf-8")
    except UnicodeDecodeError:
        raise MQTTError(reason, message) from None


def _utf8_length(s: str, reason: int, message: str) -> int:
    if s.isascii():
        return len(s)
    try:
        return len(s.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate cannot be sent on the wire
        raise MQTTError(reason, message) from None


def validate_topic_name(topic: str | BytesLike) -> None:
    """Raise ``MQTTError(0x90)`` unless ``topic`` is a valid PUBLISH topic name."""
    bad = ReasonCode.TOPIC_NAME_INVALID
    topic = _as_text(topic, bad, MSG_TOPIC_INVALID_UTF8)
    if not topic:
        raise MQTTError(bad, MSG_TOPIC_EMPTY)
    if _utf8_length(topic, bad, MSG_TOPIC_INVALID_UTF8) > MAX_STRING_LENGTH:
        raise MQTTError(bad, MSG_TOPIC_TOO_LONG)
    if "\x00" in topic:
        raise MQTTError(bad, MSG_TOPIC_NUL)
    if "+" in topic or "#" in topic:
        raise MQTTError(bad, MSG_TOPIC_WILDCARD)


def validate_topic_filter(filt: str | BytesLike) -> None:
    """Raise ``MQTTError(0x8F)`` unless ``filt`` is a valid topic filter."""
    bad = ReasonCode.TOPIC_FILTER_INVALID
    filt = _as_text(filt, bad, MSG_FILTER_INVALID_UTF8)
    if not filt:
        raise MQTTError(bad, MSG_FILTER_EMPTY)
    if _utf8_length(filt, bad, MSG_FILTER_INVALID_UTF8) > MAX_STRING_LENGTH:
        raise MQTTError(bad, MSG_FILTER_TOO_LONG)
    if "\x00" in filt:
        raise MQTTError(bad, MSG_FILTER_NUL)
    if "+" not in filt and "#" not in filt:
        return
    levels = filt.split("/")
    last = len(levels) - 1
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != last):
            raise MQTTError(bad, MSG_FILTER_HASH)
        if "+" in level and level != "+":
            raise MQTTError(bad, MSG_FILTER_PLUS)


def _as_match_text(value: str | BytesLike) -> str:
    # surrogateescape maps every byte string to a distinct str, so comparing
    # levels as text gives the same answer as comparing them as bytes.
    return value if isinstance(value, str) else str(value, "utf-8", "surrogateescape")


def topic_matches(filt: str | BytesLike, topic: str | BytesLike) -> bool:
    """True if topic name ``topic`` matches topic filter ``filt`` (4.7).

    ``+`` matches exactly one level (possibly empty), ``#`` matches the parent
    level and any number of child levels, and a filter starting with a
    wildcard does not match a topic starting with ``$`` [MQTT-4.7.2-1].
    Inputs are assumed valid; invalid ones get a literal comparison.
    """
    filt = _as_match_text(filt)
    topic = _as_match_text(topic)
    if "+" not in filt and "#" not in filt:
        return filt == topic
    first = filt[0]
    if (first == "+" or first == "#") and topic[:1] == "$":
        return False
    flevels = filt.split("/")
    tlevels = topic.split("/")
    ntopic = len(tlevels)
    for i, level in enumerate(flevels):
        if level == "#":
            return True
        if i >= ntopic:
            return False
        if level != "+" and level != tlevels[i]:
            return False
    return len(flevels) == ntopic
