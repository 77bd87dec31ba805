"""MQTT over TCP: one asyncio.Protocol per connection, one codec Decoder each.

The protocol owns the socket side of the core <-> transport seam: it feeds
decoded packets to the core connection and gives the core a :class:`BatchedSink`
whose writes are collected and flushed once per event-loop turn (one
``writelines`` per connection per turn, however many messages fan out).

Batching only under load: a small read (a message that arrived alone) is answered at
once, instead of one loop turn later through ``call_soon`` (issue 17: that turn was the
largest stage of the latency at low load): when the read holds one packet, the first
write to each sink goes straight to the socket (as mosquitto does), later ones to that
sink are flushed at the end of its ``data_received``; several packets in a small read
(a pipelining client) are answered at its end, one send per sink. Large reads, and
writes made outside a read (timers, drained output), keep the once-per-turn flush.

Durable storage (``commit``, or a strict store's ``gate``) turns both off: its output
waits for the turn's commit. A cluster's acknowledgement gate (cluster/acks.py) only for
the connections it holds (``Flusher.gated``, issue 16): the others are sent as above.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import TYPE_CHECKING, Any

from mqttfast.codec import Decoder, MQTTError
from mqttfast.core.states import CLOSED

if TYPE_CHECKING:
    from mqttfast.core.broker import BrokerCore
    from mqttfast.core.connection import Connection

log = logging.getLogger("mqttfast.transport")

# A sink flushes early once this much is pending: the event loop may run many reads
# in one turn, and the transport's flow control (pause_writing -> publishers paused)
# only sees what has been handed to it.
FLUSH_THRESHOLD = 64 * 1024
# A read at most this large flushes what it caused before data_received returns: at low
# load a read holds one message; under load reads hold many and writes are batched.
SMALL_READ = 512
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


# Transports that keep the peer's address after the socket is closed (uvloop's TCP transport
# in its C struct, asyncio's in its extra dict): their connections make the peer string on
# demand (issue 17: memory per idle connection). TLS and unix transports may forget it at
# close, when the "connection lost" log line needs it: those get the string up front.
_STABLE_PEER = frozenset(("TCPTransport", "_SelectorSocketTransport"))


class Flusher:
    """Flushes every sink written to during this loop turn, with one call_soon.

    The broker's storage sets the durability hooks itself (``Storage.bind_output``,
    called here), so every path that builds a flusher gets the storage's policy."""

    __slots__ = (
        "loop",
        "dirty",
        "scheduled",
        "commit",
        "delay",
        "gate",
        "gated",
        "reading",
        "direct",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, storage: Any = None) -> None:
        self.loop = loop
        self.dirty: list[BatchedSink] = []
        self.scheduled = False
        # Durable storage's flush (core/storage.py), called before any bytes leave, or None.
        self.commit: Any = None
        # Durable storage's group-commit wait (returns seconds to hold the output), or None.
        self.delay: Any = None
        # True inside MQTTProtocol.data_received: end_read decides how to flush.
        self.reading = False
        # True while a small read is handled without durable storage: a sink's first write
        # is sent at once (BatchedSink.write), not after the rest of the read's work.
        self.direct = False
        # Pipelined durable storage: gate(conn, release) calls release(durable) once what
        # the held bytes of core connection ``conn`` rely on is on disk, after that
        # connection's earlier output (release(False): it never will be), or None.
        self.gate: Any = None
        # None: every connection's output goes through ``gate``. Else the connections
        # whose output must (``conn in gated``): a cluster's acknowledgement gate, alone,
        # holds only some connections' output; the others' is sent as on a single node
        # (a small read's direct write, the same-turn flush), with no gate call.
        self.gated: Any = None
        if storage is not None:
            storage.bind_output(self)

    def mark(self, sink: BatchedSink) -> None:
        self.dirty.append(sink)
        if not self.scheduled and not self.reading:
            self.scheduled = True
            self.loop.call_soon(self.flush)

    def end_read(self, small: bool) -> None:
        """A read was handled: flush now if it was small and no batch is pending
        (nothing gained by waiting a loop turn), else once in this turn."""
        self.reading = self.direct = False
        if not self.dirty or self.scheduled:
            return
        if small and self.commit is None and (self.gate is None or self.gated is not None):
            dirty = self.dirty
            self.dirty = []
            for sink in dirty:
                if sink.buf:
                    sink.flush()
                else:  # only a direct write (BatchedSink.flush of nothing, inlined)
                    sink.buf = None
        else:
            self.scheduled = True
            self.loop.call_soon(self.flush)

    def flush_now(self) -> None:
        """Send what is pending now, when nothing waits for storage (a cluster node's
        small read from NATS: fastpath.Inbound). A flush already scheduled still runs,
        for what is written after this; with durable storage: nothing (its turn)."""
        if (
            self.dirty
            and self.commit is None
            and self.delay is None
            and (self.gate is None or self.gated is not None)
        ):
            dirty = self.dirty
            self.dirty = []
            for sink in dirty:
                sink.flush()

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
    # reading_paused is the protocol's state, kept here: the sink's size class (96 bytes)
    # has room for it, the protocol's (80 without it) does not (issue 17).
    __slots__ = (
        "transport",
        "flusher",
        "buf",
        "pending",
        "held",
        "closing",
        "protocol",
        "reading_paused",
    )

    def __init__(
        self, transport: asyncio.Transport, flusher: Flusher, protocol: MQTTProtocol
    ) -> None:
        self.transport = transport
        self.flusher = flusher
        self.buf: list[bytes] | None = None  # created by the first write after a flush
        self.pending = 0
        self.held = 0  # bytes handed to the storage's gate, not yet released
        self.closing = False
        self.protocol = protocol
        self.reading_paused = False

    def write(self, data: bytes) -> None:
        if self.closing:
            return
        buf = self.buf
        if buf is None:
            flusher = self.flusher
            if (
                flusher.direct
                and (flusher.gated is None or self.protocol.conn not in flusher.gated)
                and not self.transport.is_closing()
            ):
                # A small read's first write to this sink: to the socket now. Later writes
                # during this read queue behind it (empty buffer marked dirty: end_read).
                # (Not for a connection whose output the gate holds: it queues behind.)
                self.transport.write(data)
                self.buf = []
                flusher.dirty.append(self)
                return
            self.buf = [data]  # Flusher.mark, inlined below: one call less per message
            flusher.dirty.append(self)
            if not flusher.scheduled and not flusher.reading:
                flusher.scheduled = True
                flusher.loop.call_soon(flusher.flush)
        else:
            buf.append(data)
        self.pending += len(data)
        if self.pending >= FLUSH_THRESHOLD:
            self.flush()

    def writelines(self, parts: Any) -> None:
        if self.closing:
            return
        buf = self.buf
        if buf is None:
            flusher = self.flusher
            if (
                flusher.direct
                and (flusher.gated is None or self.protocol.conn not in flusher.gated)
                and not self.transport.is_closing()
            ):
                self.transport.writelines(parts)  # as in write(): a small read's first
                self.buf = []
                flusher.dirty.append(self)
                return
            buf = self.buf = []
            self.flusher.mark(self)
        for part in parts:
            if part:
                buf.append(part)
                self.pending += len(part)
        if self.pending >= FLUSH_THRESHOLD:
            self.flush()

    def flush(self) -> None:
        buf = self.buf
        if buf is None:
            return
        self.buf = None
        if not buf:  # writelines of empty parts only
            return
        flusher = self.flusher
        gate = flusher.gate
        if gate is not None and (flusher.gated is None or self.protocol.conn in flusher.gated):
            # held until what these bytes acknowledge is durable (in nats-server)
            self.held += self.pending
            self.pending = 0
            gate(self.protocol.conn, partial(self._release, buf))
            return
        commit = self.flusher.commit
        if commit is not None:
            commit()  # group commit: what these bytes acknowledge is stored first
        self.pending = 0
        self._send(buf)

    def _send(self, buf: list[bytes]) -> None:
        if self.transport.is_closing():
            return
        if len(buf) == 1:
            self.transport.write(buf[0])
        else:
            self.transport.writelines(buf)

    def _release(self, buf: list[bytes], durable: bool) -> None:
        self.held -= sum(map(len, buf))
        if durable:
            self._send(buf)
        else:  # never acknowledge what could not be stored: drop the bytes, and the client
            self.closing = True
            self.transport.abort()

    def _close_after_release(self, durable: bool) -> None:
        if durable:
            self.protocol.linger(self.transport)
        else:
            self.transport.abort()

    def close(self) -> None:
        if self.closing:
            return
        self.flush()
        self.closing = True
        gate = self.flusher.gate
        if gate is not None and self.held:
            gate(self.protocol.conn, self._close_after_release)  # after the held bytes
        else:
            self.protocol.linger(self.transport)

    def pause_reading(self) -> None:
        if not self.closing and not self.transport.is_closing():
            self.transport.pause_reading()
            self.reading_paused = True

    def resume_reading(self) -> None:
        if self.reading_paused and not self.transport.is_closing():
            self.reading_paused = False
            self.transport.resume_reading()
            conn = self.protocol.conn
            if conn is not None and conn._rare is not None and conn._rare.deferred:
                # Packets of the read that paused it (Connection.packets_received): next
                # turn, not inside the caller (a subscriber's acknowledgement, say).
                self.flusher.loop.call_soon(self.protocol.resume_deferred)

    def get_write_buffer_size(self) -> int:
        return self.transport.get_write_buffer_size() + self.pending + self.held


class MQTTProtocol(asyncio.Protocol):
    # No per-connection __dict__ (issue 17: memory per idle connection).
    # (No linger timer kept: cancelling it at connection_lost only spared a close() of an
    # already closed transport, and a slot is 8 bytes on every connection.)
    __slots__ = ("broker", "flusher", "decoder", "conn", "sink")

    def __init__(self, broker: BrokerCore, flusher: Flusher) -> None:
        self.broker = broker
        self.flusher = flusher
        self.decoder = Decoder(
            None, broker.settings.max_packet_size, broker.settings.allow_control_characters
        )
        self.conn: Connection | None = None
        self.sink: BatchedSink | None = None

    def linger(self, transport: asyncio.Transport) -> None:
        """Half-close: FIN after what is queued, keep reading (and dropping) until the client
        closes or CLOSE_LINGER passes, then close (data_received ignores a closed connection)."""
        if transport.is_closing() or not transport.can_write_eof():
            transport.close()
            return
        try:
            transport.write_eof()
            sink = self.sink
            if sink is not None and sink.reading_paused:
                sink.reading_paused = False
                transport.resume_reading()
        except (OSError, RuntimeError):
            transport.close()
            return
        self.flusher.loop.call_later(CLOSE_LINGER, transport.close)  # no-op once closed

    def peer_name(self) -> str:
        """The peer's address (core.connection.PeerSource), made when asked."""
        return peer_string(self.sink.transport) if self.sink is not None else "?"

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # The sink first: ListenerProtocol takes "has a sink" as "admitted, release at close".
        self.sink = BatchedSink(transport, self.flusher, self)
        peer: Any = self if type(transport).__name__ in _STABLE_PEER else peer_string(transport)
        settings = self.broker.settings
        transport.set_write_buffer_limits(
            high=settings.output_high_water, low=settings.output_high_water // 2
        )
        self.conn = self.broker.connection_made(self.sink, peer)

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        if conn is None or conn.state == CLOSED:
            return
        size = len(data)
        self.broker.stats.bytes_received += size
        flusher = self.flusher
        flusher.reading = True
        # Small: a read of whole small packets, not the tail of a large one (its message
        # then leaves in the turn's batch, as large messages always do).
        small = size <= SMALL_READ and not self.decoder.buffered
        flusher.direct = False
        try:
            try:
                pkts = self.decoder.feed(data)
            except MQTTError as err:
                if err.packets:
                    conn.packets_received(err.packets)
                if conn.state != CLOSED:
                    conn.protocol_violation(err, self.decoder.protocol_version)
                return
            except Exception as exc:  # the decoder promises MQTTError only; stay alive anyway
                log.error("connection %s: decoder failure %r; closing", conn.peer, exc)
                log.debug("decoder failure", exc_info=True)
                conn.close(0x81)
                return
            rare = conn._rare
            if rare is not None and rare.deferred:  # older packets first
                if conn.blocked_by:  # still paused (a WebSocket message per call)
                    rare.deferred.extend(pkts)
                    return
                pkts = rare.deferred + pkts
                rare.deferred = None
            if pkts:
                # A packet that arrived alone: its answers go to the socket at once (the
                # sink's first write, BatchedSink.write). Several in one small read (a
                # pipelining client): each sink's writes leave together at end_read, one
                # send each. (Durable storage: one commit or one gated batch per turn; a
                # cluster's gate alone only for the connections it holds.)
                flusher.direct = (
                    small
                    and len(pkts) == 1
                    and flusher.commit is None
                    and (flusher.gate is None or flusher.gated is not None)
                )
                conn.packets_received(pkts)
        finally:
            flusher.end_read(small)

    def resume_deferred(self) -> None:
        """Handle the packets put aside when reading was paused mid-read."""
        conn = self.conn
        if conn is None or conn.state == CLOSED:
            return
        flusher = self.flusher
        flusher.reading = True
        flusher.direct = False
        try:
            conn.resume_deferred()
        finally:
            flusher.end_read(False)

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
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
