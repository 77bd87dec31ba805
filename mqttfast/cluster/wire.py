"""What travels on NATS: an MQTT message as subject + headers + payload, a session
snapshot as JSON. Headers carry only what is present, so a plain QoS 0 message from
a 3.1.1 client is a NATS message without headers (nats-server's MQTT format)."""

from __future__ import annotations

import json
import math
from typing import Any

from mqttfast.codec.constants import SESSION_EXPIRY_NEVER
from mqttfast.codec.packets import Properties
from mqttfast.core.message import Delivery, Message
from mqttfast.core.subscriptions import SubEntry

H_QOS = "Mqtt-Qos"
H_RETAIN = "Mqtt-Retain"
H_ORIGIN = "Mqtt-Origin"
H_EXPIRY = "Mqtt-Expiry"  # remaining seconds when it left the publishing node
H_PROPS = "Mqtt-Props"  # JSON (ASCII), end-to-end MQTT 5 properties
H_EXPIRES_WALL = "Mqtt-Expires-At"  # retained store: absolute unix time
# A journaled message's id, "<origin incarnation>.<counter>" (journal.py); always the
# first header of the block, so a receiver finds it without parsing the rest.
H_ID = "Mqtt-Id"


def props_to_json(p: Properties) -> str:
    d: dict[str, Any] = {}
    if p.payload_format_indicator is not None:
        d["pf"] = p.payload_format_indicator
    if p.content_type is not None:
        d["ct"] = p.content_type
    if p.response_topic is not None:
        d["rt"] = p.response_topic
    if p.correlation_data is not None:
        d["cd"] = bytes(p.correlation_data).hex()
    if p.user_property:
        d["up"] = [list(kv) for kv in p.user_property]
    return json.dumps(d, ensure_ascii=True, separators=(",", ":"))


def props_from_json(text: str) -> Properties | None:
    d = json.loads(text)
    if not d:
        return None
    p = Properties()
    if "pf" in d:
        p.payload_format_indicator = d["pf"]
    if "ct" in d:
        p.content_type = d["ct"]
    if "rt" in d:
        p.response_topic = d["rt"]
    if "cd" in d:
        p.correlation_data = bytes.fromhex(d["cd"])
    if "up" in d:
        p.user_property = [(k, v) for k, v in d["up"]]
    return p


def remaining(expires_at: float | None, now: float) -> int | None:
    if expires_at is None:
        return None
    # ceil of what is left, minus a float ulp so 60 s stays 60 [MQTT-3.3.2-6]
    return max(0, math.ceil(expires_at - now - 1e-6))


def message_headers(msg: Message, now: float) -> dict[str, str] | None:
    h: dict[str, str] = {}
    if msg.qos:
        h[H_QOS] = str(msg.qos)
    if msg.retain:
        h[H_RETAIN] = "1"
    if msg.origin is not None:
        h[H_ORIGIN] = json.dumps(msg.origin, ensure_ascii=True)
    left = remaining(msg.expires_at, now)
    if left is not None:
        h[H_EXPIRY] = str(left)
    if msg.properties is not None:
        h[H_PROPS] = props_to_json(msg.properties)
    return h or None


def message_from(topic: str, payload: bytes, h: dict[str, str] | None, now: float) -> Message:
    if not h:
        return Message(topic, payload)
    expiry = h.get(H_EXPIRY)
    origin = h.get(H_ORIGIN)
    props = h.get(H_PROPS)
    mid = h.get(H_ID)
    msg = Message(
        topic,
        payload,
        int(h.get(H_QOS, "0")),
        h.get(H_RETAIN) == "1",
        props_from_json(props) if props else None,
        now + int(expiry) if expiry is not None else None,
        json.loads(origin) if origin is not None else None,
    )
    if mid is not None:
        msg.mid = mid
    return msg


# -- session snapshots (handed from the node that held a session to the one taking it) --


def message_record(msg: Message, now: float) -> dict[str, Any]:
    """A message as JSON-able data (wills kept in JetStream, session snapshots)."""
    return _msg_dict(msg, now)


def message_from_record(d: dict[str, Any], now: float) -> Message:
    return _msg_from(d, now)


def _msg_dict(msg: Message, now: float) -> dict[str, Any]:
    d = {
        "t": msg.topic,
        "p": msg.payload.hex(),
        "q": msg.qos,
        "r": msg.retain,
        "o": msg.origin,
        "e": remaining(msg.expires_at, now),
        "pr": props_to_json(msg.properties) if msg.properties is not None else None,
    }
    mid = getattr(msg, "mid", None)
    if mid is not None:  # journaled: the id travels (de-duplication on adoption)
        d["m"] = mid
    return d


def _msg_from(d: dict[str, Any], now: float) -> Message:
    msg = Message(
        d["t"],
        bytes.fromhex(d["p"]),
        d["q"],
        d["r"],
        props_from_json(d["pr"]) if d["pr"] else None,
        now + d["e"] if d["e"] is not None else None,
        d["o"],
    )
    if "m" in d:
        msg.mid = d["m"]
    return msg


def subscription_rows(session: Any) -> list[list[Any]]:
    """A session's subscriptions with their options, as the snapshot and the JetStream
    session record (sessions.py) both carry them."""
    return [
        [
            e.topic_filter,
            e.qos,
            e.no_local,
            e.retain_as_published,
            e.retain_handling,
            e.sub_id,
            e.group,
        ]
        for e in session.subscriptions.values()
    ]


def session_snapshot(session: Any, now: float, extra: dict[str, Any] | None = None) -> bytes:
    subs = subscription_rows(session)
    # In-flight first (they were sent before anything queued), then the queue.
    deliveries = [
        [
            _msg_dict(d.msg, now),
            d.qos,
            d.retain,
            list(d.sub_ids) if d.sub_ids else None,
            pid,
            d.state,
        ]
        for pid, d in session.inflight.items()
    ] + [
        [_msg_dict(d.msg, now), d.qos, d.retain, list(d.sub_ids) if d.sub_ids else None, 0, 1]
        for d in session.queue
    ]
    return json.dumps(
        {
            "subs": subs,
            "deliveries": deliveries,
            "pubrel": sorted(session.awaiting_pubrel),
            "expiry": session.expiry_interval,
            # An offline session's expiry keeps counting from its client's disconnect.
            "left": (session.expires_at - now) if session.expires_at is not None else None,
            "user": session.username,
            **(extra or {}),
        },
        ensure_ascii=True,
    ).encode()


def install_snapshot(broker: Any, client_id: str, snap: dict[str, Any]) -> Any:
    """Recreate a session from a (parsed) snapshot in this node's core; returns it."""
    now = broker.clock()
    old = broker.sessions.get(client_id)
    if old is not None:
        broker.end_session(old, now)
    session = broker.new_session(client_id)
    session.expiry_interval = snap["expiry"]
    storage = broker.storage
    storage.session_update(session)  # durable here too when persistence is on
    persisted = session.persisted
    for f, qos, nl, rap, rh, sid, group in snap["subs"]:
        entry = SubEntry(client_id, f, qos, nl, rap, rh, sid, group)
        broker.router.subscribe(session, entry)
        if persisted:
            storage.subscription_put(session, entry)
    for md, qos, retain, sub_ids, pid, state in snap["deliveries"]:
        msg = _msg_from(md, now)
        d = Delivery(msg, qos, retain, tuple(sub_ids) if sub_ids else None)
        if pid:
            # Sent before with this packet id: resent with DUP when the client is back.
            d.state = state
            session.set_inflight(pid, d)
            session.next_pid = max(session.next_pid, pid)
            if persisted:
                storage.delivery_put(session, d, pid)
        else:
            session.enqueue(d)  # stores it when persisted
    for pid in snap["pubrel"]:
        session.await_pubrel(pid)
    if persisted:
        for pid in snap["pubrel"]:
            storage.qos2_put(session, pid)
    # Offline until accept() resumes it (the will of the old connection is not ours);
    # expiring as any offline session if the connecting client went away meanwhile.
    broker.offline.add(session)
    if session.expiry_interval != SESSION_EXPIRY_NEVER:
        left = snap.get("left")
        session.expires_at = now + (session.expiry_interval if left is None else max(0.0, left))
    if session.username is None:
        session.username = snap.get("user")
    return session
