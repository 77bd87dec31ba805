"""$SYS topics (issue 3): mosquitto-compatible names, published every --sys-interval s."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.broker_args("--sys-interval", "1")

# Names that mosquitto also publishes (mosquitto's $SYS documentation).
EXPECTED = [
    "$SYS/broker/version",
    "$SYS/broker/uptime",
    "$SYS/broker/clients/connected",
    "$SYS/broker/clients/total",
    "$SYS/broker/messages/received",
    "$SYS/broker/messages/sent",
    "$SYS/broker/bytes/received",
    "$SYS/broker/bytes/sent",
    "$SYS/broker/subscriptions/count",
    "$SYS/broker/retained messages/count",
    "$SYS/broker/load/messages/received/1min",
]


def collect(c, seconds: float) -> dict[str, bytes]:
    """Latest payload per $SYS topic seen during ``seconds``."""
    seen: dict[str, bytes] = {}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            p = c.recv_publish(timeout=max(0.05, end - time.monotonic()))
        except AssertionError:
            break
        seen[p.topic] = p.payload
    return seen


def test_sys_topics_published_with_mosquitto_names(raw) -> None:
    """$SYS/broker/... topics with mosquitto's names are published (explicit '$SYS/#'
    subscription; [MQTT-4.7.2-1] is why '#' alone would not see them)."""
    c = raw(client_id="sysmon")
    c.subscribe("$SYS/#")
    seen = collect(c, 3.5)
    missing = [t for t in EXPECTED if t not in seen]
    assert not missing, f"missing $SYS topics: {missing}; got {sorted(seen)}"
    assert int(seen["$SYS/broker/clients/connected"].split()[0]) >= 1
    assert seen["$SYS/broker/version"].strip()


def test_sys_counters_follow_traffic(raw) -> None:
    """$SYS/broker/messages/received grows with the messages clients publish."""
    c = raw(client_id="sysmon")
    c.subscribe("$SYS/broker/messages/received")
    before = int(c.recv_publish(timeout=3).payload.split()[0])
    pub = raw(client_id="pub")
    for _i in range(25):
        pub.publish("traffic", b"x", qos=1)
    deadline = time.monotonic() + 4
    after = before
    while time.monotonic() < deadline and after < before + 25:
        after = int(c.recv_publish(timeout=3).payload.split()[0])
    assert after >= before + 25


def test_sys_clients_connected_counts(raw) -> None:
    """$SYS/broker/clients/connected reflects the connected clients."""
    [raw(client_id=f"cnt{i}") for i in range(4)]
    c = raw(client_id="sysmon")
    c.subscribe("$SYS/broker/clients/connected")
    deadline = time.monotonic() + 4
    value = 0
    while time.monotonic() < deadline and value != 5:
        value = int(c.recv_publish(timeout=3).payload.split()[0])
    assert value == 5
