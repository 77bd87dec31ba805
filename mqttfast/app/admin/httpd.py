"""A tiny HTTP/1.1 server on the broker's own event loop, for /metrics and the admin API.

Why not ``prometheus_client.start_http_server`` (a thread) or aiohttp (not available)?
Handlers here read the core's live objects (``broker.sessions``, the retained tree,
``Stats``) and the admin API changes them (kick, delete). On the event loop they run
between two packets, so they see consistent state and need no locks; a thread would
race with the loop (a dict changing size during iteration). Scrapes and dashboard
polls are rare (about one a second), so a few hundred microseconds on the loop are
harmless.

Deliberately small: one request per connection (``Connection: close``), bounded
request line, headers and body, a read timeout; nothing else of HTTP is needed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("mqttfast.http")

MAX_HEAD = 16 * 1024  # request line + headers
MAX_BODY = 1024 * 1024
READ_TIMEOUT = 10.0

REASONS = {
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    500: "Internal Server Error",
}


@dataclass
class Request:
    method: str
    path: str  # as sent (percent-encoded), without the query
    query: dict[str, str]  # last value of each parameter
    headers: dict[str, str]  # lower-case names
    body: bytes = b""
    peer: str = "?"


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_response(data: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(data, separators=(",", ":")).encode())


def error(status: int, message: str) -> Response:
    return json_response({"error": message}, status)


Handler = Callable[[Request], "Response | Awaitable[Response]"]


class HTTPServer:
    """``handler(request) -> Response`` (plain or async) behind an asyncio server."""

    def __init__(self, handler: Handler, name: str) -> None:
        self.handler = handler
        self.name = name
        self.server: asyncio.base_events.Server | None = None

    async def start(self, host: str, port: int) -> tuple[str, int]:
        self.server = await asyncio.start_server(self._serve, host, port, reuse_address=True)
        return self.server.sockets[0].getsockname()[:2]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            try:
                await asyncio.wait_for(self.server.wait_closed(), 1.0)
            except (TimeoutError, Exception):
                pass
            self.server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        peer_s = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        try:
            try:
                req = await asyncio.wait_for(self._read(reader, peer_s), READ_TIMEOUT)
            except ValueError as err:
                resp = error(400, str(err))
                req = None
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                return
            if req is not None:
                resp = await self._dispatch(req)
            head = [
                f"HTTP/1.1 {resp.status} {REASONS.get(resp.status, 'Status')}",
                f"Content-Type: {resp.content_type}",
                f"Content-Length: {len(resp.body)}",
                "Cache-Control: no-store",
                "Connection: close",
            ]
            head += [f"{k}: {v}" for k, v in resp.headers.items()]
            body = b"" if req is not None and req.method == "HEAD" else resp.body
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
            await asyncio.wait_for(writer.drain(), READ_TIMEOUT)
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _dispatch(self, req: Request) -> Response:
        try:
            resp = self.handler(req)
            if asyncio.iscoroutine(resp):
                resp = await resp
            return resp  # type: ignore[return-value]
        except Exception as exc:  # a bug costs one request, never the broker
            log.error("%s: %s %s failed: %r", self.name, req.method, req.path, exc)
            log.debug("handler failure", exc_info=True)
            return error(500, "internal error")

    @staticmethod
    async def _read(reader: asyncio.StreamReader, peer: str) -> Request:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise ValueError("request head too large") from None
        if len(head) > MAX_HEAD:
            raise ValueError("request head too large")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            raise ValueError("bad request line")
        method, target, _ = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep:
                raise ValueError("bad header line")
            headers[name.strip().lower()] = value.strip()
        length = headers.get("content-length", "0")
        if not length.isdigit():
            raise ValueError("bad Content-Length")
        if int(length) > MAX_BODY:
            raise ValueError("body too large")
        body = await reader.readexactly(int(length)) if int(length) else b""
        url = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        return Request(method.upper(), url.path, query, headers, body, peer)


__all__ = ["HTTPServer", "Request", "Response", "json_response", "error"]
