"""Log messages whose topic matches filters, to SQLite or JSON lines.

::

    [[plugin]]
    class = "mqttfast.plugins.message_logger:MessageLogger"
    options = { path = "messages.jsonl", format = "jsonl", topics = ["sensors/#"] }

Options: ``path`` (required), ``format`` ("jsonl" or "sqlite"; default from the
file name: ``.db``/``.sqlite``/``.sqlite3`` -> sqlite), ``topics`` (filters,
default ``["#"]``), ``flush_interval`` (seconds between writes/commits, default
1.0), ``max_buffer`` (messages kept in memory between writes; beyond it the
oldest are dropped and counted, default 10000).

Messages are logged as routed (after earlier plug-ins' changes) with the
publisher's client id. Writes happen on ``on_tick`` in a worker thread, never
on the message path: the hook only appends to a bounded in-memory buffer.
Payloads are stored as text when they are UTF-8, otherwise base64
(``"payload_b64"`` in JSON lines; a BLOB in SQLite).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import sqlite3
import time
from collections import deque
from typing import Any

from mqttfast.codec import topic_matches, validate_topic_filter

from .base import Plugin

log = logging.getLogger("mqttfast.plugins.message_logger")

_SCHEMA = """CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, client_id TEXT, topic TEXT NOT NULL,
    qos INTEGER NOT NULL, retain INTEGER NOT NULL, payload BLOB NOT NULL)"""


class MessageLogger(Plugin):
    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        o = self.options
        self.path = str(o.get("path") or "")
        if not self.path:
            raise ValueError("message_logger: option 'path' is required")
        fmt = o.get("format")
        if fmt is None:
            fmt = "sqlite" if self.path.endswith((".db", ".sqlite", ".sqlite3")) else "jsonl"
        if fmt not in ("jsonl", "sqlite"):
            raise ValueError("message_logger: format must be 'jsonl' or 'sqlite'")
        self.format = fmt
        self.topics = list(o.get("topics", ["#"]))
        for f in self.topics:
            validate_topic_filter(f)
        self.match_all = self.topics == ["#"]
        self.tick_interval = float(o.get("flush_interval", 1.0))
        self.buffer: deque[tuple] = deque()
        self.max_buffer = int(o.get("max_buffer", 10000))
        self.dropped = 0
        self.written = 0
        self._db: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    def on_publish(self, client: Any, message: Any) -> None:
        topic = message.topic
        if not (self.match_all and not topic.startswith("$")) and not any(
            topic_matches(f, topic) for f in self.topics
        ):
            return None
        if len(self.buffer) >= self.max_buffer:
            self.buffer.popleft()
            self.dropped += 1
        self.buffer.append(
            (
                time.time(),
                client.client_id,
                topic,
                message.qos,
                bool(message.retain),
                bytes(message.payload),
            )
        )
        return None

    async def on_tick(self, now: float) -> None:
        await self.flush()

    async def flush(self) -> None:
        """Write what is buffered (in a worker thread)."""
        async with self._lock:
            if not self.buffer:
                return
            batch = list(self.buffer)
            self.buffer.clear()
            await asyncio.get_running_loop().run_in_executor(None, self._write, batch)
            self.written += len(batch)

    def _write(self, batch: list[tuple]) -> None:
        if self.format == "sqlite":
            if self._db is None:
                self._db = sqlite3.connect(self.path, check_same_thread=False)
                self._db.execute(_SCHEMA)
            with self._db:
                self._db.executemany(
                    "INSERT INTO messages (ts, client_id, topic, qos, retain, payload) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    batch,
                )
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            for ts, cid, topic, qos, retain, payload in batch:
                rec: dict[str, Any] = {
                    "ts": round(ts, 6),
                    "client_id": cid,
                    "topic": topic,
                    "qos": qos,
                    "retain": retain,
                }
                try:
                    rec["payload"] = payload.decode("utf-8")
                except UnicodeDecodeError:
                    rec["payload_b64"] = base64.b64encode(payload).decode("ascii")
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")

    async def stop(self) -> None:
        await self.flush()
        if self._db is not None:
            self._db.close()
            self._db = None
        if self.dropped:
            log.warning("message logger dropped %d messages (buffer full)", self.dropped)
