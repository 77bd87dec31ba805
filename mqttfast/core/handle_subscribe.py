"""SUBSCRIBE and UNSUBSCRIBE (3.8-3.11), retained delivery on subscribe (3.3.1.3)."""

from __future__ import annotations

from collections.abc import Iterable

from mqttfast.codec import validate_topic_filter
from mqttfast.codec.constants import SUBACK_FAILURE_311, ReasonCode
from mqttfast.codec.errors import MQTTError
from mqttfast.codec.packets import Suback, Subscribe, Unsuback, Unsubscribe

from .connection import CONNECTED, Connection
from .subscriptions import SubEntry, split_shared


def _filter_error(filt: str) -> int:
    try:
        validate_topic_filter(filt)
    except MQTTError:
        return ReasonCode.TOPIC_FILTER_INVALID
    return 0


def _bad_share(conn: Connection, filters: Iterable[str]) -> bool:
    """A ``$share/`` filter without a share name or without a filter after it
    ([MQTT-4.8.2-1], [MQTT-4.8.2-2]) is a protocol error for the whole packet (0x82),
    not a per-filter refusal; True when the connection was closed for it."""
    for full in filters:
        if split_shared(full)[0] == "":
            conn.violation(ReasonCode.PROTOCOL_ERROR, f"malformed shared subscription {full!r}")
            return True
    return False


def handle_subscribe(conn: Connection, pkt: Subscribe) -> None:
    if conn.state != CONNECTED:
        conn.violation(ReasonCode.PROTOCOL_ERROR, "SUBSCRIBE before CONNACK")
        return
    if _bad_share(conn, (sub.topic_filter for sub in pkt.subscriptions)):
        return
    broker = conn.broker
    settings = broker.settings
    session = conn.session
    assert session is not None  # CONNECTED
    v5 = conn.v5
    props = pkt.properties
    sub_id = None
    if props is not None and props.subscription_identifier:
        sub_id = props.subscription_identifier[0]
    codes: list[int] = []
    retained_jobs: list[tuple[SubEntry, str]] = []
    for sub in pkt.subscriptions:
        full = sub.topic_filter
        group, filt = split_shared(full)
        code = 0
        if group == "":
            code = ReasonCode.TOPIC_FILTER_INVALID
        else:
            code = _filter_error(filt)
        if not code and group is not None:
            # $share is honoured for every protocol version, as mosquitto does.
            if not settings.shared_subscription_available:
                code = ReasonCode.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED
            elif sub.no_local:
                # [MQTT-3.8.3-4] No Local on a shared subscription is a protocol error.
                conn.violation(ReasonCode.PROTOCOL_ERROR, "no local on shared subscription")
                return
        if not code and settings.max_topic_levels and filt.count("/") >= settings.max_topic_levels:
            broker.stats.topic_levels_refused += 1
            code = ReasonCode.TOPIC_FILTER_INVALID
        if (
            not code
            and settings.max_topic_length
            and len(full.encode()) > settings.max_topic_length
        ):
            broker.stats.topic_too_long += 1
            code = ReasonCode.TOPIC_FILTER_INVALID
        if (
            not code
            and settings.max_subscriptions_per_client
            and len(session.subscriptions) >= settings.max_subscriptions_per_client
            and full not in session.subscriptions
        ):
            broker.stats.subscriptions_refused += 1
            code = ReasonCode.QUOTA_EXCEEDED
        if (
            not code
            and not settings.wildcard_subscription_available
            and ("+" in filt or "#" in filt)
        ):
            code = ReasonCode.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED
        if not code and sub_id is not None and not settings.subscription_identifier_available:
            code = ReasonCode.SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED
        if not code and not broker.hooks.authorise_subscribe(conn, full, sub.qos):
            code = ReasonCode.NOT_AUTHORIZED
        if code:
            codes.append(code if v5 else SUBACK_FAILURE_311)
            continue
        granted = sub.qos if sub.qos <= settings.maximum_qos else settings.maximum_qos
        entry = SubEntry(
            session.client_id,
            filt,
            granted,
            sub.no_local,
            sub.retain_as_published,
            sub.retain_handling,
            sub_id,
            group,
        )
        new = broker.router.subscribe(session, entry)
        if session.persisted:
            broker.storage.subscription_put(session, entry)
        codes.append(granted)
        if broker.hooks.events:
            broker.hooks.subscribed(conn, full, granted)
        # Retained messages (3.3.1.3, 3.8.3.1): Retain Handling 0 always, 1 only for a
        # new subscription, 2 never; never for shared subscriptions (4.8.2).
        if group is None and (sub.retain_handling == 0 or (sub.retain_handling == 1 and new)):
            retained_jobs.append((entry, filt))
    # A cluster router may hold the SUBACK until the other nodes know the new interest
    # (so a publish started after the SUBACK reaches this subscriber); a LocalRouter
    # answers at once.
    hold = broker.router.hold_suback

    def finish() -> None:
        if conn.state != CONNECTED:
            return
        # [MQTT-3.8.4-1] SUBACK with one code per filter, in order [MQTT-3.9.3-1].
        conn.send_packet(Suback(pkt.packet_id, codes))
        if retained_jobs:
            now = broker.clock()
            receive = broker.filters.receive_check
            for entry, filt in retained_jobs:
                sub_ids = (entry.sub_id,) if entry.sub_id is not None else None
                for msg in broker.router.retained_for(filt, now):
                    if receive is not None and not receive(session, msg.topic):
                        continue  # ACL: a wildcard may overlap topics this client may not read
                    qos = msg.qos if msg.qos < entry.qos else entry.qos
                    # [MQTT-3.3.1-8] retained messages sent on subscribe carry RETAIN=1.
                    session.add_retained(msg, qos, sub_ids, now)
            session.drain_backlog(now)

    if not hold(conn, finish):
        finish()


def handle_unsubscribe(conn: Connection, pkt: Unsubscribe) -> None:
    if conn.state != CONNECTED:
        conn.violation(ReasonCode.PROTOCOL_ERROR, "UNSUBSCRIBE before CONNACK")
        return
    if _bad_share(conn, pkt.topic_filters):
        return
    broker = conn.broker
    session = conn.session
    assert session is not None  # CONNECTED
    codes: list[int] = []
    for full in pkt.topic_filters:
        group, filt = split_shared(full)
        if group == "" or _filter_error(filt):
            codes.append(ReasonCode.TOPIC_FILTER_INVALID)
            continue
        removed = broker.router.unsubscribe(session, full)
        if removed and session.persisted:
            broker.storage.subscription_delete(session, full)
        codes.append(0 if removed else ReasonCode.NO_SUBSCRIPTION_EXISTED)
        if removed and broker.hooks.events:
            broker.hooks.unsubscribed(conn, full)
    # [MQTT-3.10.4-4/5] UNSUBACK even when nothing was removed.
    conn.send_packet(Unsuback(pkt.packet_id, codes if conn.v5 else []))
