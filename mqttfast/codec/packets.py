"""Packet classes for all 15 MQTT control packets, in their 3.1, 3.1.1 and 5.0 forms.

Plain slotted dataclasses, shared by both implementation twins: the decoder
builds them, the encoder reads them. A packet does not know its protocol
version; the decoder/encoder is told it. Fields that only exist in MQTT 5
(reason codes on acknowledgements, properties) keep their defaults for
3.1/3.1.1 and are not encoded there.

``properties`` is ``None`` when a packet carries no properties (always so
before MQTT 5), which keeps the common path free of an extra allocation.

``Publish.properties`` may be built lazily: when the compiled codec
(``_codec``) is loaded it replaces this dataclass's slot descriptor with a
data descriptor over the same slot, and its decoder stores the already
validated property bytes there; the first read builds the ``Properties``
(once, then it is an ordinary field). Nothing else changes: equality, repr,
copy, pickle and assignment all go through the descriptor, and malformed
properties are still refused while decoding.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import ClassVar

from .constants import PacketType


@dataclass(slots=True)
class Properties:
    """MQTT 5 properties (2.2.2). An attribute is ``None`` when absent.

    ``subscription_identifier`` is a list because a PUBLISH to a client
    carries one per matching subscription (3.3.2.3.8); in SUBSCRIBE the list
    has exactly one element. ``user_property`` keeps pairs in wire order,
    duplicates included (3.3.2.3.7).
    """

    payload_format_indicator: int | None = None
    message_expiry_interval: int | None = None
    content_type: str | None = None
    response_topic: str | None = None
    correlation_data: bytes | None = None
    subscription_identifier: list[int] | None = None
    session_expiry_interval: int | None = None
    assigned_client_identifier: str | None = None
    server_keep_alive: int | None = None
    authentication_method: str | None = None
    authentication_data: bytes | None = None
    request_problem_information: int | None = None
    will_delay_interval: int | None = None
    request_response_information: int | None = None
    response_information: str | None = None
    server_reference: str | None = None
    reason_string: str | None = None
    receive_maximum: int | None = None
    topic_alias_maximum: int | None = None
    topic_alias: int | None = None
    maximum_qos: int | None = None
    retain_available: int | None = None
    user_property: list[tuple[str, str]] | None = None
    maximum_packet_size: int | None = None
    wildcard_subscription_available: int | None = None
    subscription_identifier_available: int | None = None
    shared_subscription_available: int | None = None

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))

    def copy(self) -> Properties:
        """A copy whose lists may be changed without touching this one."""
        new = Properties(**{f.name: getattr(self, f.name) for f in fields(self)})
        if new.subscription_identifier is not None:
            new.subscription_identifier = list(new.subscription_identifier)
        if new.user_property is not None:
            new.user_property = list(new.user_property)
        return new


@dataclass(slots=True)
class Will:
    """The will message carried in CONNECT (3.1.2.5, 3.1.3.2-3.1.3.4)."""

    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    properties: Properties | None = None


@dataclass(slots=True)
class Connect:
    packet_type: ClassVar[PacketType] = PacketType.CONNECT
    client_id: str = ""
    protocol_version: int = 4  # 3 = MQTT 3.1 ("MQIsdp"), 4 = 3.1.1, 5 = 5.0
    clean_start: bool = True  # "clean session" before MQTT 5
    keep_alive: int = 0
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None
    properties: Properties | None = None

    @property
    def protocol_name(self) -> str:
        return "MQIsdp" if self.protocol_version == 3 else "MQTT"


@dataclass(slots=True)
class Connack:
    packet_type: ClassVar[PacketType] = PacketType.CONNACK
    session_present: bool = False
    reason_code: int = 0  # 3.1.1 return code (0-5) or MQTT 5 reason code
    properties: Properties | None = None


@dataclass(slots=True)
class Publish:
    packet_type: ClassVar[PacketType] = PacketType.PUBLISH
    topic: str = ""
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int = 0  # 0 for QoS 0, 1-65535 otherwise
    properties: Properties | None = None


@dataclass(slots=True)
class Puback:
    packet_type: ClassVar[PacketType] = PacketType.PUBACK
    packet_id: int = 0
    reason_code: int = 0
    properties: Properties | None = None


@dataclass(slots=True)
class Pubrec:
    packet_type: ClassVar[PacketType] = PacketType.PUBREC
    packet_id: int = 0
    reason_code: int = 0
    properties: Properties | None = None


@dataclass(slots=True)
class Pubrel:
    packet_type: ClassVar[PacketType] = PacketType.PUBREL
    packet_id: int = 0
    reason_code: int = 0
    properties: Properties | None = None


@dataclass(slots=True)
class Pubcomp:
    packet_type: ClassVar[PacketType] = PacketType.PUBCOMP
    packet_id: int = 0
    reason_code: int = 0
    properties: Properties | None = None


@dataclass(slots=True)
class Subscription:
    """One topic filter with its subscription options (3.8.3.1).

    Before MQTT 5 only ``qos`` exists on the wire; the other options keep
    their defaults, which give 3.1.1 behaviour.
    """

    topic_filter: str
    qos: int = 0
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0


@dataclass(slots=True)
class Subscribe:
    packet_type: ClassVar[PacketType] = PacketType.SUBSCRIBE
    packet_id: int = 0
    subscriptions: list[Subscription] = field(default_factory=list)
    properties: Properties | None = None


@dataclass(slots=True)
class Suback:
    packet_type: ClassVar[PacketType] = PacketType.SUBACK
    packet_id: int = 0
    reason_codes: list[int] = field(default_factory=list)  # granted QoS or failure code
    properties: Properties | None = None


@dataclass(slots=True)
class Unsubscribe:
    packet_type: ClassVar[PacketType] = PacketType.UNSUBSCRIBE
    packet_id: int = 0
    topic_filters: list[str] = field(default_factory=list)
    properties: Properties | None = None


@dataclass(slots=True)
class Unsuback:
    packet_type: ClassVar[PacketType] = PacketType.UNSUBACK
    packet_id: int = 0
    reason_codes: list[int] = field(default_factory=list)  # MQTT 5 only; empty before
    properties: Properties | None = None


@dataclass(slots=True)
class Pingreq:
    packet_type: ClassVar[PacketType] = PacketType.PINGREQ


@dataclass(slots=True)
class Pingresp:
    packet_type: ClassVar[PacketType] = PacketType.PINGRESP


@dataclass(slots=True)
class Disconnect:
    packet_type: ClassVar[PacketType] = PacketType.DISCONNECT
    reason_code: int = 0  # MQTT 5 only
    properties: Properties | None = None


@dataclass(slots=True)
class Auth:
    """MQTT 5 enhanced authentication exchange (3.15)."""

    packet_type: ClassVar[PacketType] = PacketType.AUTH
    reason_code: int = 0
    properties: Properties | None = None


Packet = (
    Connect
    | Connack
    | Publish
    | Puback
    | Pubrec
    | Pubrel
    | Pubcomp
    | Subscribe
    | Suback
    | Unsubscribe
    | Unsuback
    | Pingreq
    | Pingresp
    | Disconnect
    | Auth
)

PACKET_CLASSES: dict[int, type] = {
    cls.packet_type: cls
    for cls in (
        Connect,
        Connack,
        Publish,
        Puback,
        Pubrec,
        Pubrel,
        Pubcomp,
        Subscribe,
        Suback,
        Unsubscribe,
        Unsuback,
        Pingreq,
        Pingresp,
        Disconnect,
        Auth,
    )
}
