"""Run the broker inside any asyncio program (``mqttfast.Broker``), see docs/embedding.md.

::

    async with mqttfast.Broker(port=0) as broker:
        print(broker.ports)
        handle = broker.subscribe("sensors/#", lambda m: print(m.topic, m.payload))
        await broker.publish("sensors/t", b"21.5", qos=1, retain=True)
        handle.unsubscribe()

:class:`BrokerAPI` is what plug-ins and bridges get: publish, Python
subscriptions and read-only views over a running core broker.
:class:`Broker` adds the life cycle (configuration, listeners, persistence,
plug-ins, bridges). Python subscriptions are sessions of the core whose
client id starts with U+0000, a character no MQTT client can send, so they
never collide with a network client; the router delivers to them like to any
other session, and a broker without them pays nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import itertools
import logging
import os
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Union

from mqttfast.codec import validate_topic_filter, validate_topic_name
from mqttfast.codec.packets import Properties
from mqttfast.core.broker import BrokerCore as CoreBroker
from mqttfast.core.message import Message, forwardable_properties
from mqttfast.core.session import Session
from mqttfast.core.settings import BrokerSettings
from mqttfast.core.subscriptions import SubEntry, split_shared

from .plugins.base import ClientInfo, Plugin

log = logging.getLogger("mqttfast.embed")

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
            self.api._tasks.discard(self.worker)  # type: ignore[arg-type]
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

    async def _close_subscriptions(self) -> None:
        for sub in list(self._subs):
            sub.unsubscribe()
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


ConfigLike = Union[None, "Any", Mapping[str, Any], str, "os.PathLike[str]", BrokerSettings]


class Broker(BrokerAPI):
    """A complete broker (listeners, security, persistence, plug-ins, bridges) in this
    event loop.

    ``config`` is what the config file produces (:class:`mqttfast.app.config.Config`),
    a dict shaped like the TOML file, a path to a TOML file, a core
    :class:`~mqttfast.core.settings.BrokerSettings`, or None. Keyword overrides:
    ``host``/``port`` (the first listener; ``port=0`` picks a free port) and any
    BrokerSettings field (``max_inflight=10``). Without a ``[[listener]]`` the broker
    listens on 127.0.0.1:1883; persistence is off unless configured. ``plugins`` are
    :class:`Plugin` instances (or "module:Class" paths) run after those of the config.
    """

    def __init__(
        self, config: ConfigLike = None, *, plugins: Iterable[Plugin | str] = (), **overrides: Any
    ) -> None:
        super().__init__(None)
        from mqttfast.app import config as appconfig

        self._settings_obj: BrokerSettings | None = None
        if isinstance(config, BrokerSettings):
            self._settings_obj = config
            cfg = appconfig.Config()
        elif config is None:
            cfg = appconfig.Config()
        elif isinstance(config, (str, os.PathLike)):
            cfg = appconfig.load_toml(os.fspath(config))
        elif isinstance(config, Mapping):
            cfg = appconfig.from_dict(dict(config), "<dict>")
        else:
            cfg = config
        self.config = cfg
        fields = {f.name for f in dataclasses.fields(BrokerSettings)}
        unknown = set(overrides) - fields
        if unknown:
            raise TypeError(f"unknown broker setting(s): {', '.join(sorted(unknown))}")
        self._overrides = overrides
        self._extra_plugins = list(plugins)
        self._server: Any = None
        self._storage: Any = None
        self._runtime: Any = None
        self.extensions: Any = None

    # -- life cycle ---------------------------------------------------------
    async def start(self) -> Broker:
        from mqttfast.app import config as appconfig
        from mqttfast.app.persistence import open_storage
        from mqttfast.transport.listeners import ListenerConfig
        from mqttfast.transport.server import MQTTServer

        from .plugins.runtime import Extensions

        if self._core is not None:
            raise RuntimeError("already started")
        cfg = self.config
        ov = self._overrides
        if self._settings_obj is not None:
            settings = dataclasses.replace(self._settings_obj)
        else:
            settings = appconfig.broker_settings(cfg)
            if "persistence.mode" not in cfg.present:
                settings.persistence = "off"
        for key, value in ov.items():
            setattr(settings, key, value)
        if not cfg.listener:
            cfg.listener.append(
                ListenerConfig(port=ov.get("port", 1883), address=ov.get("host", "127.0.0.1"))
            )
        else:
            if "port" in ov:
                cfg.listener[0].port = ov["port"]
            if "host" in ov:
                cfg.listener[0].address = ov["host"]
        runtime = appconfig.Runtime(cfg)
        runtime.setup_security()
        storage = open_storage(
            settings.persistence, settings.data_dir, settings.persistence_interval
        )
        core = CoreBroker(settings, hooks=runtime.hooks, storage=storage)
        storage.recover(core)
        self._core, self._storage, self._runtime = core, storage, runtime
        server = MQTTServer(core)
        try:
            self.extensions = Extensions.prepare(cfg, core, self._extra_plugins)
            await runtime.start_listeners(server)
            self._server = server
            await self.extensions.start(self)
        except BaseException:
            await server.stop()
            storage.close()
            self._core = None
            raise
        return self

    async def stop(self) -> None:
        """Close listeners and clients (v5: DISCONNECT 0x8B), stop bridges and plug-ins,
        cancel every task this broker started."""
        if self._core is None:
            return
        try:
            if self.extensions is not None:
                await self.extensions.stop(self._server)
            elif self._server is not None:
                await self._server.stop()
            await self._close_subscriptions()
        finally:
            if self._storage is not None:
                self._storage.close()
            self._core = None
            self._server = None

    async def __aenter__(self) -> Broker:
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    async def serve_forever(self) -> None:
        """Start (if needed) and run until cancelled; stops cleanly on cancellation."""
        if self._core is None:
            await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    # -- where it listens ---------------------------------------------------
    @property
    def addresses(self) -> list[tuple[Any, ...]]:
        """Socket addresses of every listener (``(host, port)``; unix: the path)."""
        if self._runtime is None:
            return []
        out: list[tuple[Any, ...]] = []
        for lst in self._runtime.listeners:
            for a in lst.addresses():
                out.append(a if isinstance(a, tuple) else (a,))
        return out

    @property
    def ports(self) -> list[int]:
        """TCP ports of the listeners, in listener order (the real ones for port 0)."""
        return [a[1] for a in self.addresses if len(a) >= 2 and isinstance(a[1], int)]

    @property
    def port(self) -> int:
        """The first listener's port."""
        return self.ports[0]

    @property
    def running(self) -> bool:
        return self._core is not None


__all__ = [
    "Broker",
    "BrokerAPI",
    "ReceivedMessage",
    "Subscription",
    "SessionInfo",
    "SubscriptionInfo",
    "INTERNAL_PREFIX",
]
