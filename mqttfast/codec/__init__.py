"""mqttfast.codec: a sans-IO MQTT 3.1 / 3.1.1 / 5.0 packet codec.

Bytes in, packets out; packets in, bytes out. No sockets, no asyncio: it can
be used without the broker.

Example::

    from mqttfast.codec import Decoder, Publish, MQTTError, encode

    data = encode(Publish("sensors/t1", b"21.5", qos=1, packet_id=7), 4)

    dec = Decoder(protocol_version=4)          # None: server side, first CONNECT decides
    try:
        for packet in dec.feed(data[:3]) + dec.feed(data[3:]):   # any chunking
            print(packet.topic, packet.payload)
    except MQTTError as err:                   # the only error bad input raises
        print(hex(err.reason_code), err, err.packets)

The implementation is chosen once, here: the compiled Cython twins when they
import, the pure-Python twins otherwise or when ``MQTTFAST_NO_EXTENSIONS=1``.
``IMPLEMENTATION`` says which one is active ("cython" or "python").
"""

from __future__ import annotations

from types import ModuleType

from .._impl import NO_EXTENSIONS
from .constants import *  # noqa: F403  (enums and limits, defined once)
from .constants import (
    MAX_PACKET_SIZE,
    ConnackCode311,
    PacketType,
    PropertyId,
    PropertyType,
    ProtocolVersion,
    ReasonCode,
)
from .errors import MalformedPacket, MQTTError, PacketTooLarge, ProtocolError
from .packets import (
    PACKET_CLASSES,
    Auth,
    Connack,
    Connect,
    Disconnect,
    Packet,
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


def _load_cython() -> tuple[ModuleType, ModuleType, ModuleType]:
    # All three together or none: mixing twins would make IMPLEMENTATION lie.
    # (Compiled modules: mypy sees no source for them.)
    from . import _codec, _matcher, _primitives  # type: ignore[attr-defined]

    return _primitives, _matcher, _codec


def _load_python() -> tuple[ModuleType, ModuleType, ModuleType]:
    from . import _codec_py, _matcher_py, _primitives_py

    return _primitives_py, _matcher_py, _codec_py


if NO_EXTENSIONS:
    _prim, _match, _cod = _load_python()
    IMPLEMENTATION = "python"
else:
    try:
        _prim, _match, _cod = _load_cython()
        IMPLEMENTATION = "cython"
    except ImportError:
        _prim, _match, _cod = _load_python()
        IMPLEMENTATION = "python"

decode_varint = _prim.decode_varint
encode_varint = _prim.encode_varint
decode_utf8 = _prim.decode_utf8
has_discouraged_code_points = _prim.has_discouraged_code_points
validate_topic_name = _prim.validate_topic_name
validate_topic_filter = _prim.validate_topic_filter
topic_matches = _prim.topic_matches
TopicTree = _match.TopicTree
Decoder = _cod.Decoder
encode = _cod.encode
encode_publish = _cod.encode_publish
publish_parts = _cod.publish_parts

del _load_cython, _load_python, _prim, _match, _cod

__all__ = [
    "IMPLEMENTATION",
    # codec
    "Decoder",
    "encode",
    "encode_publish",
    "publish_parts",
    # primitives
    "decode_varint",
    "encode_varint",
    "decode_utf8",
    "has_discouraged_code_points",
    "validate_topic_name",
    "validate_topic_filter",
    "topic_matches",
    "TopicTree",
    # errors
    "MQTTError",
    "MalformedPacket",
    "ProtocolError",
    "PacketTooLarge",
    # packets
    "Packet",
    "PACKET_CLASSES",
    "Properties",
    "Will",
    "Subscription",
    "Connect",
    "Connack",
    "Publish",
    "Puback",
    "Pubrec",
    "Pubrel",
    "Pubcomp",
    "Subscribe",
    "Suback",
    "Unsubscribe",
    "Unsuback",
    "Pingreq",
    "Pingresp",
    "Disconnect",
    "Auth",
    # constants (the rest are importable too, see constants.py)
    "ReasonCode",
    "PacketType",
    "PropertyId",
    "PropertyType",
    "ProtocolVersion",
    "ConnackCode311",
    "MAX_PACKET_SIZE",
]
