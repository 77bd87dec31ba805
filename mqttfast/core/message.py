"""The application message as it travels through the broker, and its per-client records.

A :class:`Message` is created once per received PUBLISH (or will, or $SYS
update) and shared by every subscriber: nothing in it depends on the
receiver. What does (granted QoS, retain flag, subscription identifiers,
packet id) lives in :class:`Delivery`.
"""

from __future__ import annotations

import re

from mqttfast.codec.constants import ReasonCode
from mqttfast.codec.packets import Properties

# Delivery states of an outgoing QoS 1/2 message (4.3.2, 4.3.3).
AWAIT_ACK = 1  # PUBLISH sent, waiting for PUBACK (QoS 1) or PUBREC (QoS 2)
AWAIT_COMP = 2  # PUBREL sent, waiting for PUBCOMP (QoS 2)


class Message:
    """One application message. ``properties`` holds only the end-to-end MQTT 5
    properties (no topic alias, no subscription identifiers, no expiry: the
    expiry is kept as the absolute ``expires_at`` and re-computed per send)."""

    # ``mid``: never set by the core (no cost on one node); a cluster node sets it on a
    # message it journals in JetStream (mqttfast/cluster/journal.py), read with getattr.
    __slots__ = (
        "topic",
        "payload",
        "qos",
        "retain",
        "properties",
        "expires_at",
        "origin",
        "sid",
        "mid",
    )
    mid: str  # (annotation only: unset unless a cluster node journaled the message)

    def __init__(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        retain: bool = False,
        properties: Properties | None = None,
        expires_at: float | None = None,
        origin: str | None = None,
    ) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties = properties
        self.expires_at = expires_at
        self.origin = origin  # client id of the publisher, for No Local
        self.sid = 0  # storage id while a persistent session holds it (core/storage.py)

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def __repr__(self) -> str:
        return (
            f"Message({self.topic!r}, {self.payload[:32]!r}, qos={self.qos}, retain={self.retain})"
        )


# C0 and C1 controls (1.5.4), as the codec refuses them in topic names.
_CONTROL = re.compile("[\x01-\x1f\x7f-\x9f]")


def response_topic_error(topic: str, allow_control: bool) -> tuple[int, str] | None:
    """Why a Response Topic (of a PUBLISH or a will) is refused, or None. It is a Topic
    Name: not empty, no wildcards [MQTT-3.3.2-14]; control characters are refused as in
    any topic name unless allow_control_characters (1.5.4: a receiver MAY treat them as
    malformed)."""
    if not topic or "+" in topic or "#" in topic:
        return ReasonCode.PROTOCOL_ERROR, "response topic with wildcards or empty"
    if not allow_control and _CONTROL.search(topic) is not None:
        return ReasonCode.MALFORMED_PACKET, "control character in the response topic (1.5.4)"
    return None


_STRIPPED = ("topic_alias", "subscription_identifier", "message_expiry_interval")


def forwardable_properties(props: Properties | None) -> Properties | None:
    """The properties a server forwards unchanged [MQTT-3.3.2-*]: everything but
    the per-hop topic alias, subscription identifiers and expiry interval."""
    if props is None:
        return None
    if (
        props.topic_alias is None
        and props.subscription_identifier is None
        and props.message_expiry_interval is None
    ):
        return props
    new = props.copy()
    for name in _STRIPPED:
        setattr(new, name, None)
    return None if new.is_empty() else new


class Delivery:
    """A QoS 1/2 message on its way to one client: queued or in flight."""

    __slots__ = ("msg", "qos", "retain", "sub_ids", "state", "shared", "sid")

    def __init__(
        self,
        msg: Message,
        qos: int,
        retain: bool,
        sub_ids: tuple[int, ...] | None,
        shared: object | None = None,
    ) -> None:
        self.msg = msg
        self.qos = qos
        self.retain = retain
        self.sub_ids = sub_ids
        self.state = AWAIT_ACK
        # The SharedGroup this came through, so it can go to another member
        # if this client's session ends first (4.8.2).
        self.shared = shared
        self.sid = 0  # storage id when recorded for a persistent session (core/storage.py)
