"""Running plug-ins inside the broker: loading, ordering, isolation, async hooks.

:class:`PluginHooks` is a :class:`mqttfast.core.hooks.Hooks` wrapping the
broker's previous hooks (passwords, ACLs ...). It sets ``events`` only when some
plug-in has an event hook, so a broker without plug-ins never enters this code.

Isolation: an exception in a hook is logged with the plug-in's name and costs
only that message or connection (PUBACK/PUBREC or CONNACK 0x83 Implementation
specific error, or a skipped notification). An async hook runs as a task: the
publisher's acknowledgement waits for it, other clients do not. Messages of one
publisher stay in order: once one of its messages waits for an async hook, the
next ones queue behind it. An async hook longer than ``hook_timeout`` counts as
failed.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from mqttfast.codec import validate_topic_name
from mqttfast.codec.constants import CONNACK_REASON_CODES, PUBACK_REASON_CODES, ReasonCode
from mqttfast.codec.errors import MQTTError
from mqttfast.core.hooks import Hooks

from .api import pause_connection, resume_connection
from .base import HOOK_NAMES, ClientInfo, DisconnectReason, Plugin
from .loader import ENTRY_POINT_GROUP, PluginError, entry_point_plugins, load_plugin

log = logging.getLogger("mqttfast.plugins")

FAILED = ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR  # 0x83: a plug-in raised or timed out
# Messages of one publisher waiting behind a slow async hook before its reading pauses.
MAX_WAITING = 1000


def _always(*_: Any) -> bool:
    return True


# ---------------------------------------------------------------------------- running
class _Step:
    """One plug-in's hook, resolved once at start-up."""

    __slots__ = ("plugin", "fn", "name")

    def __init__(self, plugin: Plugin, name: str) -> None:
        self.plugin = plugin
        self.fn = getattr(plugin, name)
        self.name = f"{plugin.name}.{name}"


class PluginHooks(Hooks):
    def __init__(self, inner: Hooks | None, plugins: Iterable[Plugin]) -> None:
        self.inner = inner if inner is not None else Hooks()
        self.plugins = list(plugins)
        steps = {
            n: [_Step(p, n) for p in self.plugins if callable(getattr(p, n, None))]
            for n in HOOK_NAMES
        }
        for s in steps["authorise_subscribe"]:
            if inspect.iscoroutinefunction(s.fn):
                raise PluginError(f"{s.name}: must be synchronous (SUBACK cannot wait)")
        self.auth_steps = steps["authenticate"]
        self.sub_auth_steps = steps["authorise_subscribe"]
        # authorise_publish and on_publish run in order on every client message.
        self.publish_steps = [(s, True) for s in steps["authorise_publish"]] + [
            (s, False) for s in steps["on_publish"]
        ]
        self.deliver_steps = steps["on_deliver"]
        self.connect_steps = steps["on_connect"]
        self.disconnect_steps = steps["on_disconnect"]
        self.subscribe_steps = steps["on_subscribe"]
        self.unsubscribe_steps = steps["on_unsubscribe"]
        self.tick_steps = steps["on_tick"]
        self.messages = bool(self.publish_steps)
        # Connection events also keep ``connected`` (the ClientInfo of each connection,
        # a plain dict: the per-message lookup is one hash) for the message hooks.
        self.events = bool(
            self.connect_steps
            or self.disconnect_steps
            or self.subscribe_steps
            or self.unsubscribe_steps
            or self.messages
            or self.deliver_steps
        )
        self.connected: dict[Any, ClientInfo] = {}
        self.clients: weakref.WeakKeyDictionary[Any, ClientInfo] = weakref.WeakKeyDictionary()
        self.waiting: dict[Any, deque] = {}  # publisher -> messages behind an async hook
        self.bounded: set[Any] = set()  # publishers paused because their queue is full
        self.tasks: set[asyncio.Task] = set()
        self.failures = 0  # hook exceptions and timeouts, for tests/metrics
        self._tick_task: asyncio.Task | None = None
        self._tick_running: dict[int, asyncio.Task] = {}

    # -- helpers ------------------------------------------------------------
    def client(self, conn: Any) -> ClientInfo:
        info = self.connected.get(conn)
        if info is not None:
            return info
        info = self.clients.get(conn)
        if info is None or info.client_id != conn.client_id:
            info = ClientInfo(
                conn.client_id,
                conn.username,
                getattr(conn, "peer", ""),
                getattr(conn, "protocol_version", 4),
            )
            try:
                self.clients[conn] = info
            except TypeError:  # not weak-referenceable (a session): not cached
                pass
        return info

    def _failed(self, step: _Step, what: str) -> None:
        self.failures += 1
        log.error("plug-in %s %s; isolated", step.name, what, exc_info=log.isEnabledFor(10))

    def spawn(self, coro: Any) -> asyncio.Task | None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            coro.close()
            log.error("async plug-in hook called outside an event loop; skipped")
            return None
        task = loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def _await(self, step: _Step, aw: Any) -> tuple[bool, Any]:
        """(ok, result) of an awaitable hook, bounded by the plug-in's hook_timeout."""
        try:
            return True, await asyncio.wait_for(aw, step.plugin.hook_timeout)
        except TimeoutError:
            self._failed(step, f"took over {step.plugin.hook_timeout:g} s")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failed(step, f"raised {exc!r}")
        return False, None

    def _notify(self, steps: list[_Step], *args: Any) -> None:
        for step in steps:
            try:
                res = step.fn(*args)
            except Exception as exc:
                self._failed(step, f"raised {exc!r}")
                continue
            if inspect.isawaitable(res):
                self.spawn(self._await(step, res))

    # -- authentication -----------------------------------------------------
    def authenticate(self, client: Any, username: str | None, password: bytes | None) -> int:
        return self.inner.authenticate(client, username, password)

    def begin_authenticate(
        self, client: Any, username: str | None, password: bytes | None, done: Callable[[int], None]
    ) -> int | None:
        if not self.auth_steps:
            return self.inner.begin_authenticate(client, username, password, done)
        info = self.client(client)
        for i, step in enumerate(self.auth_steps):
            try:
                answer = step.fn(info, username, password)
            except Exception as exc:
                self._failed(step, f"raised {exc!r}")
                return FAILED
            if inspect.isawaitable(answer):
                self.spawn(self._auth_async(client, info, username, password, done, i, answer))
                return None
            rc = self._auth_answer(step, answer)
            if rc is not None:
                return rc
        return self.inner.begin_authenticate(client, username, password, done)

    async def _auth_async(
        self,
        client: Any,
        info: ClientInfo,
        username: str | None,
        password: bytes | None,
        done: Callable[[int], None],
        i: int,
        first: Any,
    ) -> None:
        rc: int | None = None
        steps = self.auth_steps
        for j in range(i, len(steps)):
            step = steps[j]
            if j == i:
                answer = first
            else:
                try:
                    answer = step.fn(info, username, password)
                except Exception as exc:
                    self._failed(step, f"raised {exc!r}")
                    rc = FAILED
                    break
            if inspect.isawaitable(answer):
                ok, answer = await self._await(step, answer)
                if not ok:
                    rc = FAILED
                    break
            rc = self._auth_answer(step, answer)
            if rc is not None:
                break
        if rc is None:
            rc = self.inner.begin_authenticate(client, username, password, done)
            if rc is None:
                return  # the inner hooks answer through done() themselves
        done(rc)

    def _auth_answer(self, step: _Step, answer: Any) -> int | None:
        if answer is None:
            return None
        if answer is True:
            return 0
        if answer is False:
            return ReasonCode.BAD_USER_NAME_OR_PASSWORD
        if isinstance(answer, int) and answer in CONNACK_REASON_CODES:
            return int(answer)
        self._failed(step, f"returned {answer!r}, not a CONNACK reason code")
        return FAILED

    # -- authorisation (sync seam, passed through) ----------------------------
    def authorise_receive(self, client: Any, topic: str) -> bool:
        return self.inner.authorise_receive(client, topic)

    def authorise_publish(self, client: Any, topic: str, qos: int, retain: bool) -> bool:
        return self.inner.authorise_publish(client, topic, qos, retain)

    def authorise_subscribe(self, client: Any, topic_filter: str, qos: int) -> bool:
        if not self.inner.authorise_subscribe(client, topic_filter, qos):
            return False
        if self.sub_auth_steps:
            info = self.client(client)
            for step in self.sub_auth_steps:
                try:
                    answer = step.fn(info, topic_filter, qos)
                except Exception as exc:
                    self._failed(step, f"raised {exc!r}")
                    return False
                if answer is False:
                    return False
        return True

    def auth_start(self, client: Any, method: str, data: bytes | None) -> Any:
        return self.inner.auth_start(client, method, data)

    def auth_continue(self, client: Any, method: str, data: bytes | None, state: Any) -> Any:
        return self.inner.auth_continue(client, method, data, state)

    # -- messages -----------------------------------------------------------
    def message_received(self, client: Any, msg: Any, done: Callable[[int], None]) -> int | None:
        queue = self.waiting.get(client)
        if queue is not None:  # an earlier message of this publisher is still being decided
            queue.append((msg, done, 0, None))
            if len(queue) == MAX_WAITING:  # bounded: stop reading this publisher meanwhile
                if pause_connection(client):
                    self.bounded.add(client)
            return None
        if not self.publish_steps:
            return 0
        info = self.connected.get(client) or self.client(client)
        steps = self.publish_steps
        topic = msg.topic
        for i, (step, is_auth) in enumerate(steps):
            try:
                res = (
                    step.fn(info, msg.topic, msg.qos, msg.retain) if is_auth else step.fn(info, msg)
                )
            except Exception as exc:
                self._failed(step, f"raised {exc!r}")
                return FAILED
            if res is not None and inspect.isawaitable(res):
                self.waiting[client] = deque([(msg, done, i, res)])
                self.spawn(self._serve(client, info))
                return None
            if is_auth:
                if res is False:
                    return ReasonCode.NOT_AUTHORIZED
            elif res is not None or msg.topic is not topic or type(msg.payload) is not bytes:
                rc = self._publish_answer(step, False, res, msg)
                if rc:
                    return rc
        return 0

    async def _serve(self, client: Any, info: ClientInfo) -> None:
        """Decide this publisher's queued messages in order, then return to the fast path."""
        queue = self.waiting[client]
        deciding = False
        try:
            while queue:
                # The head stays in the queue while it is decided: MAX_WAITING counts every
                # message held, whether _serve had started before the read that filled it
                # or not (else the bound was 999 or 1,000 by timing).
                msg, done, start, first = queue[0]
                deciding = True
                rc = await self._decide(info, msg, start, first)
                deciding = False
                queue.popleft()
                try:
                    done(rc)
                except Exception:
                    log.exception("publish completion failed")
        finally:
            for i, (_msg, _done, _s, first) in enumerate(queue):  # cancelled (broker stopping)
                if inspect.iscoroutine(first) and not (i == 0 and deciding):
                    first.close()
            self.waiting.pop(client, None)
            if client in self.bounded:
                self.bounded.discard(client)
                resume_connection(client)

    async def _decide(self, info: ClientInfo, msg: Any, start: int, first: Any) -> int:
        steps = self.publish_steps
        for i in range(start, len(steps)):
            step, is_auth = steps[i]
            if i == start and first is not None:
                res = first
            else:
                try:
                    res = (
                        step.fn(info, msg.topic, msg.qos, msg.retain)
                        if is_auth
                        else step.fn(info, msg)
                    )
                except Exception as exc:
                    self._failed(step, f"raised {exc!r}")
                    return FAILED
            if inspect.isawaitable(res):
                ok, res = await self._await(step, res)
                if not ok:
                    return FAILED
            rc = self._publish_answer(step, is_auth, res, msg)
            if rc:
                return rc
        return 0

    def _publish_answer(self, step: _Step, is_auth: bool, res: Any, msg: Any) -> int:
        if is_auth:
            return ReasonCode.NOT_AUTHORIZED if res is False else 0
        if res is False:  # before the == 0 test: False == 0 in Python
            return ReasonCode.UNSPECIFIED_ERROR
        if res is None or res is True or (type(res) is int and res == 0):
            payload = msg.payload
            if not isinstance(payload, bytes):
                if isinstance(payload, str):
                    msg.payload = payload.encode("utf-8")
                else:
                    try:
                        msg.payload = bytes(payload)
                    except Exception:
                        self._failed(step, f"set a payload of type {type(payload).__name__}")
                        return FAILED
            try:
                validate_topic_name(msg.topic)
            except (MQTTError, TypeError):
                self._failed(step, f"set an invalid topic {msg.topic!r}")
                return ReasonCode.TOPIC_NAME_INVALID
            return 0
        if isinstance(res, int) and res >= 0x80 and res in PUBACK_REASON_CODES:
            return int(res)
        self._failed(step, f"returned {res!r}, not a PUBACK reason code >= 0x80")
        return FAILED

    def deliver(self, session: Any, msg: Any) -> bool:
        """Router.deliver_check: every on_deliver hook, for one subscriber."""
        conn = session.conn
        info = (
            (self.connected.get(conn) or self.client(conn))
            if conn is not None
            else ClientInfo(session.client_id, session.username)
        )
        for step in self.deliver_steps:
            try:
                res = step.fn(info, msg)
            except Exception as exc:
                self._failed(step, f"raised {exc!r}")
                continue  # a failing observer does not cost the subscriber its message
            if res is None or res is True:
                continue
            if res is False:
                return False
            if inspect.isawaitable(res):
                self.spawn(self._await(step, res))
        return True

    # -- notifications ------------------------------------------------------
    def client_connected(self, client: Any) -> None:
        self.connected.pop(client, None)
        info = self.connected[client] = self.client(client)
        if self.connect_steps:
            self._notify(self.connect_steps, info)

    def client_disconnected(self, client: Any, reason_code: int | None, by: str) -> None:
        info = self.connected.pop(client, None) or self.client(client)
        if self.disconnect_steps:
            self._notify(
                self.disconnect_steps,
                info,
                DisconnectReason(by, None if reason_code is None else int(reason_code)),
            )

    def subscribed(self, client: Any, topic_filter: str, qos: int) -> None:
        if self.subscribe_steps:
            self._notify(self.subscribe_steps, self.client(client), topic_filter, qos)

    def unsubscribed(self, client: Any, topic_filter: str) -> None:
        if self.unsubscribe_steps:
            self._notify(self.unsubscribe_steps, self.client(client), topic_filter)

    # -- life cycle ---------------------------------------------------------
    def install(self, broker: Any) -> None:
        """Become ``broker.hooks`` (a core Broker built with ``self.inner``)."""
        broker.hooks = self
        router = broker.router
        if self.deliver_steps and hasattr(router, "deliver_check"):
            router.deliver_check = self.deliver
            if router.receive_check is None:
                router.receive_check = _always

    async def start(self, api: Any) -> None:
        for p in self.plugins:
            p.broker = api
            res = p.start(api)
            if inspect.isawaitable(res):
                await res
        if self.tick_steps:
            self._tick_task = asyncio.get_running_loop().create_task(self._ticker())

    async def _ticker(self) -> None:
        interval = min(s.plugin.tick_interval for s in self.tick_steps)
        due = {id(s): 0.0 for s in self.tick_steps}
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for step in self.tick_steps:
                key = id(step)
                if now < due[key]:
                    continue
                due[key] = now + step.plugin.tick_interval - interval / 2
                running = self._tick_running.get(key)
                if running is not None and not running.done():
                    continue  # a slow async tick: skip rather than pile up
                try:
                    res = step.fn(now)
                except Exception as exc:
                    self._failed(step, f"raised {exc!r}")
                    continue
                if inspect.isawaitable(res):
                    task = self.spawn(self._await(step, res))
                    if task is not None:
                        self._tick_running[key] = task

    def reload(self) -> None:
        """SIGHUP: every plug-in's ``reload()`` (if it has one); failures are logged."""
        for p in self.plugins:
            fn = getattr(p, "reload", None)
            if fn is None:
                continue
            try:
                fn()
            except Exception as exc:
                log.error("plug-in %s reload failed: %r", p.name, exc)

    async def stop(self) -> None:
        if self._tick_task is not None:
            self._tick_task.cancel()
            await asyncio.gather(self._tick_task, return_exceptions=True)
            self._tick_task = None
        for p in reversed(self.plugins):
            try:
                res = p.stop()
                if inspect.isawaitable(res):
                    await asyncio.wait_for(res, p.hook_timeout)
            except Exception as exc:
                log.error("plug-in %s stop failed: %r", p.name, exc)
        tasks = list(self.tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


__all__ = ["PluginHooks", "PluginError", "load_plugin", "entry_point_plugins", "ENTRY_POINT_GROUP"]
