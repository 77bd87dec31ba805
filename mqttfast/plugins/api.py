"""What plug-ins, bridges and embedding programs see of a running broker.

:class:`BrokerAPI`: publish, Python subscriptions, read-only views (clients,
sessions, subscriptions, retained messages, counters) and per-client flow control
(:meth:`BrokerAPI.pause_reading`). Nothing outside this module and the core touches
a connection's socket or its state: plug-ins get :class:`ClientInfo` values.

Python subscriptions are sessions of the core whose client id starts with U+0000, a
character no MQTT client can send, so they never collide with a network client; the
router delivers to them like to any other session, and a broker without them pays
nothing.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mqttfast.codec import validate_topic_filter, validate_topic_name
from mqttfast.codec.packets import Properties
from mqttfast.core.broker import BrokerCore as CoreBroker
from mqttfast.core.connection import CLOSED
from mqttfast.core.message import Message, forwardable_properties
from mqttfast.core.outbound import hold_reading, let_go
from mqttfast.core.session import Session
from mqttfast.core.subscriptions import SubEntry, split_shared

from .base import ClientInfo

log = logging.getLogger("mqttfast.plugins")

INTERNAL_PREFIX = "\x00"  # [MQTT-1.5.4-2] U+0000 cannot appear in a client's identifier
_ids = itertools.count(1)


@dataclass(slots=True, frozen=True)
class ReceivedMessage:
    """A message as a Python subscription (or a retained view) sees it."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: Properties | None = None
    origin: str | None = None  # client id of the publisher (None: the broker itself)


Callback = Callable[[ReceivedMessage], Awaitable[None] | None]


@dataclass(slots=True, frozen=True)
class SessionInfo:
    client_id: str
    connected: bool
    subscriptions: tuple[str, ...]
    queued: int
    inflight: int
    expiry_interval: int


@dataclass(slots=True, frozen=True)
class SubscriptionInfo:
    client_id: str
    topic_filter: str  # as subscribed ($share/{group}/... included)
    qos: int
    no_local: bool = False


class _InternalSession(Session):
    """A core session whose deliveries go to a Python callback instead of a socket."""

    __slots__ = ("handle",)
    handle: Subscription

    def deliver(
        self,
        msg: Message,
        qos: int,
        retain: bool,
        sub_ids: Any,
        now: float,
        cache: Any = None,
        shared: Any = None,
    ) -> None:
        if msg.expires_at is not None and now >= msg.expires_at:
            return
        self.handle._dispatch(
            ReceivedMessage(msg.topic, msg.payload, qos, retain, msg.properties, msg.origin)
        )

    def has_room(self) -> bool:
        return True


class Subscription:
    """A Python subscription; ``unsubscribe()`` ends it. Async callbacks run one at a
    time per subscription, in order; at most ``max_pending`` wait (newer are dropped,
    counted in ``dropped``)."""

    def __init__(
        self,
        api: BrokerAPI,
        topic_filter: str,
        callback: Callback,
        qos: int,
        no_local: bool,
        max_pending: int,
    ) -> None:
        self.api = api
        self.topic_filter = topic_filter
        self.callback = callback
        self.qos = qos
        self.client_id = f"{INTERNAL_PREFIX}py-{next(_ids)}"
        self.is_async = inspect.iscoroutinefunction(callback) or inspect.iscoroutinefunction(
            type(callback).__call__
        )
        self.max_pending = max_pending
        self.pending: deque[ReceivedMessage] = deque()
        self.dropped = 0
        self.worker: asyncio.Task | None = None
        self.active = True
        core = api.core
        session = _InternalSession(self.client_id, core)
        session.handle = self
        self.session = session
        core.sessions[self.client_id] = session
        group, filt = split_shared(topic_filter)
        self.entry = SubEntry(self.client_id, filt, qos, no_local, True, 0, None, group)
        core.router.subscribe(session, self.entry)
        if group is None:  # retained messages, as for a new MQTT subscription
            for msg in core.router.retained_for(filt, core.clock()):
                self._dispatch(
                    ReceivedMessage(
                        msg.topic, msg.payload, min(msg.qos, qos), True, msg.properties, msg.origin
                    )
                )

    def _dispatch(self, m: ReceivedMessage) -> None:
        if not self.active:
            return
        if not self.is_async:
            try:
                self.callback(m)
            except Exception:
                log.exception("subscription %r: callback failed", self.topic_filter)
            return
        if len(self.pending) >= self.max_pending:
            self.dropped += 1
            return
        self.pending.append(m)
        if self.worker is None:
            self.worker = asyncio.get_running_loop().create_task(self._work())
            self.api._tasks.add(self.worker)

    async def _work(self) -> None:
        try:
            while self.pending:
                m = self.pending.popleft()
                try:
                    await self.callback(m)  # type: ignore[misc]
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("subscription %r: callback failed", self.topic_filter)
        finally:
            if self.worker is not None:
                self.api._tasks.discard(self.worker)
            self.worker = None

    async def publish(
        self,
        topic: str,
        payload: bytes | str = b"",
        qos: int = 0,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> int:
        """Publish as this subscription's client (its No Local option applies)."""
        return self.api.publish_nowait(
            topic, payload, qos, retain, properties, origin=self.client_id
        )

    def unsubscribe(self) -> None:
        if not self.active:
            return
        self.active = False
        core = self.api.core
        core.router.unsubscribe(self.session, self.entry.full_filter)
        core.sessions.pop(self.client_id, None)
        self.pending.clear()
        if self.worker is not None:
            self.worker.cancel()
        self.api._subs.discard(self)


class BrokerAPI:
    """Publish, subscribe and look at a running core broker (``core``)."""

    def __init__(self, core: CoreBroker | None = None) -> None:
        self._core = core
        self._subs: set[Subscription] = set()
        self._tasks: set[asyncio.Task] = set()

    def bind(self, core: CoreBroker | None) -> None:
        """Point this API at a running core broker (None: stopped)."""
        self._core = core

    @property
    def core(self) -> CoreBroker:
        if self._core is None:
            raise RuntimeError("the broker is not running")
        return self._core

    # -- messages -----------------------------------------------------------
    async def publish(
        self,
        topic: str,
        payload: bytes | str = b"",
        qos: int = 0,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> int:
        """Publish as the broker itself; returns how many subscriptions matched.
        Plug-ins' on_publish does not see these (they see client messages)."""
        return self.publish_nowait(topic, payload, qos, retain, properties)

    def publish_nowait(
        self,
        topic: str,
        payload: bytes | str = b"",
        qos: int = 0,
        retain: bool = False,
        properties: Properties | None = None,
        origin: str | None = None,
    ) -> int:
        """:meth:`publish` for synchronous code on the broker's event loop."""
        validate_topic_name(topic)  # MQTTError(0x90) when it is not a valid topic name
        if qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, got {qos!r}")
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        core = self.core
        now = core.clock()
        expires_at = None
        if properties is not None and properties.message_expiry_interval is not None:
            expires_at = now + properties.message_expiry_interval
        retain = bool(retain) and core.settings.retain_available
        msg = Message(
            topic,
            bytes(payload),
            qos,
            retain,
            forwardable_properties(properties),
            expires_at,
            origin,
        )
        return core.router.publish(msg, now, None)

    def subscribe(
        self,
        topic_filter: str,
        callback: Callback,
        qos: int = 2,
        no_local: bool = False,
        max_pending: int = 10000,
    ) -> Subscription:
        """Call ``callback(ReceivedMessage)`` (sync, or async: awaited in order) for every
        message matching ``topic_filter`` (wildcards and ``$share/group/...`` allowed),
        starting with the retained ones. Returns a handle with ``unsubscribe()``."""
        group, filt = split_shared(topic_filter)
        if group == "":
            raise ValueError(f"invalid shared subscription {topic_filter!r}")
        validate_topic_filter(filt)
        sub = Subscription(self, topic_filter, callback, qos, no_local, max_pending)
        self._subs.add(sub)
        return sub

    # -- read-only views ----------------------------------------------------
    @property
    def clients(self) -> tuple[ClientInfo, ...]:
        """Connected network clients."""
        return tuple(
            ClientInfo(c.client_id, c.username, c.peer, c.protocol_version)
            for c in self.core.connections
        )

    @property
    def sessions(self) -> Mapping[str, SessionInfo]:
        """Sessions of network clients (online and offline), by client id."""
        return {
            cid: SessionInfo(
                cid,
                s.conn is not None,
                tuple(s.subscriptions),
                len(s.queue),
                len(s.inflight),
                s.expiry_interval,
            )
            for cid, s in self.core.sessions.items()
            if not cid.startswith(INTERNAL_PREFIX)
        }

    @property
    def subscriptions(self) -> tuple[SubscriptionInfo, ...]:
        """Subscriptions of network clients."""
        return tuple(
            SubscriptionInfo(cid, e.full_filter, e.qos, e.no_local)
            for cid, s in self.core.sessions.items()
            if not cid.startswith(INTERNAL_PREFIX)
            for e in s.subscriptions.values()
        )

    @property
    def retained(self) -> Mapping[str, ReceivedMessage]:
        """Retained messages by topic (expired ones left out)."""
        now = self.core.clock()
        return {
            m.topic: ReceivedMessage(m.topic, m.payload, m.qos, True, m.properties, m.origin)
            for m in self.core.retained.all_messages()
            if not m.expired(now)
        }

    @property
    def stats(self) -> Any:
        return self.core.stats

    # -- flow control -------------------------------------------------------
    def pause_reading(self, client_id: str) -> bool:
        """Stop reading from a connected client until :meth:`resume_reading` (its
        TCP window fills up and it waits; nothing is lost). False: not connected."""
        conn = self._connection(client_id)
        return conn is not None and pause_connection(conn)

    def resume_reading(self, client_id: str) -> bool:
        """Undo :meth:`pause_reading` (other reasons to pause, such as a slow
        subscriber, still hold). False: not connected or not paused by a plug-in."""
        conn = self._connection(client_id)
        return conn is not None and resume_connection(conn)

    def _connection(self, client_id: str) -> Any:
        session = self.core.sessions.get(client_id)
        return None if session is None else session.conn

    async def _close_subscriptions(self) -> None:
        for sub in list(self._subs):
            sub.unsubscribe()
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


class _PluginPause:
    """Stands in ``Connection.blocked_by`` while plug-ins pause a client: the output
    back-pressure and the publish rate limiter use the same set with their own
    members, so none of them resumes a client another one still holds."""

    __slots__ = ()
    paused_publishers: set = set()  # Connection.unblock() discards from it (stays empty)

    def __repr__(self) -> str:
        return "<paused by a plug-in>"


PLUGIN_PAUSE = _PluginPause()


def pause_connection(conn: Any) -> bool:
    """Stop reading from ``conn`` (a core connection) on behalf of plug-ins."""
    if conn.sink is None or conn.state == CLOSED:
        return False
    if PLUGIN_PAUSE not in conn.blocked_by:
        hold_reading(conn, PLUGIN_PAUSE)
    return True


def resume_connection(conn: Any) -> bool:
    """Undo :func:`pause_connection`; reading resumes once nothing else holds it."""
    return let_go(conn, PLUGIN_PAUSE, conn.broker.clock())


__all__ = [
    "BrokerAPI",
    "ReceivedMessage",
    "Subscription",
    "SessionInfo",
    "SubscriptionInfo",
    "INTERNAL_PREFIX",
    "pause_connection",
    "resume_connection",
]
