"""limits.max_publish_rate: per-client token bucket; over it the broker stops reading
from that client's socket until the bucket refills (back-pressure, nothing dropped,
nobody disconnected), and counts each pause."""

from __future__ import annotations

import time

from mqttfast.codec import encode
from mqttfast.codec.packets import Puback, Publish

RATE = 20


def test_publish_rate_pauses_the_publisher_without_loss(limits_broker, clients, bystanders):
    broker = limits_broker({"max_publish_rate": float(RATE)})
    others = bystanders(broker.port)
    sub = clients(broker.port, "rate-sub")
    sub.subscribe(("rate/t", 1))
    pub = clients(broker.port, "rate-pub")
    n = 3 * RATE  # a burst of RATE passes, the rest is debt: about 2 s of pause
    t0 = time.monotonic()
    # One write, so the broker reads the whole burst at once (one pause, a known debt).
    pub.send(
        b"".join(encode(Publish(topic="rate/t", payload=str(i).encode()), 4) for i in range(n))
    )
    # The packet that empties the bucket is handled (the bucket goes into debt); the rest
    # of that read waits unhandled (Connection.deferred), what the client sends after it
    # in its socket, until the debt is paid.
    assert broker.wait_metric("mqttfast_publish_throttled", 1) >= 1
    pid = pub.next_packet_id()
    pub.send_packet(Publish(topic="rate/t", payload=b"last", qos=1, packet_id=pid))
    pub.expect_no_packet(timeout=0.5)  # not read yet: no PUBACK

    # While the publisher is paused, unrelated clients are not slowed down.
    for _ in range(3):
        assert others.exchange() < 0.5

    ack = pub.recv_until(Puback, timeout=6.0, packet_id=pid)
    elapsed = time.monotonic() - t0
    assert ack.reason_code == 0
    # (n + 1 - RATE) / RATE seconds of debt at least; resumed on a 0.5 s tick.
    assert elapsed >= (n - RATE) / RATE * 0.9, elapsed
    assert elapsed < 5.0, elapsed
    # Nothing dropped: every message arrives, in order; the publisher is still connected.
    got = sub.recv_publishes(n + 1, timeout=5.0)
    assert [p.payload for p in got] == [str(i).encode() for i in range(n)] + [b"last"]
    assert pub.is_open()
    assert broker.metric("mqttfast_messages_dropped", reason="queue_full") == 0
    others.exchange()


def test_publish_rate_counter_in_sys(limits_broker, clients):
    broker = limits_broker({"max_publish_rate": 5.0})
    watcher = clients(broker.port, "sys-watch")
    pub = clients(broker.port, "rate-pub")
    for _i in range(30):
        pub.publish("rate/x", b"x", qos=0)
    assert broker.wait_metric("mqttfast_publish_throttled", 1) >= 1
    watcher.subscribe("$SYS/broker/publish/throttled")
    deadline = time.monotonic() + 5
    value = 0
    while value < 1 and time.monotonic() < deadline:
        value = int(watcher.recv_publish(timeout=2.0).payload)
    assert value >= 1


def test_publish_rate_under_the_limit_is_never_paused(limits_broker, clients):
    broker = limits_broker({"max_publish_rate": 100.0})
    pub = clients(broker.port, "slow-pub")
    for _ in range(20):  # 20 QoS 1 in well over 0.2 s: inside the 100-message burst
        pub.publish("rate/y", b"y", qos=1)
    assert broker.metric("mqttfast_publish_throttled") == 0
