"""The cluster backplane: mqttfast nodes sharing one MQTT namespace over NATS + JetStream.

* Routing (``ClusterRouter``): local subscribers are served by the core's LocalRouter
  as on a single node; an accepted message is also published once on NATS when some
  other node holds a matching filter (interest sharing, fastpath.py; a SUBACK waits
  until the other nodes confirmed a new filter), by one sender task woken at most once
  per loop turn that writes the turn's messages as raw protocol lines in one write;
  messages from NATS are handled inline in nats-py's parser. A node subscribes on NATS only to
  the subjects of the filters its clients hold (reference-counted), all in one queue
  group named after the node, so NATS hands the node one copy of a message however
  many of its filters overlap; the node then routes it through its own subscription
  tree (QoS downgrade, no-local, subscription ids, ACL and plug-in checks happen there).
  The connection is ``no_echo``: a node never gets its own messages back.
* Shared subscriptions: one NATS queue subscription per (group, filter) on every node
  holding a member, on a second connection (the publishing node must be a candidate
  too); the node that NATS picks delivers to one local member.
* Retained messages: a JetStream stream keeping one message per subject; every node
  mirrors it into its local RetainedStore (ordered consumer), so subscribe-time
  delivery stays synchronous and local.
* Sessions: a JetStream KV bucket maps client id -> owning node. A CONNECT waits (as a
  deferred authentication does) while the node asks the owner to give the session up:
  the owner closes a live connection (v5 DISCONNECT 0x8E) and answers with a snapshot
  of a persistent session (subscriptions, queued and in-flight messages, QoS 2 state).
  The durable part of persistent sessions is also recorded in JetStream, and the
  sessions of a node that dies are adopted by a survivor (sessions.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import nats
from nats.js.api import DeliverPolicy, StreamConfig

from mqttfast.core import outbound
from mqttfast.core.message import Message
from mqttfast.core.router import EMPTY_SUBSCRIPTIONS, LocalRouter
from mqttfast.core.subscriptions import SubEntry, SubscriptionStore

from .acks import AckGate
from .config import ClusterConfig
from .fastpath import ANNOUNCE_TIMEOUT, Encoder, Inbound, Interest, write_ping, write_raw
from .journal import Journal
from .ownership import Ownership
from .pressure import Pressure
from .progress import Progress
from .sessions import SessionRecords
from .shared import SharedMoves, move_filter
from .subjects import filter_to_subjects, subject_to_topic, topic_to_subject
from .will_records import WillRecords
from .wire import (
    H_EXPIRES_WALL,
    H_ID,
    message_from,
    message_headers,
)

log = logging.getLogger("mqttfast.cluster")

RECENT_MAX = 100_000  # messages remembered for de-duplication while reconciling
HEARTBEAT = 2.0  # seconds between node heartbeats (nodes_seen)
_local_publish = LocalRouter.publish


def _token(text: str) -> str:
    """A NATS-safe name for an arbitrary string (stream names, queue names, keys)."""
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class _InOrder:
    """Stands in for the pending queue of this node's interest subscriptions in nats-py:
    nats-py's reader puts every message there in wire order, and it is routed at once.
    With one nats-py task per subscription instead, two overlapping subscriptions of the
    node's queue group could reorder messages of one topic [MQTT-4.6.0-5]; this also
    saves a task switch per message."""

    def __init__(self, handler: Callable[[Any], None]) -> None:
        self.handler = handler

    def put_nowait(self, msg: Any) -> None:
        self.handler(msg)

    def qsize(self) -> int:
        return 0

    def empty(self) -> bool:
        return True

    def task_done(self) -> None:
        pass

    async def join(self) -> None:
        return None


class _NatsOut:
    """Stands in a client sink in the transport flusher's list of outputs to flush: its
    flush writes the outbox to NATS (Backplane.flush_direct) where the transport flushes
    a small read's client output, at the end of that read."""

    __slots__ = ("bp",)
    buf = True  # Flusher.end_read calls flush only for a sink with something buffered

    def __init__(self, bp: Backplane) -> None:
        self.bp = bp

    def flush(self) -> None:
        self.bp.flush_direct()


class ClusterRouter(LocalRouter):
    """The core's Router for a cluster node; takes over the LocalRouter's state."""

    def __init__(self, base: LocalRouter, bp: Backplane) -> None:
        # The core's delivery filters (ACL, plug-ins' on_deliver, queue water marks) are
        # one shared object: a plug-in manager installed later changes them here too.
        super().__init__(
            base.sessions, base.subscriptions, base.retained, base.retain_available, base.filters
        )
        self.bp = bp
        self.q2: tuple[Any, int, bool] | None = None  # qos2_publish, for the next publish
        # $share members live apart from the local trie: their messages come only from
        # the NATS queue group, so a local publish cannot reach two members.
        self.shared = SubscriptionStore()

    tracks_qos2 = True

    def qos2_publish(self, conn: Any, packet_id: int, dup: bool) -> None:
        self.q2 = (conn, packet_id, dup)

    def qos2_resent(self, conn: Any, packet_id: int) -> bool:
        return self.bp.progress.resent(conn, packet_id)

    def publish(self, msg: Message, now: float, publisher: Any = None) -> int:
        bp = self.bp
        local = True
        mid = None
        q2 = self.q2
        if q2 is not None:
            self.q2 = None
            if msg.qos == 2 and publisher is not None and q2[0] is publisher:
                # Exactly once across the death of its node (journal.q2_copy).
                mid = bp.progress.q2_id(publisher, q2[1], q2[2])
                if mid is not None:
                    msg.mid = mid
                    # A copy re-sent after its node died, which reached this node then:
                    # not delivered here again (the other nodes decide for themselves).
                    local = not bp.journal.q2_copy(mid, msg.origin)
        count = LocalRouter.publish(self, msg, now, publisher) if local else 0
        if msg.qos == 2 and publisher is not None:
            bp.progress.hold_pubrec(publisher)  # exactly once across its node's death
        if msg.topic.startswith("$SYS/"):
            return count  # $SYS is per node
        view = bp.view
        journal = bp.journal
        if msg.qos and journal.on and bp.connected and (journal.wanted(msg.topic) or view.send_all):
            # A persistent session (here or elsewhere) may receive it: journaled in
            # JetStream too (journal.py), its acknowledgement waits for the PubAck.
            # (Not sure yet what the others want, e.g. just started: everything.)
            if mid is None:
                msg.mid = journal.next_id()
            bp.outbox.append((7 if view.send_all or view.wanted(msg.topic) else 8, msg, now))
        elif view.send_all or view.wanted(msg.topic):
            bp.outbox.append((0 if mid is None else 9, msg, now))
        elif msg.retain:
            bp.outbox.append((5, msg, now))  # the retained stream only: nobody else wants it
        else:
            bp.stats["msgs_local_only"] += 1  # no other node wants it: not sent to NATS
            return count
        if msg.qos and publisher is not None and bp.connected and bp.ack_after_nats:
            # Its PUBACK/PUBREC waits until nats-server has it. (NATS unreachable: the
            # node serves as a single node meanwhile; acknowledgements do not wait.)
            bp.acks.hold(publisher)
        if not bp.wake_pending:
            flusher = bp.flusher
            if flusher is not None and flusher.direct:
                # A small client read (low load): written to NATS at the end of this read,
                # with the client output it caused (Backplane.flush_direct), not by the
                # sender task a loop turn later. Larger reads: the sender's turn batch.
                if not bp.direct_pending:
                    bp.direct_pending = True
                    flusher.dirty.append(bp.nats_out)
            else:
                bp.wake()
        if count == 0 and bp.connected:
            return 1  # other nodes may have subscribers: do not answer "no subscribers"
        return count

    def hold_suback(self, conn: Any, finish: Callable[[], None]) -> bool:
        # SUBACK once every other node confirmed the new interest (fastpath.py) and,
        # for a persistent session, once its record names the new subscription
        # (sessions.py), so an acknowledged subscription survives the node's death.
        bp = self.bp
        session = conn.session
        if session is None or not session.expiry_interval:
            return bp.view.hold(finish)
        left = [2]

        def part() -> None:
            left[0] -= 1
            if left[0] == 0:
                finish()

        if not bp.records.hold(session.client_id, part):
            return bp.view.hold(finish)
        if not bp.view.hold(part):
            part()
        return True

    def bind_output(self, flusher: Any) -> None:
        # Client output caused by a small read from NATS leaves at the end of that read
        # (fastpath.Inbound), as the transport does for a small read from a client.
        self.bp.inbound.flusher = flusher
        self.bp.flusher = flusher
        if self.bp.ack_after_nats:  # else acknowledgements wait for nobody: no gate
            self.bp.acks.bind_output(flusher)

    def deliver_remote(self, msg: Message, now: float) -> None:
        """A message from another node: local subscribers only, nothing stored."""
        saved = self.retain_available
        self.retain_available = False  # the retained mirror stores it, not this path
        origin = msg.origin
        # Its publisher is on another node: paused from here as a local one would be.
        publisher: Any = self.bp.pressure.publisher(origin) if origin is not None else None
        try:
            LocalRouter.publish(self, msg, now, publisher)
        finally:
            self.retain_available = saved

    def deliver_except(self, msg: Message, now: float, publisher: Any, skip: set[str]) -> None:
        """A message from another node to local subscribers but the sessions ``skip``
        (the local trie holds no $share members: those come from the queue groups)."""
        normal, _shared = self.subscriptions.match(msg.topic)
        targets = [t for t in normal if t.client_id not in skip]
        if targets:
            f = self.filters
            outbound.fan_out(
                msg,
                targets,
                self.sessions,
                f.receive_check,
                f.deliver_check,
                f.queue_high_water,
                publisher,
                now,
                {},
            )

    def deliver_shared(self, group: str, topic_filter: str, msg: Message, now: float) -> None:
        g = self.shared.groups.get((group, topic_filter))
        if g is None:
            return
        picked = g.pick(self.sessions)
        if picked is None:
            return
        session, entry = picked
        if session.conn is None and self.bp.connected:
            # Every member here is away: a member online on another node first, as a
            # single node would prefer one (shared.py); else back to this one.
            self.bp.move_shared([((group, topic_filter), msg)], None)
            return
        if self._give(g, session, entry, msg, now) and msg.origin is not None:
            # a backed-up member pauses the remote publisher
            publisher: Any = self.bp.pressure.publisher(msg.origin)
            outbound.delivered_shared(session, publisher, self.filters.queue_high_water)

    def _give(self, g: Any, session: Any, entry: SubEntry, msg: Message, now: float) -> bool:
        """One shared message to the member picked (its ACL and plug-in checks first)."""
        rc = self.receive_check
        if rc is not None and (
            not rc(session, msg.topic)
            or (self.deliver_check is not None and not self.deliver_check(session, msg))
        ):
            return False
        qos = entry.qos if entry.qos < msg.qos else msg.qos
        sub_ids = (entry.sub_id,) if entry.sub_id is not None else None
        session.deliver(
            msg, qos, msg.retain and entry.retain_as_published, sub_ids, now, None, shared=g
        )
        return True

    def redistribute(self, deliveries: list[Any], exclude: str, now: float) -> None:
        """A departed member's shared messages (4.8.2): to a member online here as on a
        single node, else to the group's members on the other nodes (shared.py)."""
        bp = self.bp
        if not bp.connected:
            LocalRouter.redistribute(self, deliveries, exclude, now)
            return
        sessions = self.sessions
        here = []
        away = []
        for d in deliveries:
            g = d.shared
            online = any(
                cid != exclude and (s := sessions.get(cid)) is not None and s.conn is not None
                for cid in g.order
            )
            if online:
                here.append(d)
            else:  # (the group may have no member left here: members elsewhere may)
                away.append(((g.group, g.topic_filter), d.msg))
        if here:
            LocalRouter.redistribute(self, here, exclude, now)
        if away:
            bp.move_shared(away, exclude)

    def take_moved(
        self,
        group: str,
        topic_filter: str,
        msg: Message,
        departed: str | None,
        anyone: bool,
        now: float,
    ) -> bool:
        """A message moved from another node (shared.py): given to a member here other
        than ``departed``, online only unless ``anyone``. False: none fits here."""
        g = self.shared.groups.get((group, topic_filter))
        if g is None:
            return False
        picked = g.pick(self.sessions, exclude=departed)
        if picked is None:
            return False
        session, entry = picked
        if session.conn is None and not anyone:
            return False
        self._give(g, session, entry, msg, now)
        return True  # refused by an ACL or plug-in: dropped, as on a single node

    def keep_moved(self, key: tuple[str, str], msg: Message, departed: str | None) -> None:
        """No other node took it: a member here (online or not) as on a single node."""
        g = self.shared.groups.get(key)
        picked = g.pick(self.sessions, exclude=departed) if g is not None else None
        if picked is not None:
            self._give(g, picked[0], picked[1], msg, self.bp.core.clock())

    def subscribe(self, session: Any, entry: SubEntry) -> bool:
        self.bp.records.touch(session)
        if entry.group is None:
            new = LocalRouter.subscribe(self, session, entry)
            if new:
                self.bp.interest_add(entry.topic_filter)
            if session.expiry_interval:
                self.bp.journal.local(session)
            return new
        session.set_subscription(entry)
        new = self.shared.add(entry)
        if new:
            self.bp.share_add(entry.group, entry.topic_filter)
        return new

    def _remove(self, entry: SubEntry) -> bool:
        if entry.group is None:
            removed = self.subscriptions.remove(entry.client_id, entry.topic_filter, None)
            if removed:
                self.bp.interest_remove(entry.topic_filter)
        else:
            removed = self.shared.remove(entry.client_id, entry.topic_filter, entry.group)
            if removed:
                self.bp.share_remove(entry.group, entry.topic_filter)
        return removed

    def unsubscribe(self, session: Any, full_filter: str) -> bool:
        entry = session.pop_subscription(full_filter)
        if entry is None:
            return False
        self.bp.records.touch(session)
        removed = self._remove(entry)
        if session.expiry_interval:
            self.bp.journal.local(session)
        return removed

    def drop_session(self, session: Any) -> None:
        self.bp.records.touch(session)
        for entry in list(session.subscriptions.values()):
            self._remove(entry)
        session.subscriptions = EMPTY_SUBSCRIPTIONS
        self.bp.journal.local(session)
        self.bp.journal.session_ended(session.client_id)


class Backplane:
    def __init__(self, cfg: ClusterConfig) -> None:
        cfg.validate()
        self.cfg = cfg
        self.prefix = cfg.subject_prefix
        self.ctl = f"_mqttfast.{cfg.subject_prefix or '_'}"
        safe = _token(cfg.subject_prefix)[:12]
        self.stream = f"MQTTFAST_{safe}_RETAINED"
        self.bucket = f"mqttfast_{safe}_owners"
        self.wills_bucket = f"mqttfast_{safe}_wills"
        # Persistent sessions recorded in JetStream, adopted when their node dies.
        self.records = SessionRecords(self, f"mqttfast_{safe}_sessions")
        # QoS 1/2 messages persistent sessions may receive, and how far each session got
        # (journal.py, progress.py): what an adopter replays after a node's death.
        self.journal = Journal(self, safe, cfg.journal_max_age)
        self.progress = Progress(self, f"mqttfast_{safe}_progress")
        self.wills = WillRecords(self, HEARTBEAT)
        self.owners = Ownership(self)
        self.dead_handled: set[str] = set()
        # After a NATS outage: (topic, payload) of the messages received from NATS since
        # it was lost, until the sessions are reconciled (a copy held elsewhere has them
        # too: not merged twice); when NATS came back (heartbeats are heard afresh).
        self.recent: Counter[tuple[str, bytes]] | None = None
        self.reconnected_at = 0.0
        self._reconciling = False
        self._reconcile_again = False
        self.node_id = cfg.node_id or ""
        self.core: Any = None
        self.router: ClusterRouter | None = None
        self.nc: Any = None  # publishes, node interest, control
        self.nc_shared: Any = None  # shared-subscription queue groups
        self.js: Any = None
        self.kv: Any = None
        self.connected = False
        self.started = False
        # (kind, payload, now) in order: 0 publish, 1 sub, 2 unsub, 3 share sub, 4 share
        # unsub, 5 retained-stream publish only (no other node wants the message), 7/8
        # journaled with / without the core copy (journal.py), 9 core copy with an id
        # (QoS 2 of a persistent publisher, journal.q2_copy)
        self.outbox: list[tuple[int, Any, Any]] = []
        self.wake_pending = False
        # Direct sends (flush_direct): the transport's flusher (bind_output), whether the
        # outbox is in its list for this read, whether the sender task is inside a batch.
        self.flusher: Any = None
        self.direct_pending = False
        self.nats_out = _NatsOut(self)
        self.sending = False
        self._event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.interest: dict[str, int] = {}  # NATS subject -> filters of this node on it
        self.subs: dict[str, Any] = {}  # NATS subject -> nats Subscription
        self.shares: dict[tuple[str, str], int] = {}  # (group, filter) -> local members
        self.share_subs: dict[tuple[str, str], list[Any]] = {}
        self.nodes: dict[str, float] = {}  # node id -> last heartbeat (monotonic)
        self.tasks: list[asyncio.Task] = []
        self.retained_sub: Any = None
        self.retained_seq = 0  # stream sequence of the last retained change mirrored
        self._in_order = _InOrder(self._on_message)
        self.stats = {
            "msgs_out": 0,
            "bytes_out": 0,
            "msgs_in": 0,
            "bytes_in": 0,
            "takeovers": 0,
            "sessions_moved_in": 0,
            "js_errors": 0,
            "dropped_disconnected": 0,
            "retained_in": 0,
            "msgs_local_only": 0,
            "writes_direct": 0,
            "qos2_forwarded_again": 0,
        }
        # The cheap data path (fastpath.py): who wants what, raw sends, inline receive.
        self.view = Interest(self.node_id, self.ctl)
        self.view.on_durable = self.journal.remote_durable
        self.encoder = Encoder(self.prefix)
        self.inbound = Inbound(self.prefix, self._on_data, self._now, self._commit_soon)
        self.inbound.seen_id = self.journal.seen
        self._commit_pending = False
        self.acks = AckGate()  # acknowledgements leave once nats-server has the message
        self.pressure = Pressure(self.node_id, self._publish_pressure)
        self.moves = SharedMoves(self.ctl, self._now)  # shared messages between nodes
        self.ack_after_nats = cfg.ack_after_nats

    # -- wiring ---------------------------------------------------------------

    def attach(self, core: Any) -> None:
        """Replace the core's router and wrap the connect step (no I/O)."""
        self.core = core
        router = ClusterRouter(core.router, self)
        core.router = router
        self.router = router
        hooks = core.hooks
        original: Callable[..., int | None] = hooks.begin_authenticate

        def begin_authenticate(
            client: Any, username: Any, password: Any, done: Callable[[int], None]
        ) -> int | None:
            def authenticated(code: int) -> None:
                if code or not self.connected:
                    done(code)
                else:
                    self._spawn(self.owners.claim(client, done))

            rc = original(client, username, password, authenticated)
            if rc is None:
                return None
            if rc or not self.connected:
                return rc
            self._spawn(self.owners.claim(client, done))
            return None

        hooks.begin_authenticate = begin_authenticate
        self.progress.install(core)  # PUBREL of journaled QoS 2 after its record
        self._original_session_disconnected = core.session_disconnected
        core.session_disconnected = self.session_disconnected

    def wake(self) -> None:
        self.wake_pending = True
        if self._event is not None:
            self._event.set()

    async def written(self, timeout: float) -> None:
        """Until what was routed so far is written to the NATS connection (the sender's
        batch in progress and the outbox), or ``timeout`` s. A reply sent after this
        (a take-over's snapshot, with the messages queued for the session) must not
        overtake messages the snapshot holds: the new node would install it, then get
        them again live. The sender may be waiting for the socket (drain) while
        nats-py writes a reply straight away."""
        acks = self.acks
        if self.outbox:
            target = acks.batch_no  # the sender's next batch takes the outbox
            self.wake()
        elif self.sending:
            target = acks.batch_no - 1
        else:
            return
        deadline = time.monotonic() + timeout
        while acks.sent < target and self.nc is not None and time.monotonic() < deadline:
            await asyncio.sleep(0.002)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.append(task)
        task.add_done_callback(self.tasks.remove)

    # -- interest (called by ClusterRouter, synchronous) ------------------------

    def interest_add(self, topic_filter: str) -> None:
        for subject in filter_to_subjects(topic_filter, self.prefix):
            n = self.interest.get(subject, 0)
            self.interest[subject] = n + 1
            if n == 0:
                self.outbox.append((1, subject, None))
        self.view.local_add(topic_filter)
        self.wake()

    def interest_remove(self, topic_filter: str) -> None:
        for subject in filter_to_subjects(topic_filter, self.prefix):
            n = self.interest.get(subject, 0) - 1
            if n <= 0:
                self.interest.pop(subject, None)
                self.outbox.append((2, subject, None))
            else:
                self.interest[subject] = n
        self.view.local_remove(topic_filter)
        self.wake()

    def share_add(self, group: str, topic_filter: str) -> None:
        key = (group, topic_filter)
        n = self.shares.get(key, 0)
        self.shares[key] = n + 1
        if n == 0:
            self.view.local_add(topic_filter, shared=True)
            self.outbox.append((3, key, None))
            self.wake()

    def share_remove(self, group: str, topic_filter: str) -> None:
        key = (group, topic_filter)
        n = self.shares.get(key, 0) - 1
        if n <= 0:
            self.shares.pop(key, None)
            self.view.local_remove(topic_filter, shared=True)
            self.outbox.append((4, key, None))
            self.wake()
        else:
            self.shares[key] = n

    # -- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.cfg
        self.node_id = cfg.resolve_node_id()
        self.view.node_id = self.node_id
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()
        self.started = True
        try:
            await self._connect()
        except Exception as exc:  # serve local clients; keep trying in the background
            log.warning(
                "cluster: NATS %s unreachable (%s); serving local clients, retrying",
                ",".join(cfg.servers),
                exc,
            )
            self._spawn(self._connect_later())
        self._spawn(self._sender())
        self._spawn(self._heartbeat())
        log.info("cluster: node %s, subject prefix %r", self.node_id, self.prefix)

    async def _connect_later(self) -> None:
        while self.started and self.nc is None:
            await asyncio.sleep(1.0)
            try:
                await self._connect()
            except Exception:
                continue
            log.info("cluster: NATS reachable again; interest re-established")

    def _options(self, main: bool = True) -> dict[str, Any]:
        """nats-py options; the connection events of the main connection drive the
        node's state (the shared-subscription connection follows it, its own events
        only logged: else every outage would be handled twice)."""
        cfg = self.cfg
        opts: dict[str, Any] = {
            "servers": cfg.servers,
            "name": f"mqttfast-{self.node_id}",
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": 0.5,
            "connect_timeout": 2,
            "ping_interval": 5,
            "max_outstanding_pings": 2,
            "allow_reconnect": True,
            "disconnected_cb": self._on_disconnected if main else self._on_shared_event,
            "reconnected_cb": self._on_reconnected if main else self._on_shared_event,
            "error_cb": self._on_error,
        }
        if cfg.user is not None:
            opts["user"] = cfg.user
            opts["password"] = cfg.password
        if cfg.token is not None:
            opts["token"] = cfg.token
        if cfg.credentials is not None:
            opts["user_credentials"] = cfg.credentials
        if cfg.tls_ca or cfg.tls_cert:
            import ssl

            ctx = ssl.create_default_context(cafile=cfg.tls_ca)
            if cfg.tls_cert:
                ctx.load_cert_chain(cfg.tls_cert, cfg.tls_key)
            opts["tls"] = ctx
        return opts

    async def _connect(self) -> None:
        nc = await nats.connect(no_echo=True, **self._options())
        try:
            shared = await nats.connect(**self._options(main=False))
        except Exception:
            await nc.close()
            raise
        js = nc.jetstream()
        try:
            await self._ensure_stream(js)
            kv = await self._ensure_kv(js, self.bucket)
            wills_kv = await self._ensure_kv(js, self.wills_bucket)
        except Exception:  # e.g. a NATS cluster still electing its JetStream leader
            await nc.close()
            await shared.close()
            raise
        await nc.subscribe(f"{self.ctl}.node.{self.node_id}.take", cb=self.owners.on_take)
        await nc.subscribe(f"{self.ctl}.node.{self.node_id}.reclaim", cb=self.owners.on_reclaim)
        await nc.subscribe(f"{self.ctl}.node.{self.node_id}.merge", cb=self.owners.on_merge)
        await nc.subscribe(f"{self.ctl}.hb", cb=self._on_heartbeat)
        await nc.subscribe(f"{self.ctl}.bp", cb=self._on_pressure)
        ctl, me = self.ctl, self.node_id
        await nc.subscribe(f"{ctl}.int.d", cb=self._on_announce)
        await nc.subscribe(f"{ctl}.int.q", cb=self._on_query)
        await nc.subscribe(f"{ctl}.int.a.{me}", cb=self._on_confirm)
        await nc.subscribe(f"{ctl}.int.r.{me}", cb=self._on_snapshot)
        await nc.subscribe(f"{ctl}.int.bye", cb=self._on_bye)
        self.inbound.install(nc)
        self.inbound.take_reads(nc)
        self.nc, self.nc_shared, self.js, self.kv = nc, shared, js, kv
        self.wills.kv = wills_kv
        try:
            await self.records.attach(js, self.cfg.replicas)
            await self.journal.attach(nc, js, self.cfg.replicas, self.records.kv)
            await self.progress.attach(js, self.cfg.replicas)
            # Interest held before NATS was reachable (a restart, or an outage at start).
            for subject in self.interest:
                await self._subscribe_interest(nc, subject)
            for key in self.shares:
                await self._share_subscribe(key)
            await self._mirror_retained()
        except Exception:
            # Not half connected: with ``nc`` set the retry loop (_connect_later) ended,
            # and the node stayed "not connected" for good (CONNECTs never asked the
            # cluster for their sessions). Seen once: "stream not found" from a NATS
            # cluster still electing its JetStream leader.
            self.nc = self.nc_shared = self.js = self.kv = None
            self.wills.kv = None
            self.subs.clear()
            self.inbound.sids.clear()
            await nc.close()
            await shared.close()
            raise
        self.connected = True
        await self._announce_full()
        self.wake()
        # Wills left by a previous run of this node id (killed, then restarted before the
        # others noticed): those connections are gone.
        self._spawn(self.wills.publish_of(self.node_id))
        self._spawn(self.wills.orphans())
        self._spawn(self.records.adopt_own())
        self._spawn(self._orphan_sessions())

    async def _ensure_stream(self, js: Any) -> None:
        config = StreamConfig(
            name=self.stream,
            subjects=[f"{self.ctl}.ret.>"],
            max_msgs_per_subject=1,
            num_replicas=self.cfg.replicas,
        )
        try:
            await js.add_stream(config)
        except Exception:
            await js.update_stream(config)

    async def _ensure_kv(self, js: Any, bucket: str) -> Any:
        try:
            return await js.key_value(bucket)
        except Exception:
            return await js.create_key_value(bucket=bucket, history=1, replicas=self.cfg.replicas)

    async def _mirror_retained(self) -> None:
        """Load every retained message (last per subject), then follow changes."""
        info = await self.js.stream_info(self.stream)
        done = asyncio.Event()
        if info.state.messages == 0:
            done.set()

        async def on_retained(m: Any) -> None:
            self._on_retained(m)
            if not done.is_set() and m.metadata.num_pending == 0:
                done.set()

        self.retained_sub = await self.js.subscribe(
            f"{self.ctl}.ret.>",
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
            cb=on_retained,
            pending_msgs_limit=-1,
            pending_bytes_limit=-1,
        )
        try:
            await asyncio.wait_for(done.wait(), 60.0)
        except TimeoutError:
            log.warning("cluster: retained messages still loading after 60 s")

    async def stop(self) -> None:
        await self.moves.finish()  # shared messages of clients that left at shutdown
        self.started = False
        if self.nc is not None and self.connected:
            try:  # the others drop our interest now, not after the heartbeat timeout
                await self.nc.publish(f"{self.ctl}.int.bye", self.node_id.encode())
            except Exception:
                pass
        self.connected = False
        self.view.connected = False
        for task in list(self.tasks):
            task.cancel()
        for nc in (self.nc, self.nc_shared):
            if nc is not None:
                try:
                    await asyncio.wait_for(nc.drain(), 2.0)
                except Exception:
                    try:
                        await nc.close()
                    except Exception:
                        pass
        self.nc = self.nc_shared = None

    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        alive = sorted(n for n, t in self.nodes.items() if now - t < 3 * HEARTBEAT)
        return {
            "connected": self.connected,
            "node_id": self.node_id,
            "nodes_seen": len(set(alive) | {self.node_id}),
            "nodes": sorted(set(alive) | {self.node_id}),
            "interest_subjects": len(self.interest),
            "shared_groups": len(self.shares),
            "msgs_out": self.stats["msgs_out"],
            "bytes_out": self.stats["bytes_out"],
            "msgs_in": self.stats["msgs_in"] + self.inbound.msgs,
            "bytes_in": self.stats["bytes_in"] + self.inbound.bytes,
            "takeovers": self.stats["takeovers"],
            "sessions_moved_in": self.stats["sessions_moved_in"],
            "js_errors": self.stats["js_errors"],
            **self.records.status(),
            # the journal (journal.py, progress.py)
            "journal_writes": self.journal.stats["journal_writes"],
            "journal_filters": len(self.journal.filters_known()),
            "journal_errors": self.acks.journal_errors,
            "journal_replayed": self.journal.stats["journal_replayed"],
            "qos2_copies_dropped": self.journal.stats["qos2_copies_dropped"],
            "qos2_forwarded_again": self.stats["qos2_forwarded_again"],
            "progress_writes": self.progress.stats["progress_writes"],
            "dropped_disconnected": self.stats["dropped_disconnected"],
            # back-pressure across nodes (pressure.py)
            **self.pressure.stats,
            # shared-subscription messages moved between nodes (shared.py)
            **self.moves.stats,
            "publishers_paused_by_others": self.pressure.paused_here(),
            # acknowledgements waiting for nats-server (acks.py)
            "acks_waiting": len(self.acks.waiting),
            "ack_timeouts": self.acks.timeouts,
            # interest sharing (fastpath.py)
            "msgs_local_only": self.stats["msgs_local_only"],
            # NATS writes made at the end of a small client read (not by the sender task)
            "writes_direct": self.stats["writes_direct"],
            "remote_filters": self.view.remote_filters(),
            "interest_peers": len(self.view.peers),
            "interest_send_all": self.view.send_all,
        }

    # -- NATS connection events -------------------------------------------------

    async def _on_disconnected(self) -> None:
        if self.nc is None:
            # A connection closed before it was complete (_connect: JetStream not ready
            # yet): there was no NATS time to settle. Handled as an outage, it paused the
            # session records until a reconcile that never came.
            return
        # Sent but unconfirmed messages may be lost with the connection: the publishers
        # waiting for them are disconnected unacknowledged and resend.
        failed = self.acks.connection_lost()
        if failed:
            log.warning(
                "cluster: NATS connection lost; %d publisher(s) disconnected with "
                "unacknowledged messages (they resend)",
                failed,
            )
        if self.connected:
            log.warning("cluster: lost NATS; serving local clients only until it returns")
        # Other nodes may adopt this node's sessions meanwhile, its clients may reconnect
        # elsewhere: record writes wait for the reconcile when NATS is back.
        self.records.paused = True
        if self.records.before is None and self.core is not None:
            self.records.before = dict(self.core.sessions)
        if self.recent is None:
            self.recent = Counter()
            self.journal.outage()
        self.connected = False
        self.view.connected = False
        if self.core is not None:  # no release from the others can reach us now
            self.pressure.release_all(self.core.clock())
        self._publish_sys()

    async def _on_reconnected(self) -> None:
        if self.nc is None:
            return  # (as above)
        # nats-py re-sends every SUB on reconnect: interest is back as it was.
        log.info(
            "cluster: NATS reconnected (%s); %d interest subjects re-established",
            self.nc.connected_url.netloc if self.nc and self.nc.connected_url else "?",
            len(self.interest),
        )
        self.connected = self.nc is not None and self.nc.is_connected
        if self.connected:
            self.inbound.take_reads(self.nc)  # a new socket: its reads inline again
            # The others' heartbeats did not reach us meanwhile: heard afresh from now.
            self.reconnected_at = time.monotonic()
            # Announcements may have been lost either way: full set out, everybody's in.
            await self._announce_full()
            if self.acks.sent > self.acks.broken:  # sent while reconnecting: confirm them
                await self._ping(self.nc, self.acks.sent)
            self._spawn(self._reconcile())
        self._publish_sys()
        self.wake()

    async def _reconcile(self) -> None:
        """NATS is back: who holds which session is settled (sessions.reconcile), once
        the others know this node's interest again (what they publish from then on comes
        here too, so nothing falls between the adopter's copy and this one)."""
        if self._reconciling:
            self._reconcile_again = True
            return
        self._reconciling = True
        try:
            while True:
                self._reconcile_again = False
                await self.interest_known()
                if self.connected:
                    await self.records.reconcile()
                    await self.wills.settle()
                    # What the others published for this node's persistent sessions
                    # while it was away from NATS (journal.py).
                    await self.journal.catch_up()
                if not self._reconcile_again:
                    break
        except Exception:
            log.exception("cluster: reconcile after the NATS outage")
        finally:
            self._reconciling = False
            if self.connected:  # else the next reconnect does it again
                self.recent = None
                self.journal.before_outage = None
                self.records.resume()

    def seen_recently(self, msg: Message) -> bool:
        """Was ``msg`` received from NATS here since NATS was lost? (counted once)"""
        recent = self.recent
        if not recent:
            return False
        key = (msg.topic, bytes(msg.payload))
        n = recent.get(key, 0)
        if n <= 0:
            return False
        recent[key] = n - 1
        return True

    async def _on_shared_event(self) -> None:
        nc = self.nc_shared
        log.info(
            "cluster: shared-subscription connection %s",
            "up" if nc is not None and nc.is_connected else "down",
        )

    async def _on_error(self, exc: Exception) -> None:
        log.warning("cluster: NATS error: %s", exc)

    # -- outgoing ---------------------------------------------------------------

    async def _sender(self) -> None:
        """The one task that talks to NATS for the router: wakes at most once per
        loop turn and sends everything queued since, in order."""
        event = self._event
        assert event is not None
        while True:
            await event.wait()
            event.clear()
            self.wake_pending = False
            nc = self.nc
            if nc is None:
                # Never connected yet: publications cannot wait (bounded memory);
                # subscriptions are replayed from self.interest on connect.
                self.stats["dropped_disconnected"] += sum(
                    1 for k, _, _ in self.outbox if k in (0, 7, 8, 9)
                )
                self.outbox.clear()
                self.acks.take_batch()
                self.acks.confirm_all()  # local delivery only (logged at start)
                continue
            batch, self.outbox = self.outbox, []
            acks = self.acks
            no, ping = acks.take_batch()
            # A PING follows the batch (in its last write when it can); its PONG releases
            # the acknowledgements waiting for the batch (acks.py).
            pong = acks.pong_for(no) if ping else None
            self.sending = True  # flush_direct must not overtake this batch
            try:
                await self._send(nc, batch, pong, no)
            except Exception as exc:
                log.warning("cluster: NATS send failed (%s); %d items", exc, len(batch))
            finally:
                self.sending = False
            acks.sent = no

    def flush_direct(self) -> None:
        """The end of a small client read that published (ClusterRouter.publish): its
        messages go to NATS now, in one write on the socket (with the ack gate's PING),
        as the sender would write them one loop turn later. Anything else (subscription
        changes, retained messages, a batch of the sender still being written, nats-py's
        own pending output, no connection): the sender task, as before."""
        self.direct_pending = False
        outbox = self.outbox
        if not outbox or self.wake_pending:
            return
        nc = self.nc
        if (
            self.sending
            or nc is None
            or not nc.is_connected
            or nc._pending
            or self.view.dirty()
            or any(kind or item.retain for kind, item, _now in outbox)
        ):
            self.wake()
            return
        max_payload = nc.max_payload or (1 << 20)
        if any(len(item.payload) > max_payload for _k, item, _n in outbox):
            self.wake()  # the sender counts and logs it
            return
        self.outbox = []
        acks = self.acks
        no, ping = acks.take_batch()
        line = self.encoder.line
        stats = self.stats
        parts = []
        size = 0
        for _kind, msg, now in outbox:
            parts.append(line(msg, now))
            size += len(msg.payload)
        if ping:
            nc._pongs.append(acks.pong_for(no))
            parts.append(b"PING\r\n")
        try:
            nc._transport.write(b"".join(parts))
        except Exception as exc:
            stats["dropped_disconnected"] += len(outbox)
            log.warning("cluster: publish to NATS failed (%s); %d messages", exc, len(outbox))
        else:
            stats["msgs_out"] += len(outbox)
            stats["bytes_out"] += size
            stats["writes_direct"] += 1
        acks.sent = no

    async def _ping(self, nc: Any, batch: int) -> None:
        """PING after ``batch`` on its own. Not connected: the reconnect pings for
        everything sent meanwhile."""
        try:
            await write_ping(nc, self.acks.pong_for(batch))
        except Exception as exc:
            log.warning("cluster: NATS ping failed (%s)", exc)

    async def _send(
        self, nc: Any, batch: list[tuple[int, Any, Any]], pong: Any = None, no: int = -1
    ) -> None:
        stats = self.stats
        journal = self.journal
        acks = self.acks
        shares_changed = False
        parts: list[bytes] = []  # this turn's PUB/HPUB lines, one write (fastpath.py)
        line = self.encoder.line
        append = parts.append
        max_payload = nc.max_payload or (1 << 20)
        size = 0  # payload bytes in parts
        for kind, item, now in batch:
            if kind == 7 or kind == 8:
                # Journaled (journal.py): the journal write, its PubAck due for batch
                # ``no``; the core copy with the same id when another node wants it.
                if item.retain:  # the retained stream too: through _send_one below
                    append(journal.lines(item, now, no, None))
                    acks.journal_sent(no)
                    kind = 0 if kind == 7 else 5
                else:
                    n = len(item.payload)
                    if n > max_payload:
                        stats["dropped_disconnected"] += 1
                        continue
                    core = self.encoder.subject(item.topic) if kind == 7 else None
                    append(journal.lines(item, now, no, core))
                    acks.journal_sent(no)
                    if core is not None:
                        size += n
                    continue
            if kind == 9:
                if item.retain:
                    kind = 0  # the retained stream too: through _send_one below
                else:
                    n = len(item.payload)
                    if n > max_payload:
                        stats["dropped_disconnected"] += 1
                        continue
                    append(journal.core_line(item, now, self.encoder.subject(item.topic)))
                    size += n
                    continue
            if kind == 0 and not item.retain:
                n = len(item.payload)
                if n > max_payload:
                    stats["dropped_disconnected"] += 1
                    if stats["dropped_disconnected"] in (1, 1000):
                        log.warning("cluster: message over NATS max_payload not forwarded")
                    continue
                append(line(item, now))
                size += n
                continue
            if parts:
                stats["msgs_out"] += len(parts)
                stats["bytes_out"] += size
                await self._write(nc, parts)
                parts = []
                append = parts.append
                size = 0
            if shares_changed and kind != 3:
                # The queue subscriptions travel on the other connection: let the server
                # have them before anything subscribed after them here.
                shares_changed = False
                await self.nc_shared.flush()
            try:
                await self._send_one(nc, kind, item, now)
            except Exception as exc:  # e.g. the reconnect buffer is full: count, go on
                if kind in (0, 5):
                    stats["dropped_disconnected"] += 1
                if kind not in (0, 5) or stats["dropped_disconnected"] in (1, 1000):
                    log.warning("cluster: NATS operation failed: %r", exc)
                continue
            shares_changed = shares_changed or kind == 3
        if parts:
            stats["msgs_out"] += len(parts)
            stats["bytes_out"] += size
            await self._write(nc, parts, pong)
        elif pong is not None:
            await write_ping(nc, pong)
        if shares_changed:
            await self.nc_shared.flush()
        if self.view.dirty() and self.connected:
            # After this turn's SUBs on the same connection: nats-server has them before
            # any other node can learn the interest.
            await self._announce(nc, full=False)

    async def _write(self, nc: Any, parts: list[bytes], pong: Any = None) -> None:
        try:
            await write_raw(nc, b"".join(parts), pong)
        except Exception as exc:
            self.stats["dropped_disconnected"] += len(parts)
            log.warning("cluster: publish to NATS failed (%s); %d messages", exc, len(parts))

    async def _subscribe_interest(self, nc: Any, subject: str) -> None:
        sub = await self._interest_subscribe(nc, subject)
        self.subs[subject] = sub
        # Its frames are cut out of the byte stream (fastpath.Inbound), in wire order;
        # _InOrder only serves what nats-py's parser had before Inbound was installed.
        self.inbound.sids.add(sub._id)

    # -- interest sharing (fastpath.Interest holds the state) -------------------

    async def _announce(self, nc: Any, full: bool) -> None:
        view = self.view
        payload = view.next_announcement(full)
        seq = view.seq
        try:
            await nc.publish(f"{self.ctl}.int.d", payload, reply=f"{self.ctl}.int.a.{self.node_id}")
        except Exception as exc:
            log.warning("cluster: interest announcement not sent: %s", exc)
        assert self._loop is not None
        self._loop.call_later(ANNOUNCE_TIMEOUT, view.give_up, seq)
        view.release()  # nobody to wait for (no other node known)

    async def _announce_full(self) -> None:
        """(Re)connected: our whole set out, and everybody's in (until then, and for 1.5
        heartbeat intervals, every message goes to NATS)."""
        nc = self.nc
        if nc is None:
            return
        view = self.view
        view.connected = True
        view.reset_view(time.monotonic(), 1.5 * HEARTBEAT)
        await self._announce(nc, full=True)
        await self._query(nc)

    async def _query(self, nc: Any) -> None:
        try:
            await nc.publish(
                f"{self.ctl}.int.q", self.node_id.encode(), reply=f"{self.ctl}.int.r.{self.node_id}"
            )
        except Exception:
            pass

    async def _on_announce(self, m: Any) -> None:
        _node, seq = self.view.apply(m.data)
        if m.reply and self.nc is not None:
            await self.nc.publish(m.reply, f"{self.node_id} {seq}".encode())

    async def _on_confirm(self, m: Any) -> None:
        if not m.data:  # nats-server's "no responders" status: no other node yet
            return
        node, _, seq = m.data.decode().partition(" ")
        peers = self.view.peers
        peers[node] = max(peers.get(node, 0), int(seq))
        self.view.release()

    async def _on_query(self, m: Any) -> None:
        view = self.view
        view.peer_seen(m.data.decode())
        if m.reply and self.nc is not None:
            await self.nc.publish(m.reply, view.snapshot())

    async def _on_snapshot(self, m: Any) -> None:
        if not m.data:  # nats-server's "no responders" status: no other node yet
            return
        self.view.apply(m.data)
        self.view.tick(time.monotonic())

    async def _on_bye(self, m: Any) -> None:
        node = m.data.decode()
        self.view.drop_node(node)
        self.pressure.release_node(node, self.core.clock())

    def _publish_pressure(self, data: bytes) -> None:
        """(pressure.py) pause or release a publisher on another node, after this turn's
        messages (the outbox keeps the order)."""
        self.outbox.append((6, (f"{self.ctl}.bp", data), None))
        if not self.wake_pending:
            self.wake()

    async def _on_pressure(self, m: Any) -> None:
        self.pressure.received(m.data, self.core, self.core.clock())

    async def _send_one(self, nc: Any, kind: int, item: Any, now: Any) -> None:
        if kind == 0 or kind == 5:
            # A retained message: to the retained stream always, to the data subject
            # when some other node wants it (kind 0).
            msg = item
            headers = message_headers(msg, now)
            mid = getattr(msg, "mid", None)
            if mid is not None:  # journaled: its id first (fastpath.Inbound finds it there)
                headers = {H_ID: mid, **(headers or {})}
            if kind == 0:
                await nc.publish(
                    topic_to_subject(msg.topic, self.prefix), msg.payload, headers=headers
                )
                self.stats["msgs_out"] += 1
                self.stats["bytes_out"] += len(msg.payload)
            rh = headers or {}
            if msg.expires_at is not None:
                rh[H_EXPIRES_WALL] = repr(time.time() + (msg.expires_at - now))
            await nc.publish(
                f"{self.ctl}.ret.{topic_to_subject(msg.topic, '')}",
                msg.payload,
                headers=rh or None,
            )
        elif kind == 1:
            if item in self.interest and item not in self.subs:
                await self._subscribe_interest(nc, item)
        elif kind == 2:
            sub = self.subs.get(item)
            if sub is not None and item not in self.interest:
                del self.subs[item]
                self.inbound.sids.discard(sub._id)
                await sub.unsubscribe()
        elif kind == 3:
            if item in self.shares and item not in self.share_subs:
                await self._share_subscribe(item)
        elif kind == 6:  # a control message (pressure.py)
            await nc.publish(item[0], item[1])
        elif kind == 4:
            subs = self.share_subs.get(item)
            if subs is not None and item not in self.shares:
                del self.share_subs[item]
                for sub in subs:
                    await sub.unsubscribe()

    async def _interest_subscribe(self, nc: Any, subject: str) -> Any:
        # No callback: nats-py starts no task; the pending queue is replaced by _InOrder
        # (pending_bytes_limit 0: nothing accumulates, no slow-consumer accounting).
        sub = await nc.subscribe(subject, queue=f"node-{self.node_id}", pending_bytes_limit=0)
        sub._pending_queue = self._in_order
        return sub

    async def _share_subscribe(self, key: tuple[str, str]) -> None:
        group, topic_filter = key
        queue = f"share-{self._share_token(key)}"
        router = self.router
        assert router is not None
        prefix = self.prefix
        stats = self.stats

        async def on_shared(m: Any) -> None:
            try:
                topic = subject_to_topic(m.subject, prefix)
            except ValueError:
                return
            stats["msgs_in"] += 1
            stats["bytes_in"] += len(m.data)
            now = self.core.clock()
            router.deliver_shared(
                group, topic_filter, message_from(topic, m.data, m.headers, now), now
            )

        subs = [
            await self.nc_shared.subscribe(s, queue=queue, cb=on_shared)
            for s in filter_to_subjects(topic_filter, prefix)
        ]
        # Messages moved between the group's members (shared.py), in the same queue.
        token = self._share_token(key)
        on_move = self.moves.handler(group, topic_filter, token, router.take_moved)
        subs.append(
            await self.nc_shared.subscribe(move_filter(self.ctl, token), queue=queue, cb=on_move)
        )
        self.share_subs[key] = subs

    @staticmethod
    def _share_token(key: tuple[str, str]) -> str:
        return _token(key[0] + chr(0) + key[1])

    def move_shared(self, items: list[tuple[tuple[str, str], Message]], departed: Any) -> None:
        """Shared messages to a member on another node (shared.py), in order."""
        router = self.router
        assert router is not None
        nc = self.nc_shared
        if nc is None or not self.connected:
            for key, msg in items:
                router.keep_moved(key, msg, departed)
            return
        self.moves.send(nc, self._share_token, items, departed, router.keep_moved)

    # -- incoming ---------------------------------------------------------------

    def _now(self) -> float:
        return float(self.core.clock())

    def _commit_soon(self) -> None:
        """Messages from NATS went into persistent sessions: commit them as a local
        publish would be (strict: within the storage's batching window), not at the next
        tick, so a node killed right after receiving them loses as little as possible."""
        storage = self.core.storage
        if self._commit_pending or not storage.durable or self._loop is None:
            return
        self._commit_pending = True
        self._loop.call_later(max(0.0, storage.flush_delay()), self._commit)

    def _commit(self) -> None:
        self._commit_pending = False
        self.core.storage.flush()

    def _on_data(self, msg: Message, now: float) -> None:
        """A message of an interest subscription, cut out of the NATS byte stream
        (fastpath.Inbound: no Msg object, no task; it counts msgs_in/bytes_in)."""
        recent = self.recent
        if recent is not None and len(recent) < RECENT_MAX:
            recent[(msg.topic, bytes(msg.payload))] += 1
        if msg.retain:
            self.router.deliver_remote(msg, now)  # type: ignore[union-attr]
            return
        origin = msg.origin
        # Its publisher is on another node: paused from here as a local one would be.
        publisher = self.pressure.publisher(origin) if origin is not None else None
        if self.journal.q2_had and self._copy_delivered(msg, now, publisher):
            return
        # nothing to keep out of the retained store: the local route, as is
        _local_publish(self.router, msg, now, publisher)  # type: ignore[arg-type]

    def _copy_delivered(self, msg: Message, now: float, publisher: Any) -> bool:
        """A QoS 2 copy (journal.q2_copy) whose original some sessions here got from a
        take-over's snapshot or the journal, not from NATS: delivered to the others
        only (journal.had_original). False: not such a copy, nothing done."""
        mid = getattr(msg, "mid", None)
        if mid is None or mid.count("/") < 3:
            return False
        skip = self.journal.had_original(mid, msg.origin)
        if not skip:
            return False
        self.router.deliver_except(msg, now, publisher, skip)  # type: ignore[union-attr]
        return True

    def _on_message(self, m: Any) -> None:
        """A message for this node's interest (called by nats-py's reader, in order)."""
        try:
            topic = subject_to_topic(m.subject, self.prefix)
            now = self.core.clock()
            msg = message_from(topic, m.data, m.headers, now)
        except (ValueError, KeyError, TypeError):
            return  # a NATS-native subject or header we cannot read as MQTT
        mid = getattr(msg, "mid", None)
        if mid is not None and not self.journal.seen(mid, msg.origin):
            return  # a re-sent copy of a QoS 2 message that reached this node
        stats = self.stats
        stats["msgs_in"] += 1
        stats["bytes_in"] += len(m.data)
        recent = self.recent
        if recent is not None and len(recent) < RECENT_MAX:
            recent[(msg.topic, bytes(msg.payload))] += 1
        try:
            publisher = self.pressure.publisher(msg.origin) if msg.origin is not None else None
            if msg.retain or not (
                self.journal.q2_had and self._copy_delivered(msg, now, publisher)
            ):
                self.router.deliver_remote(msg, now)  # type: ignore[union-attr]
        except Exception:  # never into nats-py's reader
            log.exception("cluster: delivering %r", topic)

    def _on_retained(self, m: Any) -> None:
        self.retained_seq = m.metadata.sequence.stream
        try:
            topic = subject_to_topic(m.subject, self.ctl + ".ret")
        except ValueError:
            return
        h = m.headers
        now = self.core.clock()
        msg = message_from(topic, m.data, h, now)
        msg.retain = True
        if h and H_EXPIRES_WALL in h:
            left = float(h[H_EXPIRES_WALL]) - time.time()
            if left <= 0:
                self.core.retained.delete(topic)
                return
            msg.expires_at = now + left
        self.stats["retained_in"] += 1
        self.core.retained.store(msg)  # an empty payload deletes [MQTT-3.3.1-10]

    async def _heartbeat(self) -> None:
        last = time.monotonic()
        while True:
            nc = self.nc
            try:
                gap = time.monotonic() - last
                if gap > 3 * HEARTBEAT and self.connected:  # the others may think us dead
                    self._stalled(gap)
                if nc is not None and self.connected:
                    await nc.publish(f"{self.ctl}.hb", self.node_id.encode())
                now = time.monotonic()
                self.view.tick(now)
                if self.acks.expire(now):
                    log.warning(
                        "cluster: nats-server did not confirm messages in time; "
                        "their publishers were disconnected unacknowledged"
                    )
                self._publish_sys()
                self._check_dead()
                self.pressure.expire(self.core.clock())
            except Exception:  # a bug here must not stop the heartbeat
                log.exception("cluster: heartbeat")
            last = time.monotonic()
            await asyncio.sleep(HEARTBEAT)

    def _stalled(self, gap: float) -> None:
        """This process did not run for ``gap`` seconds (SIGSTOP, a paused VM, a blocking
        call) while its NATS connection stayed up: long enough for the others to take it
        for dead, publish its wills and adopt its sessions, with nothing telling it so.
        Its sessions are settled as after a NATS outage (_reconcile)."""
        log.warning(
            "cluster: this node did not run for %.1f s (the others take a node for dead "
            "after %.0f s); reconciling its sessions as after a NATS outage",
            gap,
            3 * HEARTBEAT,
        )
        self.records.paused = True  # record writes wait for the reconcile
        if self.records.before is None and self.core is not None:
            self.records.before = dict(self.core.sessions)
        if self.recent is None:
            self.recent = Counter()
            self.journal.outage()
        # The others' heartbeats queued meanwhile are not read yet: heard afresh from now.
        self.reconnected_at = time.monotonic()
        self._spawn(self._after_stall())

    async def _after_stall(self) -> None:
        await self._announce_full()  # the others dropped this node's interest
        await self._reconcile()

    def _check_dead(self) -> None:
        if not self.connected:
            return  # we may be the one cut off
        now = time.monotonic()
        back = self.reconnected_at
        for node, seen in list(self.nodes.items()):
            seen = max(seen, back)
            if node != self.node_id and now - seen > 3 * HEARTBEAT:
                if node not in self.dead_handled:
                    self.dead_handled.add(node)
                    log.warning("cluster: node %s silent for %.0f s: gone", node, now - seen)
                    self.view.drop_node(node)
                    self.pressure.release_node(node, self.core.clock())
                    self._spawn(self.wills.publish_of(node))
                    # Its persistent sessions, offline here from now on (sessions.py);
                    # their expiry counts from its last heartbeat at the latest.
                    self._spawn(self.records.adopt_node(node, time.time() - (now - seen)))

    def _publish_sys(self) -> None:
        """$SYS/broker/cluster/<figure> on this node (retained, never forwarded)."""
        core = self.core
        if core is None or not core.settings.sys_interval:
            return
        for key, value in self.status().items():
            if isinstance(value, bool):
                value = int(value)
            elif isinstance(value, list):
                value = ",".join(value)
            core.publish(f"$SYS/broker/cluster/{key}", str(value).encode(), 0, True)

    async def _on_heartbeat(self, m: Any) -> None:
        node = m.data.decode()
        new = node not in self.nodes
        self.nodes[node] = time.monotonic()
        self.dead_handled.discard(node)
        if new and self.nc is not None:
            # A node we did not know (it just started): answer at once, so it knows us
            # even if we die before our next beat.
            await self.nc.publish(f"{self.ctl}.hb", self.node_id.encode())
        if self.view.heard_of(node) and self.nc is not None:
            await self._query(self.nc)  # a node whose filters we do not have

    async def _orphan_sessions(self) -> None:
        """Once, as WillRecords.orphans: sessions recorded by nodes that are not alive."""
        await asyncio.sleep(3 * HEARTBEAT + 0.5)
        if self.connected:
            await self.records.adopt_orphans(self.alive)

    def key(self, cid: str) -> str:
        return _token(cid)

    def alive(self, node: str) -> bool:
        """Heard from within the dead-node limit (and not declared dead since)."""
        seen = self.nodes.get(node)
        return (
            seen is not None
            and node not in self.dead_handled
            and time.monotonic() - seen <= 3 * HEARTBEAT
        )

    async def interest_known(self, limit: float = ANNOUNCE_TIMEOUT + 1.0) -> None:
        """Wait (bounded) until the other nodes confirmed this node's interest."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def finish() -> None:
            if not fut.done():
                fut.set_result(None)

        self.wake()
        if self.view.hold(finish):
            try:
                await asyncio.wait_for(fut, limit)
            except TimeoutError:
                pass

    async def _retained_caught_up(self, limit: float = 1.0) -> None:
        """Read-your-writes for retained messages across nodes: before CONNACK, wait
        (bounded) until this node's mirror holds everything the stream held when the
        client connected, so a retained message acknowledged on another node before
        this CONNECT is there for its SUBSCRIBE."""
        info = await self.js.stream_info(self.stream)
        last = info.state.last_seq
        deadline = time.monotonic() + limit
        while self.retained_seq < last and time.monotonic() < deadline:
            await asyncio.sleep(0.002)

    def session_disconnected(self, session: Any, conn: Any, publish_will: bool) -> None:
        """(wraps Broker.session_disconnected) the will is this node's business again."""
        self._original_session_disconnected(session, conn, publish_will)
        self.records.disconnected(session)
        self.wills.disconnected(session.client_id)
