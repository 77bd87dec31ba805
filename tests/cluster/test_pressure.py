"""Back-pressure across nodes (mqttfast/cluster/pressure.py): a subscriber that reads
slower than a publisher on another node publishes pauses that publisher, as a
subscriber on the same node would, instead of having its queue overflow and
acknowledged QoS 1 messages dropped. Real nats-server, real node processes, paho."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from tests.helpers.broker import free_port

from .clients import Client, sync
from .test_failure import _metrics

pytestmark = pytest.mark.timeout(90)

COUNT = 600


def _stat(node: Any, figure: str) -> int:
    """$SYS/broker/cluster/<figure> of ``node`` (republished every 2 s)."""
    c = Client(node.port)
    try:
        c.subscribe(f"$SYS/broker/cluster/{figure}", qos=0)
        return int(c.get(timeout=5).payload)
    finally:
        c.close()


def test_a_slow_subscriber_pauses_a_publisher_on_another_node(cluster) -> None:
    """[MQTT-4.3.2-2] (a PUBACK transfers ownership: nothing acknowledged may be lost):
    600 QoS 1 messages published on node 1 as fast as paho sends them (20 in flight),
    to a subscriber on node 2 that reads far slower, with a queue of at most 200
    messages there (paused at 100). Every message arrives, once, in order [MQTT-4.6.0-5];
    node 2 dropped none; node 1 paused its publisher on node 2's request. Before
    pressure.py node 2 dropped most of them (queue full)."""
    mport = free_port()
    a = cluster.add(["--metrics-port", str(mport)])
    b = cluster.add(["--max-queued-messages", "200", "--max-inflight", "10"])
    sub = Client(b.port, client_id="slow-sub")
    sub.subscribe("bp/#", qos=1)
    pub = Client(a.port, client_id="fast-pub")  # paho: 20 QoS 1 messages in flight
    sync(sub, pub)
    got: list[bytes] = []

    def slow(_c: Any, _u: Any, m: Any) -> None:
        time.sleep(0.005)
        got.append(m.payload)

    sub.c.on_message = slow
    infos = [pub.c.publish("bp/x", str(i).encode(), qos=1) for i in range(COUNT)]
    deadline = time.monotonic() + 45
    for info in infos:
        info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        assert info.is_published(), "not every PUBLISH was acknowledged"
    while len(got) < COUNT and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    assert got == [str(i).encode() for i in range(COUNT)], (len(got), len(set(got)))
    assert _stat(b, "remote_pauses_sent") > 0
    assert _stat(a, "remote_pauses_applied") > 0
    assert re.search(
        r"^mqttfast_cluster_remote_pauses_applied_total\S* [1-9]", _metrics(mport), re.M
    )
    assert "dropped" not in b.log_text()
    sub.close()
    pub.close()
