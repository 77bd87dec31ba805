"""How far each persistent session got through the journal (journal.py), in JetStream.

KV bucket ``mqttfast_<hash(prefix)>_progress``: hash(client id) -> JSON
{node, since, last: {origin: counter}, held: {origin: [counter, ...]},
infl: {origin: [[counter, packet id, state], ...]}}, written by the node holding the
session. ``last`` is the highest id of each origin that had reached the
node; ``held`` the journaled messages the session still holds (queued or in flight).
Messages of one origin reach a node in order, so a journaled message of the session's
filters with counter <= last[origin] that is not held was delivered and acknowledged
(or dropped by the session's own limits): done. Everything else in the journal for
the session's filters since ``since`` is replayed by an adopter.

``infl`` keeps the packet id and state of the journaled messages in flight, so an
adopter re-sends the PUBLISH with that id (DUP) or, for a QoS 2 message whose PUBREC
came, the PUBREL.

``rel`` is the other direction: the packet ids of the QoS 2 PUBLISHes the session's
client sent here and has not released (PUBREL) yet [MQTT-4.3.3-9]. The PUBREC of such
a PUBLISH leaves only once a record naming its id is in JetStream, and that record is
written only after the message itself went to nats-server (``after``); the PUBCOMP only
once a record without it is. An adopter restores them (journal.replay), so a PUBLISH
the client re-sends with DUP after its node died is acknowledged, not forwarded twice,
and an id reused after the PUBCOMP is a new message there too. ``q2`` is [origin,
counter of the session's latest QoS 2 PUBLISH]: with it the adopter marks a re-sent
PUBLISH whose id the record does not name, for the nodes that had it to recognise
(journal.q2_copy).

Written by one task, at most every :data:`INTERVAL` seconds, for the sessions whose
record changed (one consistent snapshot of all of them per pass): a QoS 1 message
acknowledged just before the node's death may be delivered again by the adopter.
QoS 2 is never delivered twice: the PUBREL of a journaled message leaves only once the
record saying "PUBREC received, packet id P" is in JetStream (``hold_until_recorded``: the
connection's output waits in the acknowledgement gate, acks.py, as for a journal
write); so an adopter either re-sends the PUBLISH (the client has had no PUBREL, so it
has not delivered the message) or the PUBREL P (it may have) -- never both.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from itertools import chain
from typing import Any

from nats.js.errors import KeyNotFoundError

from mqttfast.codec.packets import Pubrec, Pubrel
from mqttfast.core.message import AWAIT_ACK

from .journal import split_id

log = logging.getLogger("mqttfast.cluster")

INTERVAL = 0.05  # seconds between passes of the writer
BATCH = 64  # KV writes in flight at once


class Progress:
    def __init__(self, bp: Any, bucket: str) -> None:
        self.bp = bp
        self.bucket = bucket
        self.kv: Any = None
        self.since: dict[str, float] = {}  # client id -> wall time tracked from
        self.written: dict[str, Any] = {}  # client id -> last (last, held) written
        self.stats = {"progress_writes": 0}
        self._task = False
        self._event: asyncio.Event | None = None
        # client id -> acknowledgement batches (acks.py) waiting for its next write: the
        # PUBRELs held until the PUBREC is recorded, the PUBRECs and PUBCOMPs of the
        # client's own QoS 2 PUBLISHes held until their packet ids are (or are no more).
        self.record_waits: dict[str, list[int]] = {}
        # client id -> the outbox batch of its latest QoS 2 PUBLISH: its record is not
        # written before that batch went to nats-server (else an adopter could take a
        # message that never left this node for one already forwarded).
        self.after: dict[str, int] = {}
        self.deferred = False
        # Adopted sessions whose dead node's record is being read (journal.replay): not
        # overwritten by this node's own record before that read. (In a NATS cluster a
        # KV put can overtake a get sent before it: the get is a JetStream API request,
        # the put a stream publish, each routed to the stream's leader its own way. The
        # likely cause of adoptions that took nothing for done and replayed what the
        # client had completed: ~300 QoS 2 duplicates in 2 of ~25 combined-test runs.)
        self.reading: set[str] = set()
        # client id -> counter of its latest QoS 2 PUBLISH here (journal.q2_copy), and,
        # for a session adopted after its node died, that node's origin and its
        # record's counter: a re-sent PUBLISH with an id the record does not name is
        # sent on as a possible copy.
        self.q2last: dict[str, int] = {}
        self.q2base: dict[str, tuple[str, int]] = {}
        # client id -> {packet id: (first counter, outbox batch)} of its unreleased QoS 2
        # PUBLISHes forwarded from here (``resent``), and the packet id being forwarded
        # again as a copy (set by ``resent``, read by the next ``q2_id``).
        self.q2sent: dict[str, dict[int, tuple[int, int]]] = {}
        self.again: tuple[Any, int, int] | None = None

    def install(self, core: Any) -> None:
        """(backplane.attach) PUBREC of a journaled QoS 2 message of a persistent
        session: the PUBREL it causes is held until the record names the PUBREC.
        PUBREL from a persistent session's client: the PUBCOMP is held until the
        record no longer names the packet id."""
        handlers = dict(core.handlers)
        original = handlers[Pubrec]
        bp = self.bp

        def handle_pubrec(conn: Any, pkt: Any) -> None:
            session = conn.session
            d = session.inflight.get(pkt.packet_id) if session is not None else None
            if (
                d is not None
                and d.qos == 2
                and d.state == AWAIT_ACK
                and pkt.reason_code < 0x80
                and session.expiry_interval
                and getattr(d.msg, "mid", None) is not None
                and bp.connected
                and bp.ack_after_nats
                and self.kv is not None
            ):
                # Held BEFORE the handler writes the PUBREL: a small read's first write
                # to an ungated connection goes to the socket at once (transport/tcp.py).
                self.hold_until_recorded(conn, session.client_id)
            original(conn, pkt)

        original_pubrel = handlers[Pubrel]

        def handle_pubrel(conn: Any, pkt: Any) -> None:
            session = conn.session
            if session is not None:
                sent = self.q2sent.get(session.client_id)
                if sent:
                    sent.pop(pkt.packet_id, None)
            if (
                session is not None
                and pkt.packet_id in session.awaiting_pubrel
                and self._recording(session)
            ):
                # The PUBCOMP frees the id for a new message: not before the record
                # no longer names it.
                self.hold_until_recorded(conn, session.client_id)
            original_pubrel(conn, pkt)

        handlers[Pubrec] = handle_pubrec
        handlers[Pubrel] = handle_pubrel
        core.handlers = handlers

    def _recording(self, session: Any) -> bool:
        bp = self.bp
        return bool(
            session.expiry_interval
            and bp.connected
            and bp.ack_after_nats
            and self.kv is not None
            and bp.journal.on
        )

    def q2_id(self, conn: Any, pid: int, dup: bool) -> str | None:
        """The id of a QoS 2 PUBLISH of ``conn``'s client with packet id ``pid``, for a
        persistent session (journal.q2_copy); None for others."""
        session = conn.session
        again = self.again
        self.again = None
        if session is None:
            return None
        cid = session.client_id
        journal = self.bp.journal
        base = self.q2base.get(cid)
        if again is not None and again[0] is conn and again[1] == pid:
            # Its first forward (counter again[2]) may be lost: a copy that the nodes
            # which had the first one recognise (journal.q2_copy), as after a death.
            # (NATS still away: it leaves with the rest when the connection is back.)
            mid = journal.next_id(f"/{pid}/{again[2] - 1}/{journal.origin}")
        elif not self._recording(session):
            return None
        elif dup and base is not None and pid not in session.awaiting_pubrel:
            mid = journal.next_id(f"/{pid}/{base[1]}/{base[0]}")
        else:
            mid = journal.next_id(f"/{pid}")
        self.q2last[cid] = journal.counter
        sent = self.q2sent.get(cid)
        if sent is None:
            sent = self.q2sent[cid] = {}
        # A copy keeps the first forward's counter: a second copy must be recognised
        # by the nodes that had only the first.
        first = again[2] if again is not None and again[0] is conn else journal.counter
        sent[pid] = (first, self.bp.acks.batch_no)
        return mid

    def resent(self, conn: Any, pid: int) -> bool:
        """``conn``'s client re-sent QoS 2 PUBLISH ``pid``, not released yet (its PUBREC
        never reached it). If the batch that forwarded it was unconfirmed when the NATS
        connection broke (or a journal write failed), that forward may be lost: True,
        it is forwarded again, as a copy (``q2_id``). Still unconfirmed: its PUBREC
        waits for that batch, as the first one did. [MQTT-4.3.3-9] without loss."""
        session = conn.session
        if session is None:
            return False
        rec = self.q2sent.get(session.client_id, {}).get(pid)
        if rec is None:
            return False
        counter, batch = rec
        acks = self.bp.acks
        if acks.maybe_lost(batch):
            self.again = (conn, pid, counter)
            self.bp.stats["qos2_forwarded_again"] += 1
            return True
        if batch > acks.confirmed:
            acks.hold_for(conn, batch)  # the PUBREC about to be written waits for it
            self.bp.wake()
        return False

    def adopted(self, session: Any, prog: dict[str, Any]) -> None:
        """(journal.replay) ``session`` of a dead node is installed here: its client's
        unreleased QoS 2 packet ids, and what tells a re-sent copy apart."""
        for pid in prog.get("rel", ()):
            session.await_pubrel(int(pid))
        q2 = prog.get("q2")
        if q2:
            self.q2base[session.client_id] = (str(q2[0]), int(q2[1]))

    def hold_pubrec(self, conn: Any) -> None:
        """(ClusterRouter.publish) A QoS 2 PUBLISH of ``conn``'s client, in the current
        outbox batch: for a persistent session, its PUBREC waits for a record naming
        its packet id, written once the batch went out."""
        session = conn.session
        if session is None or not self._recording(session):
            return
        cid = session.client_id
        self.after[cid] = self.bp.acks.batch_no
        self.hold_until_recorded(conn, cid)

    def hold_until_recorded(self, conn: Any, cid: str) -> None:
        """``conn``'s output (the PUBREL, PUBREC or PUBCOMP it is about to get) waits
        for the next write of ``cid``'s record, which its change goes into."""
        acks = self.bp.acks
        batch = acks.batch_no
        acks.hold(conn)  # its output waits for this batch: its PONG and our write
        acks.journal_sent(batch)
        self.record_waits.setdefault(cid, []).append(batch)
        self.written.pop(cid, None)  # written at the next pass, changed or not
        self.bp.wake()  # the sender PINGs after the batch
        if self._event is not None:
            self._event.set()

    async def attach(self, js: Any, replicas: int) -> None:
        try:
            self.kv = await js.key_value(self.bucket)
        except Exception:
            self.kv = await js.create_key_value(bucket=self.bucket, history=1, replicas=replicas)
        if not self._task:
            self._task = True
            self._event = asyncio.Event()
            self.bp._spawn(self._writer())

    def carry(self, cid: str, prog: dict[str, Any]) -> None:
        """An adopted session: its journal start stays the dead node's."""
        if prog.get("since"):
            self.since[cid] = float(prog["since"])

    async def read(self, cid: str) -> dict[str, Any] | None:
        if self.kv is None:
            return None
        try:
            entry = await self.kv.get(self.bp.key(cid))
        except KeyNotFoundError:
            return None
        if not entry.value:
            return None
        rec: dict[str, Any] = json.loads(entry.value)
        return rec

    def _snapshot(self, session: Any) -> tuple[Any, ...]:
        held: dict[str, list[int]] = {}
        infl: dict[str, list[list[int]]] = {}
        for pid, d in session.inflight.items():
            mid = getattr(d.msg, "mid", None)
            if mid is not None:
                origin, c = split_id(mid)
                held.setdefault(origin, []).append(c)
                infl.setdefault(origin, []).append([c, pid, d.state])
        rel = sorted(session.awaiting_pubrel)
        last = self.q2last.get(session.client_id)
        q2 = [self.bp.journal.origin, last] if last is not None else None
        backlog = session.backlog or ()
        for m in chain((d.msg for d in session.queue), (b[0] for b in backlog)):
            mid = getattr(m, "mid", None)
            if mid is not None:
                origin, c = split_id(mid)
                held.setdefault(origin, []).append(c)
        return dict(self.bp.journal.last), held, infl, rel, q2

    def _due(self) -> list[tuple[str, bytes | None, list[int]]]:
        """One consistent pass over the sessions held here (no await inside)."""
        bp = self.bp
        core = bp.core
        out: list[tuple[str, bytes | None, list[int]]] = []
        journal_on = bp.journal.on
        waits = self.record_waits
        self.record_waits = {}
        sent = bp.acks.sent
        self.deferred = False
        for cid in list(bp.records.owned):
            session = core.sessions.get(cid)
            if session is None or not session.expiry_interval:
                continue
            if cid in self.reading:  # a later pass (its held outputs wait for it)
                if cid in waits:
                    self.record_waits[cid] = waits.pop(cid)
                continue
            after = self.after.get(cid)
            if after is not None:
                if after > sent:  # its QoS 2 PUBLISH is not out yet: a later pass
                    if cid in waits:
                        self.record_waits[cid] = waits.pop(cid)
                    self.deferred = True
                    continue
                del self.after[cid]
            snap = self._snapshot(session) if journal_on else None
            if snap is None or self.written.get(cid) == snap:
                continue
            self.written[cid] = snap
            since = self.since.setdefault(cid, time.time())
            value = json.dumps(
                {
                    "node": bp.node_id,
                    "since": since,
                    "last": snap[0],
                    "held": snap[1],
                    "infl": snap[2],
                    "rel": snap[3],
                    "q2": snap[4],
                },
                separators=(",", ":"),
            ).encode()
            out.append((cid, value, waits.pop(cid, [])))
        for cid, batches in waits.items():
            out.append((cid, None, batches))  # not held here any more: nothing to wait for
        for cid in [c for c in self.written if c not in bp.records.owned]:
            # Ended or moved: the next holder writes its own record (a stale one is
            # overwritten then; not deleted here, which could race that write).
            del self.written[cid]
            self.since.pop(cid, None)
            self.after.pop(cid, None)
            self.q2last.pop(cid, None)
            self.q2base.pop(cid, None)
            self.q2sent.pop(cid, None)
        return out

    async def _put(self, cid: str, value: bytes | None, waits: list[int]) -> None:
        ok = True
        if value is not None:
            try:
                await self.kv.put(self.bp.key(cid), value)
                self.stats["progress_writes"] += 1
            except Exception as exc:
                ok = False
                self.written.pop(cid, None)  # written again next pass
                self.bp.stats["js_errors"] += 1
                log.info("cluster: progress of %r not written: %r", cid, exc)
        acks = self.bp.acks
        for batch in waits:  # a failed write drops the held PUBRELs' connection
            acks.journal_acked(batch, ok)

    async def _writer(self) -> None:
        event = self._event
        assert event is not None
        while True:
            try:  # every INTERVAL, or at once (next loop turn) for a held PUBREL
                await asyncio.wait_for(event.wait(), INTERVAL)
            except TimeoutError:
                pass
            event.clear()
            if self.kv is None or not self.bp.connected:
                continue
            try:
                due = self._due()
                for i in range(0, len(due), BATCH):
                    await asyncio.gather(*(self._put(c, v, w) for c, v, w in due[i : i + BATCH]))
            except Exception:
                log.exception("cluster: progress writer")
            if self.deferred:  # again next loop turn: the sender writes the batch first
                await asyncio.sleep(0)
                event.set()


__all__ = ["Progress"]
