"""MQTT over TCP: one asyncio.Protocol per connection, one codec Decoder each.

The protocol owns the socket side of the core <-> transport seam: it feeds
decoded packets to the core connection and gives the core a :class:`BatchedSink`
whose writes are collected and flushed once per event-loop turn (one
``writelines`` per connection per turn, however many messages fan out).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from mqttfast.codec import Decoder, MQTTError

if TYPE_CHECKING:
    from mqttfast.core.broker import Broker
    from mqttfast.core.connection import Connection

log = logging.getLogger("mqttfast.transport")

# A sink flushes early once this much is pending: the event loop may run many reads
# in one turn, and the transport's flow control (pause_writing -> publishers paused)
# only sees what has been handed to it.
FLUSH_THRESHOLD = 64 * 1024
# After deciding to close, the write side is shut and the input read and dropped for up
# to this long (or until the client closes): closing with unread input makes the kernel
# send RST, and the client may then never read our DISCONNECT and its reason code.
CLOSE_LINGER = 1.0


def peer_string(transport: Any) -> str:
    """ "host:port", "[v6]:port" (unambiguous for the auth layer's parser), or "unix:<path>"."""
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = str(peer[0])
        return f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"
    if peer:  # a named unix client socket
        return f"unix:{peer}"
    sock = transport.get_extra_info("sockname")
    return f"unix:{sock}" if isinstance(sock, str) and sock else "unix:?"


class Flusher:
    """Flushes every sink written to during this loop turn, with one call_soon."""

    __slots__ = ("loop", "dirty", "scheduled", "commit", "delay")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.dirty: list[BatchedSink] = []
        self.scheduled = False
        # Durable storage's flush (core/storage.py), called before any bytes leave, or None.
        self.commit: Any = None
        # Durable storage's group-commit wait (returns seconds to hold the output), or None.
        self.delay: Any = None

    def mark(self, sink: BatchedSink) -> None:
        self.dirty.append(sink)
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        delay = self.delay
        if delay is not None:
            wait = delay()
            if wait > 0:  # gather a few ms of changes into one transaction (one fsync)
                self.loop.call_later(wait, self.flush)
                return  # still scheduled: writes keep collecting in the sinks meanwhile
        self.scheduled = False
        dirty = self.dirty
        self.dirty = []
        for sink in dirty:
            sink.flush()


class BatchedSink:
    __slots__ = ("transport", "flusher", "buf", "pending", "closing", "protocol")

    def __init__(
        self, transport: asyncio.Transport, flusher: Flusher, protocol: MQTTProtocol
    ) -> None:
        self.transport = transport
        self.flusher = flusher
        self.buf: list[bytes] = []
        self.pending = 0
        self.closing = False
        self.protocol = protocol

    def write(self, data: bytes) -> None:
        if self.closing:
            return
        if not self.buf:
            self.flusher.mark(self)
        self.buf.append(data)
        self.pending += len(data)
        if self.pending >= FLUSH_THRESHOLD:
            self.flush()

    def writelines(self, parts: Any) -> None:
        if self.closing:
            return
        if not self.buf:
            self.flusher.mark(self)
        buf = self.buf
        for part in parts:
            if part:
                buf.append(part)
                self.pending += len(part)
        if self.pending >= FLUSH_THRESHOLD:
            self.flush()

    def flush(self) -> None:
        buf = self.buf
        if not buf:
            return
        commit = self.flusher.commit
        if commit is not None:
            commit()  # group commit: what these bytes acknowledge is stored first
        self.buf = []
        self.pending = 0
        if self.transport.is_closing():
            return
        if len(buf) == 1:
            self.transport.write(buf[0])
        else:
            self.transport.writelines(buf)

    def close(self) -> None:
        if self.closing:
            return
        self.flush()
        self.closing = True
        self.protocol.linger(self.transport)

    def pause_reading(self) -> None:
        if not self.closing and not self.transport.is_closing():
            self.transport.pause_reading()
            self.protocol.reading_paused = True

    def resume_reading(self) -> None:
        if self.protocol.reading_paused and not self.transport.is_closing():
            self.protocol.reading_paused = False
            self.transport.resume_reading()

    def get_write_buffer_size(self) -> int:
        return self.transport.get_write_buffer_size() + self.pending


class MQTTProtocol(asyncio.Protocol):
    def __init__(self, broker: Broker, flusher: Flusher) -> None:
        self.broker = broker
        self.flusher = flusher
        self.decoder = Decoder(
            None, broker.settings.max_packet_size, broker.settings.allow_control_characters
        )
        self.conn: Connection | None = None
        self.sink: BatchedSink | None = None
        self.reading_paused = False
        self.linger_timer: asyncio.TimerHandle | None = None

    def linger(self, transport: asyncio.Transport) -> None:
        """Half-close: FIN after what is queued, keep reading (and dropping) until the client
        closes or CLOSE_LINGER passes, then close (data_received ignores a closed connection)."""
        if transport.is_closing() or not transport.can_write_eof():
            transport.close()
            return
        try:
            transport.write_eof()
            if self.reading_paused:
                self.reading_paused = False
                transport.resume_reading()
        except (OSError, RuntimeError):
            transport.close()
            return
        self.linger_timer = self.flusher.loop.call_later(CLOSE_LINGER, transport.close)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        peer_s = peer_string(transport)
        settings = self.broker.settings
        transport.set_write_buffer_limits(
            high=settings.output_high_water, low=settings.output_high_water // 2
        )
        self.sink = BatchedSink(transport, self.flusher, self)
        self.conn = self.broker.connection_made(self.sink, peer_s)

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        if conn is None or conn.state == 3:
            return
        self.broker.stats.bytes_received += len(data)
        try:
            pkts = self.decoder.feed(data)
        except MQTTError as err:
            if err.packets:
                conn.packets_received(err.packets)
            if conn.state != 3:
                conn.protocol_violation(err, self.decoder.protocol_version)
            return
        except Exception as exc:  # the decoder promises MQTTError only; stay alive regardless
            log.error("connection %s: decoder failure %r; closing", conn.peer, exc)
            log.debug("decoder failure", exc_info=True)
            conn.close(0x81)
            return
        if pkts:
            conn.packets_received(pkts)

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if self.linger_timer is not None:
            self.linger_timer.cancel()
            self.linger_timer = None
        if self.sink is not None:
            self.sink.closing = True
        conn = self.conn
        if conn is not None:
            try:
                conn.connection_lost()
            except Exception as err:  # a core bug: one log line, the broker goes on
                log.error("connection %s: error while closing: %r", conn.peer, err)
                log.debug("error while closing", exc_info=True)
            # Break protocol -> connection -> sink -> protocol now, so a closed connection
            # is freed by reference counting instead of waiting for the cycle collector.
            self.conn = None

    def pause_writing(self) -> None:
        if self.conn is not None:
            self.conn.writing_paused()

    def resume_writing(self) -> None:
        if self.conn is not None:
            try:
                self.conn.writing_resumed()
            except Exception as err:
                log.error("connection %s: error after resume: %r", self.conn.peer, err)
                log.debug("error after resume", exc_info=True)
