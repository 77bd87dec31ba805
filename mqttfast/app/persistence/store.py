"""SQLiteStorage: the durable backend of :class:`mqttfast.core.storage.Storage`.

Changes reported by the core are buffered in dictionaries keyed by what they
change (a delivery id, a (client, filter) pair, a topic), so a change undone
within the same batch -- a message queued and acknowledged before the next
commit -- never reaches the disk. :meth:`flush` writes the net result in one
transaction:

* ``strict`` (default): ``synchronous=FULL`` (the WAL is fsynced). The
  transport hands each connection's bytes of a turn to :meth:`SQLiteStorage.gate`
  instead of the socket (``bind_output``); those of a connection that pending
  changes confirm something to are released, in the connection's order, once
  the changes are committed (QoS 0/1 deliveries need not wait: at least once
  allows the re-send a crash may cause). A publisher's PUBACK/PUBREC waits for
  each new delivery of its message to be committed *or* acknowledged by its
  subscriber (ack-or-commit: a session that acknowledged its copy is owed
  nothing, so that copy is never written). So a PUBACK/PUBREC to a publisher,
  PUBCOMP (incoming QoS 2 id released), SUBACK/UNSUBACK and CONNACK leave only
  after the state they confirm is on disk, and an outgoing QoS 2 PUBLISH / PUBREL
  only after its packet id / PUBREC-received state is ([MQTT-4.3.3-*], so
  exactly once holds across a crash). Commits are grouped (output held up to
  ``window`` s, 2 ms, when no commit is in flight) and pipelined: one batch is
  written by the writer thread while the loop collects the next. Changes whose
  loss is harmless -- a delivery removed after the subscriber's PUBACK or PUBCOMP,
  a QoS 1 message moved from the queue into flight -- ride along with the next
  commit, or the periodic one (``tick``, at most ``interval`` s later): a crash
  may re-deliver such a QoS 1 message (allowed: at least once), never lose or
  duplicate a QoS 2 one.
* ``relaxed``: a commit starts every ``interval`` seconds (default 1 s), in the
  writer thread, ``synchronous=NORMAL``; nothing waits for it. What was
  acknowledged since the start of the last completed commit is lost if the
  process dies; after a power cut also what the OS had not yet written back.
  The database is consistent either way.

A failed commit releases nothing that waited for it; ``on_error`` says whether
the broker then exits ("stop") or serves on without persistence ("degrade").

Messages are stored once (``messages``) and referenced by one ``deliveries``
row per session; a message row is deleted when its last reference goes.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any

from mqttfast.codec import MQTTError
from mqttfast.core.storage import MemoryStorage, Storage

from .recovery import load
from .rows import ALIVE_EVERY, SESSION_INSERT, encode_props, session_row
from .schema import PersistenceError, open_database

if TYPE_CHECKING:
    from mqttfast.core.broker import BrokerCore
    from mqttfast.core.message import Delivery, Message
    from mqttfast.core.session import Session
    from mqttfast.core.subscriptions import SubEntry

log = logging.getLogger("mqttfast.persistence")

DB_NAME = "mqttfast.db"
LOCK_NAME = "mqttfast.lock"
ON_ERROR = ("stop", "degrade")
GROUP_COMMIT_WINDOW = 0.002  # s: strict output is held this long for more changes to join


class SQLiteStorage(Storage):
    durable = True

    def __new__(cls, data_dir: str, mode: str = "strict", *args: Any, **kwargs: Any) -> Any:
        # relaxed gets its own per-message calls as plain methods of a subclass (an
        # instance attribute shadowing a method would defeat the call sites' caches).
        if cls is SQLiteStorage and mode == "relaxed":
            cls = RelaxedSQLiteStorage
        return super().__new__(cls)

    def __init__(
        self,
        data_dir: str,
        mode: str = "strict",
        interval: float = 1.0,
        window: float = GROUP_COMMIT_WINDOW,
        on_error: str = "stop",
    ) -> None:
        if mode not in ("strict", "relaxed"):
            raise ValueError(f"persistence mode {mode!r}")
        if on_error not in ON_ERROR:
            raise ValueError(f"persistence on_error {on_error!r} (stop or degrade)")
        self.mode = mode
        self.strict = mode == "strict"
        self.interval = interval
        self.window = window  # strict: hold output up to this long to batch commits
        self.sync_since: float | None = None
        self.data_dir = os.path.abspath(data_dir)
        self.path = os.path.join(self.data_dir, DB_NAME)
        self._lock_fd = self._lock(self.data_dir)
        try:
            self.db = open_database(self.path, "FULL" if self.strict else "NORMAL")
        except BaseException:
            os.close(self._lock_fd)
            raise
        self.clock: Callable[[], float] = time.monotonic
        self.next_msg = (self.db.execute("SELECT max(id) FROM messages").fetchone()[0] or 0) + 1
        self.next_deliv = (self.db.execute("SELECT max(id) FROM deliveries").fetchone()[0] or 0) + 1
        # Pending changes (net effect since the last commit).
        self.p_retained: dict[str, Message | None] = {}
        self.p_sessions: dict[str, Session] = {}
        self.deleted_sessions: set[str] = set()
        self.p_subs: dict[tuple[str, str], SubEntry | None] = {}
        self.p_deliv: dict[int, tuple[str, Delivery, int] | None] = {}
        self.p_qos2: dict[tuple[str, int], bool] = {}
        self.zero: set[int] = set()
        # What is on disk or in a batch: delivery ids, and per message id the number of
        # such deliveries. A delivery that goes before its batch is cut costs two dict
        # operations: its message gets an id and a row only when a delivery row is cut.
        self.written: set[int] = set()
        self.refs: dict[int, int] = {}
        self.dirty = False
        self.sync = False  # a change that the next outgoing bytes rely on is pending
        self.last_commit = time.monotonic()
        self.commits = 0
        self.last_done = 0.0  # when the last pipelined commit became durable
        self.closed = False
        # Pipelining (strict): one batch is written by the writer thread while the loop
        # collects the next; output waits in ``waiting`` (for the next batch) or on the
        # batch in flight, and is released in order once its batch is durable.
        self.on_error = on_error  # "stop" | "degrade": what a failed commit does
        self.degraded = False
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="mqttfast-commit")
        self.inflight: _Batch | None = None
        self.waiting: list[Callable[[bool], None]] = []
        self.hold: set[Any] = set()  # connections whose output relies on pending changes
        self.hold_all = False  # a pending change that all output must wait for
        # Each connection's outputs not yet released, in order (a connection's bytes keep
        # their order whatever each output waits for).
        self.outq: dict[Any, deque[_Out]] = {}
        # Ack-or-commit: a publisher's acknowledgement of a QoS 1/2 message for persistent
        # sessions waits until each new delivery of it is either committed or acknowledged
        # by its subscriber (then nothing is owed to it: nothing to store). The deliveries
        # put since a connection's last output form its open group; its next output waits
        # for that group. A fresh delivery maps to its group until one of the two happens.
        self.groups: dict[Any, _Group] = {}
        self.dgroup: dict[int, _Group] = {}
        self.group_waits = 0  # outputs waiting for a group
        self.after_commit: list[_Group] = []  # settled when the next batch is durable
        self.group_timer: Any = None
        self.loop: Any = None
        self.timer: Any = None  # relaxed: the next commit's timer (asyncio.TimerHandle)
        self.cut_dids: list[int] = []  # new deliveries in the batch being cut
        self.flusher: Any = None
        self.broker: BrokerCore | None = None
        self.stats: Any = None
        # Tests: called in the writer thread with the batch's statements, before COMMIT.
        self.before_commit: Callable[[list[tuple[str, list[Any]]]], None] | None = None
        # relaxed (RelaxedSQLiteStorage): the deliveries put since the last cut (their
        # session and packet id), and the rows of removed ones.
        self.r_pend: dict[Delivery, tuple[Session, int]] = {}
        self.r_gone: list[tuple[int, Message]] = []  # (row id, message) of rows to delete

    @staticmethod
    def _lock(data_dir: str) -> int:
        try:
            os.makedirs(data_dir, mode=0o700, exist_ok=True)
            fd = os.open(os.path.join(data_dir, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as err:
            raise PersistenceError(
                f"cannot use data directory {data_dir}: {err.strerror or err}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise PersistenceError(
                f"data directory {data_dir} is in use by another mqttfast process"
            ) from None
        return fd

    # -- which output waits ------------------------------------------------------
    # A change is committed promptly (``sync``) and the output of the connection that
    # relies on it -- the publisher told PUBACK/PUBREC, the client told SUBACK or
    # CONNACK, the subscriber of an outgoing QoS 2 message -- waits for that commit;
    # other output (QoS 0/1 deliveries: at least once allows a re-send after a crash)
    # is not held back by it. A change no connection accounts for holds everyone.
    def _hold(self, conn: Any) -> None:
        self.dirty = self.sync = True
        if conn is not None:
            self.hold.add(conn)

    def _hold_client(self, client_id: str | None) -> None:
        self.dirty = self.sync = True
        if not self.strict:
            return  # relaxed: no output waits (and this runs once per delivery)
        broker = self.broker
        if broker is None:
            self.hold_all = True
        elif client_id is not None:
            session = broker.sessions.get(client_id)
            if session is not None and session.conn is not None:
                self.hold.add(session.conn)

    def _hold_all(self) -> None:
        self.dirty = self.sync = True
        self.hold_all = True

    # -- retained ------------------------------------------------------------
    def retained_put(self, msg: Message) -> None:
        if msg.topic.startswith("$SYS/"):
            return  # regenerated by the broker; never worth a write
        self.p_retained[msg.topic] = msg
        self._hold_client(msg.origin)

    def retained_delete(self, topic: str) -> None:
        if topic.startswith("$SYS/"):
            return
        self.p_retained[topic] = None
        self._hold_all()

    # -- sessions ------------------------------------------------------------
    def session_update(self, session: Session) -> None:
        if session.expiry_interval > 0:
            session.persisted = True
            self.p_sessions[session.client_id] = session
            self._hold(session.conn)
        elif session.persisted:
            self.session_delete(session)

    def session_put(self, session: Session) -> None:
        if session.persisted:
            self.p_sessions[session.client_id] = session
            self._hold(session.conn)

    def session_delete(self, session: Session) -> None:
        cid = session.client_id
        for d in session.inflight.values():
            self._forget(d)
        for d in session.queue:
            self._forget(d)
        self.p_sessions.pop(cid, None)
        for sub_key in [k for k in self.p_subs if k[0] == cid]:
            del self.p_subs[sub_key]
        for qos2_key in [k for k in self.p_qos2 if k[0] == cid]:
            del self.p_qos2[qos2_key]
        self.deleted_sessions.add(cid)
        session.persisted = False
        if session.conn is not None:
            self._hold(session.conn)
        else:  # ended by a clean start (whose CONNACK relies on it) or by expiry: rare
            self._hold_all()

    def subscription_put(self, session: Session, entry: SubEntry) -> None:
        self.p_subs[(session.client_id, entry.full_filter)] = entry
        self._hold(session.conn)

    def subscription_delete(self, session: Session, full_filter: str) -> None:
        self.p_subs[(session.client_id, full_filter)] = None
        self._hold(session.conn)

    # -- deliveries and messages ----------------------------------------------
    def delivery_put(self, session: Session, d: Delivery, pid: int) -> None:
        did = d.sid
        if did:
            # An update: moved from the queue into flight, or PUBREC received. Only
            # QoS 2 must be on disk before the PUBLISH / PUBREL goes out.
            self.p_deliv[did] = (session.client_id, d, pid)
            self.dirty = True
            if d.qos == 2:
                self._hold(session.conn)  # the PUBLISH / PUBREL waits
            return
        # A new delivery: on disk before the publisher is acknowledged. Its message is
        # counted (and given a row) when the delivery is cut into a batch (_cut).
        did = d.sid = self.next_deliv
        self.next_deliv += 1
        self.p_deliv[did] = (session.client_id, d, pid)
        self.dirty = True
        if self.strict:
            # Its publisher's PUBACK/PUBREC waits until it is committed or acknowledged.
            origin = d.msg.origin
            broker = self.broker
            conn = None
            if origin is not None and broker is not None:
                owner = broker.sessions.get(origin)
                if owner is not None:
                    conn = owner.conn
            if conn is not None:
                group = self.groups.get(conn)
                if group is None:
                    group = self.groups[conn] = _Group()
                group.count += 1
                self.dgroup[did] = group
            else:  # no local publisher connection: committed promptly all the same
                self._hold_client(origin)
            if d.qos == 2:
                self._hold(session.conn)  # exactly once: the packet id is stored before it

    def delivery_remove(self, session: Session, d: Delivery) -> None:
        did = d.sid
        if did:
            d.sid = 0
            if did in self.written:
                self._unwrite(did, d)
            else:  # never cut into a batch: forgotten in memory, nothing to write
                self.p_deliv.pop(did, None)
            if self.dgroup:
                group = self.dgroup.pop(did, None)
                if group is not None:  # acknowledged before committed: nothing owed
                    self._removed_fresh(group, d)

    def _forget(self, d: Delivery) -> None:
        did = d.sid
        if not did:
            return
        d.sid = 0
        if did in self.written:
            self._unwrite(did, d)
        else:
            self.p_deliv.pop(did, None)
        group = self.dgroup.pop(did, None)
        if group is not None:
            self._removed_fresh(group, d)

    # -- relaxed (the per-message calls: RelaxedSQLiteStorage) ------------------
    def _r_collect(self) -> None:
        """At the cut (relaxed): turn the noted changes into ``p_deliv`` entries; new
        deliveries get their ids now, in the order they were first put."""
        p_deliv = self.p_deliv
        gone = self.r_gone
        if self.r_pend:
            nd = self.next_deliv
            for d, v in self.r_pend.items():
                did = d.sid
                if not did:
                    did = d.sid = nd
                    nd += 1
                p_deliv[did] = (v[0].client_id, d, v[1])
            self.next_deliv = nd
            self.r_pend.clear()
        if gone:
            refs = self.refs
            zero = self.zero
            for did, msg in gone:
                p_deliv[did] = None
                sid = msg.sid
                count = refs[sid] - 1
                refs[sid] = count
                if count == 0:
                    zero.add(sid)
            gone.clear()

    def _pending(self) -> bool:
        return self.dirty or bool(self.r_pend) or bool(self.r_gone)

    def _removed_fresh(self, group: _Group, d: Delivery) -> None:
        """A new delivery went before it was committed. Acknowledged (or expired, or
        refused): its session is owed nothing. But one that came through a shared
        subscription may be leaving only to go to another member of the group (its
        session ended, 4.8.2): that new delivery is put now, in the next batch, and the
        publisher's output must not leave before that batch is durable."""
        if d.shared is None:
            self._group_done(group)
        else:
            self.after_commit.append(group)

    def _unwrite(self, did: int, d: Delivery) -> None:
        """The row of delivery ``did`` (on disk or in a batch) goes; so does its message's
        when no other delivery row refers to it."""
        self.p_deliv[did] = None
        self.dirty = True
        sid = d.msg.sid
        count = self.refs[sid] - 1
        self.refs[sid] = count
        if count == 0:
            self.zero.add(sid)

    def qos2_put(self, session: Session, pid: int) -> None:
        self.p_qos2[(session.client_id, pid)] = True
        self._hold(session.conn)

    def qos2_delete(self, session: Session, pid: int) -> None:
        # Before PUBCOMP: a forgotten delete would swallow the publisher's next
        # message with this packet id as a re-send.
        self.p_qos2[(session.client_id, pid)] = False
        self._hold(session.conn)

    # -- output gating (strict) and commits -------------------------------------
    def bind_output(self, flusher: Any) -> None:
        """Install this store's hooks on the transport's flusher (every start-up path
        builds one, so every path gets the group-commit window and the pipelining)."""
        self.flusher = flusher
        self.loop = flusher.loop
        if self.strict:
            flusher.commit = None
            flusher.delay = self.flush_delay
            flusher.gate = self.gate
        else:
            # relaxed: nothing waits for the disk, and no hook runs per write: a timer
            # starts the commits (the transport keeps its same-turn flush of small reads).
            flusher.commit = None
            flusher.delay = None
            flusher.gate = None
            self._arm(self.interval)

    def _arm(self, wait: float) -> None:
        loop = self.loop
        if loop is not None and self.timer is None:
            self.timer = loop.call_later(wait, self._relaxed_timer)

    def _relaxed_timer(self) -> None:
        """relaxed: a commit starts every ``interval`` s while there are changes."""
        self.timer = None
        if self.closed or self.degraded:
            return
        if not self._pending():
            self._arm(self.interval)  # the first change is committed within an interval
            return
        wait = self.interval - (time.monotonic() - self.last_commit)
        if wait <= 0:
            if self.inflight is None:
                self._start()
                wait = self.interval
            else:  # the previous commit is still being written: look again soon
                wait = self.interval / 10
        self._arm(wait)

    def gate(self, conn: Any, release: Callable[[bool], None]) -> None:
        """Strict: the output of connection ``conn`` is ready. ``release(True)`` runs once
        the changes it relies on are durable (or, for new deliveries, acknowledged by
        their subscribers), and after the connection's earlier output (whatever it
        relies on): a connection's bytes keep their order."""
        if self.degraded:  # (called by a cluster's gate in front of ours)
            release(True)
            return
        out: _Out | None = None
        start = False
        inflight = self.inflight
        if self.hold_all or conn in self.hold:  # relies on changes not yet in a batch
            out = _Out(conn, release)
            self.waiting.append(partial(self._out_done, out))
            start = inflight is None
        elif inflight is not None and (inflight.hold_all or conn in inflight.hold):
            out = _Out(conn, release)
            inflight.releases.append(partial(self._out_done, out))
        group = self.groups.pop(conn, None) if self.groups else None
        if group is not None and group.count:
            if out is None:
                out = _Out(conn, release)
                out.wait = 0
            out.wait += 1
            group.out = out
            self.group_waits += 1
            if not start and inflight is None and self.group_timer is None:
                # Subscribers usually acknowledge within a few ms: commit what is still
                # unacknowledged after the window.
                self.group_timer = self.loop.call_later(self.window, self._group_due)
        queue = self.outq.get(conn)
        if out is None:
            if not queue:
                release(True)
                return
            out = _Out(conn, release)  # behind the connection's earlier output
            out.wait = 0
        if queue is None:
            queue = self.outq[conn] = deque()
        queue.append(out)
        if start:
            self._start()

    def _out_done(self, out: _Out, durable: bool) -> None:
        """The batch an output waited for is durable (or failed)."""
        if out.release is None:
            return  # its connection failed already
        if not durable:
            self._fail_conn(out.conn)
            return
        out.wait -= 1
        if out.wait == 0:
            self._drain_conn(out.conn)

    def _group_done(self, group: _Group) -> None:
        """One delivery of ``group`` is committed or acknowledged."""
        count = group.count - 1
        group.count = count
        if count == 0:
            out = group.out
            if out is not None:
                group.out = None
                self.group_waits -= 1
                if out.release is not None:
                    out.wait -= 1
                    if out.wait == 0:
                        self._drain_conn(out.conn)

    def _drain_conn(self, conn: Any) -> None:
        queue = self.outq.get(conn)
        while queue and queue[0].wait == 0:
            out = queue.popleft()
            release = out.release
            out.release = None
            assert release is not None
            release(True)
        if not queue:
            self.outq.pop(conn, None)

    def _fail_conn(self, conn: Any) -> None:
        """Never send what could not be stored: every held output of ``conn`` goes (the
        transport then drops the connection)."""
        queue = self.outq.pop(conn, None)
        if queue:
            for out in queue:
                release = out.release
                out.release = None
                if release is not None:
                    release(False)

    def _group_due(self) -> None:
        """Outputs still wait for unacknowledged deliveries: commit them."""
        self.group_timer = None
        if self.closed or self.degraded or not self.group_waits:
            return
        if self.inflight is None:
            self._start()
        # else: _finish starts the next batch

    def flush(self) -> None:
        """Commit now (per policy), synchronously: what is pending is durable on return."""
        if self.strict:
            if self.sync or self.group_waits or self.waiting or self.inflight is not None:
                self.commit()
        elif self._pending() and time.monotonic() - self.last_commit >= self.interval:
            self.commit()

    def flush_delay(self) -> float:
        if not (self.hold or self.hold_all) or self.window <= 0:
            return 0.0
        if self.inflight is not None:
            return 0.0  # the commit in flight is the window: output queues behind it
        now = time.monotonic()
        if now - self.last_done < self.window:
            return 0.0  # under load (a commit just ended) waiting only lengthens the pipeline
        if self.sync_since is None:
            self.sync_since = now
            return self.window
        return self.sync_since + self.window - now

    def _relaxed_due(self) -> None:
        if self._pending() and self.inflight is None:
            if time.monotonic() - self.last_commit >= self.interval:
                self._start()

    def tick(self, now: float) -> None:
        if self.closed or self.degraded or self.inflight is not None:
            return
        since = time.monotonic() - self.last_commit
        if (
            self._pending()
            and ((self.strict and (self.sync or self.group_waits)) or since >= self.interval)
        ) or since >= ALIVE_EVERY:
            if self.loop is None:
                self.commit()
            else:
                self._start()  # the idle case refreshes meta.alive (see recovery)

    def _start(self) -> None:
        """Cut a batch of everything pending and hand it to the writer thread; the loop
        goes on collecting the next batch meanwhile (pipelining)."""
        if self.groups:  # settled open groups of connections gone quiet (or closed)
            self.groups = {c: g for c, g in self.groups.items() if g.count}
        batch = _Batch(self._cut(), self.waiting, self.hold, self.hold_all)
        batch.dids = self.cut_dids
        self.cut_dids = []
        batch.after = self.after_commit
        self.after_commit = []
        self.waiting = []
        self.hold = set()
        self.hold_all = False
        self.inflight = batch
        loop = self.loop
        assert loop is not None
        batch.future = self.writer.submit(self._write, batch.ops)
        batch.future.add_done_callback(lambda fut: loop.call_soon_threadsafe(self._finish, batch))

    def _finish(self, batch: _Batch) -> None:
        """On the loop thread: the batch is written (or failed); release its output."""
        if batch.finished:
            return
        batch.finished = True
        if self.inflight is batch:
            self.inflight = None
        assert batch.future is not None
        err = batch.future.exception()
        if err is not None:
            self._failed(err, batch.releases)
            return
        self._committed()
        self.last_done = time.monotonic()
        for release in batch.releases:
            release(True)
        self._committed_dids(batch.dids, batch.after)
        if self.inflight is None and not self.closed:
            if self.waiting:
                self._start()  # the next batch, collected while this one was written
            elif self.group_waits and self.group_timer is None:
                self.group_timer = self.loop.call_later(self.window, self._group_due)

    def _committed_dids(self, dids: list[int], after: list[_Group]) -> None:
        """New deliveries are durable: their publishers' outputs need not wait for them."""
        dgroup = self.dgroup
        if dgroup:
            for did in dids:
                group = dgroup.pop(did, None)
                if group is not None:
                    self._group_done(group)
        for group in after:
            self._group_done(group)

    def _drain(self) -> None:
        """Wait for the batch in flight (if any) and release its output."""
        batch = self.inflight
        if batch is not None:
            assert batch.future is not None
            try:
                batch.future.result()
            except BaseException:
                pass
            self._finish(batch)

    def commit(self) -> None:
        """Synchronous commit of everything pending (start-up, shutdown, admin)."""
        if self.closed or self.degraded:
            return
        while self.inflight is not None:  # finishing one may start the next: wait for all
            self._drain()
            if self.degraded:
                return
        ops = self._cut()
        dids, self.cut_dids = self.cut_dids, []
        after, self.after_commit = self.after_commit, []
        waiting, self.waiting = self.waiting, []
        self.hold = set()
        self.hold_all = False
        try:
            self._write(ops)
        except Exception as err:
            self._failed(err, waiting)
            return
        self._committed()
        for release in waiting:
            release(True)
        self._committed_dids(dids, after)

    def _committed(self) -> None:
        self.commits += 1
        if self.stats is not None:
            self.stats.persistence_commits += 1

    def _failed(self, err: BaseException, releases: list[Callable[[bool], None]]) -> None:
        """A commit failed: what it held was never acknowledged, and is not now."""
        if self.stats is not None:
            self.stats.persistence_errors += 1
        held = releases + self.waiting
        self.waiting = []
        if self.on_error != "degrade":
            # Acknowledging anyway would be silent loss: stop hard, as a crash would;
            # what was committed before is intact and is recovered on the next start.
            log.critical(
                "persistence: cannot write %s (%s); output of %d connection(s) withheld; "
                "exiting (persistence.on_error = stop)",
                self.path,
                err,
                len(held),
            )
            logging.shutdown()
            os._exit(1)
        log.critical(
            "persistence: cannot write %s (%s); output of %d connection(s) withheld and "
            "those connections closed; PERSISTENCE IS OFF from now on: new messages are "
            "acknowledged without being stored (persistence.on_error = degrade)",
            self.path,
            err,
            len(held),
        )
        self.degraded = True
        if self.stats is not None:
            self.stats.persistence_degraded = 1
        flusher = self.flusher
        if flusher is not None:  # from now on output leaves at once
            flusher.delay = flusher.commit = None
            if flusher.gate == self.gate:  # (a cluster's gate in front keeps calling ours)
                flusher.gate = None
        broker = self.broker
        if broker is not None:  # the core stops reporting changes (MemoryStorage: no-ops)
            broker.storage = MemoryStorage()
            broker.retained.storage = None
        self._clear()
        for release in held:
            release(False)
        for conn in list(self.outq):  # outputs that waited for new deliveries too
            self._fail_conn(conn)
        self.groups.clear()
        self.dgroup.clear()
        self.after_commit = []
        self.group_waits = 0

    def _write(self, ops: list[tuple[str, list[Any]]]) -> None:
        """The writer thread (or the loop thread when nothing is in flight): one
        transaction, fsynced at COMMIT in strict mode (synchronous=FULL)."""
        db = self.db
        db.execute("BEGIN")
        try:
            for sql, rows in ops:
                write_rows(db, sql, rows)
            hook = self.before_commit
            if hook is not None:
                hook(ops)
            db.execute("COMMIT")
        except BaseException:
            try:
                if db.in_transaction:
                    db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise

    def _cut(self) -> list[tuple[str, list[Any]]]:
        """On the loop thread: the net pending changes as SQL statements with their rows
        (built now, from objects the loop goes on changing); pending state is cleared."""
        off = time.time() - self.clock()
        ops: list[tuple[str, list[Any]]] = []
        puts: list[tuple[Any, ...]]
        dels: list[tuple[Any, ...]]
        if not self.strict:
            self._r_collect()
        if self.deleted_sessions:
            cids = [(c,) for c in self.deleted_sessions]
            for table in ("sessions", "subscriptions", "deliveries", "qos2_in"):
                ops.append((f"DELETE FROM {table} WHERE client_id = ?", cids))
        if self.p_retained:
            puts = []
            dels = []
            for topic, msg in self.p_retained.items():
                if msg is None:
                    dels.append((topic,))
                else:
                    exp = msg.expires_at
                    puts.append(
                        (
                            topic,
                            msg.payload,
                            msg.qos,
                            encode_props(msg.properties),
                            None if exp is None else exp + off,
                        )
                    )
            if dels:
                ops.append(("DELETE FROM retained WHERE topic = ?", dels))
            if puts:
                ops.append(("INSERT OR REPLACE INTO retained VALUES (?,?,?,?,?)", puts))
        if self.p_sessions:
            ops.append((SESSION_INSERT, [session_row(s, off) for s in self.p_sessions.values()]))
        if self.p_subs:
            puts = []
            dels = []
            for (cid, full), e in self.p_subs.items():
                if e is None:
                    dels.append((cid, full))
                else:
                    puts.append(
                        (
                            cid,
                            full,
                            e.qos,
                            int(e.no_local),
                            int(e.retain_as_published),
                            e.retain_handling,
                            e.sub_id,
                        )
                    )
            if dels:
                ops.append(("DELETE FROM subscriptions WHERE client_id = ? AND filter = ?", dels))
            if puts:
                ops.append(("INSERT OR REPLACE INTO subscriptions VALUES (?,?,?,?,?,?,?)", puts))
        written = self.written
        refs = self.refs
        cut_dids = self.cut_dids
        msg_puts: list[tuple[Any, ...]] = []
        msg_dels = []
        d_puts: list[tuple[Any, ...]] = []
        d_dels: list[tuple[Any, ...]] = []
        if self.p_deliv:
            for did, row in self.p_deliv.items():
                if row is None:
                    d_dels.append((did,))
                    written.discard(did)
                else:
                    cid, d, pid = row
                    m = d.msg
                    sid = m.sid
                    if did not in written:  # a new row: one more reference to its message
                        written.add(did)
                        cut_dids.append(did)
                        count = refs.get(sid) if sid else None
                        if count is None:  # the message has no row (yet, or any more)
                            if not sid:
                                sid = m.sid = self.next_msg
                                self.next_msg += 1
                            count = 0
                            msg_puts.append(
                                (
                                    sid,
                                    m.topic,
                                    m.payload,
                                    m.qos,
                                    int(m.retain),
                                    encode_props(m.properties),
                                    None if m.expires_at is None else m.expires_at + off,
                                    m.origin,
                                )
                            )
                        refs[sid] = count + 1
                    shared: Any = d.shared
                    d_puts.append(
                        (
                            did,
                            cid,
                            sid,
                            d.qos,
                            int(d.retain),
                            None if d.sub_ids is None else ",".join(map(str, d.sub_ids)),
                            d.state,
                            pid,
                            None
                            if shared is None
                            else f"$share/{shared.group}/{shared.topic_filter}",
                        )
                    )
        if self.zero:  # after the new rows: a message may have got a reference back
            for sid in self.zero:
                if refs.get(sid) == 0:
                    del refs[sid]
                    msg_dels.append((sid,))
        if msg_puts:
            ops.append(("INSERT OR REPLACE INTO messages VALUES (?,?,?,?,?,?,?,?)", msg_puts))
        if msg_dels:
            ops.append(("DELETE FROM messages WHERE id = ?", msg_dels))
        if d_dels:
            ops.append(("DELETE FROM deliveries WHERE id = ?", d_dels))
        if d_puts:
            ops.append(("INSERT OR REPLACE INTO deliveries VALUES (?,?,?,?,?,?,?,?,?)", d_puts))
        if self.p_qos2:
            q_puts = [k for k, v in self.p_qos2.items() if v]
            q_dels = [k for k, v in self.p_qos2.items() if not v]
            if q_dels:
                ops.append(("DELETE FROM qos2_in WHERE client_id = ? AND pid = ?", q_dels))
            if q_puts:
                ops.append(("INSERT OR REPLACE INTO qos2_in VALUES (?,?)", q_puts))
        # When the broker was last known alive: after a crash, the sessions that were
        # connected count their expiry from here (recovery.py).
        ops.append(("INSERT OR REPLACE INTO meta VALUES ('alive', ?)", [(repr(time.time()),)]))
        self._clear()
        self.last_commit = time.monotonic()
        return ops

    def _clear(self) -> None:
        self.p_retained.clear()
        self.p_sessions.clear()
        self.deleted_sessions.clear()
        self.p_subs.clear()
        self.p_deliv.clear()
        self.p_qos2.clear()
        self.zero.clear()
        self.r_pend.clear()
        self.r_gone.clear()
        self.dirty = self.sync = False
        self.sync_since = None

    # -- life cycle ------------------------------------------------------------
    def recover(self, broker: BrokerCore) -> dict[str, Any]:
        self.clock = broker.clock
        self.broker = broker
        self.stats = broker.stats
        try:
            counts = load(self, broker)
        except (sqlite3.Error, MQTTError, ValueError, TypeError) as err:
            raise PersistenceError(f"{self.path}: damaged mqttfast database ({err})") from None
        self.commit()
        return counts

    def close(self) -> None:
        if self.closed:
            return
        if not self.degraded:
            self.commit()  # waits for the batch in flight, then the rest
        self.closed = True
        for timer in (self.timer, self.group_timer):
            if timer is not None:
                timer.cancel()
        self.timer = self.group_timer = None
        self.writer.shutdown(wait=True)
        try:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass
        self.db.close()
        os.close(self._lock_fd)


class RelaxedSQLiteStorage(SQLiteStorage):
    """``relaxed``: nothing waits for a commit, so the per-message calls only note what
    changed, keyed by the Delivery itself: one dict operation each. Ids, rows and
    reference counts are made at the cut (``_r_collect``, once per ``interval``) for
    what is still held then; a delivery put and acknowledged between two cuts never
    reaches the disk. ``d.sid`` != 0 means the delivery has a row (on disk or in a
    batch)."""

    def delivery_put(self, session: Session, d: Delivery, pid: int) -> None:
        self.r_pend[d] = (session, pid)

    def delivery_remove(self, session: Session, d: Delivery) -> None:
        did = d.sid
        if did:
            d.sid = 0
            self.r_gone.append((did, d.msg))
        self.r_pend.pop(d, None)

    def _forget(self, d: Delivery) -> None:
        did = d.sid
        if did:
            d.sid = 0
            self.r_gone.append((did, d.msg))
        self.r_pend.pop(d, None)


# Rows go in multi-row statements: executemany steps (and releases the GIL) once per row,
# and a writer thread that wants the GIL back per row waits on the busy event loop.
CHUNKS = (256, 64, 16, 4, 1)  # few distinct statements: they stay in sqlite3's cache
MAX_VARIABLES = 32766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999
_statements: dict[tuple[str, int], str] = {}


def write_rows(db: sqlite3.Connection, sql: str, rows: list[Any]) -> None:
    """``db.executemany(sql, rows)`` in few steps: ``INSERT ... VALUES (?,..)`` becomes
    ``VALUES (..),(..),...`` and ``DELETE ... WHERE id = ?`` becomes ``id IN (?,...)``."""
    if len(rows) < 4:
        db.executemany(sql, rows)
        return
    if " VALUES (" in sql:
        width = sql.count("?")
    elif sql.endswith(" WHERE id = ?"):
        width = 1
    else:
        db.executemany(sql, rows)
        return
    i = 0
    n = len(rows)
    for size in CHUNKS:
        if size * width > MAX_VARIABLES:
            continue
        while n - i >= size:
            key = (sql, size)
            text = _statements.get(key)
            if text is None:
                text = _statements[key] = _widen(sql, size)
            chunk = rows[i : i + size]
            i += size
            db.execute(
                text, [v for row in chunk for v in row] if width > 1 else [r[0] for r in chunk]
            )


def _widen(sql: str, size: int) -> str:
    if sql.endswith(" WHERE id = ?"):
        return sql[: -len("= ?")] + "IN (" + ",".join("?" * size) + ")"
    head, _, one = sql.partition(" VALUES ")
    return f"{head} VALUES " + ",".join([one] * size)


class _Out:
    """One output of a connection handed to the gate: released when ``wait`` (the batch
    and/or the group it waits for) is 0 and the connection's earlier outputs are out."""

    __slots__ = ("conn", "release", "wait")

    def __init__(self, conn: Any, release: Callable[[bool], None]) -> None:
        self.conn = conn
        self.release: Callable[[bool], None] | None = release
        self.wait = 1


class _Group:
    """New deliveries put since a connection's last output: that output waits until each
    is committed or acknowledged by its subscriber."""

    __slots__ = ("count", "out")

    def __init__(self) -> None:
        self.count = 0
        self.out: _Out | None = None


class _Batch:
    """One transaction on its way to the disk and the output that waits for it."""

    __slots__ = ("ops", "releases", "hold", "hold_all", "future", "finished", "dids", "after")

    def __init__(
        self,
        ops: list[tuple[str, list[Any]]],
        releases: list[Callable[[bool], None]],
        hold: set[Any],
        hold_all: bool,
    ) -> None:
        self.ops = ops
        self.releases = releases
        self.hold = hold  # connections whose output relies on this batch
        self.hold_all = hold_all
        self.future: Future[None] | None = None
        self.finished = False
        self.dids: list[int] = []  # new deliveries in it
        self.after: list[_Group] = []  # groups settled by it (see _removed_fresh)
