"""How far each persistent session got through the journal (journal.py), in JetStream.

KV bucket ``mqttfast_<hash(prefix)>_progress``: hash(client id) -> JSON
{node, since, last: {origin: counter}, held: {origin: [counter, ...]}}, written by the
node holding the session. ``last`` is the highest id of each origin that had reached the
node; ``held`` the journaled messages the session still holds (queued or in flight).
Messages of one origin reach a node in order, so a journaled message of the session's
filters with counter <= last[origin] that is not held was delivered and acknowledged
(or dropped by the session's own limits): done. Everything else in the journal for
the session's filters since ``since`` is replayed by an adopter.

Written by one task, at most every :data:`INTERVAL` seconds, for the sessions whose
record changed (one consistent snapshot of all of them per pass): a QoS 1 message
acknowledged just before the node's death may be delivered again by the adopter.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from itertools import chain
from typing import Any

from nats.js.errors import KeyNotFoundError

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

    async def attach(self, js: Any, replicas: int) -> None:
        try:
            self.kv = await js.key_value(self.bucket)
        except Exception:
            self.kv = await js.create_key_value(bucket=self.bucket, history=1, replicas=replicas)
        if not self._task:
            self._task = True
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

    def _snapshot(self, session: Any) -> tuple[dict[str, int], dict[str, list[int]]]:
        held: dict[str, list[int]] = {}
        backlog = session.backlog or ()
        for m in chain(
            (d.msg for d in session.inflight.values()),
            (d.msg for d in session.queue),
            (b[0] for b in backlog),
        ):
            mid = getattr(m, "mid", None)
            if mid is not None:
                origin, c = split_id(mid)
                held.setdefault(origin, []).append(c)
        return dict(self.bp.journal.last), held

    def _due(self) -> list[tuple[str, bytes]]:
        """One consistent pass over the sessions held here (no await inside)."""
        bp = self.bp
        core = bp.core
        out: list[tuple[str, bytes]] = []
        journal_on = bp.journal.on
        for cid in list(bp.records.owned):
            session = core.sessions.get(cid)
            if session is None or not session.expiry_interval:
                continue
            snap = self._snapshot(session) if journal_on else None
            if snap is None or self.written.get(cid) == snap:
                continue
            self.written[cid] = snap
            since = self.since.setdefault(cid, time.time())
            value = json.dumps(
                {"node": bp.node_id, "since": since, "last": snap[0], "held": snap[1]},
                separators=(",", ":"),
            ).encode()
            out.append((cid, value))
        for cid in [c for c in self.written if c not in bp.records.owned]:
            # Ended or moved: the next holder writes its own record (a stale one is
            # overwritten then; not deleted here, which could race that write).
            del self.written[cid]
            self.since.pop(cid, None)
        return out

    async def _put(self, cid: str, value: bytes) -> None:
        try:
            await self.kv.put(self.bp.key(cid), value)
            self.stats["progress_writes"] += 1
        except Exception as exc:
            self.written.pop(cid, None)  # written again next pass
            self.bp.stats["js_errors"] += 1
            log.info("cluster: progress of %r not written: %r", cid, exc)

    async def _writer(self) -> None:
        while True:
            await asyncio.sleep(INTERVAL)
            if self.kv is None or not self.bp.connected:
                continue
            try:
                due = self._due()
                for i in range(0, len(due), BATCH):
                    await asyncio.gather(*(self._put(c, v) for c, v in due[i : i + BATCH]))
            except Exception:
                log.exception("cluster: progress writer")


__all__ = ["Progress"]
