"""The one exception type the codec raises for bad input.

Both implementation twins (Cython and pure Python) import these classes from
here, so ``except MQTTError`` works whichever one is active.
"""

from __future__ import annotations

from typing import Any

from .constants import ReasonCode


class MQTTError(Exception):
    """Input that breaks the MQTT specification.

    ``reason_code`` is the MQTT 5 reason code a server sends in DISCONNECT (or
    CONNACK) before closing: 0x81 malformed packet, 0x82 protocol error, 0x95
    packet too large, 0x90 topic name invalid, 0x8F topic filter invalid, ...
    For MQTT 3.1/3.1.1 connections the code only selects the log line; the
    connection is closed without a reply.

    ``packets`` holds the complete packets a ``Decoder.feed`` call decoded
    before it met the bad one, in order, so a caller may still act on them.
    """

    def __init__(self, reason_code: int, message: str, packets: list[Any] | None = None) -> None:
        super().__init__(message)
        self.reason_code = ReasonCode(reason_code)
        self.message = message
        self.packets: list[Any] = packets if packets is not None else []

    def __str__(self) -> str:
        return f"{self.message} (reason code 0x{int(self.reason_code):02X} {self.reason_code.name})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (int(self.reason_code), self.message, self.packets))


class MalformedPacket(MQTTError):
    """The bytes cannot be parsed as the specification describes (0x81)."""

    def __init__(self, message: str, packets: list[Any] | None = None) -> None:
        super().__init__(ReasonCode.MALFORMED_PACKET, message, packets)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.packets))


class ProtocolError(MQTTError):
    """Parsable bytes that the protocol forbids here (0x82)."""

    def __init__(self, message: str, packets: list[Any] | None = None) -> None:
        super().__init__(ReasonCode.PROTOCOL_ERROR, message, packets)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.packets))


class PacketTooLarge(MQTTError):
    """A packet larger than the configured maximum packet size (0x95)."""

    def __init__(self, message: str, packets: list[Any] | None = None) -> None:
        super().__init__(ReasonCode.PACKET_TOO_LARGE, message, packets)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.packets))


# Messages both decoder twins raise word for word (defined once, here).
# 1.5.4: control characters SHOULD NOT appear in UTF-8 strings and a receiver MAY treat
# them as malformed; the broker does unless told otherwise (allow_control_characters).
MSG_CONTROL_TOPIC = "control character in a topic name (1.5.4)"
MSG_CONTROL_WILL_TOPIC = "control character in the will topic (1.5.4)"
MSG_CONTROL_FILTER = "control character in a topic filter (1.5.4)"
MSG_CONTROL_CLIENT_ID = "control character in the client identifier (1.5.4)"
MSG_CONTROL_USERNAME = "control character in the user name (1.5.4)"
MSG_EMPTY_FILTER = "empty topic filter [MQTT-4.7.3-1]"
