"""Start and stop listeners around one core BrokerCore; the periodic tick."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import TYPE_CHECKING

from mqttfast.core.broker import BrokerCore

from .tcp import Flusher, MQTTProtocol

if TYPE_CHECKING:
    from .listeners import IdentityFn, Listener, ListenerConfig

log = logging.getLogger("mqttfast.transport")

TICK_INTERVAL = 0.5  # seconds; keep-alive and expiry granularity


class MQTTServer:
    def __init__(self, broker: BrokerCore) -> None:
        self.broker = broker
        self.servers: list[asyncio.base_events.Server] = []
        self._tick_task: asyncio.Task | None = None
        self.flusher: Flusher | None = None

    def _flusher(self, loop: asyncio.AbstractEventLoop) -> Flusher:
        """The one output flusher of this server. The storage sets its hooks (commit,
        window, gate), then the router (a cluster router holds acknowledgements)."""
        if self.flusher is None:
            self.flusher = Flusher(loop, self.broker.storage)
            self.broker.router.bind_output(self.flusher)
        return self.flusher

    async def start(self, host: str, port: int) -> list[tuple[str, int]]:
        loop = asyncio.get_running_loop()
        broker = self.broker
        flusher = self._flusher(loop)
        server = await loop.create_server(
            lambda: MQTTProtocol(broker, flusher), host, port, reuse_address=True, backlog=1024
        )
        self.servers.append(server)
        if self._tick_task is None:
            self._tick_task = asyncio.ensure_future(self._ticker())
        return [s.getsockname()[:2] for s in server.sockets]

    async def start_listener(
        self,
        cfg: ListenerConfig,
        ssl_context: ssl.SSLContext | None = None,
        identity: IdentityFn | None = None,
    ) -> Listener:
        """Open one listener (TCP, TLS, WebSocket, unix; see listeners.py) and return it.
        All listeners of this server share the global max_connections gate."""
        from .listeners import ConnectionGate, open_listener

        flusher = self._flusher(asyncio.get_running_loop())
        gate = getattr(self, "gate", None)
        if gate is None:
            gate = self.gate = ConnectionGate(getattr(self.broker.settings, "max_connections", 0))
        listener = await open_listener(self.broker, flusher, cfg, gate, ssl_context, identity)
        assert listener.server is not None  # open_listener started it
        self.servers.append(listener.server)
        if self._tick_task is None:
            self._tick_task = asyncio.ensure_future(self._ticker())
        return listener

    async def _ticker(self) -> None:
        broker = self.broker
        while True:
            await asyncio.sleep(TICK_INTERVAL)
            try:
                broker.tick(broker.clock())
            except Exception:
                log.exception("tick failed")

    async def stop(self) -> None:
        for server in self.servers:
            server.close()
        self.broker.shutdown()
        if self.flusher is not None:
            self.flusher.flush()
        if self._tick_task is not None:
            self._tick_task.cancel()
            self._tick_task = None
        for server in self.servers:
            try:
                await asyncio.wait_for(server.wait_closed(), 2.0)
            except (TimeoutError, Exception):
                pass
        self.servers.clear()
        await asyncio.sleep(0)  # let transports close


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when importable, else the default loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


__all__ = ["MQTTServer", "new_event_loop", "time"]
