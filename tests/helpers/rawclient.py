"""A blocking raw-socket MQTT client for packet-exact end-to-end tests.

It encodes with ``mqttfast.codec.encode`` and decodes with a client-side
``mqttfast.codec.Decoder`` (``protocol_version`` set), but never interprets
anything on its own: tests see every packet the server sends, in order.
Every read is bounded by a timeout, so a silent server fails a test instead
of hanging it.
"""

from __future__ import annotations

import socket
import time
from collections import deque
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any

from mqttfast.codec import Decoder, encode
from mqttfast.codec.packets import (
    Connack,
    Connect,
    Disconnect,
    Pingreq,
    Pingresp,
    Properties,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Subscription,
    Unsuback,
    Unsubscribe,
    Will,
)

__all__ = ["RawClient", "ConnectionClosed", "NoPacket"]


class ConnectionClosed(AssertionError):
    """The server closed the connection while a packet was expected."""


class NoPacket(AssertionError):
    """No packet arrived within the timeout."""


FilterSpec = str | tuple[str, int] | Subscription


def _subscription(spec: FilterSpec, default_qos: int) -> Subscription:
    if isinstance(spec, Subscription):
        return spec
    if isinstance(spec, str):
        return Subscription(spec, default_qos)
    return Subscription(spec[0], spec[1])


class RawClient:
    """One TCP connection to ``127.0.0.1:port`` speaking MQTT ``version``
    (3 = 3.1 "MQIsdp", 4 = 3.1.1, 5 = 5.0)."""

    def __init__(
        self, port: int, version: int = 4, host: str = "127.0.0.1", connect_timeout: float = 5.0
    ) -> None:
        self.port = port
        self.version = version
        self.sock = socket.create_connection((host, port), timeout=connect_timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.decoder = Decoder(protocol_version=version)
        self.pending: deque[Any] = deque()
        self.closed_by_peer = False
        self._next_id = 0

    # -- bytes ------------------------------------------------------------
    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_packet(self, pkt: Any) -> None:
        self.sock.sendall(encode(pkt, self.version))

    def next_packet_id(self) -> int:
        self._next_id = self._next_id % 65535 + 1
        return self._next_id

    def _read_more(self, deadline: float) -> bool:
        """Read once; decode into ``pending``. False on EOF / reset."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.closed_by_peer = True
            return False
        self.pending.extend(self.decoder.feed(data))
        return True

    def recv_packet(self, timeout: float = 2.0) -> Any:
        """The next packet from the server; NoPacket / ConnectionClosed otherwise."""
        deadline = time.monotonic() + timeout
        while not self.pending:
            if self.closed_by_peer:
                raise ConnectionClosed("the server closed the connection")
            try:
                if not self._read_more(deadline):
                    raise ConnectionClosed("the server closed the connection")
            except TimeoutError:
                raise NoPacket(f"no packet from the server within {timeout}s") from None
        return self.pending.popleft()

    def expect(self, cls: type, timeout: float = 2.0) -> Any:
        """The next packet, asserted to be an instance of ``cls``."""
        pkt = self.recv_packet(timeout)
        assert isinstance(pkt, cls), f"expected {cls.__name__}, got {pkt!r}"
        return pkt

    def recv_until(self, cls: type, timeout: float = 2.0, **fields: Any) -> Any:
        """Wait for a packet of ``cls`` with the given field values, leaving
        any other packets queued (in order) for later ``recv_packet`` calls."""
        deadline = time.monotonic() + timeout
        scanned = 0
        while True:
            for i in range(scanned, len(self.pending)):
                pkt = self.pending[i]
                if isinstance(pkt, cls) and all(getattr(pkt, k) == v for k, v in fields.items()):
                    del self.pending[i]
                    return pkt
            scanned = len(self.pending)
            if self.closed_by_peer:
                raise ConnectionClosed(f"closed while waiting for {cls.__name__} {fields}")
            try:
                if not self._read_more(deadline):
                    raise ConnectionClosed(f"closed while waiting for {cls.__name__} {fields}")
            except TimeoutError:
                raise NoPacket(
                    f"no {cls.__name__} {fields} within {timeout}s; "
                    f"other packets: {list(self.pending)!r}"
                ) from None

    def expect_no_packet(self, timeout: float = 0.5) -> None:
        """Assert the server sends nothing (and stays connected) for ``timeout`` s."""
        if self.pending:
            raise AssertionError(f"unexpected packet {self.pending[0]!r}")
        try:
            alive = self._read_more(time.monotonic() + timeout)
        except TimeoutError:
            return
        if not alive:
            raise ConnectionClosed("the server closed the connection")
        raise AssertionError(f"unexpected packet(s) {list(self.pending)!r}")

    def expect_closed(self, timeout: float = 2.0) -> int | None:
        """Assert the server closes the connection within ``timeout`` s.

        A DISCONNECT before the close is allowed (MQTT 5) and its reason code
        returned; any other packet, or a connection still open, fails.
        """
        deadline = time.monotonic() + timeout
        reason: int | None = None
        while True:
            while self.pending:
                pkt = self.pending.popleft()
                if isinstance(pkt, Disconnect) and reason is None:
                    reason = pkt.reason_code
                    continue
                raise AssertionError(f"expected the connection to close, got {pkt!r}")
            if self.closed_by_peer:
                return reason
            try:
                self._read_more(deadline)
            except TimeoutError:
                raise AssertionError(
                    f"the server did not close the connection within {timeout}s"
                ) from None

    def is_open(self, timeout: float = 0.3) -> bool:
        """True if the connection survives a PINGREQ round trip."""
        try:
            self.send_packet(Pingreq())
            self.recv_until(Pingresp, timeout=timeout)
            return True
        except (ConnectionClosed, NoPacket, OSError):
            return False

    # -- MQTT helpers -----------------------------------------------------
    def connect(
        self,
        client_id: str = "",
        clean_start: bool = True,
        keep_alive: int = 60,
        will: Will | None = None,
        username: str | None = None,
        password: bytes | str | None = None,
        properties: Properties | None = None,
        expect_rc: int | None = 0,
        timeout: float = 2.0,
    ) -> Connack:
        """Send CONNECT and return the CONNACK (asserting ``expect_rc`` unless None)."""
        if isinstance(password, str):
            password = password.encode()
        self.send_packet(
            Connect(
                client_id=client_id,
                protocol_version=self.version,
                clean_start=clean_start,
                keep_alive=keep_alive,
                username=username,
                password=password,
                will=will,
                properties=properties,
            )
        )
        connack = self.expect(Connack, timeout)
        if expect_rc is not None:
            assert connack.reason_code == expect_rc, f"CONNACK {connack!r}, expected {expect_rc}"
        return connack

    def subscribe(
        self,
        *filters: FilterSpec | Sequence[FilterSpec],
        qos: int = 0,
        packet_id: int | None = None,
        properties: Properties | None = None,
        timeout: float = 2.0,
    ) -> Suback:
        """SUBSCRIBE to filters (``"a/b"``, ``("a/b", 1)`` or Subscription) and
        return the SUBACK with the same packet id."""
        specs: list[FilterSpec] = []
        for f in filters:
            if isinstance(f, list):
                specs.extend(f)
            else:
                specs.append(f)
        pid = packet_id if packet_id is not None else self.next_packet_id()
        self.send_packet(
            Subscribe(
                packet_id=pid,
                subscriptions=[_subscription(s, qos) for s in specs],
                properties=properties,
            )
        )
        return self.recv_until(Suback, timeout, packet_id=pid)

    def unsubscribe(
        self,
        *filters: str,
        packet_id: int | None = None,
        properties: Properties | None = None,
        timeout: float = 2.0,
    ) -> Unsuback:
        pid = packet_id if packet_id is not None else self.next_packet_id()
        self.send_packet(
            Unsubscribe(packet_id=pid, topic_filters=list(filters), properties=properties)
        )
        return self.recv_until(Unsuback, timeout, packet_id=pid)

    def publish(
        self,
        topic: str,
        payload: bytes | str = b"",
        qos: int = 0,
        retain: bool = False,
        dup: bool = False,
        packet_id: int | None = None,
        properties: Properties | None = None,
        complete: bool = True,
        timeout: float = 2.0,
    ) -> Any:
        """PUBLISH and, by default, finish the QoS flow.

        QoS 0 returns None. QoS 1 returns the PUBACK. QoS 2 returns the
        PUBCOMP (after PUBREC/PUBREL), or the PUBREC with ``complete=False``.
        Packets of other flows that arrive meanwhile stay queued.
        """
        if isinstance(payload, str):
            payload = payload.encode()
        pid = 0 if qos == 0 else (packet_id if packet_id is not None else self.next_packet_id())
        self.send_packet(
            Publish(
                topic=topic,
                payload=payload,
                qos=qos,
                retain=retain,
                dup=dup,
                packet_id=pid,
                properties=properties,
            )
        )
        if qos == 0:
            return None
        if qos == 1:
            return self.recv_until(Puback, timeout, packet_id=pid)
        pubrec = self.recv_until(Pubrec, timeout, packet_id=pid)
        if not complete:
            return pubrec
        self.send_packet(Pubrel(packet_id=pid))
        return self.recv_until(Pubcomp, timeout, packet_id=pid)

    def recv_publish(self, timeout: float = 2.0, ack: bool = True) -> Publish:
        """The next PUBLISH (other packets stay queued); QoS 1 is PUBACKed and
        QoS 2 is PUBRECed / PUBCOMPed when ``ack`` is set."""
        pub = self.recv_until(Publish, timeout)
        if ack:
            self.ack(pub, timeout)
        return pub

    def ack(self, pub: Publish, timeout: float = 2.0) -> None:
        if pub.qos == 1:
            self.send_packet(Puback(packet_id=pub.packet_id))
        elif pub.qos == 2:
            self.send_packet(Pubrec(packet_id=pub.packet_id))
            self.recv_until(Pubrel, timeout, packet_id=pub.packet_id)
            self.send_packet(Pubcomp(packet_id=pub.packet_id))

    def recv_publishes(self, count: int, timeout: float = 3.0, ack: bool = True) -> list[Publish]:
        deadline = time.monotonic() + timeout
        return [
            self.recv_publish(max(0.01, deadline - time.monotonic()), ack) for _ in range(count)
        ]

    def ping(self, timeout: float = 2.0) -> Pingresp:
        self.send_packet(Pingreq())
        return self.recv_until(Pingresp, timeout)

    def disconnect(
        self, reason_code: int = 0, properties: Properties | None = None, wait: float = 1.0
    ) -> None:
        """Send DISCONNECT, wait (up to ``wait`` s) for the server to close its side,
        so the server has processed it before the test goes on, then close."""
        try:
            self.send_packet(Disconnect(reason_code=reason_code, properties=properties))
            deadline = time.monotonic() + wait
            while not self.closed_by_peer and time.monotonic() < deadline:
                try:
                    self._read_more(deadline)
                except (TimeoutError, OSError):
                    break
        except OSError:
            pass
        finally:
            self.close()

    def close(self) -> None:
        """Close the socket without DISCONNECT (ungraceful, as far as the server knows)."""
        try:
            self.sock.close()
        except OSError:
            pass

    def send_packets(self, pkts: Iterable[Any]) -> None:
        """Encode ``pkts`` and send them in one write (one burst, as a fast client does)."""
        self.sock.sendall(b"".join(encode(p, self.version) for p in pkts))

    def expect_refused_connect(self, timeout: float = 2.0) -> int | None:
        """After a CONNECT the server must refuse it: returns the CONNACK reason code, or
        None when it closed without a CONNACK; either way the connection must end and no
        other packet may arrive."""
        deadline = time.monotonic() + timeout
        code: int | None = None
        while True:
            while self.pending:
                pkt = self.pending.popleft()
                if isinstance(pkt, Connack) and code is None:
                    assert pkt.reason_code != 0, f"CONNECT accepted: {pkt!r}"
                    code = pkt.reason_code
                    continue
                raise AssertionError(f"expected a refusal and a close, got {pkt!r}")
            if self.closed_by_peer:
                return code
            try:
                self._read_more(deadline)
            except TimeoutError:
                raise AssertionError(
                    f"the server did not close the connection within {timeout}s"
                ) from None

    def __enter__(self) -> RawClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<RawClient port={self.port} v{self.version}>"


def drain(clients: Iterable[RawClient]) -> None:
    for c in clients:
        c.pending.clear()
