"""Cross-node latency (issue 16): the messages of a small client read go to NATS at the
end of that read (Backplane.flush_direct, counted in ``writes_direct``), with the
client output the read caused, instead of one loop turn later by the sender task;
larger reads keep the sender's one write per loop turn."""

from __future__ import annotations

import socket

import pytest

from .clients import Client
from .conftest import Cluster
from .test_interest import add_node, settled, status, wait_status

pytestmark = pytest.mark.timeout(90)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _varint(len(body)) + body


def _utf8(s: str) -> bytes:
    b = s.encode()
    return len(b).to_bytes(2, "big") + b


def test_a_lone_message_is_written_to_nats_within_the_read_that_brought_it(
    cluster: Cluster,
) -> None:
    """Each lone PUBLISH (QoS 0, and QoS 1 with the ack gate's PING in the same write) is
    one direct NATS write; each arrives on the other node with its QoS, and the QoS 1
    publisher gets its PUBACK (paho's publish waits for it)."""
    (a, aport), (b, _bport) = add_node(cluster), add_node(cluster)
    settled(aport, 1)
    sub = Client(b.port)
    sub.subscribe("lone/#", qos=1)
    wait_status(aport, lambda st: st["remote_filters"] == 1, "remote filter on a")
    pub = Client(a.port)
    before = status(aport)
    for i in range(6):
        pub.publish("lone/t", f"m{i}".encode(), qos=i % 2)
        m = sub.get(5)  # one at a time: every PUBLISH is a read of its own on node a
        assert (m.topic, m.payload, m.qos) == ("lone/t", f"m{i}".encode(), i % 2)
    after = status(aport)
    assert after["msgs_out"] - before["msgs_out"] == 6
    assert after["writes_direct"] - before["writes_direct"] == 6, (before, after)
    assert after["acks_waiting"] == 0
    for c in (sub, pub):
        c.close()


def test_a_burst_in_large_reads_goes_through_the_turn_batch(cluster: Cluster) -> None:
    """Reads larger than a small read (here every PUBLISH alone is larger) are never
    written directly: they leave in the sender's batch, all of them, in order
    [MQTT-4.6.0-5]."""
    (a, aport), (b, _bport) = add_node(cluster), add_node(cluster)
    settled(aport, 1)
    sub = Client(b.port)
    sub.subscribe("burst/#", qos=0)
    wait_status(aport, lambda st: st["remote_filters"] == 1, "remote filter on a")
    before = status(aport)
    n = 100
    with socket.create_connection(("127.0.0.1", a.port), timeout=10) as s:
        connect = _utf8("MQTT") + bytes([4, 2]) + (60).to_bytes(2, "big") + _utf8("burst-pub")
        s.sendall(_packet(0x10, connect))
        assert s.recv(4)[:1] == b"\x20"  # CONNACK
        pad = b"." * 600
        s.sendall(
            b"".join(_packet(0x30, _utf8("burst/t") + f"{i:04d}".encode() + pad) for i in range(n))
        )
        got = sub.collect(n)
        assert [m.payload[:4] for m in got] == [f"{i:04d}".encode() for i in range(n)]
        s.sendall(b"\xe0\x00")  # DISCONNECT
    after = status(aport)
    assert after["msgs_out"] - before["msgs_out"] == n
    assert after["writes_direct"] == before["writes_direct"], (before, after)
    sub.close()
