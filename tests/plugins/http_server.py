"""A tiny HTTP/1.1 server on 127.0.0.1 (asyncio) that records JSON POSTs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any


class Recorder:
    def __init__(
        self, respond: Callable[[str, dict], tuple[int, Any]] | None = None, delay: float = 0.0
    ) -> None:
        self.requests: list[tuple[str, dict]] = []
        self.respond = respond or (lambda path, body: (200, {}))
        self.delay = delay
        self.server: asyncio.base_events.Server | None = None
        self.port = 0

    async def start(self) -> Recorder:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            _, path, _ = line.decode().split(" ", 2)
            length = 0
            while True:
                h = await reader.readline()
                if h in (b"\r\n", b""):
                    break
                k, _, v = h.decode().partition(":")
                if k.lower() == "content-length":
                    length = int(v)
            body = json.loads(await reader.readexactly(length)) if length else {}
            self.requests.append((path, body))
            if self.delay:
                await asyncio.sleep(self.delay)
            status, answer = self.respond(path, body)
            data = json.dumps(answer).encode() if answer is not None else b""
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Length: {len(data)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + data
            )
            await writer.drain()
        except (TimeoutError, OSError, ValueError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
