"""Streaming MQTT decoder and packet encoders (pure-Python twin of ``_codec``).

Both twins follow the same order of checks so that they raise the same
reason code on the same input; change one, change the other.

Decoding is strict: anything the MQTT 3.1, 3.1.1 or 5.0 specification calls
malformed or a protocol error raises an :class:`MQTTError` subclass carrying
the MQTT 5 reason code and, in ``packets``, the packets that the failing
``feed`` call decoded before the bad one.

Choices the specifications leave open (documented here once):

* ``properties`` is ``None`` when a packet carries none (an empty property
  section decodes to ``None``; encoding ``None`` or an empty ``Properties``
  writes a zero property length).
* Topic *filters* are not validated by the decoder beyond MQTT UTF-8 and
  being non-empty (an empty one is malformed [MQTT-4.7.3-1]): MQTT 5 answers
  a bad filter with a per-filter SUBACK/UNSUBACK code (0x8F), which is the
  broker's decision. Topic *names* (PUBLISH, will) are validated.
* Control characters (U+0001..U+001F, U+007F..U+009F, 1.5.4) in topic names,
  topic filters, the client identifier, the user name and the will topic are
  malformed (0x81; 0x85 for the client identifier) when the decoder's
  ``allow_control_characters`` is false. The codec's default is true (the
  specification only says SHOULD NOT); the broker passes its stricter setting.
* An MQTT 3.1 (MQIsdp) CONNECT may carry flag bits in its fixed header and the
  reserved CONNECT flag: 3.1 did not call them errors (mosquitto accepts
  them). MQTT 3.1.1 and 5.0 CONNECTs with them are malformed [MQTT-2.1.3-1]
  [MQTT-3.1.2-3].
* A server-side decoder (``protocol_version=None``) also rejects packets that
  only a server sends (CONNACK, SUBACK, UNSUBACK, PINGRESP) and a second
  CONNECT [MQTT-3.1.0-2], as protocol errors.
* After a decoding error the decoder is spent: later ``feed`` calls raise the
  same error again (the connection must be closed anyway).
"""

from __future__ import annotations

import copy
import operator
import re
from collections.abc import Callable
from typing import Any

from .constants import (
    AUTH_REASON_CODES,
    CONNACK_REASON_CODES,
    DISCONNECT_REASON_CODES,
    MAX_PACKET_SIZE,
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
    ReasonCode,
)
from .errors import (
    MSG_CONTROL_CLIENT_ID,
    MSG_CONTROL_FILTER,
    MSG_CONTROL_TOPIC,
    MSG_CONTROL_USERNAME,
    MSG_CONTROL_WILL_TOPIC,
    MSG_EMPTY_FILTER,
    MalformedPacket,
    MQTTError,
    PacketTooLarge,
    ProtocolError,
)
from .packets import (
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

__all__ = ["Decoder", "encode", "encode_publish", "publish_parts"]

# Plain ints for the hot paths (IntEnum comparisons are slower).
_CONNECT, _CONNACK, _PUBLISH, _PUBACK, _PUBREC, _PUBREL, _PUBCOMP = 1, 2, 3, 4, 5, 6, 7
_SUBSCRIBE, _SUBACK, _UNSUBSCRIBE, _UNSUBACK = 8, 9, 10, 11
_PINGREQ, _PINGRESP, _DISCONNECT, _AUTH = 12, 13, 14, 15

# Fixed-header flag nibble per packet type [MQTT-2.1.3-1]; -1 = PUBLISH (free
# flags), None = reserved type 0.
_FLAGS: tuple[int | None, ...] = (None, 0, 0, -1, 0, 0, 2, 0, 2, 0, 2, 0, 0, 0, 0, 0)
# Packets only a server sends: a server-side decoder must not receive them.
_SERVER_ONLY = frozenset({_CONNACK, _SUBACK, _UNSUBACK, _PINGRESP})
_ACK_CLASSES = {_PUBACK: Puback, _PUBREC: Pubrec, _PUBREL: Pubrel, _PUBCOMP: Pubcomp}
_ACK_REASONS = {
    _PUBACK: PUBACK_REASON_CODES,
    _PUBREC: PUBREC_REASON_CODES,
    _PUBREL: PUBREL_REASON_CODES,
    _PUBCOMP: PUBCOMP_REASON_CODES,
}
_NAMES = {int(t): t.name for t in PacketType}
# C0 and C1 control characters but U+0000 (rejected by every string check) (1.5.4).
_CONTROL = re.compile("[\x01-\x1f\x7f-\x9f]")

_BYTE, _TWO, _FOUR, _VARINT, _UTF8, _BINARY, _PAIR = (
    int(t)
    for t in (
        PropertyType.BYTE,
        PropertyType.TWO_BYTE_INT,
        PropertyType.FOUR_BYTE_INT,
        PropertyType.VARINT,
        PropertyType.UTF8,
        PropertyType.BINARY,
        PropertyType.UTF8_PAIR,
    )
)
# Property id -> (attribute, value type as int, allowed packet types).
_PROPS: dict[int, tuple[str, int, frozenset[int]]] = {
    pid: (name, int(vtype), frozenset(int(t) for t in allowed))
    for pid, (name, vtype, allowed) in PROPERTY_TABLE.items()
}
# Byte properties whose only legal values are 0 and 1.
_BOOLEAN_PROPS = frozenset({0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A})
# Two/four-byte properties for which 0 is a protocol error (3.1.2.11.3, 3.1.2.11.4).
_NONZERO_PROPS = frozenset({0x21, 0x27})
# Encoding order: ascending property id, as the table is written.
_ENCODE_ORDER: tuple[tuple[bytes, str, int, frozenset[int]], ...] = tuple(
    (bytes((pid,)), name, vtype, allowed) for pid, (name, vtype, allowed) in sorted(_PROPS.items())
)
# All property values in encoding order, in one call.
_ALL_VALUES = operator.attrgetter(*(name for _, name, _, _ in _ENCODE_ORDER))
_NO_VALUES = (None,) * len(_ENCODE_ORDER)


# ---------------------------------------------------------------- readers
# Each reader takes the buffer, a position and the end of the current packet
# (or property section) and returns (value, next position).


def _read_varint(buf: Any, pos: int, end: int) -> tuple[int, int]:
    """A variable byte integer inside a packet body (1.5.5)."""
    value = 0
    shift = 0
    for i in range(4):
        if pos >= end:
            raise MalformedPacket("variable byte integer runs past the end of the packet")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            if b == 0 and i:
                raise MalformedPacket("non-minimal variable byte integer [MQTT-1.5.5-1]")
            return value, pos
        shift += 7
    raise MalformedPacket("variable byte integer longer than four bytes")


def _read_u16(buf: Any, pos: int, end: int) -> tuple[int, int]:
    if pos + 2 > end:
        raise MalformedPacket("two-byte integer runs past the end of the packet")
    return (buf[pos] << 8) | buf[pos + 1], pos + 2


def _read_binary(buf: Any, pos: int, end: int) -> tuple[bytes, int]:
    if pos + 2 > end:
        raise MalformedPacket("length prefix runs past the end of the packet")
    stop = pos + 2 + ((buf[pos] << 8) | buf[pos + 1])
    if stop > end:
        raise MalformedPacket("length prefix runs past the end of the packet")
    return bytes(buf[pos + 2 : stop]), stop


def _check_utf8(raw: bytes) -> str:
    """MQTT UTF-8 (1.5.4): well-formed, no surrogates, no U+0000."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedPacket("ill-formed UTF-8 string [MQTT-1.5.4-1]") from None
    if "\x00" in text:
        raise MalformedPacket("U+0000 in a UTF-8 string [MQTT-1.5.4-2]")
    return text


def _read_utf8(buf: Any, pos: int, end: int) -> tuple[str, int]:
    raw, pos = _read_binary(buf, pos, end)
    return _check_utf8(raw), pos


def _check_topic_name(topic: str) -> None:
    """A PUBLISH or will topic name may not hold wildcards [MQTT-3.3.2-2]."""
    if "+" in topic or "#" in topic:
        raise MQTTError(
            ReasonCode.TOPIC_NAME_INVALID, "wildcard character in a topic name [MQTT-3.3.2-2]"
        )


def _check_controls(text: str, reason: int, message: str) -> None:
    """Refuse control characters (1.5.4) when the decoder is strict about them."""
    if _CONTROL.search(text) is not None:
        raise MQTTError(reason, message)


def _read_properties(buf: Any, pos: int, end: int, ptype: int) -> tuple[Properties | None, int]:
    """The property section of an MQTT 5 packet (2.2.2)."""
    length, pos = _read_varint(buf, pos, end)
    stop = pos + length
    if stop > end:
        raise MalformedPacket("property length runs past the end of the packet")
    if length == 0:
        return None, pos
    props = Properties()
    seen: set[int] = set()
    while pos < stop:
        pid = buf[pos]
        if pid < 0x80:  # every defined identifier fits in one byte
            pos += 1
        else:
            pid, pos = _read_varint(buf, pos, stop)
        entry = _PROPS.get(pid)
        if entry is None:
            raise MalformedPacket(f"unknown property identifier 0x{pid:02X} (2.2.2.2)")
        name, vtype, allowed = entry
        if ptype not in allowed:
            raise MalformedPacket(f"property {name} not allowed in {_ptype_name(ptype)} (2.2.2.2)")
        if pid in seen:
            if pid == 0x26 or (pid == 0x0B and ptype == _PUBLISH):
                pass
            else:
                raise ProtocolError(f"property {name} included more than once (2.2.2.2)")
        else:
            seen.add(pid)
        value: Any
        if vtype == _BYTE:
            if pos >= stop:
                raise MalformedPacket("property value runs past the end of the properties")
            value = buf[pos]
            pos += 1
            if pid in _BOOLEAN_PROPS and value > 1:
                raise ProtocolError(f"property {name} must be 0 or 1, got {value}")
        elif vtype == _TWO:
            value, pos = _read_u16(buf, pos, stop)
            if value == 0:
                if pid == 0x23:
                    raise MQTTError(ReasonCode.TOPIC_ALIAS_INVALID, "topic alias 0 (3.3.2.3.4)")
                if pid in _NONZERO_PROPS:
                    raise ProtocolError(f"property {name} must not be 0")
        elif vtype == _FOUR:
            if pos + 4 > stop:
                raise MalformedPacket("property value runs past the end of the properties")
            value = int.from_bytes(buf[pos : pos + 4], "big")
            pos += 4
            if value == 0 and pid in _NONZERO_PROPS:
                raise ProtocolError(f"property {name} must not be 0")
        elif vtype == _VARINT:
            value, pos = _read_varint(buf, pos, stop)
            if value == 0:
                raise ProtocolError("subscription identifier 0 (3.3.2.3.8, 3.8.2.1.2)")
            ids = props.subscription_identifier
            if ids is None:
                props.subscription_identifier = [value]
            else:
                ids.append(value)
            continue
        elif vtype == _UTF8:
            value, pos = _read_utf8(buf, pos, stop)
        elif vtype == _BINARY:
            value, pos = _read_binary(buf, pos, stop)
        else:  # UTF-8 string pair: user property
            key, pos = _read_utf8(buf, pos, stop)
            val, pos = _read_utf8(buf, pos, stop)
            pairs = props.user_property
            if pairs is None:
                props.user_property = [(key, val)]
            else:
                pairs.append((key, val))
            continue
        setattr(props, name, value)
    if props.authentication_data is not None and props.authentication_method is None:
        raise ProtocolError("authentication data without an authentication method (3.1.2.11.10)")
    return props, stop


def _ptype_name(ptype: int) -> str:
    return "will properties" if ptype == WILL_PROPERTIES else _NAMES.get(ptype, str(ptype))


def _require_packet_id(pid: int, ptype: int) -> None:
    if pid == 0:
        raise ProtocolError(f"packet identifier 0 in {_NAMES[ptype]} [MQTT-2.2.1-3]")


def _end_of(pos: int, end: int, ptype: int) -> None:
    if pos != end:
        raise MalformedPacket(f"{end - pos} unexpected trailing bytes in {_NAMES[ptype]}")


# ---------------------------------------------------------------- packet decoders
# Signature: (buf, pos, end, flags, version) -> packet. ``buf[pos:end]`` is the
# packet body (variable header and payload).


def _decode_publish(
    buf: Any, pos: int, end: int, flags: int, version: int, controls_ok: bool = True
) -> Publish:
    qos = (flags >> 1) & 3
    if pos + 2 > end:
        raise MalformedPacket("topic length runs past the end of the PUBLISH")
    stop = pos + 2 + ((buf[pos] << 8) | buf[pos + 1])
    if stop > end:
        raise MalformedPacket("topic length runs past the end of the PUBLISH")
    topic = _check_utf8(bytes(buf[pos + 2 : stop]))
    pos = stop
    if not controls_ok and not (topic.isascii() and topic.isprintable()):  # fast path
        _check_controls(topic, ReasonCode.MALFORMED_PACKET, MSG_CONTROL_TOPIC)
    if "+" in topic or "#" in topic:
        _check_topic_name(topic)
    packet_id = 0
    if qos:
        if pos + 2 > end:
            raise MalformedPacket("packet identifier runs past the end of the PUBLISH")
        packet_id = (buf[pos] << 8) | buf[pos + 1]
        pos += 2
        if packet_id == 0:
            raise ProtocolError("packet identifier 0 in a QoS > 0 PUBLISH [MQTT-2.2.1-3]")
    props = None
    if version == 5:
        if pos < end and buf[pos] == 0:
            pos += 1
        else:
            props, pos = _read_properties(buf, pos, end, _PUBLISH)
        if not topic and (props is None or props.topic_alias is None):
            raise ProtocolError("empty topic name without a topic alias (3.3.2.1)")
    elif not topic:
        raise MQTTError(ReasonCode.TOPIC_NAME_INVALID, "empty topic name [MQTT-4.7.3-1]")
    return Publish(
        topic, bytes(buf[pos:end]), qos, bool(flags & 1), bool(flags & 8), packet_id, props
    )


def _decode_ack(buf: Any, pos: int, end: int, ptype: int, version: int) -> Any:
    """PUBACK, PUBREC, PUBREL, PUBCOMP (3.4-3.7)."""
    length = end - pos
    if length < 2 or (version != 5 and length != 2):
        raise MalformedPacket(f"{_NAMES[ptype]} with remaining length {length}")
    packet_id = (buf[pos] << 8) | buf[pos + 1]
    if packet_id == 0:
        raise ProtocolError(f"packet identifier 0 in {_NAMES[ptype]} [MQTT-2.2.1-3]")
    reason = 0
    props = None
    if length > 2:
        reason = buf[pos + 2]
        if reason not in _ACK_REASONS[ptype]:
            raise ProtocolError(f"reason code 0x{reason:02X} not allowed in {_NAMES[ptype]}")
        if length > 3:
            props, pos = _read_properties(buf, pos + 3, end, ptype)
            _end_of(pos, end, ptype)
    return _ACK_CLASSES[ptype](packet_id, reason, props)


def _decode_connect(
    buf: Any, pos: int, end: int, flags: int, version: int | None, controls_ok: bool = True
) -> Connect:
    name, pos = _read_utf8(buf, pos, end)
    if flags and name != "MQIsdp":
        # Checked here, not with the first byte: MQTT 3.1 tolerates these bits.
        raise MalformedPacket(f"reserved flag bits 0x{flags:X} in CONNECT [MQTT-2.1.3-1]")
    if pos >= end:
        raise MalformedPacket("CONNECT ends before the protocol level")
    level = buf[pos]
    pos += 1
    if name == "MQTT":
        if level != 4 and level != 5:
            raise MQTTError(
                ReasonCode.UNSUPPORTED_PROTOCOL_VERSION,
                f"protocol level {level} with protocol name MQTT [MQTT-3.1.2-2]",
            )
    elif name == "MQIsdp":
        if level != 3:
            raise MQTTError(
                ReasonCode.UNSUPPORTED_PROTOCOL_VERSION,
                f"protocol level {level} with protocol name MQIsdp [MQTT-3.1.2-2]",
            )
    else:
        raise ProtocolError(f"unknown protocol name {name!r} [MQTT-3.1.2-1]")
    if pos + 3 > end:
        raise MalformedPacket("CONNECT ends inside the variable header")
    cflags = buf[pos]
    keep_alive = (buf[pos + 1] << 8) | buf[pos + 2]
    pos += 3
    if cflags & 0x01:
        if level != 3:
            raise MalformedPacket("CONNECT reserved flag set [MQTT-3.1.2-3]")
        cflags &= 0xFE  # MQTT 3.1 did not reserve it: ignored, as mosquitto does
    will_flag = cflags & 0x04
    will_qos = (cflags >> 3) & 3
    will_retain = bool(cflags & 0x20)
    if not will_flag and (will_qos or will_retain):
        raise MalformedPacket(
            "will QoS or will retain set without the will flag [MQTT-3.1.2-13] [MQTT-3.1.2-15]"
        )
    if will_qos == 3:
        raise MalformedPacket("will QoS 3 [MQTT-3.1.2-14]")
    if level != 5 and cflags & 0x40 and not cflags & 0x80:
        raise MalformedPacket("password flag without user name flag [MQTT-3.1.2-22]")
    props = None
    if level == 5:
        props, pos = _read_properties(buf, pos, end, _CONNECT)
    client_id, pos = _read_utf8(buf, pos, end)
    if not controls_ok:
        _check_controls(client_id, ReasonCode.CLIENT_IDENTIFIER_NOT_VALID, MSG_CONTROL_CLIENT_ID)
    will = None
    if will_flag:
        will_props = None
        if level == 5:
            will_props, pos = _read_properties(buf, pos, end, WILL_PROPERTIES)
        will_topic, pos = _read_utf8(buf, pos, end)
        if not will_topic:
            raise MQTTError(ReasonCode.TOPIC_NAME_INVALID, "empty will topic [MQTT-4.7.3-1]")
        if not controls_ok:
            _check_controls(will_topic, ReasonCode.MALFORMED_PACKET, MSG_CONTROL_WILL_TOPIC)
        _check_topic_name(will_topic)
        will_payload, pos = _read_binary(buf, pos, end)
        will = Will(will_topic, will_payload, will_qos, will_retain, will_props)
    username = None
    password = None
    if cflags & 0x80:
        username, pos = _read_utf8(buf, pos, end)
        if not controls_ok:
            _check_controls(username, ReasonCode.MALFORMED_PACKET, MSG_CONTROL_USERNAME)
    if cflags & 0x40:
        password, pos = _read_binary(buf, pos, end)
    _end_of(pos, end, _CONNECT)
    return Connect(
        client_id, level, bool(cflags & 0x02), keep_alive, username, password, will, props
    )


def _connect_level(buf: Any, pos: int, end: int) -> int | None:
    """The protocol version a CONNECT announces (3, 4 or 5), or None if it names none."""
    if pos + 2 > end:
        return None
    stop = pos + 2 + ((buf[pos] << 8) | buf[pos + 1])
    if stop >= end:
        return None
    name = bytes(buf[pos + 2 : stop])
    level: int = buf[stop]
    if (name == b"MQTT" and level in (4, 5)) or (name == b"MQIsdp" and level == 3):
        return level
    return None


def _decode_connack(buf: Any, pos: int, end: int, flags: int, version: int) -> Connack:
    if end - pos < 2 or (version != 5 and end - pos != 2):
        raise MalformedPacket(f"CONNACK with remaining length {end - pos}")
    ack_flags = buf[pos]
    reason = buf[pos + 1]
    if ack_flags & 0xFE:
        raise MalformedPacket("CONNACK reserved flag bits set (3.2.2.1)")
    if version == 5:
        if reason not in CONNACK_REASON_CODES:
            raise ProtocolError(f"reason code 0x{reason:02X} not allowed in CONNACK")
    elif reason > 5:
        raise ProtocolError(f"CONNACK return code {reason} is reserved")
    if ack_flags and reason:
        raise ProtocolError("session present with a refusing CONNACK [MQTT-3.2.2-4]")
    props = None
    pos += 2
    if version == 5:
        props, pos = _read_properties(buf, pos, end, _CONNACK)
        _end_of(pos, end, _CONNACK)
    return Connack(bool(ack_flags), reason, props)


def _check_filter(filt: str, controls_ok: bool) -> None:
    """SUBSCRIBE / UNSUBSCRIBE filters: at least one character [MQTT-4.7.3-1]."""
    if not filt:
        raise MalformedPacket(MSG_EMPTY_FILTER)
    if not controls_ok:
        _check_controls(filt, ReasonCode.MALFORMED_PACKET, MSG_CONTROL_FILTER)


def _decode_subscribe(
    buf: Any, pos: int, end: int, flags: int, version: int, controls_ok: bool = True
) -> Subscribe:
    packet_id, pos = _read_u16(buf, pos, end)
    _require_packet_id(packet_id, _SUBSCRIBE)
    props = None
    if version == 5:
        props, pos = _read_properties(buf, pos, end, _SUBSCRIBE)
    subs: list[Subscription] = []
    while pos < end:
        filt, pos = _read_utf8(buf, pos, end)
        _check_filter(filt, controls_ok)
        if pos >= end:
            raise MalformedPacket("SUBSCRIBE topic filter without subscription options")
        opts = buf[pos]
        pos += 1
        qos = opts & 3
        if version == 5:
            if opts & 0xC0:
                raise MalformedPacket("reserved bits set in subscription options [MQTT-3.8.3-5]")
            if qos == 3:
                raise MalformedPacket("QoS 3 in subscription options [MQTT-3-8.3-4]")
            retain_handling = (opts >> 4) & 3
            if retain_handling == 3:
                raise ProtocolError("retain handling 3 in subscription options (3.8.3.1)")
            no_local = bool(opts & 4)
            if no_local and filt.startswith("$share/"):
                raise ProtocolError("no local on a shared subscription [MQTT-3.8.3-4]")
            subs.append(Subscription(filt, qos, no_local, bool(opts & 8), retain_handling))
        else:
            if opts & 0xFC or qos == 3:
                raise MalformedPacket("reserved bits or QoS 3 in requested QoS [MQTT-3-8.3-4]")
            subs.append(Subscription(filt, qos))
    if not subs:
        raise ProtocolError("SUBSCRIBE without topic filters [MQTT-3.8.3-3]")
    return Subscribe(packet_id, subs, props)


def _decode_suback(buf: Any, pos: int, end: int, flags: int, version: int) -> Suback:
    packet_id, pos = _read_u16(buf, pos, end)
    _require_packet_id(packet_id, _SUBACK)
    props = None
    if version == 5:
        props, pos = _read_properties(buf, pos, end, _SUBACK)
        allowed: Any = SUBACK_REASON_CODES
    else:
        allowed = (0, 1, 2, 0x80)
    codes = list(buf[pos:end])
    if not codes:
        raise ProtocolError("SUBACK without reason codes (3.9.3)")
    for code in codes:
        if code not in allowed:
            raise ProtocolError(f"reason code 0x{code:02X} not allowed in SUBACK")
    return Suback(packet_id, codes, props)


def _decode_unsubscribe(
    buf: Any, pos: int, end: int, flags: int, version: int, controls_ok: bool = True
) -> Unsubscribe:
    packet_id, pos = _read_u16(buf, pos, end)
    _require_packet_id(packet_id, _UNSUBSCRIBE)
    props = None
    if version == 5:
        props, pos = _read_properties(buf, pos, end, _UNSUBSCRIBE)
    filters: list[str] = []
    while pos < end:
        filt, pos = _read_utf8(buf, pos, end)
        _check_filter(filt, controls_ok)
        filters.append(filt)
    if not filters:
        raise ProtocolError("UNSUBSCRIBE without topic filters [MQTT-3.10.3-2]")
    return Unsubscribe(packet_id, filters, props)


def _decode_unsuback(buf: Any, pos: int, end: int, flags: int, version: int) -> Unsuback:
    if version != 5:
        if end - pos != 2:
            raise MalformedPacket(f"UNSUBACK with remaining length {end - pos}")
        packet_id = (buf[pos] << 8) | buf[pos + 1]
        _require_packet_id(packet_id, _UNSUBACK)
        return Unsuback(packet_id, [], None)
    packet_id, pos = _read_u16(buf, pos, end)
    _require_packet_id(packet_id, _UNSUBACK)
    props, pos = _read_properties(buf, pos, end, _UNSUBACK)
    codes = list(buf[pos:end])
    if not codes:
        raise ProtocolError("UNSUBACK without reason codes (3.11.3)")
    for code in codes:
        if code not in UNSUBACK_REASON_CODES:
            raise ProtocolError(f"reason code 0x{code:02X} not allowed in UNSUBACK")
    return Unsuback(packet_id, codes, props)


def _decode_ping(buf: Any, pos: int, end: int, ptype: int, version: int) -> Any:
    if end != pos:
        raise MalformedPacket(f"{_NAMES[ptype]} with remaining length {end - pos}")
    return Pingreq() if ptype == _PINGREQ else Pingresp()


def _decode_disconnect(buf: Any, pos: int, end: int, flags: int, version: int) -> Disconnect:
    if version != 5:
        if end != pos:
            raise MalformedPacket(f"DISCONNECT with remaining length {end - pos}")
        return Disconnect()
    if pos == end:
        return Disconnect()
    reason = buf[pos]
    if reason not in DISCONNECT_REASON_CODES:
        raise ProtocolError(f"reason code 0x{reason:02X} not allowed in DISCONNECT")
    props = None
    if end - pos > 1:
        props, pos = _read_properties(buf, pos + 1, end, _DISCONNECT)
        _end_of(pos, end, _DISCONNECT)
    return Disconnect(reason, props)


def _decode_auth(buf: Any, pos: int, end: int, flags: int, version: int) -> Auth:
    if pos == end:
        return Auth()
    reason = buf[pos]
    if reason not in AUTH_REASON_CODES:
        raise ProtocolError(f"reason code 0x{reason:02X} not allowed in AUTH")
    props, pos = _read_properties(buf, pos + 1, end, _AUTH)
    _end_of(pos, end, _AUTH)
    return Auth(reason, props)


_DECODERS: dict[int, Any] = {
    _CONNACK: _decode_connack,
    _SUBSCRIBE: _decode_subscribe,
    _SUBACK: _decode_suback,
    _UNSUBSCRIBE: _decode_unsubscribe,
    _UNSUBACK: _decode_unsuback,
    _DISCONNECT: _decode_disconnect,
    _AUTH: _decode_auth,
}


# ---------------------------------------------------------------- the streaming decoder


class Decoder:
    """Turns a byte stream into packets, however the stream is chunked.

    ``protocol_version`` None makes a server-side decoder: the first packet
    must be CONNECT [MQTT-3.1.0-1] and sets the version. ``max_packet_size``
    bounds the whole packet (fixed header included); a larger one raises
    :class:`PacketTooLarge` as soon as its fixed header is complete, before
    its body is buffered. ``allow_control_characters`` false makes control
    characters in topics, filters, client identifier, user name and will topic
    malformed (1.5.4). All three are plain attributes a caller may change.
    """

    __slots__ = (
        "protocol_version",
        "max_packet_size",
        "allow_control_characters",
        "_buf",
        "_server",
        "_connected",
        "_error",
    )

    def __init__(
        self,
        protocol_version: int | None = None,
        max_packet_size: int = MAX_PACKET_SIZE,
        allow_control_characters: bool = True,
    ) -> None:
        if protocol_version is not None and protocol_version not in (3, 4, 5):
            raise ValueError(f"unsupported protocol version {protocol_version!r}")
        self.protocol_version = protocol_version
        self.max_packet_size = max_packet_size
        self.allow_control_characters = allow_control_characters
        # The start of an incomplete packet; None while there is none, so an idle
        # connection's decoder holds no buffer (issue 17: memory per idle connection).
        self._buf: bytearray | None = None
        self._server = protocol_version is None
        self._connected = False
        self._error: MQTTError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held back as the start of an incomplete packet."""
        return 0 if self._buf is None else len(self._buf)

    def feed(self, data: Any) -> list[Any]:
        """Add ``data`` (any bytes-like) and return the packets it completes."""
        if self._error is not None:
            err = copy.copy(self._error)
            err.packets = []
            raise err
        buf = self._buf
        if buf is None:
            buf = bytearray(data)
        else:
            buf += data
        out: list[Any] = []
        pos = 0
        n = len(buf)
        controls_ok = self.allow_control_characters
        try:
            while pos < n:
                b0 = buf[pos]
                ptype = b0 >> 4
                flags = b0 & 0x0F
                version = self.protocol_version
                self._check_header(ptype, flags, version)
                # Remaining length (1.5.5 / 2.1.4).
                rl = 0
                shift = 0
                i = pos + 1
                while True:
                    if i >= n:
                        if i - pos > 4:
                            raise MalformedPacket("remaining length longer than four bytes")
                        return out
                    b = buf[i]
                    i += 1
                    rl |= (b & 0x7F) << shift
                    if not b & 0x80:
                        if b == 0 and i - pos > 2:
                            raise MalformedPacket("non-minimal remaining length [MQTT-1.5.5-1]")
                        break
                    if i - pos > 4:
                        raise MalformedPacket("remaining length longer than four bytes")
                    shift += 7
                end = i + rl
                if end - pos > self.max_packet_size:
                    raise PacketTooLarge(
                        f"{_NAMES[ptype]} of {end - pos} bytes exceeds the maximum packet "
                        f"size {self.max_packet_size}"
                    )
                if end > n:
                    break
                if ptype == _PUBLISH:
                    out.append(_decode_publish(buf, i, end, flags, version, controls_ok))  # type: ignore[arg-type]
                elif 4 <= ptype <= 7:
                    out.append(_decode_ack(buf, i, end, ptype, version))  # type: ignore[arg-type]
                elif ptype == _CONNECT:
                    try:
                        pkt = _decode_connect(buf, i, end, flags, version, controls_ok)
                    except MQTTError:
                        if version is None:  # so the server can answer in the client's version
                            self.protocol_version = _connect_level(buf, i, end)
                        raise
                    if version is None:
                        self.protocol_version = pkt.protocol_version
                    self._connected = True
                    out.append(pkt)
                elif ptype == _PINGREQ or ptype == _PINGRESP:
                    out.append(_decode_ping(buf, i, end, ptype, version))  # type: ignore[arg-type]
                elif ptype == _SUBSCRIBE or ptype == _UNSUBSCRIBE:
                    decode = _decode_subscribe if ptype == _SUBSCRIBE else _decode_unsubscribe
                    out.append(decode(buf, i, end, flags, version, controls_ok))  # type: ignore[arg-type]
                else:
                    out.append(_DECODERS[ptype](buf, i, end, flags, version))
                pos = end
        except MQTTError as err:
            del buf[:]
            err.packets = out
            self._error = err
            raise
        finally:
            if pos:
                del buf[:pos]
            self._buf = buf if buf else None
        return out

    def _check_header(self, ptype: int, flags: int, version: int | None) -> None:
        """Fixed-header checks that need no more than the first byte."""
        required = _FLAGS[ptype]
        if required is None:
            raise MalformedPacket("reserved packet type 0 (2.1.2)")
        if self._server:
            if not self._connected:
                if ptype != _CONNECT:
                    raise ProtocolError(
                        f"first packet is {_NAMES[ptype]}, not CONNECT [MQTT-3.1.0-1]"
                    )
            elif ptype == _CONNECT:
                raise ProtocolError("second CONNECT [MQTT-3.1.0-2]")
            elif ptype in _SERVER_ONLY:
                raise ProtocolError(f"{_NAMES[ptype]} sent to a server")
        if ptype == _AUTH and version is not None and version != 5:
            raise MalformedPacket("packet type 15 is reserved before MQTT 5")
        if required == -1:
            if flags & 6 == 6:
                raise MalformedPacket("PUBLISH with QoS 3 [MQTT-3.3.1-4]")
            if flags & 8 and not flags & 6:
                raise MalformedPacket("DUP flag set on a QoS 0 PUBLISH [MQTT-3.3.1-2]")
        elif flags != required and ptype != _CONNECT:  # CONNECT: see _decode_connect
            raise MalformedPacket(
                f"reserved flag bits 0x{flags:X} in {_NAMES[ptype]} [MQTT-2.1.3-1]"
            )


# ---------------------------------------------------------------- encoders


def _varint(value: int) -> bytes:
    if value < 128:
        return bytes((value,))
    if not 0 <= value <= 268_435_455:
        raise ValueError(f"variable byte integer out of range: {value}")
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _binary(data: Any) -> bytes:
    raw: bytes = data if type(data) is bytes else bytes(data)
    n = len(raw)
    if n > 65535:
        raise ValueError(f"string or binary data of {n} bytes exceeds 65535")
    return n.to_bytes(2, "big") + raw


def _string(text: str) -> bytes:
    return _binary(text.encode("utf-8"))


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + _varint(len(body)) + body


def _properties(props: Properties | None, ptype: int) -> bytes:
    """The property section, its length prefix included."""
    if props is None:
        return b"\x00"
    values = _ALL_VALUES(props)
    if values == _NO_VALUES:
        return b"\x00"
    parts: list[bytes] = []
    for (pid, name, vtype, allowed), value in zip(_ENCODE_ORDER, values):
        if value is None:
            continue
        if ptype not in allowed:
            raise ValueError(f"property {name} not allowed in {_ptype_name(ptype)}")
        if vtype == _BYTE:
            parts.append(pid + bytes((value,)))
        elif vtype == _TWO:
            parts.append(pid + value.to_bytes(2, "big"))
        elif vtype == _FOUR:
            parts.append(pid + value.to_bytes(4, "big"))
        elif vtype == _VARINT:
            for ident in value:
                parts.append(pid + _varint(ident))
        elif vtype == _UTF8:
            parts.append(pid + _string(value))
        elif vtype == _BINARY:
            parts.append(pid + _binary(value))
        else:
            for key, val in value:
                parts.append(pid + _string(key) + _string(val))
    body = b"".join(parts)
    return _varint(len(body)) + body


def _props_empty(props: Properties | None) -> bool:
    return props is None or _ALL_VALUES(props) == _NO_VALUES


def _payload_bytes(payload: Any) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode("utf-8")
    return bytes(payload)


def publish_parts(
    topic: str,
    payload: Any,
    qos: int = 0,
    retain: bool = False,
    dup: bool = False,
    properties: Properties | None = None,
    protocol_version: int = 4,
) -> tuple[bytes, bytes]:
    """A PUBLISH split around its packet identifier, for fan-out.

    QoS 0: the packet is ``head + tail`` and ``tail == b""``. QoS 1/2: the
    packet is ``head + packet_id.to_bytes(2, "big") + tail``.
    """
    if not 0 <= qos <= 2:
        raise ValueError(f"QoS must be 0, 1 or 2, not {qos!r}")
    first = 0x30 | (qos << 1) | (0x08 if dup else 0) | (0x01 if retain else 0)
    topic_bytes = _string(topic) if isinstance(topic, str) else _binary(topic)
    payload = _payload_bytes(payload)
    props = _properties(properties, _PUBLISH) if protocol_version == 5 else b""
    length = len(topic_bytes) + len(props) + len(payload) + (2 if qos else 0)
    head = bytes((first,)) + _varint(length) + topic_bytes
    if qos:
        return head, props + payload
    return head + props + payload, b""


def encode_publish(
    topic: str,
    payload: Any,
    qos: int = 0,
    retain: bool = False,
    dup: bool = False,
    packet_id: int = 0,
    properties: Properties | None = None,
    protocol_version: int = 4,
) -> bytes:
    """One PUBLISH packet."""
    head, tail = publish_parts(topic, payload, qos, retain, dup, properties, protocol_version)
    if qos:
        if not 1 <= packet_id <= 65535:
            raise ValueError(f"packet identifier must be 1..65535 for QoS {qos}, not {packet_id!r}")
        return head + packet_id.to_bytes(2, "big") + tail
    return head


def _encode_publish_packet(p: Publish, version: int) -> bytes:
    return encode_publish(
        p.topic, p.payload, p.qos, p.retain, p.dup, p.packet_id, p.properties, version
    )


def _encode_ack(p: Any, version: int) -> bytes:
    ptype = int(p.packet_type)
    first = 0x62 if ptype == _PUBREL else ptype << 4
    pid: bytes = p.packet_id.to_bytes(2, "big")
    if version != 5 or (p.reason_code == 0 and _props_empty(p.properties)):
        return bytes((first, 2)) + pid
    if _props_empty(p.properties):
        return bytes((first, 3)) + pid + bytes((p.reason_code,))
    return _packet(first, pid + bytes((p.reason_code,)) + _properties(p.properties, ptype))


def _encode_connect(p: Connect, version: int) -> bytes:
    if version not in (3, 4, 5):
        raise ValueError(f"unsupported protocol version {version!r}")
    flags = 0x02 if p.clean_start else 0
    will = p.will
    if will is not None:
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
    if p.password is not None:
        flags |= 0x40
    if p.username is not None:
        flags |= 0x80
    parts = [
        _string("MQIsdp" if version == 3 else "MQTT"),
        bytes((version, flags)),
        p.keep_alive.to_bytes(2, "big"),
    ]
    if version == 5:
        parts.append(_properties(p.properties, _CONNECT))
    parts.append(_string(p.client_id))
    if will is not None:
        if version == 5:
            parts.append(_properties(will.properties, WILL_PROPERTIES))
        parts.append(_string(will.topic))
        parts.append(_binary(_payload_bytes(will.payload)))
    if p.username is not None:
        parts.append(_string(p.username))
    if p.password is not None:
        parts.append(_binary(_payload_bytes(p.password)))
    return _packet(0x10, b"".join(parts))


def _encode_connack(p: Connack, version: int) -> bytes:
    body = bytes((1 if p.session_present else 0, p.reason_code))
    if version == 5:
        body += _properties(p.properties, _CONNACK)
    return _packet(0x20, body)


def _encode_subscribe(p: Subscribe, version: int) -> bytes:
    parts = [p.packet_id.to_bytes(2, "big")]
    if version == 5:
        parts.append(_properties(p.properties, _SUBSCRIBE))
    for sub in p.subscriptions:
        opts = sub.qos
        if version == 5:
            opts |= (
                (4 if sub.no_local else 0)
                | (8 if sub.retain_as_published else 0)
                | (sub.retain_handling << 4)
            )
        parts.append(_string(sub.topic_filter) + bytes((opts,)))
    return _packet(0x82, b"".join(parts))


def _encode_suback(p: Suback, version: int) -> bytes:
    body = p.packet_id.to_bytes(2, "big")
    if version == 5:
        body += _properties(p.properties, _SUBACK)
    return _packet(0x90, body + bytes(p.reason_codes))


def _encode_unsubscribe(p: Unsubscribe, version: int) -> bytes:
    parts = [p.packet_id.to_bytes(2, "big")]
    if version == 5:
        parts.append(_properties(p.properties, _UNSUBSCRIBE))
    for filt in p.topic_filters:
        parts.append(_string(filt))
    return _packet(0xA2, b"".join(parts))


def _encode_unsuback(p: Unsuback, version: int) -> bytes:
    body = p.packet_id.to_bytes(2, "big")
    if version == 5:
        body += _properties(p.properties, _UNSUBACK) + bytes(p.reason_codes)
    return _packet(0xB0, body)


def _encode_pingreq(p: Pingreq, version: int) -> bytes:
    return b"\xc0\x00"


def _encode_pingresp(p: Pingresp, version: int) -> bytes:
    return b"\xd0\x00"


def _encode_disconnect(p: Disconnect, version: int) -> bytes:
    no_props = _props_empty(p.properties)
    if version != 5 or (p.reason_code == 0 and no_props):
        return b"\xe0\x00"
    if no_props:
        return bytes((0xE0, 1, p.reason_code))
    return _packet(0xE0, bytes((p.reason_code,)) + _properties(p.properties, _DISCONNECT))


def _encode_auth(p: Auth, version: int) -> bytes:
    if version != 5:
        raise ValueError("AUTH exists only in MQTT 5")
    if p.reason_code == 0 and _props_empty(p.properties):
        return b"\xf0\x00"
    return _packet(0xF0, bytes((p.reason_code,)) + _properties(p.properties, _AUTH))


_ENCODERS: dict[type, Callable[[Any, int], bytes]] = {
    Connect: _encode_connect,
    Connack: _encode_connack,
    Publish: _encode_publish_packet,
    Puback: _encode_ack,
    Pubrec: _encode_ack,
    Pubrel: _encode_ack,
    Pubcomp: _encode_ack,
    Subscribe: _encode_subscribe,
    Suback: _encode_suback,
    Unsubscribe: _encode_unsubscribe,
    Unsuback: _encode_unsuback,
    Pingreq: _encode_pingreq,
    Pingresp: _encode_pingresp,
    Disconnect: _encode_disconnect,
    Auth: _encode_auth,
}


def encode(packet: Any, protocol_version: int = 4) -> bytes:
    """The wire bytes of ``packet`` for ``protocol_version`` (3, 4 or 5).

    MQTT 5 acknowledgements use the short forms where allowed: reason code 0
    and no properties gives a two-byte PUBACK/PUBREC/PUBREL/PUBCOMP body and
    an empty DISCONNECT/AUTH body. For CONNECT the protocol name and level
    come from ``protocol_version``.
    """
    try:
        encoder = _ENCODERS[type(packet)]
    except KeyError:
        raise TypeError(f"not an MQTT packet: {packet!r}") from None
    return encoder(packet, protocol_version)
