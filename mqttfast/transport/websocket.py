"""MQTT over WebSocket (MQTT 5.0 section 6, 3.1.1 section 6) under our own asyncio.Protocol.

The ``websockets`` library's sans-I/O :class:`~websockets.server.ServerProtocol`
does the opening handshake, framing, masking, ping/pong and the closing
handshake; this module only moves bytes between it, the socket and an inner
MQTT protocol (normally :class:`mqttfast.transport.listeners.ListenerProtocol`).

The inner protocol sees a :class:`WebSocketTransport`: an asyncio-transport
look-alike whose ``write``/``writelines`` send one binary frame per call (the
batched sink hands it one turn's worth of packets, so several MQTT packets go
out in one frame). Incoming binary and continuation frames are fed to the inner
protocol as a byte stream, so several packets per frame and one packet across
frames both work [MQTT-6.0.0-2]. A text frame closes the connection
[MQTT-6.0.0-1]. The subprotocol offered back is ``mqtt`` (``mqttv3.1`` for old
MQTT 3.1 clients that offer only that) [MQTT-6.0.0-4]; a client offering
neither is refused with HTTP 400.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

log = logging.getLogger("mqttfast.transport")

SUBPROTOCOLS = [Subprotocol("mqtt"), Subprotocol("mqttv3.1")]
DEFAULT_PATH = "/mqtt"


class WebSocketTransport(asyncio.Transport):
    """What the inner MQTT protocol writes to: every write becomes a binary frame."""

    def __init__(self, outer: WebSocketProtocol) -> None:
        super().__init__()
        self.outer = outer
        self.closing = False

    def write(self, data: Any) -> None:
        if self.closing:
            return
        self.outer.ws.send_binary(data)
        self.outer.flush()

    def writelines(self, parts: Any) -> None:
        if self.closing:
            return
        self.outer.ws.send_binary(b"".join(parts))
        self.outer.flush()

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        self.outer.close(1000)

    def abort(self) -> None:
        self.closing = True
        transport = self.outer.transport
        if transport is not None:
            transport.abort()

    def is_closing(self) -> bool:
        transport = self.outer.transport
        return self.closing or transport is None or transport.is_closing()

    def pause_reading(self) -> None:
        if self.outer.transport is not None and not self.outer.transport.is_closing():
            self.outer.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.outer.transport is not None and not self.outer.transport.is_closing():
            self.outer.transport.resume_reading()

    def is_reading(self) -> bool:
        return self.outer.transport is not None and self.outer.transport.is_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if self.outer.transport is not None:
            self.outer.transport.set_write_buffer_limits(high=high, low=low)

    def get_write_buffer_size(self) -> int:
        transport = self.outer.transport
        return transport.get_write_buffer_size() if transport is not None else 0

    def can_write_eof(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "websocket_path":
            return self.outer.request_path
        transport = self.outer.transport
        return transport.get_extra_info(name, default) if transport is not None else default


class WebSocketProtocol(asyncio.Protocol):
    """One WebSocket connection carrying one MQTT connection (``inner``)."""

    def __init__(
        self, inner: asyncio.Protocol, path: str = DEFAULT_PATH, max_frame_size: int | None = None
    ) -> None:
        self.inner = inner
        self.path = path
        self.ws = ServerProtocol(subprotocols=SUBPROTOCOLS, max_size=max_frame_size)
        self.transport: asyncio.Transport | None = None
        self.adapter = WebSocketTransport(self)
        self.open = False  # handshake done, inner protocol attached
        self.inner_closed = False
        self.request_path: str | None = None

    # -- socket side ----------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        ws = self.ws
        ws.receive_data(data)
        for event in ws.events_received():
            if isinstance(event, Request):
                self._handshake(event)
                continue
            assert isinstance(event, Frame)  # a server receives no HTTP responses
            opcode = event.opcode
            if not self.open:
                continue
            if opcode is Opcode.BINARY or opcode is Opcode.CONT:
                if event.data and not self.inner_closed:
                    self.inner.data_received(cast(bytes, event.data))
            elif opcode is Opcode.TEXT:
                # [MQTT-6.0.0-1] MQTT packets travel in binary frames only.
                log.info("websocket %s: text frame; closing", self._peer())
                ws.fail(1003, "MQTT needs binary frames")
                self._inner_lost(None)
            elif opcode is Opcode.CLOSE:
                self._inner_lost(None)
            # PING/PONG: the ServerProtocol answers pings itself.
        if ws.state is State.CLOSED or ws.close_expected():
            self._inner_lost(None)
        self.flush()

    def eof_received(self) -> bool:
        self.ws.receive_eof()
        self.flush()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._inner_lost(exc)
        self.transport = None

    def pause_writing(self) -> None:
        if self.open and not self.inner_closed:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.open and not self.inner_closed:
            self.inner.resume_writing()

    # -- helpers ----------------------------------------------------------------
    def _peer(self) -> Any:
        return self.transport.get_extra_info("peername") if self.transport else None

    def _handshake(self, request: Request) -> None:
        ws = self.ws
        self.request_path = request.path
        path = request.path.split("?", 1)[0]
        if path != self.path:
            response = ws.reject(404, "Not Found\n")
        else:
            response = ws.accept(request)
        ws.send_response(response)
        if response.status_code != 101:
            log.info(
                "websocket %s: handshake refused (%d %s, path %r)",
                self._peer(),
                response.status_code,
                response.reason_phrase,
                request.path,
            )
            self.flush()
            if self.transport is not None:
                self.transport.close()
            return
        self.open = True
        self.flush()
        self.inner.connection_made(self.adapter)

    def _inner_lost(self, exc: Exception | None) -> None:
        if self.open and not self.inner_closed:
            self.inner_closed = True
            self.adapter.closing = True
            self.inner.connection_lost(exc)

    def flush(self) -> None:
        transport = self.transport
        if transport is None:
            return
        for chunk in self.ws.data_to_send():
            if chunk:
                if not transport.is_closing():
                    transport.write(chunk)
            else:
                transport.close()  # b"" = end of stream after the closing handshake
                return
        if self.ws.close_expected() and not transport.is_closing():
            transport.close()

    def close(self, code: int) -> None:
        """Server-side close (from the inner protocol): closing frame, then the socket."""
        ws = self.ws
        if ws.state is State.OPEN:
            ws.send_close(code)
        self.flush()
        if self.transport is not None:
            self.transport.close()


__all__ = ["WebSocketProtocol", "WebSocketTransport", "SUBPROTOCOLS", "DEFAULT_PATH"]
