"""Protocol constants, defined once for both implementation twins.

Numbers come from the MQTT 3.1.1 (OASIS, 2014) and MQTT 5.0 (OASIS, 2019)
specifications; section numbers are given where a value is defined.
"""

from __future__ import annotations

from enum import IntEnum


class ProtocolVersion(IntEnum):
    """The protocol level byte of CONNECT (3.1.2.2 / 3.1.2.2 in 5.0)."""

    MQTT_3_1 = 3  # protocol name "MQIsdp"
    MQTT_3_1_1 = 4  # protocol name "MQTT"
    MQTT_5 = 5  # protocol name "MQTT"


class PacketType(IntEnum):
    """Control packet types, the high nibble of the fixed header (2.1.2)."""

    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15  # MQTT 5 only


# Fixed-header flag nibble each packet type must carry [MQTT-2.1.3-1].
# PUBLISH is absent: its flags are DUP, QoS and RETAIN.
REQUIRED_FLAGS: dict[int, int] = {
    PacketType.CONNECT: 0,
    PacketType.CONNACK: 0,
    PacketType.PUBACK: 0,
    PacketType.PUBREC: 0,
    PacketType.PUBREL: 2,
    PacketType.PUBCOMP: 0,
    PacketType.SUBSCRIBE: 2,
    PacketType.SUBACK: 0,
    PacketType.UNSUBSCRIBE: 2,
    PacketType.UNSUBACK: 0,
    PacketType.PINGREQ: 0,
    PacketType.PINGRESP: 0,
    PacketType.DISCONNECT: 0,
    PacketType.AUTH: 0,
}

# The largest Remaining Length a four-byte variable byte integer holds (1.5.5).
MAX_REMAINING_LENGTH = 268_435_455
# The largest packet: one type byte, four length bytes, and the body.
MAX_PACKET_SIZE = MAX_REMAINING_LENGTH + 5
MAX_PACKET_ID = 65_535
MAX_TOPIC_ALIAS = 65_535
MAX_SUBSCRIPTION_IDENTIFIER = 268_435_455
# Strings are prefixed with a two-byte length (1.5.4).
MAX_STRING_LENGTH = 65_535
# Session Expiry Interval meaning "never expires" (3.1.2.11.2).
SESSION_EXPIRY_NEVER = 0xFFFFFFFF


class ReasonCode(IntEnum):
    """MQTT 5 reason codes (2.4). Several share a value; aliases are named
    after the packet they appear in (GRANTED_QOS_0 == SUCCESS == 0)."""

    SUCCESS = 0x00
    NORMAL_DISCONNECTION = 0x00
    GRANTED_QOS_0 = 0x00
    GRANTED_QOS_1 = 0x01
    GRANTED_QOS_2 = 0x02
    DISCONNECT_WITH_WILL_MESSAGE = 0x04
    NO_MATCHING_SUBSCRIBERS = 0x10
    NO_SUBSCRIPTION_EXISTED = 0x11
    CONTINUE_AUTHENTICATION = 0x18
    REAUTHENTICATE = 0x19
    UNSPECIFIED_ERROR = 0x80
    MALFORMED_PACKET = 0x81
    PROTOCOL_ERROR = 0x82
    IMPLEMENTATION_SPECIFIC_ERROR = 0x83
    UNSUPPORTED_PROTOCOL_VERSION = 0x84
    CLIENT_IDENTIFIER_NOT_VALID = 0x85
    BAD_USER_NAME_OR_PASSWORD = 0x86
    NOT_AUTHORIZED = 0x87
    SERVER_UNAVAILABLE = 0x88
    SERVER_BUSY = 0x89
    BANNED = 0x8A
    SERVER_SHUTTING_DOWN = 0x8B
    BAD_AUTHENTICATION_METHOD = 0x8C
    KEEP_ALIVE_TIMEOUT = 0x8D
    SESSION_TAKEN_OVER = 0x8E
    TOPIC_FILTER_INVALID = 0x8F
    TOPIC_NAME_INVALID = 0x90
    PACKET_IDENTIFIER_IN_USE = 0x91
    PACKET_IDENTIFIER_NOT_FOUND = 0x92
    RECEIVE_MAXIMUM_EXCEEDED = 0x93
    TOPIC_ALIAS_INVALID = 0x94
    PACKET_TOO_LARGE = 0x95
    MESSAGE_RATE_TOO_HIGH = 0x96
    QUOTA_EXCEEDED = 0x97
    ADMINISTRATIVE_ACTION = 0x98
    PAYLOAD_FORMAT_INVALID = 0x99
    RETAIN_NOT_SUPPORTED = 0x9A
    QOS_NOT_SUPPORTED = 0x9B
    USE_ANOTHER_SERVER = 0x9C
    SERVER_MOVED = 0x9D
    SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E
    CONNECTION_RATE_EXCEEDED = 0x9F
    MAXIMUM_CONNECT_TIME = 0xA0
    SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1
    WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xA2


class ConnackCode311(IntEnum):
    """CONNACK return codes of MQTT 3.1 and 3.1.1 (3.2.2.3)."""

    ACCEPTED = 0
    UNACCEPTABLE_PROTOCOL_VERSION = 1
    IDENTIFIER_REJECTED = 2
    SERVER_UNAVAILABLE = 3
    BAD_USER_NAME_OR_PASSWORD = 4
    NOT_AUTHORIZED = 5


# SUBACK return code for a refused subscription in 3.1.1 (3.9.3).
SUBACK_FAILURE_311 = 0x80

# The reason codes each MQTT 5 acknowledgement may carry (3.4.2.1, 3.5.2.1,
# 3.6.2.1, 3.7.2.1, 3.9.3, 3.11.3, 3.14.2.1, 3.15.2.1, 3.2.2.2).
PUBACK_REASON_CODES = frozenset({0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99})
PUBREC_REASON_CODES = PUBACK_REASON_CODES
PUBREL_REASON_CODES = frozenset({0x00, 0x92})
PUBCOMP_REASON_CODES = PUBREL_REASON_CODES
SUBACK_REASON_CODES = frozenset(
    {0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2}
)
UNSUBACK_REASON_CODES = frozenset({0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91})
DISCONNECT_REASON_CODES = frozenset(
    {
        0x00,
        0x04,
        0x80,
        0x81,
        0x82,
        0x83,
        0x87,
        0x89,
        0x8B,
        0x8D,
        0x8E,
        0x8F,
        0x90,
        0x93,
        0x94,
        0x95,
        0x96,
        0x97,
        0x98,
        0x99,
        0x9A,
        0x9B,
        0x9C,
        0x9D,
        0x9E,
        0x9F,
        0xA0,
        0xA1,
        0xA2,
    }
)
AUTH_REASON_CODES = frozenset({0x00, 0x18, 0x19})
CONNACK_REASON_CODES = frozenset(
    {
        0x00,
        0x80,
        0x81,
        0x82,
        0x83,
        0x84,
        0x85,
        0x86,
        0x87,
        0x88,
        0x89,
        0x8A,
        0x8C,
        0x90,
        0x95,
        0x97,
        0x99,
        0x9A,
        0x9B,
        0x9C,
        0x9D,
        0x9F,
    }
)


class PropertyType(IntEnum):
    """How a property value is encoded (2.2.2.2)."""

    BYTE = 1
    TWO_BYTE_INT = 2
    FOUR_BYTE_INT = 3
    VARINT = 4
    UTF8 = 5
    BINARY = 6
    UTF8_PAIR = 7


class PropertyId(IntEnum):
    """MQTT 5 property identifiers (2.2.2.2)."""

    PAYLOAD_FORMAT_INDICATOR = 0x01
    MESSAGE_EXPIRY_INTERVAL = 0x02
    CONTENT_TYPE = 0x03
    RESPONSE_TOPIC = 0x08
    CORRELATION_DATA = 0x09
    SUBSCRIPTION_IDENTIFIER = 0x0B
    SESSION_EXPIRY_INTERVAL = 0x11
    ASSIGNED_CLIENT_IDENTIFIER = 0x12
    SERVER_KEEP_ALIVE = 0x13
    AUTHENTICATION_METHOD = 0x15
    AUTHENTICATION_DATA = 0x16
    REQUEST_PROBLEM_INFORMATION = 0x17
    WILL_DELAY_INTERVAL = 0x18
    REQUEST_RESPONSE_INFORMATION = 0x19
    RESPONSE_INFORMATION = 0x1A
    SERVER_REFERENCE = 0x1C
    REASON_STRING = 0x1F
    RECEIVE_MAXIMUM = 0x21
    TOPIC_ALIAS_MAXIMUM = 0x22
    TOPIC_ALIAS = 0x23
    MAXIMUM_QOS = 0x24
    RETAIN_AVAILABLE = 0x25
    USER_PROPERTY = 0x26
    MAXIMUM_PACKET_SIZE = 0x27
    WILDCARD_SUBSCRIPTION_AVAILABLE = 0x28
    SUBSCRIPTION_IDENTIFIER_AVAILABLE = 0x29
    SHARED_SUBSCRIPTION_AVAILABLE = 0x2A


# Pseudo packet type for the will properties inside CONNECT (3.1.3.2).
WILL_PROPERTIES = 0

_P = PacketType
# id -> (attribute name on Properties, value type, packet types that may carry it).
# The single source of truth for property parsing, encoding and validation.
PROPERTY_TABLE: dict[int, tuple[str, PropertyType, frozenset[int]]] = {
    0x01: ("payload_format_indicator", PropertyType.BYTE, frozenset({_P.PUBLISH, WILL_PROPERTIES})),
    0x02: (
        "message_expiry_interval",
        PropertyType.FOUR_BYTE_INT,
        frozenset({_P.PUBLISH, WILL_PROPERTIES}),
    ),
    0x03: ("content_type", PropertyType.UTF8, frozenset({_P.PUBLISH, WILL_PROPERTIES})),
    0x08: ("response_topic", PropertyType.UTF8, frozenset({_P.PUBLISH, WILL_PROPERTIES})),
    0x09: ("correlation_data", PropertyType.BINARY, frozenset({_P.PUBLISH, WILL_PROPERTIES})),
    0x0B: ("subscription_identifier", PropertyType.VARINT, frozenset({_P.PUBLISH, _P.SUBSCRIBE})),
    0x11: (
        "session_expiry_interval",
        PropertyType.FOUR_BYTE_INT,
        frozenset({_P.CONNECT, _P.CONNACK, _P.DISCONNECT}),
    ),
    0x12: ("assigned_client_identifier", PropertyType.UTF8, frozenset({_P.CONNACK})),
    0x13: ("server_keep_alive", PropertyType.TWO_BYTE_INT, frozenset({_P.CONNACK})),
    0x15: (
        "authentication_method",
        PropertyType.UTF8,
        frozenset({_P.CONNECT, _P.CONNACK, _P.AUTH}),
    ),
    0x16: (
        "authentication_data",
        PropertyType.BINARY,
        frozenset({_P.CONNECT, _P.CONNACK, _P.AUTH}),
    ),
    0x17: ("request_problem_information", PropertyType.BYTE, frozenset({_P.CONNECT})),
    0x18: ("will_delay_interval", PropertyType.FOUR_BYTE_INT, frozenset({WILL_PROPERTIES})),
    0x19: ("request_response_information", PropertyType.BYTE, frozenset({_P.CONNECT})),
    0x1A: ("response_information", PropertyType.UTF8, frozenset({_P.CONNACK})),
    0x1C: ("server_reference", PropertyType.UTF8, frozenset({_P.CONNACK, _P.DISCONNECT})),
    0x1F: (
        "reason_string",
        PropertyType.UTF8,
        frozenset(
            {
                _P.CONNACK,
                _P.PUBACK,
                _P.PUBREC,
                _P.PUBREL,
                _P.PUBCOMP,
                _P.SUBACK,
                _P.UNSUBACK,
                _P.DISCONNECT,
                _P.AUTH,
            }
        ),
    ),
    0x21: ("receive_maximum", PropertyType.TWO_BYTE_INT, frozenset({_P.CONNECT, _P.CONNACK})),
    0x22: ("topic_alias_maximum", PropertyType.TWO_BYTE_INT, frozenset({_P.CONNECT, _P.CONNACK})),
    0x23: ("topic_alias", PropertyType.TWO_BYTE_INT, frozenset({_P.PUBLISH})),
    0x24: ("maximum_qos", PropertyType.BYTE, frozenset({_P.CONNACK})),
    0x25: ("retain_available", PropertyType.BYTE, frozenset({_P.CONNACK})),
    0x26: (
        "user_property",
        PropertyType.UTF8_PAIR,
        frozenset(
            {
                _P.CONNECT,
                _P.CONNACK,
                _P.PUBLISH,
                WILL_PROPERTIES,
                _P.PUBACK,
                _P.PUBREC,
                _P.PUBREL,
                _P.PUBCOMP,
                _P.SUBSCRIBE,
                _P.SUBACK,
                _P.UNSUBSCRIBE,
                _P.UNSUBACK,
                _P.DISCONNECT,
                _P.AUTH,
            }
        ),
    ),
    0x27: ("maximum_packet_size", PropertyType.FOUR_BYTE_INT, frozenset({_P.CONNECT, _P.CONNACK})),
    0x28: ("wildcard_subscription_available", PropertyType.BYTE, frozenset({_P.CONNACK})),
    0x29: ("subscription_identifier_available", PropertyType.BYTE, frozenset({_P.CONNACK})),
    0x2A: ("shared_subscription_available", PropertyType.BYTE, frozenset({_P.CONNACK})),
}
del _P

# Properties that may appear more than once in one packet [MQTT-2.2.2.2]:
# User Property anywhere, Subscription Identifier in PUBLISH (one per
# matching subscription, 3.3.2.3.8). Any other repeat is a protocol error.
REPEATABLE_PROPERTIES = frozenset({PropertyId.USER_PROPERTY, PropertyId.SUBSCRIPTION_IDENTIFIER})
