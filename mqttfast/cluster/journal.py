"""The journal: QoS 1/2 messages a persistent session may receive, kept in JetStream.

Without it, the messages a node held for its persistent sessions (queued for an
offline client, in flight, or just handed over by nats-server) died with the node
(kill -9): the adopter (sessions.py) got the subscriptions from the KV record, not
the messages. nats-server's own MQTT listener keeps every QoS 1/2 message in a stream;
this is the equivalent, paid only by durable traffic:

* **Which messages.** Every node watches the sessions KV bucket (sessions.py) and keeps
  the filters of persistent sessions' QoS >= 1 (non-shared) subscriptions, cluster-wide,
  in a ``TopicTree`` (its own sessions' filters are added at SUBSCRIBE, before the
  SUBACK). A QoS >= 1 message whose topic matches one is *journaled*: given an id
  ``<origin incarnation>.<counter>`` (``Mqtt-Id``, the first header of the block, on the
  journal copy and on the core NATS copy alike) and written to the stream
  ``MQTTFAST_<hash>_JOURNAL`` (subjects ``<ctl>.jnl.<topic subject>``, file storage,
  ``replicas``, limits retention, ``max_age = journal_max_age``) with a reply subject
  naming its batch. QoS 0 and clean-session-only traffic never are.
* **Acknowledged after the journal.** The publisher's PUBACK/PUBREC waits (acks.py) for
  the batch's PONG and for JetStream's PubAck of every journal write of the batch; an
  error or no PubAck within the limit disconnects the publishers unacknowledged.
* **Progress** (progress.py): the node holding a session records which journaled
  messages it still holds for it; the rest of what it received is done.
* **Replay on adoption** (``replay``): the adopter reads the journal for the session's
  filters from the progress record's start (bounded by ``journal_max_age``), leaves out
  what the record shows done and what reached this node live after the adoption
  installed the subscriptions, and delivers the rest to the session through the normal
  per-subscription checks (QoS downgrade, No Local, ACL, subscription ids, expiry).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import time
from collections import Counter
from typing import Any

from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from mqttfast.codec import TopicTree
from mqttfast.core import outbound
from mqttfast.core.message import AWAIT_COMP, Delivery

from .fastpath import CACHE_MAX, DURABLE, ID_HEAD, encode_headers
from .subjects import filter_to_subjects, subject_to_topic, topic_to_subject
from .wire import H_ID, H_ORIGIN, message_from, message_headers

log = logging.getLogger("mqttfast.cluster")

# Replay passes after the first: journal writes still in flight at the first read (a
# publisher that did not know the adopter's interest yet) are read again after these.
LATER_PASSES = (1.0, 11.0)
FETCH = 512
LIVE_MAX = 1_000_000  # ids remembered while adopted sessions are replayed
REPLAYED_MAX = 200_000  # replayed messages remembered for de-duplication (all sessions)
Q2_MAX = 200_000  # QoS 2 ids remembered to recognise re-sent copies (q2_copy)
COVER_KEEP = 30.0  # seconds a delivered copy's late original is recognised (q2_copy)
Q2_HAD_MAX = 50_000  # QoS 2 originals remembered per node for had_original
# A replay into a connected session waits while its queue is this full (of the limit):
# a whole outage's messages at once would overflow the queue and be dropped, and live
# messages arriving meanwhile need room too. It stops waiting after ROOM_PATIENCE
# seconds without the queue draining (a client that stopped reading).
ROOM_SHARE = 0.75
ROOM_PATIENCE = 30.0


def split_id(mid: str) -> tuple[str, int]:
    """(origin, counter) of an id "origin.counter[/P[/last/dead]]" (see ``q2_copy``)."""
    origin, _, rest = mid.rpartition(".")
    return origin, int(rest.partition("/")[0])


def _record_summary(prog: dict[str, Any] | None) -> str:
    """What the dead node's progress record said, for the adoption's log line."""
    if prog is None:
        return "no progress record"
    held = sum(len(v) for v in (prog.get("held") or {}).values())
    return f"record of node {prog.get('node')}: last {prog.get('last')}, {held} held"


class Journal:
    def __init__(self, bp: Any, safe: str, max_age: float) -> None:
        self.bp = bp
        self.stream = f"MQTTFAST_{safe}_JOURNAL"
        self.max_age = max_age
        self.head = f"{bp.ctl}.jnl."
        self.js: Any = None
        self.on = False  # the stream exists: journal writes can go
        # Filters of persistent sessions' QoS >= 1 subscriptions: key -> filters, where key
        # is ("k", KV key) for the sessions bucket, ("l", client id) for this node's and
        # ("n", node) for what another node announced (fastpath.DURABLE). The bucket
        # keeps a dead node's sessions journaled; the announcements reach every node
        # before the SUBACK leaves.
        self.tree = TopicTree()
        self.filters: dict[tuple[str, str], set[str]] = {}
        self.cache: dict[str, bool] = {}
        self.origin = ""  # this node's incarnation (set at start)
        self.counter = 0
        # origin -> highest counter of a journaled message received (or published) here;
        # messages from one origin reach a node in order (one NATS connection each way).
        self.last: dict[str, int] = {}
        # While adopted sessions are being replayed: id -> arrival number of the journaled
        # messages that reached this node (or were published here); those that came
        # after a session's subscriptions were installed went to it live: not replayed.
        self.live: dict[str, int] | None = None
        self.arrivals = 0
        self.recording = 0
        # client id -> what was replayed into its session (ids, and (topic, payload) for
        # copies without an id): a copy of the same session handed over later (its dead
        # node restarted from SQLite, which keeps no id) is not merged twice (``already``).
        self.replayed: dict[str, Counter[Any]] = {}
        self.replayed_n = 0
        # NATS lost (or this node stalled): the highest ids per origin that had reached
        # this node then, until the reconcile (``here_before_outage``).
        self.before_outage: dict[str, int] | None = None
        # ... and the wall time then, and the arrival number when the recording of what
        # reached this node since began (``catch_up``: the outage's own share of it).
        self.outage_wall = 0.0
        self.outage_mark = 0
        self.outage_recording = False
        # client id -> ids of the messages another copy of its session brought in during
        # the outage's reconcile (sessions.merge): catch_up leaves them out.
        self.merged: dict[str, set[str]] = {}
        # client id -> the ids its previous node had seen when it gave the session up
        # (after_takeover): passed on if it moves again (given_up).
        self.floors: dict[str, dict[str, int]] = {}
        # client id -> the state of its take-over catch-up while the first journal read
        # has not run: if the session moves on before, given_up hands on the floor it
        # came with and the ids it got since, not this node's ``last`` (which counts
        # messages that reached this node before the session was installed here).
        self.catching: dict[str, dict[str, Any]] = {}
        # (origin, publisher's client id, packet id) -> counter of the latest QoS 2
        # message of a persistent publisher seen here (q2_copy).
        self.q2: dict[tuple[str, Any, str], int] = {}
        # The same key -> (base, upper, until) of a copy delivered here while its
        # original had not come: an original arriving later (from the journal, a replay
        # pass) with a counter in between is that message again (q2_copy).
        self.q2_covered: dict[tuple[str, Any, str], tuple[int, float, float]] = {}
        # client id -> {(origin, publisher, packet id): counter} of the QoS 2 originals
        # its session got here other than live from NATS (a take-over's snapshot, a
        # journal pass): q2_copy decides for the node from what reached it live, and a
        # copy this node takes for new (its original was lost on the way here) is not
        # delivered to these sessions again (had_original).
        self.q2_had: dict[str, dict[tuple[str, Any, str], int]] = {}
        self.q2_had_n = 0
        self.subjects: dict[str, bytes] = {}
        self.ack_sub: Any = None
        self.ack_subject = b""  # reply subject prefix of the journal writes (+ batch)
        self.stats = {"journal_writes": 0, "journal_replayed": 0, "qos2_copies_dropped": 0}

    # -- which messages -------------------------------------------------------

    def filters_known(self) -> set[str]:
        """The distinct filters of persistent sessions' QoS >= 1 subscriptions known
        here (this node's, and the others' from their announcements and the sessions
        bucket)."""
        return set().union(*self.filters.values()) if self.filters else set()

    def wanted(self, topic: str) -> bool:
        if not self.filters:
            return False
        hit = self.cache.get(topic)
        if hit is None:
            hit = bool(self.tree.match(topic))
            if len(self.cache) >= CACHE_MAX:
                self.cache.clear()
            self.cache[topic] = hit
        return hit

    def _set(self, key: tuple[str, str], filters: set[str]) -> None:
        old = self.filters.get(key, set())
        if old == filters:
            return
        if key[0] == "l":  # this node's: announced to the others (fastpath.DURABLE)
            view = self.bp.view
            for f in filters - old:
                view.local_add(DURABLE + f)
            for f in old - filters:
                view.local_remove(DURABLE + f)
            self.bp.wake()
        for f in old - filters:
            self.tree.remove(f, key)
        for f in filters - old:
            self.tree.insert(f, key, None)
        if filters:
            self.filters[key] = filters
        else:
            self.filters.pop(key, None)
        self.cache.clear()

    def local(self, session: Any) -> None:
        """(router) a session's subscriptions changed here: its durable filters now."""
        filters: set[str] = set()
        if session.expiry_interval and session.client_id in self.bp.core.sessions:
            filters = {
                e.topic_filter for e in session.subscriptions.values() if e.qos and e.group is None
            }
        self._set(("l", session.client_id), filters)

    def remote_durable(self, node: str, topic_filter: str, present: bool) -> None:
        """(Interest) ``node`` announced that a persistent session there holds (or no
        longer holds) ``topic_filter`` with QoS >= 1."""
        key = ("n", node)
        filters = set(self.filters.get(key, ()))
        if present:
            filters.add(topic_filter)
        else:
            filters.discard(topic_filter)
        self._set(key, filters)

    def _record(self, key: str, value: bytes | None) -> None:
        filters: set[str] = set()
        if value:
            try:
                rec = json.loads(value)
                filters = {r[0] for r in rec.get("subs", ()) if r[1] and r[6] is None}
            except (ValueError, TypeError, IndexError):
                pass
        self._set(("k", key), filters)

    async def _watch(self, kv: Any) -> None:
        """Every persistent session's filters, from the sessions bucket, kept current."""
        while True:
            try:
                watcher = await kv.watch(">")
                while True:
                    try:
                        entry = await watcher.updates(timeout=30.0)
                    except Exception as exc:
                        if "imeout" in type(exc).__name__:
                            continue
                        raise
                    if entry is None:
                        continue  # the initial values are in
                    self._record(entry.key, entry.value)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("cluster: watch of the session records restarts: %r", exc)
                await asyncio.sleep(1.0)

    # -- writing ------------------------------------------------------------------

    def next_id(self, suffix: str = "") -> str:
        self.counter += 1
        self.last[self.origin] = self.counter
        mid = f"{self.origin}.{self.counter}{suffix}"
        if self.live is not None:
            self._live(mid)
        return mid

    def _remember(self, cid: str, mid: str, msg: Any) -> None:
        if self.replayed_n >= REPLAYED_MAX:
            self.replayed.clear()
            self.replayed_n = 0
        seen = self.replayed.setdefault(cid, Counter())
        seen[mid] += 1
        seen[(msg.topic, bytes(msg.payload))] += 1
        self.replayed_n += 1

    def already(self, cid: str, msg: Any) -> bool:
        """Was ``msg`` (a message of another copy of session ``cid``) replayed into it
        from the journal? Counted once."""
        seen = self.replayed.get(cid)
        if not seen:
            return False
        mid = getattr(msg, "mid", None)
        key: Any = (msg.topic, bytes(msg.payload))
        if mid is not None:
            if seen[mid] <= 0:
                return False
            seen[mid] -= 1
        elif seen[key] <= 0:
            return False
        seen[key] -= 1
        return True

    def outage(self) -> None:
        if self.before_outage is None:
            self.before_outage = dict(self.last)
            self.outage_wall = time.time()
            if not self.outage_recording:  # what arrives from now on: catch_up leaves out
                self.outage_recording = True
                if self.live is None:
                    self.live = {}
                self.recording += 1
                self.outage_mark = self.arrivals

    def merged_in(self, cid: str, msg: Any) -> None:
        """(sessions.merge) ``msg`` of another copy of session ``cid`` is in it now."""
        mid = getattr(msg, "mid", None)
        if mid is not None and self.outage_recording:
            self.merged.setdefault(cid, set()).add(mid)

    def _stop_recording(self) -> None:
        self.recording -= 1
        if self.recording <= 0:
            self.recording = 0
            self.live = None

    async def catch_up(self) -> int:
        """NATS is back after an outage (or a stall): what was journaled meanwhile for
        this node's persistent sessions and never reached it (nats-server had no
        interest of this node to send it to, or dropped it with the old connection) is
        delivered from the journal. Left out: the ids that had reached this node before
        NATS was lost (``before_outage``: messages of one origin arrive in order) and
        those that reached it since (``live``). Later passes, as after an adoption,
        catch journal writes that were still in flight. Returns the first pass's count."""
        before = self.before_outage
        if before is None or not self.outage_recording:
            return 0
        total = 0
        try:
            if not self.on:
                return 0
            start = self.outage_wall - 2.0  # (nats-server's clock may differ a little)
            prog = {"last": before}
            core = self.bp.core
            for session in list(core.sessions.values()):
                if not session.expiry_interval or not self._subjects(session):
                    continue
                state: dict[str, Any] = {
                    "seq": 0,
                    "ids": set(self.merged.get(session.client_id, ())),
                    "start": start,
                    "installed": self.outage_mark,
                }
                try:
                    total += await self._pass(session, prog, state, start)
                except Exception as exc:
                    self.bp.stats["js_errors"] += 1
                    log.warning(
                        "cluster: journal not read for session %r after the outage: %r",
                        session.client_id,
                        exc,
                    )
                    continue
                self.recording += 1  # the later passes' share (released by _later)
                self.bp._spawn(self._later(session, prog, state))
        finally:
            self.outage_recording = False
            self.merged.clear()
            self._stop_recording()
        log.info(
            "cluster: %d journaled message(s) published during the NATS outage delivered "
            "from the journal",
            total,
        )
        return total

    def here_before_outage(self, msg: Any) -> bool:
        """Did journaled ``msg`` reach this node before it lost NATS? Then a copy of a
        session adopted elsewhere meanwhile (replayed there from the journal) brings it
        back, and this node's own copy had it (delivered, or still holds it)."""
        before = self.before_outage
        mid = getattr(msg, "mid", None)
        if before is None or mid is None:
            return False
        try:
            origin, c = split_id(mid)
        except ValueError:
            return False
        return c <= before.get(origin, 0)

    def _live(self, mid: str) -> None:
        live = self.live
        assert live is not None
        if len(live) >= LIVE_MAX:  # bounded: older ids go (those may come twice)
            live.clear()
            log.warning("cluster: journal replay de-duplication set full; cleared")
        self.arrivals += 1
        live[mid] = self.arrivals

    def seen(self, mid: str, publisher: Any) -> bool:
        """A message with an id (journaled, or QoS 2 of a persistent publisher) reached
        this node from NATS; False: it is a re-sent copy of one that had (dropped)."""
        try:
            origin, c = split_id(mid)
        except ValueError:
            return True
        if c > self.last.get(origin, 0):
            self.last[origin] = c
        if self.live is not None:
            self._live(mid)
        return "/" not in mid or not self.q2_copy(mid, publisher)

    def q2_copy(self, mid: str, publisher: Any) -> bool:
        """Exactly once for QoS 2 across the death of the publisher's node.

        A QoS 2 PUBLISH of a persistent session gets the id "origin.counter/P" (P: its
        packet id). Its node writes the session's record (progress.py) with the
        unreleased packet ids and ``last``, the counter of its latest QoS 2 message,
        before the PUBREC leaves. A PUBLISH the client re-sends (DUP) to the node that
        adopted the session after a death, with an id not in the record, was either
        never received by the dead node or received after the record, so forwarded with
        a counter above ``last`` (an earlier message with that id was released, which
        the record shows before the PUBCOMP leaves). The adopter sends it on as
        "origin.counter/P/last/dead": a node that had a copy from the dead node, with
        that publisher and packet id and a counter above ``last``, drops it. A node
        whose first forward may have been lost with its NATS connection sends the
        re-sent PUBLISH on as "origin.counter/P/<first's counter - 1>/origin"
        (progress.resent). Notes ``mid`` and returns True for such a copy."""
        origin, parts = _q2_parts(mid)
        if publisher is None or len(parts) < 2:
            return False
        q2 = self.q2
        if len(q2) >= Q2_MAX:  # bounded: a copy not recognised is delivered (never lost)
            q2.clear()
            self.q2_covered.clear()
        pid = parts[1]
        try:
            key = (origin, publisher, pid)
            c = int(parts[0])
            if len(parts) < 4:
                # An original. Its copy may have come first: its node's NATS connection
                # broke after the journal had it but before this node did, and a replay
                # pass reads it now.
                covered = self.q2_covered.get(key)
                if covered is not None:
                    base, upper, until = covered
                    if time.monotonic() >= until:
                        del self.q2_covered[key]
                    elif base < c < upper:  # one original per copy: used once
                        del self.q2_covered[key]
                        self.stats["qos2_copies_dropped"] += 1
                        return True
                if q2.get(key, -1) < c:  # the latest (a replay reads older ones too)
                    q2[key] = c
                return False
            # A copy. What had come before it (a copy forwarded again by its own node,
            # progress.resent, names that node: read before noting this one).
            first = (parts[3], publisher, pid)
            had = q2.get(first)
            if q2.get(key, -1) < c:
                q2[key] = c
            base = int(parts[2])
            if had is not None and had > base:
                self.stats["qos2_copies_dropped"] += 1
                return True
            # Delivered: its original, if it comes later, is dropped. A copy by the
            # original's own node was made after it (its counter bounds the original's);
            # a dead node's original may have any counter above base, for a while (the
            # replay passes: a node back from the dead may reuse the packet id later).
            upper = c if parts[3] == origin else float("inf")
            self.q2_covered[first] = (base, upper, time.monotonic() + COVER_KEEP)
            return False
        except ValueError:
            return False

    def got_original(self, cid: str, mid: str, publisher: Any) -> None:
        """Session ``cid`` got the message ``mid`` other than live from NATS."""
        origin, parts = _q2_parts(mid)
        if publisher is None or len(parts) != 2:
            return  # not a QoS 2 original of a persistent publisher
        try:
            c = int(parts[0])
        except ValueError:
            return
        if self.q2_had_n >= Q2_HAD_MAX:  # bounded: a copy not recognised is delivered
            self.q2_had.clear()
            self.q2_had_n = 0
        had = self.q2_had.get(cid)
        if had is None:
            had = self.q2_had[cid] = {}
        key = (origin, publisher, parts[1])
        if had.get(key, -1) < c:
            self.q2_had_n += key not in had
            had[key] = c

    def had_original(self, mid: str, publisher: Any) -> set[str]:
        """The sessions here that got the original of the QoS 2 copy ``mid`` other than
        live from NATS (got_original): the copy is not theirs. Its range as in q2_copy."""
        if not self.q2_had or publisher is None:
            return set()
        origin, parts = _q2_parts(mid)
        if len(parts) < 4:
            return set()
        try:
            c = int(parts[0])
            base = int(parts[2])
        except ValueError:
            return set()
        upper = c if parts[3] == origin else float("inf")
        key = (parts[3], publisher, parts[1])
        return {cid for cid, had in self.q2_had.items() if base < had.get(key, -1) < upper}

    def session_ended(self, cid: str) -> None:
        """(ClusterRouter.drop_session) nothing of it is delivered here any more."""
        self.floors.pop(cid, None)
        self.catching.pop(cid, None)
        had = self.q2_had.pop(cid, None)
        if had:
            self.q2_had_n -= len(had)

    def header_block(self, msg: Any, now: float) -> bytes:
        hdr = encode_headers(message_headers(msg, now))
        return ID_HEAD + msg.mid.encode() + b"\r\n" + hdr[10:]

    def lines(self, msg: Any, now: float, batch: int, core: bytes | None) -> bytes:
        """The journal write (reply: the batch, for acks.py) and, given the data subject
        ``core``, the core NATS copy with the same headers."""
        subject = self.subjects.get(msg.topic)
        if subject is None:
            subject = (self.head + topic_to_subject(msg.topic, "")).encode()
            if len(self.subjects) >= CACHE_MAX:
                self.subjects.clear()
            self.subjects[msg.topic] = subject
        hdr = self.header_block(msg, now)
        n = len(hdr)
        total = n + len(msg.payload)
        reply = b"%s.%d" % (self.ack_subject, batch)
        out = b"HPUB %s %s %d %d\r\n%s%s\r\n" % (subject, reply, n, total, hdr, msg.payload)
        self.stats["journal_writes"] += 1
        if core is not None:
            out += _hpub(core, hdr, msg.payload)
        return out

    def core_line(self, msg: Any, now: float, core: bytes) -> bytes:
        """The core NATS copy of a message with an id that is not journaled (QoS 2 of a
        persistent publisher nobody durable wants: its id is for ``q2_copy``)."""
        return _hpub(core, self.header_block(msg, now), msg.payload)

    # -- wiring ---------------------------------------------------------------------

    async def attach(self, nc: Any, js: Any, replicas: int, sessions_kv: Any) -> None:
        self.js = js
        self.origin = f"{self.bp.node_id}-{self.bp.view.incarnation}"
        self.ack_subject = f"{self.bp.ctl}.node.{self.bp.node_id}.jack".encode()
        config = StreamConfig(
            name=self.stream,
            subjects=[self.head + ">"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=self.max_age,
            num_replicas=replicas,
        )
        try:
            await js.add_stream(config)
        except Exception:
            await js.update_stream(config)
        acks = self.bp.acks

        async def on_ack(m: Any) -> None:
            try:
                batch = int(m.subject.rpartition(".")[2])
            except ValueError:
                return
            data = m.data
            # A PubAck is {"stream":..,"seq":..}; an error carries "error"; an empty
            # message with a status header: no stream answered (503).
            acks.journal_acked(batch, bool(data) and b'"error"' not in data)

        self.ack_sub = await nc.subscribe(self.ack_subject.decode() + ".*", cb=on_ack)
        if sessions_kv is not None and not getattr(self, "_watching", False):
            self._watching = True
            self.bp._spawn(self._watch(sessions_kv))
        self.on = True

    # -- replay on adoption -----------------------------------------------------------

    async def replay(self, cid: str) -> int:
        """A dead node's session ``cid`` was just installed here (no await since):
        deliver what the journal has for it that its old node had not done. The first
        pass runs now; later passes, in the background, catch journal writes that were
        still in flight. Returns the number delivered by the first pass."""
        if not self.on:
            return 0
        core = self.bp.core
        session = core.sessions.get(cid)
        if session is None:
            return 0
        # From now (the subscriptions are installed, no await since): what reaches this
        # node went to the session live.
        if self.live is None:
            self.live = {}
        self.recording += 1
        installed = self.arrivals
        progress = self.bp.progress
        progress.reading.add(cid)  # this node's own record waits for this read
        try:
            prog = await progress.read(cid)
        except Exception as exc:
            log.warning("cluster: progress of session %r not read: %r", cid, exc)
            prog = None
        finally:
            progress.reading.discard(cid)
        if prog is not None:
            progress.carry(cid, prog)  # before this node's first record of it
            if core.sessions.get(cid) is session:
                progress.adopted(session, prog)  # its client's unreleased QoS 2
        state: dict[str, Any] = {
            "seq": 0,
            "ids": set(),
            "start": 0.0,
            "first": True,
            "installed": installed,
        }
        wall = time.time()
        start = wall - self.max_age
        if prog is not None and prog.get("since"):
            start = max(start, float(prog["since"]) - 2.0)
        state["start"] = start
        try:
            n = await self._pass(session, prog, state, start)
        except Exception as exc:
            self.bp.stats["js_errors"] += 1
            log.warning("cluster: journal of session %r not replayed: %r", cid, exc)
            n = 0
        self.bp._spawn(self._later(session, prog, state))
        log.info(
            "cluster: %d journaled message(s) replayed into session %r (%s)",
            n,
            cid,
            _record_summary(prog),
        )
        return n

    def after_takeover(self, cid: str, handed: dict[str, Any], mids: set[str]) -> None:
        """A persistent session taken over from a live node was just installed here (no
        await since). Journaled messages for it that the other node had not seen when
        it gave the session up (``handed``, from given_up), and that reached this node
        before the install (the session's subscriptions were not here yet), are read
        from the journal; those reaching it from now on went to the session live;
        ``mids`` came in the snapshot."""
        session = self.bp.core.sessions.get(cid)
        if not self.on or session is None or not self._subjects(session):
            return
        if self.live is None:
            self.live = {}
        self.recording += 1
        last = handed["jlast"]
        start = time.time() - 2.0
        if handed.get("jstart"):  # its last node had not read what crossed its take-over
            start = min(start, float(handed["jstart"]))
        state: dict[str, Any] = {
            "seq": 0,
            "ids": set(mids).union(handed.get("jids", ())),
            "start": start,
            "installed": self.arrivals,
        }
        self.floors[cid] = last
        self.catching[cid] = state
        self.bp._spawn(self._taken(session, {"last": last}, state))

    def given_up(self, cid: str) -> dict[str, Any]:
        """(ownership.give_up) What counts as seen for session ``cid`` when it leaves
        (the snapshot's ``jlast``): this node's ids, and those of the node it was taken
        from (its messages came here in that snapshot, not from NATS). If the journal
        read of that take-over has not run yet, this node's ids would count what reached
        it before the install as seen: the old floor goes on instead, with the ids the
        session got here (``jids``) and where the read starts (``jstart``)."""
        floor = self.floors.pop(cid, {})
        state = self.catching.pop(cid, None)
        if state is not None:
            ids = set(state["ids"])
            live = self.live
            if live is not None:  # what reached the session live since its install
                installed = state["installed"]
                ids.update(mid for mid, n in live.items() if n > installed)
            return {"jlast": dict(floor), "jids": sorted(ids), "jstart": state["start"]}
        seen = dict(self.last)
        for origin, c in floor.items():
            if c > seen.get(origin, 0):
                seen[origin] = c
        return {"jlast": seen}

    async def _taken(self, session: Any, prog: Any, state: dict[str, Any]) -> None:
        cid = session.client_id
        try:
            try:
                n = await self._pass(session, prog, state, state["start"])
            finally:
                if self.catching.get(cid) is state:
                    del self.catching[cid]
            if n:
                log.info(
                    "cluster: %d journaled message(s) that crossed the take-over of %r "
                    "delivered from the journal",
                    n,
                    session.client_id,
                )
            await self._passes(session, prog, state)
        except Exception as exc:
            log.info("cluster: journal pass after the take-over of %r: %r", session.client_id, exc)
        finally:
            self._stop_recording()

    async def _later(self, session: Any, prog: Any, state: dict[str, Any]) -> None:
        try:
            await self._passes(session, prog, state)
        finally:
            self._stop_recording()

    async def _passes(self, session: Any, prog: Any, state: dict[str, Any]) -> None:
        waited = 0.0
        await self.bp.interest_known()
        for at in LATER_PASSES:
            await asyncio.sleep(at - waited)
            waited = at
            if self.bp.core.sessions.get(session.client_id) is not session:
                return  # moved on (taken over elsewhere): that node has it now
            try:
                n = await self._pass(session, prog, state, None, state["start"])
            except Exception as exc:
                log.info("cluster: later journal pass of %r: %r", session.client_id, exc)
                continue
            if n:
                log.info(
                    "cluster: %d more journaled message(s) replayed into %r", n, session.client_id
                )

    def _subjects(self, session: Any) -> list[str]:
        out: dict[str, None] = {}
        for e in session.subscriptions.values():
            if e.qos and e.group is None:
                for s in filter_to_subjects(e.topic_filter, ""):
                    out[self.head + s] = None
        return list(out)

    async def _read(self, subject: str, start: float | None, seq: int) -> list[Any]:
        js = self.js
        if start is not None:
            cfg = ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_TIME,
                opt_start_time=datetime.datetime.fromtimestamp(start, datetime.UTC),
            )
        else:
            cfg = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=seq)
        cfg.ack_policy = AckPolicy.NONE
        cfg.inactive_threshold = 30.0
        cfg.filter_subject = subject
        psub = await js.pull_subscribe(subject, stream=self.stream, config=cfg)
        out: list[Any] = []
        try:
            if (await psub.consumer_info()).num_pending == 0:
                return out  # (a fetch would wait its whole timeout for nothing)
            while True:
                try:
                    msgs = await psub.fetch(FETCH, timeout=1.0)
                except Exception as exc:
                    if "imeout" in type(exc).__name__:
                        break
                    raise
                out.extend(msgs)
                if not msgs or msgs[-1].metadata.num_pending == 0:
                    break
        finally:
            try:
                await psub.unsubscribe()
            except Exception:
                pass
        return out

    async def _pass(
        self,
        session: Any,
        prog: Any,
        state: dict[str, Any],
        start: float | None,
        fallback: float = 0.0,
    ) -> int:
        subjects = self._subjects(session)
        if start is None and not state["seq"]:
            start = fallback  # nothing read yet: from the same start time
        # The next pass reads from what the stream held before this one (one subject's
        # read may end before another's; the ids read twice are left out then).
        upto = (await self.js.stream_info(self.stream)).state.last_seq
        found: dict[int, Any] = {}
        for subject in subjects:
            for m in await self._read(subject, start, state["seq"] + 1):
                found[m.metadata.sequence.stream] = m
        state["seq"] = max(state["seq"], upto)
        if not found:
            return 0
        cid = session.client_id
        core = self.bp.core
        router = core.router
        last = prog.get("last", {}) if prog else {}
        held = {o: set(cs) for o, cs in (prog.get("held", {}) if prog else {}).items()}
        # In flight on the old node (packet id, state): restored as such by the first
        # pass while the session is offline here (re-sent with DUP, or the PUBREL).
        infl: dict[str, dict[int, tuple[int, int]]] = {}
        for o, rows in (prog.get("infl", {}) if prog else {}).items():
            infl[o] = {c: (pid, st) for c, pid, st in rows}
        restore = state.pop("first", False) and session.conn is None
        installed = state["installed"]
        ids: set[str] = state["ids"]
        live = self.live
        n = 0
        for seq in sorted(found):
            m = found[seq]
            h = m.headers or {}
            mid = h.get(H_ID)
            if mid is None or mid in ids:
                continue
            try:
                origin, c = split_id(mid)
            except ValueError:
                continue
            publisher = _publisher(h)
            if "/" in mid and (
                self.q2_copy(mid, publisher) or cid in self.had_original(mid, publisher)
            ):
                ids.add(mid)
                continue  # a re-sent copy of a QoS 2 message read (or got) before it
            if c <= last.get(origin, 0) and c not in held.get(origin, ()):
                continue  # its old node had it done (acknowledged, or dropped)
            if live is not None and live.get(mid, -1) > installed:
                continue  # reached this node after the subscriptions were installed
            if core.sessions.get(cid) is not session:
                return n
            try:
                topic = subject_to_topic(m.subject, self.head[:-1])
            except ValueError:
                continue
            now = core.clock()
            msg = message_from(topic, m.data, h, now)
            was = infl.get(origin, {}).get(c)
            if was is not None:
                if restore and self._restore(session, msg, was, now):
                    ids.add(mid)
                    self._remember(cid, mid, msg)
                    self.got_original(cid, mid, publisher)
                    n += 1
                    continue
                if was[1] == AWAIT_COMP:
                    # Its PUBREC came: the client has it (or delivered it). Never a
                    # second PUBLISH of it; without its packet id, no PUBREL either.
                    ids.add(mid)
                    log.warning(
                        "cluster: QoS 2 message %s of session %r awaiting PUBCOMP not restored",
                        mid,
                        cid,
                    )
                    continue
            if msg.expires_at is not None:
                ts = m.metadata.timestamp
                if ts is not None:  # the expiry counts from the publish
                    msg.expires_at -= max(0.0, time.time() - ts.timestamp())
                if msg.expired(now):
                    continue
            if session.conn is not None and not await self._room(session):
                return n  # taken over or gone meanwhile: its new holder replays
            ids.add(mid)
            self._remember(cid, mid, msg)
            normal, _shared = router.subscriptions.match(topic)
            targets = [t for t in normal if t.client_id == cid]
            if not targets:
                continue
            self.got_original(cid, mid, publisher)
            filters = router.filters
            outbound.fan_out(
                msg,
                targets,
                core.sessions,
                filters.receive_check,
                filters.deliver_check,
                filters.queue_high_water,
                None,
                now,
                {},
            )
            n += 1
        self.stats["journal_replayed"] += n
        return n

    async def _room(self, session: Any) -> bool:
        """Wait until the connected ``session``'s queue has room for a replayed message
        and live ones (the client drains it at its own pace). False: the session is no
        longer held here."""
        settings = self.bp.core.settings
        limit = int(settings.max_queued_messages * ROOM_SHARE)
        blimit = int(settings.max_queued_bytes * ROOM_SHARE)
        sessions = self.bp.core.sessions
        cid = session.client_id
        waited = 0.0
        mark = len(session.queue)
        while (limit and len(session.queue) >= limit) or (
            blimit and session.queued_bytes >= blimit
        ):
            if sessions.get(cid) is not session:
                return False
            if session.conn is None or waited >= ROOM_PATIENCE:
                break  # offline, or not reading: the queue limit applies as it does live
            await asyncio.sleep(0.01)
            waited += 0.01
            if len(session.queue) < mark:  # draining: patience renewed
                mark = len(session.queue)
                waited = 0.0
        return sessions.get(cid) is session

    def _restore(self, session: Any, msg: Any, was: tuple[int, int], now: float) -> bool:
        """Put ``msg`` back in flight under its old packet id and state."""
        pid, st = was
        if pid in session.inflight:
            return False  # the id is taken here: delivered anew instead
        router = self.bp.core.router
        targets = [
            t for t in router.subscriptions.match(msg.topic)[0] if t.client_id == session.client_id
        ]
        if not targets:
            return False
        t = targets[0]
        if t.no_local and msg.origin == session.client_id:
            t = t.without_no_local()
            if t is None:
                return False
        check = router.filters.receive_check
        if check is not None and not check(session, msg.topic):
            return False
        qos = t.qos if t.qos < msg.qos else msg.qos
        if not qos:
            return False
        d = Delivery(msg, qos, msg.retain and t.retain_as_published, t.sub_ids)
        d.state = st
        session.set_inflight(pid, d)
        if session.persisted:
            self.bp.core.storage.delivery_put(session, d, pid)
        if pid > session.next_pid:
            session.next_pid = pid
        return True


def _q2_parts(mid: str) -> tuple[str, list[str]]:
    """A QoS 2 id's origin and the rest's parts: [counter, packet id] for an original,
    [counter, packet id, base, first origin] for a copy (q2_copy)."""
    origin, _, rest = mid.rpartition(".")
    return origin, rest.split("/")


def _hpub(subject: bytes, hdr: bytes, payload: bytes) -> bytes:
    """A core NATS HPUB (no reply subject) of ``payload`` with header block ``hdr``."""
    n = len(hdr)
    return b"HPUB %s %d %d\r\n%s%s\r\n" % (subject, n, n + len(payload), hdr, payload)


def _publisher(h: dict[str, str]) -> Any:
    origin = h.get(H_ORIGIN)
    try:
        return json.loads(origin) if origin is not None else None
    except ValueError:
        return None


__all__ = ["Journal", "split_id", "ID_HEAD"]
