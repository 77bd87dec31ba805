"""Connection limits: per listener (``listener.max_connections``) and over all
listeners (``limits.max_connections``). Over a limit the socket is accepted and
closed at once, before any MQTT byte is read (as mosquitto does); the clients
already connected are not disturbed and a freed slot is usable again."""

from __future__ import annotations

import socket
import time

import pytest

from tests.helpers.rawclient import RawClient

from .support import free_port

pytestmark = pytest.mark.timeout(60)


def closed_without_answer(port: int) -> bool:
    """Connect, send CONNECT, and report whether the server closed without a CONNACK."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        try:
            s.sendall(b"\x10\x0f\x00\x04MQTT\x04\x02\x00\x3c\x00\x03xyz")
            data = s.recv(16)
        except (ConnectionResetError, BrokenPipeError):
            return True
        return data == b""


def wait_until(pred, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_per_listener_limit(start_broker) -> None:
    limited, free = free_port(), free_port()
    b = start_broker(
        f'[[listener]]\nport = {limited}\naddress = "127.0.0.1"\nmax_connections = 2\n'
        f'[[listener]]\nport = {free}\naddress = "127.0.0.1"\n'
        '[persistence]\nmode = "off"\n',
        wait=[free],
    )
    # (the readiness probe of `wait` is not used for the limited port: it would take a slot)
    a = RawClient(limited)
    a.connect("a")
    c2 = RawClient(limited)
    c2.connect("b")
    assert closed_without_answer(limited)
    b.wait_for_log("max_connections reached")
    # The other listener has no limit; the connected clients still work.
    with RawClient(free) as other:
        other.connect("other")
    assert a.is_open() and c2.is_open()
    c2.close()
    assert wait_until(lambda: not closed_without_answer_probe(limited))
    a.close()


def closed_without_answer_probe(port: int) -> bool:
    try:
        c = RawClient(port)
        try:
            c.connect("probe", timeout=1.0)
            return False
        finally:
            c.close()
    except (AssertionError, OSError):
        return True


def test_global_limit_over_all_listeners(start_broker) -> None:
    p1, p2 = free_port(), free_port()
    start_broker(
        f'[[listener]]\nport = {p1}\naddress = "127.0.0.1"\n'
        f'[[listener]]\nport = {p2}\naddress = "127.0.0.1"\n'
        '[limits]\nmax_connections = 2\n[persistence]\nmode = "off"\n',
        wait=[],
    )
    assert wait_until(lambda: _tcp_open(p1) and _tcp_open(p2), 20)
    time.sleep(0.2)  # the probe sockets above are gone
    a = RawClient(p1)
    a.connect("a")
    c = RawClient(p2)
    c.connect("c")
    assert closed_without_answer(p1)
    assert closed_without_answer(p2)
    assert a.is_open() and c.is_open()
    a.close()
    c.close()


def _tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
