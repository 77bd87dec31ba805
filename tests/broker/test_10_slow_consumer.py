"""Slow consumers (issue 3, fan-out): a subscriber that stops reading must not block
other subscribers, and the broker's memory stays bounded."""

from __future__ import annotations

import socket
import threading
import time

from mqttfast.codec.packets import Publish


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_stalled_subscriber_does_not_block_others(broker, raw) -> None:
    """A subscriber that never reads (small receive buffer) while 300 x 64 KiB QoS 0
    messages flow: another subscriber receives every one of them, in order, in bounded
    time; the broker's RSS grows by less than 200 MiB."""
    stalled = raw()
    stalled.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect("stalled")
    stalled.subscribe("flood")
    fast = raw(client_id="fast")
    fast.subscribe("flood")
    pub = raw(client_id="pub")
    before = rss_kib(broker.pid)
    chunk = b"x" * 65536
    start = time.monotonic()
    errors: list[BaseException] = []

    def flood() -> None:  # in a thread: the test reads `fast` at the same time
        try:
            for i in range(300):
                pub.send_packet(Publish(topic="flood", payload=i.to_bytes(4, "big") + chunk))
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=flood, daemon=True)
    t.start()
    got = [int.from_bytes(p.payload[:4], "big") for p in fast.recv_publishes(300, timeout=30)]
    t.join(10)
    assert not errors, errors
    assert got == list(range(300))
    assert time.monotonic() - start < 30
    grown_mib = (rss_kib(broker.pid) - before) / 1024
    assert grown_mib < 200, f"broker RSS grew by {grown_mib:.0f} MiB"
    assert pub.is_open(timeout=5) and fast.is_open(timeout=5)


def test_stalled_qos1_subscriber_does_not_block_others(broker, raw) -> None:
    """A QoS 1 subscriber that never acknowledges (in-flight window full) does not stop
    delivery to another QoS 1 subscriber."""
    mute = raw(client_id="mute")
    mute.subscribe(("q1flood", 1))
    fast = raw(client_id="fast")
    fast.subscribe(("q1flood", 1))
    pub = raw(client_id="pub")
    for i in range(200):
        pub.publish("q1flood", str(i).encode(), qos=1)
    got = [int(p.payload) for p in fast.recv_publishes(200, timeout=20)]
    assert got == list(range(200))
