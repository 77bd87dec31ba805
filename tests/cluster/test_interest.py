"""Interest sharing (mqttfast/cluster/fastpath.py): a node publishes a message to NATS
only when another node holds a matching filter, and a SUBACK on one node means a
publish started afterwards on any other node reaches that subscriber."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import pytest

from tests.helpers.broker import free_port

from .clients import Client
from .conftest import Cluster, Node

pytestmark = pytest.mark.timeout(90)


def add_node(cluster: Cluster) -> tuple[Node, int]:
    aport = free_port()
    return cluster.add(["--admin-port", str(aport), "--admin-token", "tok"]), aport


def status(aport: int) -> dict[str, Any]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{aport}/api/stats", headers={"Authorization": "Bearer tok"}
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())["cluster"]


def wait_status(aport: int, check: Any, what: str, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    st: dict[str, Any] = {}
    while time.monotonic() < deadline:
        st = status(aport)
        if check(st):
            return st
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached in {timeout} s: {st}")


def settled(aport: int, peers: int) -> dict[str, Any]:
    """Until the node knows ``peers`` other nodes' filters and no longer sends everything."""
    return wait_status(
        aport,
        lambda st: st["interest_peers"] == peers and not st["interest_send_all"],
        f"interest view with {peers} peer(s)",
    )


def test_no_remote_interest_means_nothing_published_to_nats(cluster: Cluster) -> None:
    """Local-only traffic never leaves the node (counted in msgs_local_only, msgs_out
    unchanged); once another node subscribes, the same topic goes to NATS."""
    (a, aport), (b, _bport) = add_node(cluster), add_node(cluster)
    settled(aport, 1)
    sub_a = Client(a.port)
    sub_a.subscribe("local/t", qos=1)
    pub = Client(a.port)
    before = status(aport)
    for i in range(200):
        pub.publish("local/t", f"m{i}".encode(), qos=1)
    assert [m.payload for m in sub_a.collect(200)] == [f"m{i}".encode() for i in range(200)]
    after = status(aport)
    assert after["msgs_out"] == before["msgs_out"], (before, after)
    assert after["msgs_local_only"] - before["msgs_local_only"] == 200

    sub_b = Client(b.port)
    sub_b.subscribe("local/#", qos=1)  # SUBACK: node a knows it now
    wait_status(aport, lambda st: st["remote_filters"] == 1, "remote filter on a")
    for i in range(10):
        pub.publish("local/t", f"r{i}".encode(), qos=1)
    assert [m.payload for m in sub_b.collect(10)] == [f"r{i}".encode() for i in range(10)]
    assert status(aport)["msgs_out"] - after["msgs_out"] == 10
    for c in (sub_a, sub_b, pub):
        c.close()


def test_subscribe_acknowledged_right_before_a_publish_on_another_node(cluster: Cluster) -> None:
    """The SUBACK waits until the other nodes confirmed the new interest: a QoS 1 publish
    on another node started right after the SUBACK is delivered, every time."""
    (a, aport), (b, bport) = add_node(cluster), add_node(cluster)
    settled(aport, 1)
    settled(bport, 1)
    pub = Client(a.port)
    sub = Client(b.port)
    for i in range(40):
        topic = f"race/{i}/x"
        sub.subscribe(topic, qos=1)
        pub.publish(topic, f"m{i}".encode(), qos=1)
        m = sub.get(5)
        assert (m.topic, m.payload) == (topic, f"m{i}".encode())
    assert sub.quiet(0.3) == []
    assert status(aport)["interest_send_all"] is False  # the view decided, not a fallback
    pub.close()
    sub.close()


def test_a_node_started_later_learns_the_interest_of_the_others(cluster: Cluster) -> None:
    """Filters held before a node starts reach it (snapshot on start); it forwards only
    what is wanted."""
    b, _bport = add_node(cluster)
    sub = Client(b.port)
    sub.subscribe("early/+", qos=1)
    c, cport = add_node(cluster)
    pub = Client(c.port)
    pub.publish("early/1", b"during-startup", qos=1)  # c still sends everything here
    assert sub.get(5).payload == b"during-startup"
    st = settled(cport, 1)
    assert st["remote_filters"] == 1
    pub.publish("early/2", b"known", qos=1)
    pub.publish("other/2", b"nobody", qos=1)
    assert sub.get(5).payload == b"known"
    st = status(cport)
    assert st["msgs_local_only"] >= 1
    assert sub.quiet(0.3) == []
    for cl in (sub, pub):
        cl.close()


def test_interest_of_a_node_that_leaves_or_dies_is_dropped(cluster: Cluster) -> None:
    """A node stopping says goodbye (its filters dropped at once); a killed node's filters
    go when its heartbeat stops (6 s)."""
    a, aport = add_node(cluster)
    b, _ = add_node(cluster)
    c, _ = add_node(cluster)
    settled(aport, 2)
    sb, sc = Client(b.port), Client(c.port)
    sb.subscribe("gone/b", qos=0)
    sc.subscribe("gone/c", qos=0)
    wait_status(aport, lambda st: st["remote_filters"] == 2, "two remote filters")
    sb.close()
    b.stop()
    wait_status(aport, lambda st: st["remote_filters"] == 1, "b's filter dropped", 5)
    assert c.proc is not None
    c.proc.kill()
    c.proc.wait(5)
    st = wait_status(aport, lambda st: st["remote_filters"] == 0, "c's filter dropped", 15)
    assert st["interest_peers"] == 0
    pub = Client(a.port)
    before = st["msgs_out"]
    pub.publish("gone/c", b"x", qos=1)
    assert status(aport)["msgs_out"] == before
    pub.close()
