"""The socket-free broker: sessions, connections, routing, timers.

Driven by calls: ``connection_made(sink)`` (transport), the returned
connection's ``packets_received`` / ``protocol_violation`` /
``connection_lost``, and ``tick(now)`` on a timer. ``clock`` is injectable so
tests control time (``FakeClock``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from mqttfast.codec.constants import SESSION_EXPIRY_NEVER, ReasonCode
from mqttfast.codec.packets import Properties

from . import wills
from .connection import Connection, PeerSource
from .handlers import HANDLERS, Handler
from .hooks import Hooks
from .message import Message, forwardable_properties
from .rate_limit import PublishRateLimiter
from .retained import RetainedStore
from .router import DeliveryFilters, LocalRouter, Router
from .session import Session
from .settings import BrokerSettings
from .sink import Sink
from .states import CLOSED
from .stats import Stats
from .storage import MemoryStorage, Storage
from .subscriptions import SubscriptionStore
from .sys_topics import SysTopics

log = logging.getLogger("mqttfast.core")


class FakeClock:
    """A clock for tests: ``clock()`` returns ``now``; ``advance(s)`` moves it."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


class BrokerCore:
    def __init__(
        self,
        settings: BrokerSettings | None = None,
        hooks: Hooks | None = None,
        clock: Callable[[], float] = time.monotonic,
        router: Router | None = None,
        storage: Storage | None = None,
        filters: DeliveryFilters | None = None,
        handlers: Mapping[type, Handler] = HANDLERS,
    ) -> None:
        """``router``: a ready router (it should share ``filters``); default a LocalRouter.
        ``filters``: the delivery filters (default: built from ``hooks`` and ``settings``).
        ``handlers``: packet class -> handler (default the static table of handlers.py)."""
        self.settings = settings or BrokerSettings()
        self.hooks = hooks or Hooks()
        self.clock = clock
        self.stats = Stats()
        self.sessions: dict[str, Session] = {}
        # CONNACKed connections, as dict keys: a set grows to 4x its size and holds
        # 16-byte slots, ~105 B per connection at 20,000 against a dict's ~35 (issue 17).
        self.connections: dict[Connection, None] = {}
        self.pending: set[Connection] = set()  # waiting for CONNECT / in auth
        self.offline: set[Session] = set()  # persistent sessions without a connection
        self.pending_wills: set[Session] = set()
        self.subscriptions = SubscriptionStore(self.settings.match_cache_size)
        self.retained = RetainedStore()
        # Durable state (core/storage.py); the default keeps nothing and costs nothing.
        self.storage = storage or MemoryStorage()
        if self.storage.durable:
            self.retained.storage = self.storage
        self.retained.max_messages = self.settings.max_retained_messages
        self.retained.max_bytes = self.settings.max_retained_bytes
        self.handlers = handlers
        if filters is None:
            # Back-pressure on publishers from online subscribers' queues (outbound.py).
            mq = self.settings.max_queued_messages
            # Per-delivery read authorisation only when the hooks implement it (ACLs).
            receive = self.hooks.authorise_receive
            filters = DeliveryFilters(
                receive
                if type(self.hooks).authorise_receive is not Hooks.authorise_receive
                else None,
                None,
                max(1, mq // 2) if mq else 1000,
            )
        self.filters = filters
        self.router: Router = router or LocalRouter(
            self.sessions,
            self.subscriptions,
            self.retained,
            self.settings.retain_available,
            filters,
        )
        self.sys = SysTopics(self)
        self.publish_limiter = PublishRateLimiter(self)  # idle while max_publish_rate is 0

    # -- transport seam -----------------------------------------------------

    def connection_made(self, sink: Sink, peer: str | PeerSource = "?") -> Connection:
        conn = Connection(self, sink, peer)
        self.pending.add(conn)
        return conn

    def connection_accepted(self, conn: Connection) -> None:
        self.pending.discard(conn)
        self.connections[conn] = None
        stats = self.stats
        stats.connections_accepted += 1
        if len(self.connections) > stats.clients_maximum:
            stats.clients_maximum = len(self.connections)

    def tick(self, now: float | None = None) -> None:
        """Timers: connect timeout, keep alive, will delay, session expiry, $SYS."""
        if now is None:
            now = self.clock()
        for conn in list(self.pending):
            if conn.state == CLOSED:
                self.pending.discard(conn)
            else:
                conn.check_timeouts(now)
        for conn in list(self.connections):
            if conn.keepalive_limit:
                conn.check_timeouts(now)
            if conn.paused_publishers:
                conn.check_stuck(now)
        for session in list(self.pending_wills):
            if session.will_at is not None and now >= session.will_at:
                wills.fire_pending(self, session, now)
        for session in list(self.offline):
            if session.expires_at is not None and now >= session.expires_at:
                log.info("session %s expired", session.client_id)
                self.stats.sessions_expired += 1
                self.end_session(session, now)
        if self.publish_limiter.paused:
            self.publish_limiter.tick(now)
        if self.sys.due(now):
            self.sys.publish(now)
        self.storage.tick(now)

    # -- sessions -----------------------------------------------------------

    def new_session(self, client_id: str) -> Session:
        session = Session(client_id, self)
        self.sessions[client_id] = session
        self.stats.clients_total_ever += 1
        return session

    def resume_session(self, session: Session) -> None:
        """A client came back before its session expired: cancel a delayed will."""
        self.offline.discard(session)
        session.expires_at = None
        wills.cancel_pending(self, session)

    def session_disconnected(self, session: Session, conn: Connection, publish_will: bool) -> None:
        now = self.clock()
        session.conn = None
        if session.backlog:
            session.backlog_to_queue()
        if publish_will:
            wills.schedule_will(self, session, conn, now)
        if session.expiry_interval == 0:
            self.end_session(session, now)
            return
        if session.expiry_interval != SESSION_EXPIRY_NEVER:
            session.expires_at = now + session.expiry_interval
        self.offline.add(session)
        if session.persisted:
            self.storage.session_put(session)  # offline since now; pending will
        # Shared-subscription messages not yet sent go to another member (4.8.2).
        moved = session.take_shared_deliveries(include_inflight=False)
        if moved:
            self.router.redistribute(moved, session.client_id, now)

    def end_session(self, session: Session, now: float) -> None:
        """The session ends: its delayed will is published, its state freed."""
        if self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]
        self.offline.discard(session)
        if session.pending_will is not None:
            wills.fire_pending(self, session, now)
        self.router.drop_session(session)
        moved = session.take_shared_deliveries(include_inflight=True)
        if session.persisted:
            self.storage.session_delete(session)
        session.inflight = {}
        session.queue = ()
        session.queued_bytes = 0
        session.backlog = None
        session.awaiting_pubrel = frozenset()
        if moved:
            self.router.redistribute(moved, session.client_id, now)

    # -- the broker as a publisher ------------------------------------------

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> int:
        """Inject a message as the broker itself (embedding, $SYS, bridges)."""
        now = self.clock()
        expires_at = None
        if properties is not None and properties.message_expiry_interval is not None:
            expires_at = now + properties.message_expiry_interval
        msg = Message(topic, payload, qos, retain, forwardable_properties(properties), expires_at)
        return self.router.publish(msg, now, None)

    def shutdown(self, reason_code: int = ReasonCode.SERVER_SHUTTING_DOWN) -> None:
        """Close every connection (v5 gets DISCONNECT 0x8B), publishing wills as for
        any server-side close, then end the sessions that would have ended."""
        for conn in list(self.pending):
            conn.close(None, will=False)
        for conn in list(self.connections):
            conn.close(reason_code)
        now = self.clock()
        for session in list(self.pending_wills):
            if not session.persisted:  # a stored delayed will fires after the restart
                wills.fire_pending(self, session, now)
