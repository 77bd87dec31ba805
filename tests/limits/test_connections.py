"""limits.max_connections (all listeners) and listener[].max_connections (one listener),
and limits.connect_timeout. Over a connection limit the socket is closed before any
MQTT byte is read (no CONNACK, as mosquitto); clients already connected are untouched
and a freed slot is usable at once."""

from __future__ import annotations

import time

from mqttfast.codec.packets import Connect
from tests.helpers.broker import free_port


def _refused(c) -> None:
    """Closed by the broker without any packet, even when a CONNECT is sent."""
    try:
        c.send_packet(Connect(client_id="late", protocol_version=4))
    except OSError:
        return
    assert c.expect_closed(timeout=3.0) is None


def test_max_connections_global(limits_broker, clients):
    broker = limits_broker({"max_connections": 3})
    sub = clients(broker.port, "g-sub")
    sub.subscribe(("g/t", 1))
    pub = clients(broker.port, "g-pub")
    spare = clients(broker.port, "g-spare")
    _refused(clients(broker.port))
    assert broker.wait_for_log("max_connections reached")
    assert broker.wait_metric("mqttfast_connections_refused", 1) == 1
    # The connected ones keep exchanging messages.
    for i in range(3):
        pub.publish("g/t", str(i).encode(), qos=1)
        assert sub.recv_publish().payload == str(i).encode()
    spare.disconnect()
    time.sleep(0.2)
    again = clients(broker.port, "g-again")  # the freed slot, at once
    assert again.is_open()
    _refused(clients(broker.port))
    assert sub.is_open() and pub.is_open()


def test_max_connections_per_listener(limits_broker, clients):
    second = free_port()
    broker = limits_broker(
        {},
        f"""
[[listener]]
port = 1883
address = "127.0.0.1"

[[listener]]
port = {second}
address = "127.0.0.1"
max_connections = 1
""",
    )
    first = clients(second, "l-first")
    _refused(clients(second))
    assert broker.wait_metric("mqttfast_connections_refused", 1) == 1
    # The other listener is not limited, and routes to the client of the full one.
    others = [clients(broker.port, f"main-{i}") for i in range(4)]
    first.subscribe(("l/t", 1))
    others[0].publish("l/t", b"across", qos=1)
    assert first.recv_publish().payload == b"across"
    assert all(c.is_open() for c in others)
    first.disconnect()
    time.sleep(0.2)
    assert clients(second, "l-again").is_open()


def test_connect_timeout_closes_a_silent_socket(limits_broker, clients, bystanders):
    """No CONNECT within limits.connect_timeout: closed without CONNACK; others unaffected."""
    broker = limits_broker({"connect_timeout": 1.0})
    others = bystanders(broker.port)
    silent = clients(broker.port)
    t0 = time.monotonic()
    for _ in range(3):
        others.exchange()
    assert silent.expect_closed(timeout=4.0) is None
    elapsed = time.monotonic() - t0
    assert 0.8 <= elapsed < 3.5, elapsed
    assert broker.wait_metric("mqttfast_connect_timeouts", 1) == 1
    others.exchange()
    # A client connected longer than the timeout is not affected by it.
    assert others.pub.is_open() and others.sub.is_open()


def test_connect_timeout_partial_connect(limits_broker, clients):
    """Half a CONNECT is not a CONNECT: closed at the timeout all the same."""
    broker = limits_broker({"connect_timeout": 1.0})
    c = clients(broker.port)
    c.send(b"\x10\x20\x00\x04MQ")
    assert c.expect_closed(timeout=4.0) is None
    assert broker.wait_metric("mqttfast_connect_timeouts", 1) == 1
