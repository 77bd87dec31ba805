"""Listeners: where the broker accepts connections, and how many.

A :class:`ListenerConfig` is plain data (the app layer fills it from the
config file or mosquitto.conf; the transport never imports the app). One
broker runs any number of listeners at once, each with its own address and
protocol:

* ``protocol = "mqtt"``: MQTT over TCP, or over TLS when an ``ssl_context``
  is given (the app builds it from ``certfile``/``keyfile``/``cafile``...);
* ``protocol = "websockets"``: MQTT over WebSocket at ``path`` (``/mqtt``),
  over TLS (``wss://``) with an ``ssl_context``;
* ``unix_path`` set: a unix-socket listener (``address``/``port`` unused).

IPv6: give an IPv6 ``address`` (``::1``, ``::``).

Connection limits (like mosquitto's ``max_connections``): each listener
counts its open sockets, and all listeners together are bounded by
``BrokerSettings.max_connections``. A connection over either limit is
accepted and closed at once, before any MQTT byte is read (what mosquitto
does); it is logged at most once per second per listener and counted in
``Listener.refused``. 0 means unlimited.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .tcp import Flusher, MQTTProtocol
from .websocket import DEFAULT_PATH, WebSocketProtocol

if TYPE_CHECKING:
    from mqttfast.core.broker import BrokerCore

log = logging.getLogger("mqttfast.transport")

PROTOCOLS = ("mqtt", "websockets")

# Bind TCP listeners with SO_REUSEPORT, so several worker processes (mqttfast --workers N)
# accept on the same ports and the kernel spreads connections over them. Set once at
# start-up by the app (--reuse-port); Linux only (elsewhere open_listener says so).
reuse_port = False

# Called with the (TLS) transport; returns the client certificate's identity or None.
IdentityFn = Callable[[Any], "str | None"]


@dataclass(slots=True)
class ListenerConfig:
    port: int = 1883
    address: str = "0.0.0.0"
    protocol: str = "mqtt"  # "mqtt" or "websockets"
    unix_path: str | None = None  # a unix-socket listener instead of TCP
    name: str = ""  # for logs; default "<protocol>://<address>:<port>"
    # TLS (the app turns these into an ssl.SSLContext; see app.security.tls).
    certfile: str | None = None
    keyfile: str | None = None
    cafile: str | None = None
    require_certificate: bool = False
    tls_version: str = "TLSv1.2"  # minimum accepted version
    ciphers: str | None = None
    use_identity_as_username: bool = False  # the client certificate's CN/SAN is the username
    identity_source: str = "cn"  # "cn" or "san"
    # WebSocket.
    path: str = DEFAULT_PATH
    # 0 = unlimited (mosquitto: -1).
    max_connections: int = 0

    @property
    def tls(self) -> bool:
        return self.certfile is not None

    def label(self) -> str:
        if self.name:
            return self.name
        if self.unix_path:
            return f"unix:{self.unix_path}"
        scheme = {
            "mqtt": "mqtts" if self.tls else "mqtt",
            "websockets": "wss" if self.tls else "ws",
        }.get(self.protocol, self.protocol)
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{scheme}://{host}:{self.port}"


class ConnectionGate:
    """Open-socket count of all listeners of one server, against the global limit."""

    __slots__ = ("max_total", "total", "refused")

    def __init__(self, max_total: int = 0) -> None:
        self.max_total = max_total
        self.total = 0
        self.refused = 0


class Listener:
    """One open listening endpoint: its config, its asyncio server, its counters."""

    def __init__(self, cfg: ListenerConfig, gate: ConnectionGate) -> None:
        self.cfg = cfg
        self.gate = gate
        self.connections = 0
        self.refused = 0
        self.server: asyncio.base_events.Server | None = None
        self._last_refusal_log = 0.0
        # The client certificate's identity, for use_identity_as_username (set by
        # open_listener; here rather than on each connection's protocol: issue 17).
        self.identity: IdentityFn | None = None

    def admit(self) -> bool:
        """Count a new socket in, or refuse it (over the listener's or the global limit)."""
        gate = self.gate
        limit = self.cfg.max_connections
        if (limit and self.connections >= limit) or (
            gate.max_total and gate.total >= gate.max_total
        ):
            self.refused += 1
            gate.refused += 1
            now = time.monotonic()
            if now - self._last_refusal_log >= 1.0:
                self._last_refusal_log = now
                which = "listener" if limit and self.connections >= limit else "global"
                log.warning(
                    "%s: connection refused, %s max_connections reached (%d refused so far)",
                    self.cfg.label(),
                    which,
                    self.refused,
                )
            return False
        self.connections += 1
        gate.total += 1
        return True

    def release(self) -> None:
        self.connections -= 1
        self.gate.total -= 1

    def addresses(self) -> list[Any]:
        if self.server is None:
            return []
        return [s.getsockname() for s in self.server.sockets]


class ListenerProtocol(MQTTProtocol):
    """MQTTProtocol plus the listener's bookkeeping: the connection limit and the
    certificate identity (``use_identity_as_username``). Adds nothing to the
    per-packet path (``data_received`` is MQTTProtocol's)."""

    # One slot (issue 17: memory per idle connection): the certificate identity function
    # is the listener's, and whether this socket is counted in the listener follows from
    # ``gated`` and the sink (made only for an admitted socket).
    __slots__ = ("listener",)

    # False in WebSocketInnerProtocol: an outer WebSocket protocol counts the socket.
    gated = True

    def __init__(self, broker: BrokerCore, flusher: Flusher, listener: Listener) -> None:
        super().__init__(broker, flusher)
        self.listener = listener

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if self.gated and not self.listener.admit():
            self.broker.stats.connections_refused += 1
            transport.close()  # no sink: connection_lost releases nothing
            return
        super().connection_made(transport)
        identity = self.listener.identity
        if identity is not None and self.conn is not None:
            # "" = the listener wants an identity but the client has none: refused at CONNECT.
            self.conn.cert_identity = identity(transport) or ""

    def connection_lost(self, exc: Exception | None) -> None:
        # An admitted socket has a sink (MQTTProtocol.connection_made makes it first).
        if self.gated and self.sink is not None:
            self.listener.release()
        super().connection_lost(exc)


class WebSocketInnerProtocol(ListenerProtocol):
    """The MQTT protocol inside a WebSocket: the outer protocol counts the socket."""

    __slots__ = ()
    gated = False


class GatedWebSocketProtocol(WebSocketProtocol):
    """WebSocketProtocol that counts its socket against the listener's limits."""

    def __init__(
        self, inner: asyncio.Protocol, listener: Listener, path: str, max_frame_size: int | None
    ) -> None:
        super().__init__(inner, path, max_frame_size)
        self.listener = listener
        self.counted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self.listener.admit():
            broker = getattr(self.inner, "broker", None)
            if broker is not None:
                broker.stats.connections_refused += 1
            transport.close()
            return
        self.counted = True
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.counted:
            self.counted = False
            self.listener.release()
        super().connection_lost(exc)


async def open_listener(
    broker: BrokerCore,
    flusher: Flusher,
    cfg: ListenerConfig,
    gate: ConnectionGate,
    ssl_context: ssl.SSLContext | None = None,
    identity: IdentityFn | None = None,
) -> Listener:
    """Bind and start serving one listener; raises OSError (address in use, ...)."""
    if cfg.protocol not in PROTOCOLS:
        raise ValueError(f"unknown listener protocol {cfg.protocol!r}")
    loop = asyncio.get_running_loop()
    listener = Listener(cfg, gate)
    listener.identity = identity
    if cfg.protocol == "websockets":
        # A frame may carry several packets; bound it a little above the packet limit.
        max_frame = broker.settings.max_packet_size + 65536

        def factory() -> asyncio.Protocol:
            inner = WebSocketInnerProtocol(broker, flusher, listener)
            return GatedWebSocketProtocol(inner, listener, cfg.path, max_frame)
    else:

        def factory() -> asyncio.Protocol:
            return ListenerProtocol(broker, flusher, listener)

    kwargs: dict[str, Any] = {"backlog": 1024}
    if ssl_context is not None:
        kwargs["ssl"] = ssl_context
        kwargs["ssl_handshake_timeout"] = max(1.0, broker.settings.connect_timeout)
    if cfg.unix_path:
        listener.server = await loop.create_unix_server(factory, cfg.unix_path, **kwargs)
    else:
        if reuse_port:
            if not hasattr(socket, "SO_REUSEPORT") or sys.platform != "linux":
                raise ValueError(
                    f"reuse_port (--workers) is unsupported on {sys.platform}: "
                    "it needs SO_REUSEPORT load balancing (Linux)"
                )
            kwargs["reuse_port"] = True
        listener.server = await loop.create_server(
            factory, cfg.address or None, cfg.port, reuse_address=True, **kwargs
        )
    return listener


__all__ = [
    "ListenerConfig",
    "Listener",
    "ListenerProtocol",
    "ConnectionGate",
    "open_listener",
    "PROTOCOLS",
]
