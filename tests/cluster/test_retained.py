"""Retained messages cluster-wide: a JetStream stream keeping one message per subject,
mirrored by every node."""

from __future__ import annotations

import time

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from .clients import Client


def _retained_on(port: int, topic_filter: str, want: int, timeout: float = 20.0) -> list:
    """Subscribe afresh until ``want`` retained messages arrive (the mirror is
    asynchronous: a retained message published on one node reaches the others' stores
    within milliseconds, not before the publisher's PUBACK)."""
    deadline = time.monotonic() + timeout
    got: list = []
    while time.monotonic() < deadline:
        cl = Client(port, v5=True)
        cl.subscribe(topic_filter, qos=1)
        got = cl.collect(want, timeout=3)
        extra = cl.quiet(0.2)
        cl.close()
        if len(got) == want and not extra:
            return got
        got += extra
        time.sleep(0.3)
    return got


def test_retained_from_any_node_thousands(cluster) -> None:
    """[MQTT-3.3.1-6] a new subscription gets the retained messages, whichever node
    they were published on; [MQTT-3.3.1-8] with RETAIN set."""
    a = cluster.add()
    b = cluster.add()
    pub = Client(a.port)
    n = 3000
    for i in range(n):
        pub.publish(f"ret/{i % 10}/{i}", str(i).encode(), qos=0, retain=True)
    pub.publish("ret/last", b"last", qos=1, retain=True)
    got = _retained_on(b.port, "ret/#", n + 1)
    assert len(got) == n + 1
    assert all(m.retain for m in got)
    assert {m.payload for m in got} == {str(i).encode() for i in range(n)} | {b"last"}
    # A node started afterwards loads them from JetStream.
    c = cluster.add()
    got = _retained_on(c.port, "ret/+/1234", 1)
    assert [(m.topic, m.payload) for m in got] == [("ret/4/1234", b"1234")]
    pub.close()


def test_empty_retained_payload_deletes_everywhere(three_nodes) -> None:
    """[MQTT-3.3.1-10/11] an empty retained payload removes the retained message on
    every node."""
    a, b, c = three_nodes
    pub = Client(a.port)
    pub.publish("del/x", b"v1", qos=1, retain=True)
    pub.publish("del/y", b"keep", qos=1, retain=True)
    assert len(_retained_on(c.port, "del/#", 2)) == 2
    other = Client(b.port)
    other.publish("del/x", b"", qos=1, retain=True)  # deleted from another node
    other.close()
    for node in (a, b, c):
        got = _retained_on(node.port, "del/#", 1)
        assert [(m.topic, m.payload) for m in got] == [("del/y", b"keep")]
    pub.close()


def test_retained_keeps_remaining_expiry(two_nodes) -> None:
    """[MQTT-3.3.2-6] the expiry sent with a retained message is what is left of it."""
    a, b = two_nodes
    pub = Client(a.port, v5=True)
    pp = Properties(PacketTypes.PUBLISH)
    pp.MessageExpiryInterval = 30
    pub.publish("exp/x", b"soon", qos=1, retain=True, props=pp)
    pp2 = Properties(PacketTypes.PUBLISH)
    pp2.MessageExpiryInterval = 1
    pub.publish("exp/gone", b"gone", qos=1, retain=True, props=pp2)
    time.sleep(2.5)
    got = _retained_on(b.port, "exp/#", 1)
    assert [m.topic for m in got] == ["exp/x"]
    assert 25 <= got[0].properties.MessageExpiryInterval <= 28
    pub.close()
