"""A minimal HTTP/1.1 client over asyncio streams (stdlib only), for the bundled plug-ins:
one POST of a JSON body per connection (``Connection: close``), bounded by a timeout."""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any
from urllib.parse import urlsplit


class HttpError(Exception):
    pass


def check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL, got {url!r}")


async def post_json(
    url: str, body: Any, timeout: float = 5.0, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """POST ``body`` as JSON; returns (status, response body). Raises HttpError/OSError/
    asyncio.TimeoutError."""
    return await asyncio.wait_for(_post(url, json.dumps(body).encode(), headers or {}), timeout)


async def _post(url: str, data: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    parts = urlsplit(url)
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    host = parts.hostname or ""
    reader, writer = await asyncio.open_connection(
        host, port, ssl=ssl.create_default_context() if tls else None
    )
    try:
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        hdr = {
            "Host": parts.netloc,
            "Content-Type": "application/json",
            "Content-Length": str(len(data)),
            "Connection": "close",
            "User-Agent": "mqttfast",
            **headers,
        }
        head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdr.items())
        writer.write(head.encode("latin-1") + b"\r\n" + data)
        await writer.drain()
        status_line = await reader.readline()
        fields = status_line.split(None, 2)
        if len(fields) < 2 or not fields[0].startswith(b"HTTP/") or not fields[1].isdigit():
            raise HttpError(f"bad status line {status_line[:80]!r}")
        status = int(fields[1])
        length = None
        chunked = False
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value.strip())
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
        if chunked:
            body = b""
            while True:
                size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    break
                body += await reader.readexactly(size)
                await reader.readline()
        elif length is not None:
            body = await reader.readexactly(min(length, 1 << 20))
        else:
            body = await reader.read(1 << 20)
        return status, body
    finally:
        writer.close()
