"""HTTP webhook: POST a JSON event on client connect/disconnect and on publish.

::

    [[plugin]]
    class = "mqttfast.plugins.webhook:Webhook"
    options = { url = "http://127.0.0.1:8080/mqtt", events = ["connect", "disconnect", "publish"],
                topics = ["alerts/#"] }

Options: ``url`` (required), ``events`` (default all three), ``topics`` (filters of
the published messages to send, default ``["#"]``), ``queue_size`` (events kept
while the endpoint is slow or down, default 1000; beyond it new events are
dropped and counted), ``retries`` (default 3) with ``backoff`` seconds doubling
between attempts (default 0.5), ``timeout`` per request (default 5 s),
``headers`` (extra HTTP headers, e.g. an Authorization).

Nothing waits for the endpoint: hooks only enqueue; one worker task posts
in order. A 2xx answer is success; anything else (or a network error) is
retried, then the event is dropped and counted (``failed``).

Bodies: ``{"event": "client.connected", "client_id", "username", "peer",
"protocol_version", "ts"}``, ``{"event": "client.disconnected", ..., "by",
"reason_code"}``, ``{"event": "message.publish", "client_id", "topic", "qos",
"retain", "payload" | "payload_b64", "ts"}``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections import deque
from typing import Any

from mqttfast.codec import topic_matches, validate_topic_filter

from ._http import check_url, post_json
from .base import Plugin

log = logging.getLogger("mqttfast.plugins.webhook")

EVENTS = ("connect", "disconnect", "publish")


class Webhook(Plugin):
    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        o = self.options
        self.url = str(o.get("url") or "")
        check_url(self.url)
        self.events = set(o.get("events", EVENTS))
        if not self.events <= set(EVENTS):
            raise ValueError(f"webhook: events must be among {', '.join(EVENTS)}")
        self.topics = list(o.get("topics", ["#"]))
        for f in self.topics:
            validate_topic_filter(f)
        self.queue_size = int(o.get("queue_size", 1000))
        self.retries = int(o.get("retries", 3))
        self.backoff = float(o.get("backoff", 0.5))
        self.timeout = float(o.get("timeout", 5.0))
        self.headers = {str(k): str(v) for k, v in dict(o.get("headers", {})).items()}
        self.queue: deque[dict] = deque()
        self.wake: asyncio.Event | None = None
        self.worker: asyncio.Task | None = None
        self.sent = self.failed = self.dropped = 0
        # Hooks the class does not want are removed so the broker does not call them.
        if "publish" not in self.events:
            self.on_publish = None  # type: ignore[assignment]
        if "connect" not in self.events:
            self.on_connect = None  # type: ignore[assignment]
        if "disconnect" not in self.events:
            self.on_disconnect = None  # type: ignore[assignment]

    async def start(self, broker: Any) -> None:
        self.wake = asyncio.Event()
        self.worker = asyncio.get_running_loop().create_task(self._work())

    def _enqueue(self, body: dict) -> None:
        if len(self.queue) >= self.queue_size:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("webhook %s: queue full; %d events dropped", self.url, self.dropped)
            return
        body["ts"] = round(time.time(), 6)
        self.queue.append(body)
        if self.wake is not None:
            self.wake.set()

    @staticmethod
    def _client(client: Any) -> dict:
        return {
            "client_id": client.client_id,
            "username": client.username,
            "peer": client.peer,
            "protocol_version": client.protocol_version,
        }

    def on_connect(self, client: Any) -> None:
        self._enqueue({"event": "client.connected", **self._client(client)})

    def on_disconnect(self, client: Any, reason: Any) -> None:
        self._enqueue(
            {
                "event": "client.disconnected",
                **self._client(client),
                "by": reason.by,
                "reason_code": reason.reason_code,
            }
        )

    def on_publish(self, client: Any, message: Any) -> None:
        topic = message.topic
        if not any(topic_matches(f, topic) for f in self.topics):
            return None
        body: dict[str, Any] = {
            "event": "message.publish",
            "client_id": client.client_id,
            "topic": topic,
            "qos": message.qos,
            "retain": bool(message.retain),
        }
        try:
            body["payload"] = message.payload.decode("utf-8")
        except UnicodeDecodeError:
            body["payload_b64"] = base64.b64encode(message.payload).decode("ascii")
        self._enqueue(body)
        return None

    async def _work(self) -> None:
        assert self.wake is not None
        while True:
            while self.queue:
                await self._deliver(self.queue[0])
                self.queue.popleft()
            self.wake.clear()
            await self.wake.wait()

    async def _deliver(self, body: dict) -> bool:
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                status, _ = await post_json(self.url, body, self.timeout, self.headers)
                if 200 <= status < 300:
                    self.sent += 1
                    return True
                why = f"HTTP {status}"
            except (TimeoutError, OSError, ValueError, EOFError) as exc:
                why = repr(exc)
            if attempt < self.retries:
                await asyncio.sleep(delay)
                delay *= 2
        self.failed += 1
        log.warning(
            "webhook %s: %s dropped after %d attempts (%s)",
            self.url,
            body["event"],
            self.retries + 1,
            why,
        )
        return False

    async def stop(self) -> None:
        """Give queued events one bounded chance, then stop the worker."""
        if self.worker is None:
            return
        deadline = time.monotonic() + self.timeout
        while self.queue and time.monotonic() < deadline and not self.worker.done():
            await asyncio.sleep(0.02)
        self.worker.cancel()
        await asyncio.gather(self.worker, return_exceptions=True)
        self.worker = None
