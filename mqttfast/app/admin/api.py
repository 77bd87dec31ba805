"""Admin HTTP API (JSON, ``Authorization: Bearer <token>``) and the dashboard's files.

Routes (documented in ``openapi.json``, served at ``/api/openapi.json``):

  GET    /api/stats                         gauges, per-second rates, the core's counters
  GET    /api/clients?q=&state=&limit=      clients (sessions) with their state
  GET    /api/clients/{id}                  one client
  GET    /api/clients/{id}/subscriptions    its subscriptions
  POST   /api/clients/{id}/kick             disconnect it (v5: DISCONNECT 0x98)
  GET    /api/retained?filter=&limit=&payload=   retained messages
  DELETE /api/retained?topic=               delete one retained message
  GET    /api/topics/top?n=                 busiest topics, messages per second
  GET    /  /dashboard.html  /static/...    the dashboard (no token: it asks for one)
"""

from __future__ import annotations

import asyncio
import base64
import heapq
import hmac
import json
import logging
import time
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from mqttfast import __version__
from mqttfast.codec.constants import ReasonCode
from mqttfast.core.subscriptions import split_shared

from .httpd import HTTPServer, Request, Response, error, json_response

if TYPE_CHECKING:
    from mqttfast.core.broker import BrokerCore
    from mqttfast.core.session import Session

log = logging.getLogger("mqttfast.admin")

STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
}
MAX_LIMIT = 10_000


class TopicCounter:
    """Messages per topic over the last second, for "top topics".

    Installed only while the admin API runs: it wraps this broker's ``router.publish``
    (one dict update per published message); without the admin API the broker pays
    nothing. Distinct topics per window are capped so a topic flood cannot grow memory.
    """

    MAX_TOPICS = 10_000

    def __init__(self, broker: BrokerCore) -> None:
        self.broker = broker
        self.current: dict[str, int] = {}
        self.last: dict[str, int] = {}
        self.last_span = 1.0
        self.window_start = time.monotonic()
        self.original: Any = None
        self.wrapper: Any = None
        self._task: asyncio.Task | None = None

    def install(self) -> None:
        router = self.broker.router
        original = self.original = router.publish
        counts = self
        cap = self.MAX_TOPICS

        def publish(msg: Any, now: float, publisher: Any = None) -> int:
            if publisher is not None:  # client traffic only ($SYS and wills are the broker's)
                cur = counts.current
                topic = msg.topic
                if topic in cur:
                    cur[topic] += 1
                elif len(cur) < cap:
                    cur[topic] = 1
            return original(msg, now, publisher)

        self.wrapper = publish
        setattr(router, "publish", publish)  # noqa: B010 - an instance attribute over the method
        self._task = asyncio.ensure_future(self._rotate())

    def uninstall(self) -> None:
        router = self.broker.router
        if self.original is not None and vars(router).get("publish") is self.wrapper:
            del router.publish  # back to the class method (only if nobody wrapped ours)
        self.original = self.wrapper = None
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _rotate(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            self.last, self.current = self.current, {}
            self.last_span = max(1e-3, now - self.window_start)
            self.window_start = now

    def top(self, n: int) -> list[dict[str, Any]]:
        ranked = sorted(self.last.items(), key=lambda kv: kv[1], reverse=True)[:n]
        return [
            {"topic": t, "messages": c, "rate": round(c / self.last_span, 2)} for t, c in ranked
        ]


def client_info(session: Session, now: float) -> dict[str, Any]:
    conn = session.conn
    info: dict[str, Any] = {
        "client_id": session.client_id,
        "state": "connected" if conn is not None else "offline",
        "username": session.username,
        "subscriptions": len(session.subscriptions),
        "inflight": len(session.inflight),
        "queued": len(session.queue),
        "queued_bytes": session.queued_bytes,
        "dropped": session.dropped,
        "session_expiry_interval": session.expiry_interval,
    }
    if conn is not None:
        info.update(
            peer=conn.peer,
            protocol_version=conn.protocol_version,
            keep_alive=conn.keep_alive,
            connected_seconds=round(max(0.0, now - conn.created_at), 3),
            username=conn.username,
        )
    else:
        info.update(
            peer=None,
            protocol_version=None,
            keep_alive=None,
            connected_seconds=None,
            expires_in=None
            if session.expires_at is None
            else round(max(0.0, session.expires_at - now), 3),
        )
    return info


def subscription_info(full_filter: str, entry: Any) -> dict[str, Any]:
    group, topic_filter = split_shared(full_filter)
    return {
        "filter": full_filter,
        "topic_filter": topic_filter,
        "share_group": group,
        "qos": entry.qos,
        "no_local": bool(entry.no_local),
        "retain_as_published": bool(entry.retain_as_published),
        "retain_handling": entry.retain_handling,
        "subscription_identifier": entry.sub_id,
    }


class RateSampler:
    """PUBLISH packets in and out per second, sampled every second while the admin API
    runs, so /api/stats has real rates (and a history for the chart) from the first
    request on, instead of the dashboard waiting for two snapshots of its own."""

    HISTORY = 120

    def __init__(self, broker: BrokerCore) -> None:
        self.broker = broker
        self.history: list[dict[str, float]] = []
        self.prev = self._sample()
        self._task: asyncio.Task | None = None

    def _sample(self) -> tuple[float, int, int]:
        st: Any = self.broker.stats
        return time.monotonic(), st.publish_received, st.publish_sent

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.tick()

    def tick(self) -> None:
        now = self._sample()
        span = max(1e-3, now[0] - self.prev[0])
        self.history.append(
            {
                "time": round(time.time(), 3),
                "publish_received": round((now[1] - self.prev[1]) / span, 2),
                "publish_sent": round((now[2] - self.prev[2]) / span, 2),
            }
        )
        del self.history[: -self.HISTORY]
        self.prev = now

    def rates(self) -> dict[str, Any]:
        """The last complete second (or, before the first, since start), and history."""
        if self.history:
            last = self.history[-1]
            current = {k: last[k] for k in ("publish_received", "publish_sent")}
        else:
            t0, r0, s0 = self.prev
            t1, r1, s1 = self._sample()
            span = max(1e-3, t1 - t0)
            current = {
                "publish_received": round((r1 - r0) / span, 2),
                "publish_sent": round((s1 - s0) / span, 2),
            }
        return {**current, "history": list(self.history)}


def _is_sys(topic: str) -> bool:
    return topic.startswith("$SYS/") or topic == "$SYS"


def broker_stats(
    broker: BrokerCore, started: float, rates: RateSampler | None = None
) -> dict[str, Any]:
    """Gauges at the top level; the core's counters, under their own names only, in
    ``counters``; per-second rates in ``rates``. Retained messages are counted without
    ``$SYS`` (what clients published), and ``$SYS`` apart."""
    st: Any = broker.stats  # counters are set by Stats.__init__ from __slots__
    sessions = broker.sessions
    online = sum(1 for s in sessions.values() if s.conn is not None)
    inflight = queued = 0
    for s in sessions.values():
        inflight += len(s.inflight)
        queued += len(s.queue)
    retained = broker.retained
    sys_msgs = [m for m in retained.match("$SYS/#", broker.clock()) if _is_sys(m.topic)]
    sys_bytes = sum(len(m.payload) for m in sys_msgs)
    cluster = getattr(broker, "cluster", None)  # issue 15: node id, nodes seen, figures
    return {
        "version": __version__,
        "uptime_seconds": round(time.monotonic() - started, 3),
        "time": time.time(),  # wall clock of this snapshot
        "connections": len(broker.connections),
        "pending_connections": len(broker.pending),
        "sessions": len(sessions),
        "sessions_online": online,
        "subscriptions": broker.subscriptions.count,
        "retained_messages": retained.count - len(sys_msgs),
        "retained_bytes": retained.bytes - sys_bytes,
        "sys_retained_messages": len(sys_msgs),
        "sys_retained_bytes": sys_bytes,
        "inflight": inflight,
        "queued": queued,
        "rates": (rates or RateSampler(broker)).rates(),
        "counters": st.as_dict(),
        **({"cluster": cluster.status()} if cluster is not None else {}),
    }


def _limit(req: Request, default: int = 1000) -> int:
    text = req.query.get("limit", str(default))
    if not text.isdigit():
        raise ValueError("limit must be a non-negative integer")
    return min(int(text), MAX_LIMIT)


class AdminAPI:
    def __init__(self, broker: BrokerCore, token: str) -> None:
        if not token:
            raise ValueError("the admin API needs a token")
        self.broker = broker
        self.token = token.encode()
        self.started = time.monotonic()
        self.topics = TopicCounter(broker)
        self.rates: RateSampler | None = None  # made on the event loop, in start()
        self.http = HTTPServer(self.handle, "admin")

    async def start(self, host: str, port: int) -> tuple[str, int]:
        where = await self.http.start(host, port)
        self.topics.install()
        self.rates = RateSampler(self.broker)
        self.rates.start()
        return where

    async def stop(self) -> None:
        self.topics.uninstall()
        if self.rates is not None:
            self.rates.stop()
        await self.http.stop()

    # -- dispatch -------------------------------------------------------------
    def authorised(self, req: Request) -> bool:
        auth = req.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self.token
        )

    def handle(self, req: Request) -> Response:
        path = req.path
        if not path.startswith("/api/"):
            return self.static(req)
        if not self.authorised(req):
            return Response(
                401,
                b'{"error":"missing or wrong bearer token"}',
                headers={"WWW-Authenticate": 'Bearer realm="mqttfast"'},
            )
        parts = [unquote(p) for p in path[len("/api/") :].split("/")]
        try:
            return self.route(req, parts)
        except ValueError as err:
            return error(400, str(err))

    def route(self, req: Request, parts: list[str]) -> Response:
        m = req.method
        head = parts[0]
        if parts == ["stats"] and m == "GET":
            return json_response(broker_stats(self.broker, self.started, self.rates))
        if parts == ["openapi.json"] and m == "GET":
            return Response(200, _read_asset("openapi.json"))
        if head == "clients":
            return self.clients(req, parts[1:])
        if parts == ["retained"]:
            if m == "GET":
                return self.list_retained(req)
            if m == "DELETE":
                return self.delete_retained(req)
            return error(405, "GET or DELETE")
        if parts == ["topics", "top"] and m == "GET":
            n = req.query.get("n", "10")
            if not n.isdigit():
                raise ValueError("n must be a non-negative integer")
            return json_response({"topics": self.topics.top(min(int(n), 1000))})
        return error(404, "no such endpoint")

    # -- clients --------------------------------------------------------------
    def clients(self, req: Request, rest: list[str]) -> Response:
        broker = self.broker
        now = broker.clock()
        if not rest or rest == [""]:
            if req.method != "GET":
                return error(405, "GET only")
            q = req.query.get("q", "").lower()
            state = req.query.get("state", "")
            if state not in ("", "connected", "offline"):
                raise ValueError("state must be connected or offline")
            limit = _limit(req)
            matching = []
            for session in list(broker.sessions.values()):
                conn = session.conn
                if state and (conn is not None) != (state == "connected"):
                    continue
                if q:
                    hay = [session.client_id, session.username or ""]
                    if conn is not None:
                        hay += [conn.peer, conn.username or ""]
                    if not any(q in h.lower() for h in hay):
                        continue
                matching.append(session)
            # The first ``limit`` by id: O(n log limit), details built for those only.
            first = heapq.nsmallest(limit, matching, key=lambda s: s.client_id)
            return json_response(
                {"total": len(matching), "clients": [client_info(s, now) for s in first]}
            )
        cid = rest[0]
        found = broker.sessions.get(cid)
        if found is None:
            return error(404, f"no client {cid!r}")
        session = found
        if len(rest) == 1 and req.method == "GET":
            return json_response(client_info(session, now))
        if rest[1:] == ["subscriptions"] and req.method == "GET":
            subs = [subscription_info(f, e) for f, e in sorted(session.subscriptions.items())]
            return json_response({"client_id": cid, "subscriptions": subs})
        if rest[1:] == ["kick"] and req.method == "POST":
            return self.kick(session, req)
        return error(404, "no such endpoint")

    def kick(self, session: Session, req: Request) -> Response:
        """Disconnect: v5 clients get DISCONNECT 0x98 (Administrative action); the will
        is published as for any server-side close. ``?discard_session=true`` also ends
        the session (subscriptions and queued messages are dropped)."""
        broker = self.broker
        conn = session.conn
        was_connected = conn is not None
        if conn is not None:
            log.info(
                "admin: kicking client %s (%s)",
                session.client_id,
                conn.peer,
                extra={
                    "client_id": session.client_id,
                    "peer": conn.peer,
                    "reason": "administrative action",
                },
            )
            conn.close(ReasonCode.ADMINISTRATIVE_ACTION)
        discard = req.query.get("discard_session", "").lower() in ("1", "true", "yes")
        if discard and broker.sessions.get(session.client_id) is session:
            broker.end_session(session, broker.clock())
        return json_response(
            {
                "client_id": session.client_id,
                "was_connected": was_connected,
                "session_discarded": discard,
            }
        )

    # -- retained -------------------------------------------------------------
    def list_retained(self, req: Request) -> Response:
        from mqttfast.codec import validate_topic_filter
        from mqttfast.codec.errors import MQTTError

        filt = req.query.get("filter", "#")
        try:
            validate_topic_filter(filt)
        except MQTTError as err:
            raise ValueError(f"bad topic filter: {err}") from None
        limit = _limit(req)
        with_payload = req.query.get("payload", "").lower() in ("1", "true", "yes")
        now = self.broker.clock()
        msgs = self.broker.retained.match(filt, now)
        out = []
        for msg in sorted(msgs, key=lambda m: m.topic)[:limit]:
            item: dict[str, Any] = {
                "topic": msg.topic,
                "qos": msg.qos,
                "payload_bytes": len(msg.payload),
            }
            if with_payload:
                item["payload_base64"] = base64.b64encode(msg.payload).decode()
            out.append(item)
        return json_response({"total": len(msgs), "retained": out})

    def delete_retained(self, req: Request) -> Response:
        topic = req.query.get("topic")
        if not topic:
            raise ValueError("topic is required")
        broker = self.broker
        if not broker.retained.delete(topic):
            return error(404, f"no retained message for {topic!r}")
        if broker.storage.durable:
            broker.storage.flush()
        log.info("admin: deleted retained message %r", topic)
        return json_response({"deleted": topic})

    # -- dashboard files ------------------------------------------------------
    def static(self, req: Request) -> Response:
        if req.method not in ("GET", "HEAD"):
            return error(405, "GET only")
        path = req.path
        if path in ("/", "/dashboard", "/dashboard.html"):
            name = "static/dashboard.html"
        elif (
            path.startswith("/static/") and "/" not in path[len("/static/") :] and ".." not in path
        ):
            name = "static/" + path[len("/static/") :]
        else:
            return error(404, "not found")
        ext = name[name.rfind(".") :]
        try:
            body = _read_asset(name)
        except (FileNotFoundError, IsADirectoryError, OSError):
            return error(404, "not found")
        return Response(200, body, STATIC_TYPES.get(ext, "application/octet-stream"))


def _read_asset(name: str) -> bytes:
    return resources.files("mqttfast.app.admin").joinpath(name).read_bytes()


def openapi() -> dict[str, Any]:
    return json.loads(_read_asset("openapi.json"))


__all__ = ["AdminAPI", "TopicCounter", "broker_stats", "client_info", "openapi"]
