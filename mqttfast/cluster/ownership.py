"""One live connection per client id cluster-wide, and sessions that move.

The KV bucket of owners (hash(client id) -> node id) says which node holds a client id.
Before CONNACK a node claims it (``claim``): it asks the previous owner to give the
session up (``.node.<id>.take``: the live connection there is closed, v5 DISCONNECT
0x8E, and a snapshot of a persistent session comes back), or, when that node is dead,
adopts the session's record (sessions.py). After a NATS outage the sessions a node
holds are settled (sessions.reconcile) with ``reclaim_from``, ``hand_over`` and
``drop_stale``; the answering side is ``on_reclaim`` and ``on_merge``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from nats.errors import NoRespondersError
from nats.js.errors import KeyNotFoundError

from mqttfast.codec.constants import ReasonCode
from mqttfast.core import wills
from mqttfast.core.connection import CONNECTED
from mqttfast.core.message import AWAIT_COMP

from .wire import install_snapshot, message_from_record, session_snapshot

log = logging.getLogger("mqttfast.cluster")

CLAIM_TIMEOUT = 3.0  # seconds a CONNECT waits for the previous owner of its client id
# A take request is re-sent after this long without an answer: on a NATS cluster, a
# request sent just after the owner died can be routed to where its subscription was
# and vanish, instead of failing with "no responders" (which the next one gets).
# (1 s was tried: with it, test_journal's subscriber-node kill lost 1 acknowledged QoS 1
# message in about 1 run of 4; not understood yet, so one try again.)
TAKE_TRY = CLAIM_TIMEOUT
GIVEN_KEEP = 10.0  # seconds a given-up snapshot is kept for a re-sent take request
# Seconds a snapshot reply waits for the messages routed before it to be written to NATS
# (Backplane.written), well within the taker's TAKE_TRY.
REPLY_WAIT = 1.5
LIVE = b"live"  # a reclaim's answer: the client is connected on the answering node


class Ownership:
    def __init__(self, bp: Any) -> None:
        self.bp = bp
        # (client id, requesting node) -> (when, snapshot) of sessions given up here
        # on a take request: a re-sent request (its first answer was late) gets the same.
        self.given: dict[tuple[str, str], tuple[float, bytes]] = {}

    async def claim(self, conn: Any, done: Callable[[int], None]) -> None:
        """Before CONNACK: become the owner of conn.client_id; take the session over
        from its previous owner (closing its connection there). Bounded: a JetStream
        that does not answer delays a CONNECT by CLAIM_TIMEOUT + 1 s at most, then the
        client is served as on a single node."""
        cid = conn.client_id
        try:
            await asyncio.wait_for(self._claim_steps(cid), CLAIM_TIMEOUT + 1.0)
        except Exception as exc:
            self.bp.stats["js_errors"] += 1
            log.warning("cluster: ownership of client %r not recorded: %r", cid, exc)
        done(0)  # CONNACK (accept() ran): conn.will is set now
        if conn.state == CONNECTED:
            self.bp.records.connected(conn)
        if conn.will is not None and conn.session is not None and conn.state == CONNECTED:
            await self.bp.wills.record(conn)

    async def _claim_steps(self, cid: str) -> None:
        key = self.bp.key(cid)
        owner = None
        try:
            entry = await self.bp.kv.get(key)
            owner = entry.value.decode() if entry.value else None
        except KeyNotFoundError:
            pass
        if owner is None:
            # No owner recorded (its node's write may have failed, e.g. while JetStream
            # elected a leader): a persistent session's record still names its node.
            owner = await self.bp.records.holder(cid)
        if owner and owner != self.bp.node_id:
            try:
                await self.take_from(owner, cid, raising=True)
            except Exception as exc:  # owner gone (no responders / timeout)
                log.info("cluster: previous owner %s of %r did not answer: %r", owner, cid, exc)
                if isinstance(exc, NoRespondersError) or owner in self.bp.dead_handled:
                    # Its node died: the session's record is adopted here (sessions.py).
                    await self.bp.records.adopt_on_connect(cid, owner)
        await self.bp.kv.put(key, self.bp.node_id.encode())
        await self.bp._retained_caught_up()

    async def take_from(self, owner: str, cid: str, raising: bool = False) -> bool:
        """Ask ``owner`` to give client id ``cid`` up (closing its connection there);
        install the session it hands over. True if a session moved here."""
        subject = f"{self.bp.ctl}.node.{owner}.take"
        data = f"{cid}\0{self.bp.node_id}".encode()
        tries = max(1, round(CLAIM_TIMEOUT / TAKE_TRY))
        for attempt in range(tries):
            try:
                reply = await self.bp.nc.request(subject, data, timeout=TAKE_TRY)
                break
            except Exception as exc:
                if attempt + 1 < tries and "imeout" in type(exc).__name__:
                    continue
                if raising:
                    raise
                return False
        if not reply.data:
            return False
        self.bp.stats["takeovers"] += 1
        if reply.data == b"-":
            return False
        try:
            snap = json.loads(reply.data)
            install_snapshot(self.bp.core, cid, snap)
        except Exception:  # a bug: said loudly, the CONNECT goes on with a new session
            log.exception("cluster: session %r from node %s not installed", cid, owner)
            return False
        self.bp.records.claimed(cid)
        self.bp.stats["sessions_moved_in"] += 1
        states = [d[5] for d in snap["deliveries"] if d[4]]
        log.info(
            "cluster: session %r taken over from node %s: %d in flight (%d waiting for "
            "PUBCOMP), %d queued",
            cid,
            owner,
            len(states),
            states.count(AWAIT_COMP),
            len(snap["deliveries"]) - len(states),
        )
        journal = self.bp.journal
        for d in snap["deliveries"]:
            if "m" in d[0]:  # a re-sent copy of it that reaches this node is not for it
                journal.got_original(cid, d[0]["m"], d[0].get("o"))
        if snap.get("jlast") is not None:  # no await since the install
            mids = {d[0]["m"] for d in snap["deliveries"] if "m" in d[0]}
            self.bp.journal.after_takeover(cid, snap, mids)
        return True

    async def own_after(self, cid: str, dead: str) -> None:
        """Record this node as owner of ``cid`` if the dead node still is (adoption);
        a client that reconnected meanwhile made its node the owner: that one stays."""
        key = self.bp.key(cid)
        try:
            entry = await self.bp.kv.get(key)
            if entry.value is not None and entry.value.decode() != dead:
                return
            if cid not in self.bp.core.sessions:
                return  # handed back meanwhile (its node, back from a NATS outage)
            await self.bp.kv.update(key, self.bp.node_id.encode(), last=entry.revision)
        except KeyNotFoundError:
            try:
                await self.bp.kv.create(key, self.bp.node_id.encode())
            except Exception:
                pass
        except Exception:
            pass  # changed meanwhile: the new owner stays

    async def on_take(self, m: Any) -> None:
        """Another node takes a client id: close it here and hand its session over."""
        cid, _, node = m.data.decode().partition("\0")
        now = time.monotonic()
        given = self.given
        if cid in self.bp.core.sessions or (cid, node) not in given:
            data = self.give_up(cid)
            for key in [k for k, (t, _) in given.items() if now - t > GIVEN_KEEP]:
                del given[key]
            if len(data) > 1:
                given[(cid, node)] = (now, data)
        else:
            when, data = given[(cid, node)]
            if now - when > GIVEN_KEEP:
                data = b""
        if len(data) > 1:  # the messages the snapshot holds leave first (bounded wait)
            await self.bp.written(REPLY_WAIT)
        await m.respond(data)

    def give_up(self, cid: str, will: bool = True) -> bytes:
        """The session of ``cid`` leaves this node: a live connection is closed (v5
        DISCONNECT 0x8E), the session ends here. Returns its snapshot; b"" if there was
        none, b"-" if it was not persistent."""
        core = self.bp.core
        session = core.sessions.get(cid)
        if session is None:
            return b""
        now = core.clock()
        self.bp.records.release(cid)  # its record is the new owner's business now
        if session.conn is not None:
            log.info("client %s: taken over by another node", cid)
            session.conn.close(ReasonCode.SESSION_TAKEN_OVER, will=will)
            self.bp.stats["takeovers"] += 1
        session = core.sessions.get(cid)  # ends here if it was not persistent
        if session is None:
            return b"-"
        # The client resumes elsewhere: a delayed will is cancelled as by a resume.
        wills.cancel_pending(core, session)
        # The journal ids this node had seen (journal.after_takeover), for a durable one.
        jlast = self.bp.journal.given_up(cid) if session.expiry_interval else None
        data = session_snapshot(session, now, jlast)
        # Moved to the client's new node: nothing of it is delivered or stored here.
        session.inflight = {}
        session.queue = ()
        session.queued_bytes = 0
        core.end_session(session, now)
        return data

    # -- after a NATS outage (sessions.reconcile) ----------------------------------

    async def reclaim_from(self, node: str, cid: str) -> bytes | None:
        """Ask ``node`` for its copy of ``cid``'s session, unless its client is connected
        there (LIVE). b"": it has none; None: no answer."""
        try:
            reply = await self.bp.nc.request(
                f"{self.bp.ctl}.node.{node}.reclaim", cid.encode(), timeout=CLAIM_TIMEOUT
            )
        except Exception as exc:
            log.info("cluster: node %s did not answer for session %r: %r", node, cid, exc)
            return None
        if reply.data and reply.data not in (LIVE, b"-"):
            self.bp.stats["sessions_moved_in"] += 1
        return bytes(reply.data) if reply.data != b"-" else b""

    async def on_reclaim(self, m: Any) -> None:
        """A node back from a NATS outage holds the live client of a session this node
        adopted meanwhile: hand it over, unless the client is connected here too (it
        reconnected here during the outage: this one stays, the other is closed)."""
        cid = m.data.decode()
        session = self.bp.core.sessions.get(cid)
        if session is None:
            await m.respond(b"")
        elif session.conn is not None:
            await m.respond(LIVE)
        else:
            log.info("cluster: session %r goes back to the node holding its client", cid)
            data = self.give_up(cid)
            await self.bp.written(REPLY_WAIT)  # as on_take
            await m.respond(data)

    async def hand_over(self, cid: str, node: str, closing: bool = False) -> tuple[int, int]:
        """``node`` holds the session of ``cid``: the copy here ends (its live connection
        closed, 0x8E, no will: the client is connected there) and its undelivered
        QoS 1/2 messages are pushed to ``node``'s copy. Returns (moved, lost)."""
        if closing:
            log.warning("cluster: client %s reconnected on node %s during the outage", cid, node)
        data = self.give_up(cid, will=False)
        if len(data) <= 1:
            return 0, 0
        snap = json.loads(data)
        # Not what this node got from NATS since the outage: the other copy got it too.
        core = self.bp.core
        now = core.clock()
        keep = [
            d
            for d in snap["deliveries"]
            if not (d[4] and d[5] != 1)
            and not self.bp.seen_recently(message_from_record(d[0], now))
        ]
        if not keep:
            return 0, 0
        payload = cid.encode() + b"\0" + json.dumps({"deliveries": keep}).encode()
        try:
            reply = await self.bp.nc.request(
                f"{self.bp.ctl}.node.{node}.merge", payload, timeout=CLAIM_TIMEOUT
            )
            moved = int(reply.data or b"0") if reply.data != b"-" else 0
        except Exception as exc:
            log.warning("cluster: messages of %r not moved to node %s: %r", cid, node, exc)
            moved = 0
        if moved < len(keep):
            log.warning(
                "cluster: %d queued message(s) of session %r lost (node %s did not take them)",
                len(keep) - moved,
                cid,
                node,
            )
        return moved, len(keep) - moved

    async def on_merge(self, m: Any) -> None:
        """Messages of another copy of a session held here (a node back from a NATS
        outage whose copy lost): queued (or sent) after what the session has."""
        cid, _, data = m.data.partition(b"\0")
        session = self.bp.core.sessions.get(cid.decode())
        if session is None:
            await m.respond(b"-")
            return
        n = self.bp.records.merge(session, data)
        log.info("cluster: %d message(s) of session %r merged from another node", n, cid.decode())
        await m.respond(str(n).encode())

    def drop_stale(self, cid: str) -> int:
        """The session of ``cid`` ended elsewhere during an outage: the copy here goes.
        Returns the number of its undelivered QoS 1/2 messages (lost)."""
        data = self.give_up(cid, will=False)
        if len(data) <= 1:
            return 0
        lost = len(json.loads(data)["deliveries"])
        if lost:
            log.warning(
                "cluster: session %r ended on another node during the outage; %d queued "
                "message(s) dropped with it",
                cid,
                lost,
            )
        return lost


__all__ = ["Ownership", "CLAIM_TIMEOUT", "LIVE"]
