"""Persistent sessions that outlive the node holding them (kill -9 included).

The durable part of every persistent session (clean session 0 / Session Expiry > 0)
is recorded in a JetStream KV bucket, ``mqttfast_<hash(prefix)>_sessions``:
hash(client id) -> JSON {client id, owning node, protocol version, expiry interval,
wall time of the disconnect (None while connected), user name, subscriptions with
their options}. nats-server's own MQTT listener keeps the same kind of record (one
message per client in its ``$MQTT_sess`` stream); here the queued messages stay in the
owning node's memory (or SQLite) and move by the takeover (backplane.py).

* Written by the owning node when a persistent session connects, when its
  subscriptions change (the SUBACK waits for the write, bounded) and when its client
  disconnects; deleted when the session ends or expires. Never on the per-message path.
  One writer task per node, coalescing: it writes the *current* state of each session
  marked since its last pass, in order.
* Writes are revision-checked (``update(last=rev)``) once this node knows the revision
  it wrote: a node that lost a session to another one (adopted while it was cut off,
  taken over) cannot overwrite the new owner's record; the write after a claim (CONNECT,
  a take-over, an adoption) is unconditional, the claim having made this node owner.
* When a node is declared dead (heartbeats, backplane._check_dead), every survivor goes
  through the records naming it; for each, a revision-checked update naming itself
  elects exactly one survivor, which recreates the session offline here with its
  subscriptions (so QoS 1/2 messages published from then on are queued for it) and
  records itself as owner of the client id. An expired session is deleted instead.
  The client, reconnecting anywhere, gets it through the ordinary takeover.
* A client that reconnects before that (its node's take subject has no responders):
  the CONNECT adopts the record itself, with the same revision check.
* A node cut off from NATS (not dead: it kept serving its clients) may have had its
  sessions adopted meanwhile, or its clients may have reconnected elsewhere. When NATS
  is back it reconciles (``reconcile``; record writes wait until it is done): for every
  session it holds it reads the record and the owner of the client id, then
  - its client is connected here, nobody else has a live connection for it: this node
    reclaims it (the holder hands its copy over with the messages queued there during
    the outage, merged here without what this node received itself since) and records
    itself as owner, revision-checked;
  - the client is connected on the other node: the local connection is closed (v5
    DISCONNECT 0x8E Session taken over, no will), the local copy's undelivered QoS 1/2
    messages are pushed to that node's session, the local copy ends;
  - its client is offline here and the record names another node: that node's copy
    wins, the local queued messages are pushed to it, the local copy ends.
  What cannot be pushed (the other node does not answer) is logged with a count.
  nats-server's MQTT listener has no such step because its sessions and their messages
  live only in JetStream ($MQTT_sess, $MQTT_msgs streams); here the messages live in
  the nodes' memory, so the two copies are merged instead.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from nats.errors import NoRespondersError
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from mqttfast.codec.constants import SESSION_EXPIRY_NEVER
from mqttfast.core.message import AWAIT_ACK
from mqttfast.core.subscriptions import SubEntry

from .ownership import LIVE
from .wire import message_from_record, subscription_rows

log = logging.getLogger("mqttfast.cluster")

WRITE_WAIT = 2.0  # seconds a SUBACK waits at most for the session record
ADOPT_BATCH = 64  # records adopted concurrently (KV round trips overlap)
RECONCILE_TRIES = 5  # rounds (1 s apart) for sessions JetStream did not answer about


def expired(rec: dict[str, Any], since: float, now_wall: float) -> bool:
    """Has the session of ``rec`` expired? Offline since its recorded disconnect, or
    ``since`` (its node's death) when it was connected then."""
    exp = rec.get("exp", 0)
    if not exp:
        return True
    if exp == SESSION_EXPIRY_NEVER:
        return False
    start = rec.get("disc") or since
    return bool(start + exp <= now_wall)


class SessionRecords:
    def __init__(self, bp: Any, bucket: str) -> None:
        self.bp = bp
        self.bucket = bucket
        self.kv: Any = None
        # client id -> revision of the record this node wrote last (0: this node claimed
        # the session and has not written yet: the next write is unconditional).
        self.owned: dict[str, int] = {}
        self.dirty: dict[str, None] = {}  # client ids to write, in order
        self.writing: str | None = None
        self.version: dict[str, int] = {}  # client id -> MQTT protocol level
        self.disc: dict[str, float] = {}  # client id -> wall time its client left
        self.waiters: dict[str, list[Callable[[], None]]] = {}  # SUBACKs held
        self.installing = False
        # NATS was lost: writes wait until the reconnect reconciled who holds what.
        self.paused = False
        # The sessions held when NATS was lost (client id -> session object), until the
        # reconcile: one not there (or another object) was begun during the outage.
        self.before: dict[str, Any] | None = None
        self._event: asyncio.Event | None = None
        self.stats = {
            "session_records": 0,
            "sessions_adopted": 0,
            "session_write_errors": 0,
            "sessions_reconciled": 0,
        }

    # -- wiring -----------------------------------------------------------------

    async def attach(self, js: Any, replicas: int) -> None:
        """(backplane._connect) the bucket exists; the writer runs."""
        try:
            self.kv = await js.key_value(self.bucket)
        except Exception:
            self.kv = await js.create_key_value(bucket=self.bucket, history=1, replicas=replicas)
        if self._event is None:
            self._event = asyncio.Event()
            self.bp._spawn(self._writer())
        self._event.set()  # changes made while NATS was away

    # -- hooks (synchronous, from the router and the backplane) -------------------

    def touch(self, session: Any) -> None:
        """A session's durable part may have changed (subscriptions, end)."""
        cid = session.client_id
        if self.installing or not (session.expiry_interval or cid in self.owned):
            return
        self.dirty[cid] = None
        if self._event is not None:
            self._event.set()

    def connected(self, conn: Any) -> None:
        """After CONNACK (the claim made this node owner of the client id)."""
        session = conn.session
        if session is None:
            return
        cid = session.client_id
        self.disc.pop(cid, None)
        if session.expiry_interval:
            self.version[cid] = conn.protocol_version
            self.owned[cid] = 0
        self.touch(session)

    def claimed(self, cid: str) -> None:
        """A session was moved here by a take-over: ours, whatever the record says."""
        self.owned[cid] = 0

    def disconnected(self, session: Any) -> None:
        """Its client left; the session lives on offline (its expiry counts from now)."""
        cid = session.client_id
        if self.bp.core.sessions.get(cid) is session:
            self.disc[cid] = time.time()
        self.touch(session)

    def release(self, cid: str) -> None:
        """The session moves to another node (take-over): its record is theirs now."""
        self.owned.pop(cid, None)
        self.dirty.pop(cid, None)
        self.disc.pop(cid, None)
        self.version.pop(cid, None)
        self._wake_waiters(cid)

    def hold(self, cid: str, finish: Callable[[], None]) -> bool:
        """Hold a SUBACK until the record of ``cid`` has been written (bounded)."""
        if self.kv is None or not self.bp.connected or self.paused:
            return False
        if cid not in self.dirty and self.writing != cid:
            return False
        self.waiters.setdefault(cid, []).append(finish)
        loop = asyncio.get_running_loop()
        loop.call_later(WRITE_WAIT, self._give_up, cid, finish)
        return True

    def _give_up(self, cid: str, finish: Callable[[], None]) -> None:
        waiting = self.waiters.get(cid)
        if waiting and finish in waiting:
            waiting.remove(finish)
            if not waiting:
                del self.waiters[cid]
            self.stats["late_subacks"] = n = self.stats.get("late_subacks", 0) + 1
            if n % 100 == 1:  # JetStream slow or away: not once per SUBSCRIBE
                log.warning("cluster: session record of %r not written in time; SUBACK sent", cid)
            finish()

    def _wake_waiters(self, cid: str) -> None:
        for finish in self.waiters.pop(cid, ()):
            try:
                finish()
            except Exception:
                log.exception("cluster: SUBACK after the session record failed")

    # -- the writer ---------------------------------------------------------------

    def _record(self, session: Any) -> bytes:
        cid = session.client_id
        conn = session.conn
        return json.dumps(
            {
                "cid": cid,
                "node": self.bp.node_id,
                "v": conn.protocol_version if conn is not None else self.version.get(cid, 4),
                "exp": session.expiry_interval,
                "disc": None if conn is not None else self.disc.get(cid),
                "user": session.username,
                "subs": subscription_rows(session),
            },
            ensure_ascii=True,
        ).encode()

    async def _writer(self) -> None:
        event = self._event
        assert event is not None
        while True:
            try:
                await asyncio.wait_for(event.wait(), 1.0)
            except TimeoutError:
                if not self.dirty:  # else: left over while NATS was away; retried now
                    continue
            event.clear()
            while self.dirty and self.kv is not None and self.bp.connected and not self.paused:
                cid = next(iter(self.dirty))
                del self.dirty[cid]
                self.writing = cid
                try:
                    await self._write(cid)
                except Exception as exc:  # JetStream unavailable: retried when back
                    self.stats["session_write_errors"] += 1
                    self.bp.stats["js_errors"] += 1
                    if self.stats["session_write_errors"] % 100 == 1:  # not every second
                        log.warning("cluster: session record of %r not written: %r", cid, exc)
                    if cid not in self.dirty:
                        self.dirty[cid] = None
                    self.writing = None
                    self._wake_waiters(cid)
                    await asyncio.sleep(1.0)
                    continue
                self.writing = None
                if cid not in self.dirty:  # else a newer change (the SUBACK's) is to come
                    self._wake_waiters(cid)

    async def _write(self, cid: str) -> None:
        kv = self.kv
        key = self.bp.key(cid)
        session = self.bp.core.sessions.get(cid)
        rev = self.owned.get(cid)
        if session is not None and session.expiry_interval:
            value = self._record(session)
            if rev:
                try:
                    new = await kv.update(key, value, last=rev)
                except KeyWrongLastSequenceError:
                    self.owned.pop(cid, None)
                    log.warning("cluster: session %r is recorded by another node now", cid)
                    return
            elif rev == 0:
                new = await kv.put(key, value)
            else:  # never claimed here (e.g. restored from SQLite): only if nobody has it
                try:
                    new = await kv.create(key, value)
                except KeyWrongLastSequenceError:
                    return
                self.owned[cid] = new
            if cid in self.owned:
                self.owned[cid] = new
            return
        # Ended (or no longer persistent): the record goes, if it is still ours.
        self.version.pop(cid, None)
        self.disc.pop(cid, None)
        if rev is None:
            return
        del self.owned[cid]
        try:
            await kv.delete(key, last=rev or None)
        except KeyWrongLastSequenceError:
            pass  # another node's now

    # -- adoption -------------------------------------------------------------------

    async def _scan(self) -> list[tuple[str, int, dict[str, Any]]]:
        """Every current record: (key, revision, record)."""
        watcher = await self.kv.watch(">", ignore_deletes=True)
        out: list[tuple[str, int, dict[str, Any]]] = []
        try:
            while True:
                entry = await watcher.updates(timeout=5.0)
                if entry is None:
                    break
                if entry.value:
                    try:
                        out.append((entry.key, entry.revision, json.loads(entry.value)))
                    except ValueError:
                        continue
        finally:
            await watcher.stop()
        return out

    def _install(self, rec: dict[str, Any], since: float) -> bool:
        """Recreate a recorded session offline here, with its subscriptions."""
        core = self.bp.core
        cid = rec["cid"]
        old = core.sessions.get(cid)
        if old is not None:
            return False  # the client is here already: its own session wins
        now = core.clock()
        session = core.new_session(cid)
        session.expiry_interval = rec["exp"]
        session.username = rec.get("user")
        storage = core.storage
        storage.session_update(session)  # durable here too when persistence is on
        self.installing = True
        try:
            for f, qos, nl, rap, rh, sid, group in rec["subs"]:
                entry = SubEntry(cid, f, qos, nl, rap, rh, sid, group)
                core.router.subscribe(session, entry)
                if session.persisted:
                    storage.subscription_put(session, entry)
        finally:
            self.installing = False
        core.offline.add(session)
        start = rec.get("disc") or since
        self.disc[cid] = start
        self.version[cid] = rec.get("v", 4)
        if session.expiry_interval != SESSION_EXPIRY_NEVER:
            left = start + session.expiry_interval - time.time()
            session.expires_at = now + max(0.0, left)
        if session.persisted:
            storage.session_put(session)
        return True

    async def _adopt_one(self, key: str, rev: int, rec: dict[str, Any], since: float) -> int:
        """1 if this node adopted the session, 0 if not (another node did, or expired)."""
        kv = self.kv
        if expired(rec, since, time.time()):
            try:
                await kv.delete(key, last=rev)
                log.info("cluster: session %r of dead node %s had expired", rec["cid"], rec["node"])
            except Exception:
                pass
            return 0
        dead = rec["node"]
        mine = dict(rec, node=self.bp.node_id, disc=rec.get("disc") or since)
        try:
            new = await kv.update(key, json.dumps(mine, ensure_ascii=True).encode(), last=rev)
        except Exception:
            return 0  # another survivor, or the client reconnecting, has it
        # No await between the update and the install: a take-over request for this
        # client id (a node that read the new record) finds the session here.
        cid = rec["cid"]
        if self._install(mine, since):
            self.owned[cid] = new
            # What the dead node held for it, from the JetStream journal (journal.py).
            await self.bp.journal.replay(cid)
        else:
            self.owned[cid] = new
            self.touch(self.bp.core.sessions[cid])
        await self.bp.owners.own_after(cid, dead)
        return 1

    async def adopt_node(self, node: str, since: float) -> None:
        """``node`` died (or is not running): adopt its recorded sessions; each goes to
        one survivor (revision-checked update)."""
        if self.kv is None:
            return
        try:
            records = [r for r in await self._scan() if r[2].get("node") == node]
        except Exception as exc:
            self.bp.stats["js_errors"] += 1
            log.warning("cluster: sessions of node %s not read: %r", node, exc)
            return
        if not records:
            return
        adopted = 0
        for i in range(0, len(records), ADOPT_BATCH):
            done = await asyncio.gather(
                *(
                    self._adopt_one(k, rev, rec, since)
                    for k, rev, rec in records[i : i + ADOPT_BATCH]
                )
            )
            adopted += sum(done)
        if adopted:
            self.stats["sessions_adopted"] += adopted
            await self.bp.interest_known()
            log.warning(
                "cluster: adopted %d persistent session(s) of node %s (of %d recorded)",
                adopted,
                node,
                len(records),
            )

    async def holder(self, cid: str) -> str | None:
        """The node the record of ``cid``'s persistent session names, if there is one."""
        if self.kv is None:
            return None
        try:
            entry = await self.kv.get(self.bp.key(cid))
            node = json.loads(entry.value).get("node") if entry.value else None
        except (KeyNotFoundError, ValueError):
            return None
        return node if isinstance(node, str) else None

    async def adopt_on_connect(self, cid: str, dead: str) -> Any:
        """A CONNECT whose client id's owner is gone (no responders): take the record
        over here, or fetch the session from the survivor that already adopted it.
        Returns the installed session, or None."""
        kv = self.kv
        key = self.bp.key(cid)
        for _ in range(3):
            try:
                entry = await kv.get(key)
            except KeyNotFoundError:
                return None
            try:
                rec = json.loads(entry.value)
            except ValueError:
                return None
            holder = rec.get("node")
            core = self.bp.core
            if holder == self.bp.node_id:
                return core.sessions.get(cid)
            if holder != dead:
                # A survivor adopted it meanwhile: the ordinary take-over (asked rather
                # than judged by heartbeats: this node may have just started).
                try:
                    if await self.bp.owners.take_from(holder, cid, raising=True):
                        return core.sessions.get(cid)
                    return None
                except NoRespondersError:
                    pass  # that node is gone too: adopted here below
                except Exception:
                    return None  # alive but slow: its session stays there
            since = time.time()
            if expired(rec, since, since):
                try:
                    await kv.delete(key, last=entry.revision)
                except Exception:
                    pass
                return None
            mine = dict(rec, node=self.bp.node_id, disc=rec.get("disc") or since)
            try:
                new = await kv.update(
                    key, json.dumps(mine, ensure_ascii=True).encode(), last=entry.revision
                )
            except KeyWrongLastSequenceError:
                continue  # a survivor was quicker: read again
            if self._install(mine, since):
                self.stats["sessions_adopted"] += 1
                log.info(
                    "cluster: session %r of unreachable node %s adopted at CONNECT", cid, holder
                )
                self.owned[cid] = new
                # Before CONNACK: what the dead node held for it (journal.py).
                await self.bp.journal.replay(cid)
            self.owned[cid] = new
            return core.sessions.get(cid)
        return None

    async def adopt_own(self) -> None:
        """At start: the records this node id left (a previous run killed and restarted
        before the others noticed; with persistence on, restored from SQLite)."""
        if self.kv is None:
            return
        try:
            records = await self._scan()
        except Exception:
            return
        me = self.bp.node_id
        core = self.bp.core
        since = time.time()
        n = 0
        for key, rev, rec in records:
            cid = rec.get("cid")
            if rec.get("node") != me or cid is None:
                continue
            if cid in core.sessions:  # restored from SQLite: ours, at this revision
                self.owned.setdefault(cid, rev)
                continue
            n += await self._adopt_one(key, rev, rec, since)
        # Restored from SQLite but adopted by another node while this one was down: the
        # session went on there (and its client follows the owner record there). The
        # messages it had queued here, acknowledged to their publishers and kept on
        # disk, go to that copy (the adopter has only what was published after).
        elsewhere = {
            rec["cid"]: rec["node"]
            for _k, _r, rec in records
            if rec.get("node") not in (me, None) and rec.get("cid") in core.sessions
        }
        for cid, holder in elsewhere.items():
            session = core.sessions.get(cid)
            if session is not None and session.conn is None and cid not in self.owned:
                moved, lost = await self.bp.owners.hand_over(cid, holder)
                log.warning(
                    "cluster: session %r was adopted by node %s while this node was down; "
                    "%d message(s) restored here moved there, %d lost",
                    cid,
                    holder,
                    moved,
                    lost,
                )
        if n:
            self.stats["sessions_adopted"] += n
            await self.bp.interest_known()
            log.warning("cluster: adopted %d persistent session(s) of this node's previous run", n)

    async def adopt_orphans(self, alive: Callable[[str], bool]) -> None:
        """Once, when this node has heard the others for a while: records of nodes that
        are not running (died before this node started, or while nobody was up)."""
        if self.kv is None:
            return
        try:
            records = await self._scan()
        except Exception:
            return
        me = self.bp.node_id
        nodes: set[str] = {str(r[2].get("node")) for r in records if r[2].get("node")} - {me}
        for node in sorted(n for n in nodes if not alive(n)):
            log.warning("cluster: sessions of node %s, which is not running, found", node)
            await self.adopt_node(node, time.time())

    # -- after a NATS outage -----------------------------------------------------------

    def resume(self) -> None:
        """(backplane) the reconcile is done: the writer goes on."""
        self.paused = False
        self.before = None
        if self._event is not None:
            self._event.set()

    def merge(self, session: Any, data: bytes) -> int:
        """Deliver into ``session`` (live or offline here) the messages of another copy
        of it (a snapshot, wire.session_snapshot), in their order, after what the
        session has; those this node received from NATS itself since it lost NATS are
        left out (both copies got them). Returns the number merged."""
        snap = json.loads(data)
        core = self.bp.core
        now = core.clock()
        seen = self.bp.seen_recently
        already = self.bp.journal.already
        cid = session.client_id
        n = 0
        for md, qos, retain, sub_ids, pid, state in snap.get("deliveries", ()):
            if pid and state != AWAIT_ACK:
                continue  # PUBREC received there: the client has it
            msg = message_from_record(md, now)
            if seen(msg) or self.bp.journal.here_before_outage(msg):
                continue
            self.bp.journal.merged_in(cid, msg)  # not delivered again by catch_up
            if already(cid, msg):
                n += 1  # replayed from the journal here (journal.py): it is here once
                continue
            session.deliver(msg, qos, retain, tuple(sub_ids) if sub_ids else None, now)
            n += 1
        return n

    async def reconcile(self) -> dict[str, int]:
        """(backplane, NATS back after an outage) every session this node holds against
        its record and the owner of its client id; see the module docstring."""
        bp = self.bp
        counts = dict.fromkeys(
            ("checked", "kept", "reclaimed", "closed", "dropped", "in", "out", "lost", "stale"),
            0,
        )
        if self.kv is None:
            return counts
        cids = [c for c, s in bp.core.sessions.items() if s.expiry_interval or s.conn is not None]
        failed: list[str] = []
        for _ in range(RECONCILE_TRIES):
            failed = []
            for i in range(0, len(cids), ADOPT_BATCH):
                done = await asyncio.gather(
                    *(self._reconcile_one(c, counts) for c in cids[i : i + ADOPT_BATCH])
                )
                failed += [c for c, ok in zip(cids[i : i + ADOPT_BATCH], done) if not ok]
            if not failed or not bp.connected:
                break
            cids = failed  # JetStream not ready yet (e.g. nats-server just restarted)
            await asyncio.sleep(1.0)
        if failed:
            log.warning(
                "cluster: %d session(s) not reconciled (JetStream unavailable)", len(failed)
            )
        changed = counts["reclaimed"] + counts["closed"] + counts["dropped"]
        self.stats["sessions_reconciled"] += changed
        log.log(
            logging.WARNING if changed else logging.INFO,
            "cluster: reconciled %d session(s) after the NATS outage: %d kept, %d reclaimed "
            "(%d message(s) in), %d closed here (client on another node), %d dropped here "
            "(held by another node); %d message(s) moved out, %d not movable (lost), "
            "%d discarded (older copy of a session started afresh here)",
            counts["checked"],
            counts["kept"],
            counts["reclaimed"],
            counts["in"],
            counts["closed"],
            counts["dropped"],
            counts["out"],
            counts["lost"],
            counts["stale"],
        )
        return counts

    async def _reconcile_one(self, cid: str, counts: dict[str, int]) -> bool:
        """False: JetStream did not answer (tried again)."""
        bp = self.bp
        core = bp.core
        me = bp.node_id
        key = bp.key(cid)
        session = core.sessions.get(cid)
        if session is None:
            return True
        rec: dict[str, Any] | None = None
        rev = 0
        try:
            try:
                oentry = await bp.kv.get(key)
                owner, orev = (oentry.value or b"").decode() or None, oentry.revision
            except KeyNotFoundError:
                owner, orev = None, 0
            # A clean session here: a record only if an older session of its client id
            # was adopted elsewhere (its owner changed).
            if session.expiry_interval or owner not in (me, None):
                try:
                    entry = await self.kv.get(key)
                    rec, rev = json.loads(entry.value), entry.revision
                except KeyNotFoundError:
                    pass
        except Exception as exc:
            bp.stats["js_errors"] += 1
            log.info("cluster: session %r not reconciled yet: %r", cid, exc)
            return False
        if core.sessions.get(cid) is not session:
            return True  # taken over meanwhile (a CONNECT elsewhere): settled
        counts["checked"] += 1
        holder = rec.get("node") if rec else None
        if session.conn is None:
            if holder and holder != me:
                # Adopted (or resumed) elsewhere while this node was cut off: that
                # copy wins; what was queued here goes to it.
                moved, lost = await bp.owners.hand_over(cid, holder)
                counts["dropped"] += 1
                counts["out"] += moved
                counts["lost"] += lost
            elif holder is None and owner and owner != me:
                # No record and the client id is another node's: the session was
                # ended there (a clean start); the copy here is stale.
                lost = bp.owners.drop_stale(cid)
                counts["dropped"] += 1
                counts["lost"] += lost
            else:
                await self._own(cid, session, key, rec, rev, owner, orev)
                counts["kept"] += 1
            return True
        # A session begun here during the outage (its client was answered Session
        # Present 0: a clean start, or its session was out of reach): the other copy is
        # an older session of that client id; it ends there, its messages are not merged.
        before = self.before
        fresh = before is not None and before.get(cid) is not session
        reclaimed = False
        for node in dict.fromkeys(n for n in (owner, holder) if n and n != me):
            reply = await bp.owners.reclaim_from(node, cid)
            if core.sessions.get(cid) is not session or session.conn is None:
                return True  # its client went (or moved) meanwhile: settled by that
            if reply == LIVE:
                # The client reconnected there during the outage: one live connection.
                moved, lost = await bp.owners.hand_over(cid, node, closing=True)
                counts["closed"] += 1
                counts["out"] += moved
                counts["lost"] += lost
                return True
            if reply and fresh:
                counts["stale"] += len(json.loads(reply).get("deliveries", ()))
                reclaimed = True
            elif reply:
                counts["in"] += self.merge(session, reply)
                reclaimed = True
        await self._own(cid, session, key, rec, rev, owner, orev)
        counts["reclaimed" if reclaimed else "kept"] += 1
        return True

    async def _own(
        self,
        cid: str,
        session: Any,
        key: str,
        rec: dict[str, Any] | None,
        rev: int,
        owner: str | None,
        orev: int,
    ) -> None:
        """This node holds ``cid``: its record and the owner of the client id say so
        (revision-checked against what the reconcile read)."""
        bp = self.bp
        me = bp.node_id
        if owner != me:
            try:
                if orev:
                    await bp.kv.update(key, me.encode(), last=orev)
                else:
                    await bp.kv.create(key, me.encode())
            except Exception as exc:
                log.warning("cluster: owner of %r changed during the reconcile: %r", cid, exc)
        if not session.expiry_interval:
            if rec is not None:  # an older session's, ended now (its copy is gone)
                try:
                    await self.kv.delete(key, last=rev)
                except Exception:
                    pass  # written meanwhile: a newer session's
            return
        if rec is not None and rec.get("node") == me:
            # Still ours: the revision is known again, and what changed during the
            # outage (still marked) is written by the writer, revision-checked.
            self.owned[cid] = rev
            return
        self.dirty.pop(cid, None)
        for _ in range(3):
            if bp.core.sessions.get(cid) is not session:
                return
            value = self._record(session)
            try:
                new = await (
                    self.kv.update(key, value, last=rev) if rev else self.kv.create(key, value)
                )
            except KeyWrongLastSequenceError:
                # Written meanwhile (the former holder's last write racing its release):
                # read again; this node has the live client.
                try:
                    rev = (await self.kv.get(key)).revision
                except KeyNotFoundError:
                    rev = 0
                continue
            except Exception as exc:
                self.dirty[cid] = None  # retried by the writer
                self.owned[cid] = 0
                log.warning("cluster: session record of %r not written: %r", cid, exc)
                return
            self.owned[cid] = new
            return
        log.warning("cluster: session record of %r kept changing; not recorded", cid)

    def status(self) -> dict[str, int]:
        return {
            "session_records": len(self.owned),
            "sessions_adopted": self.stats["sessions_adopted"],
            "sessions_reconciled": self.stats["sessions_reconciled"],
        }


__all__ = ["SessionRecords", "expired"]
