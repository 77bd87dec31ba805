"""Startup recovery: load the database into a fresh core BrokerCore before it accepts connections.

Order: retained messages, messages, sessions, subscriptions, deliveries
(in-flight by packet id, then the queue, each in stored order), incoming
QoS 2 ids. Then what expired while the broker was down goes, through the
core's own code paths: expired retained and queued messages are dropped;
sessions whose expiry passed end (``BrokerCore.end_session``), publishing their
pending v5 delayed will to the subscribers just restored. A will whose delay
passed while down is published by the first ``tick``.

Sessions that were connected when the broker stopped without a clean
shutdown (crash, ``kill -9``) have no recorded disconnect time; their expiry
counts from the crash, bounded by ``meta.alive`` (written by every commit, and
at least every ``ALIVE_EVERY`` s): from ``alive + ALIVE_EVERY + 1`` s, so a
session never ends early (at most ~11 s late).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from mqttfast.codec.constants import SESSION_EXPIRY_NEVER
from mqttfast.core.message import AWAIT_ACK, Delivery, Message
from mqttfast.core.session import Session
from mqttfast.core.subscriptions import SubEntry, split_shared

from .rows import ALIVE_EVERY, SESSION_COLUMNS, decode_props

if TYPE_CHECKING:
    from mqttfast.core.broker import BrokerCore

    from .store import SQLiteStorage


def load(store: SQLiteStorage, broker: BrokerCore) -> dict[str, Any]:
    db = store.db
    now = broker.clock()
    wall = time.time()
    off = wall - now  # wall = monotonic + off

    def mono(t: float | None) -> float | None:
        return None if t is None else t - off

    counts = {
        "retained": 0,
        "sessions": 0,
        "subscriptions": 0,
        "queued": 0,
        "inflight": 0,
        "qos2_in": 0,
        "expired_sessions": 0,
        "expired_messages": 0,
    }

    # Retained (the core store is not told: these writes come from the disk).
    retained = broker.retained
    for topic, payload, qos, props, expires in db.execute(
        "SELECT topic, payload, qos, props, expires FROM retained"
    ):
        if expires is not None and expires <= wall:
            store.retained_delete(topic)
            counts["expired_messages"] += 1
            continue
        msg = Message(topic, payload, qos, True, decode_props(props), mono(expires))
        saved, retained.storage = getattr(retained, "storage", None), None
        try:
            retained.store(msg)
        finally:
            retained.storage = saved
        counts["retained"] += 1

    messages: dict[int, Message] = {}
    for mid, topic, payload, qos, retain, props, expires, origin in db.execute(
        "SELECT id, topic, payload, qos, retain, props, expires, origin FROM messages"
    ):
        msg = Message(topic, payload, qos, bool(retain), decode_props(props), mono(expires), origin)
        msg.sid = mid
        messages[mid] = msg

    row = db.execute("SELECT value FROM meta WHERE key = 'alive'").fetchone()
    alive = float(row[0]) if row is not None else None
    sessions: dict[str, Session] = {}
    expired: list[Session] = []
    for (
        cid,
        interval,
        expires,
        w_topic,
        w_payload,
        w_qos,
        w_retain,
        w_props,
        w_expires,
        will_at,
        username,
    ) in db.execute(f"SELECT {SESSION_COLUMNS} FROM sessions"):
        session = Session(cid, broker)
        session.expiry_interval = interval
        if hasattr(session, "username"):
            session.username = username
        if expires is not None:
            session.expires_at = mono(expires)
        elif interval != SESSION_EXPIRY_NEVER:
            # Connected when the broker died: its connection ended at the crash, which
            # was less than ALIVE_EVERY s after the last commit (never expire early).
            crashed = alive + ALIVE_EVERY + 1.0 if alive is not None else wall
            expires = min(crashed, wall) + interval
            session.expires_at = mono(expires)
        if w_topic is not None:
            session.pending_will = Message(
                w_topic,
                w_payload,
                w_qos,
                bool(w_retain),
                decode_props(w_props),
                mono(w_expires),
                cid,
            )
            session.will_at = mono(will_at) if will_at is not None else now
            broker.pending_wills.add(session)
        session.persisted = True
        broker.sessions[cid] = session
        broker.offline.add(session)
        sessions[cid] = session
        if expires is not None and expires <= wall:
            expired.append(session)
        counts["sessions"] += 1

    for cid, full, qos, no_local, rap, rh, sub_id in db.execute(
        "SELECT client_id, filter, qos, no_local, rap, rh, sub_id FROM subscriptions"
    ):
        subscriber = sessions.get(cid)
        if subscriber is None:
            store.subscription_delete(_Ghost(cid), full)  # type: ignore[arg-type]  # orphan row
            continue
        group_name, filt = split_shared(full)
        entry = SubEntry(cid, filt, qos, bool(no_local), bool(rap), rh, sub_id, group_name)
        broker.router.subscribe(subscriber, entry)
        counts["subscriptions"] += 1

    refs = store.refs
    written = store.written
    orphans: list[int] = []
    for did, cid, mid, qos, retain, sub_ids, state, pid, shared in db.execute(
        "SELECT id, client_id, msg_id, qos, retain, sub_ids, state, pid, shared "
        "FROM deliveries ORDER BY id"
    ):
        holder = sessions.get(cid)
        stored = messages.get(mid)
        if holder is None or stored is None:
            orphans.append(did)
            continue
        if pid == 0 and stored.expires_at is not None and stored.expires_at <= now:
            orphans.append(did)  # expired while queued [MQTT-3.3.2-5]
            counts["expired_messages"] += 1
            continue
        group = None
        if shared is not None:
            g, filt = split_shared(shared)
            if g is not None:
                group = broker.subscriptions.groups.get((g, filt))
        ids = tuple(int(x) for x in sub_ids.split(",")) if sub_ids else None
        d = Delivery(stored, qos, bool(retain), ids, group)
        d.sid = did
        written.add(did)
        refs[mid] = refs.get(mid, 0) + 1
        if pid:
            d.state = state
            holder.set_inflight(pid, d)
            if pid > holder.next_pid:
                holder.next_pid = pid
            counts["inflight"] += 1
        else:
            d.state = AWAIT_ACK
            holder.restore_queued(d)
            counts["queued"] += 1
    if orphans:
        for did in orphans:
            store.p_deliv[did] = None
        store.dirty = True
    for mid in messages:
        if mid not in refs:
            refs[mid] = 0
            store.zero.add(mid)  # unreferenced: deleted by the next commit
            store.dirty = True

    for cid, pid in db.execute("SELECT client_id, pid FROM qos2_in"):
        receiver = sessions.get(cid)
        if receiver is None:
            store.p_qos2[(cid, pid)] = False
            store.dirty = True
            continue
        receiver.await_pubrel(pid)
        counts["qos2_in"] += 1

    # Sessions whose expiry passed while down end now (their delayed will goes out).
    for session in expired:
        broker.end_session(session, now)
        counts["expired_sessions"] += 1
    return counts


class _Ghost:
    """Stands for a session that no longer exists, to delete its orphan rows."""

    __slots__ = ("client_id",)

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id


__all__ = ["load"]
