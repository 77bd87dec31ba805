"""limits.max_packet_size, limits.max_inflight, limits.max_queued_messages and
limits.max_queued_bytes, each hit by one client while a bystander pair keeps
exchanging messages."""

from __future__ import annotations

import time

from mqttfast.codec import encode
from mqttfast.codec.packets import Puback, Publish


def test_max_packet_size_v5_disconnect_0x95(limits_broker, clients, bystanders):
    """[MQTT-3.2.2-15]-side: a packet over the server's limit is a Packet too large
    (4.13.1): v5 gets DISCONNECT 0x95 and is closed, counted as a protocol error."""
    broker = limits_broker({"max_packet_size": 1024})
    others = bystanders(broker.port, version=5)
    c = clients(broker.port, "big5", version=5)
    c.publish("p/t", b"x" * 900, qos=1)  # under: accepted
    c.send_packet(Publish(topic="p/t", payload=b"x" * 2000, qos=0))
    assert c.expect_closed() == 0x95
    assert broker.wait_metric("mqttfast_protocol_errors", 1) == 1
    others.exchange()


def test_max_packet_size_311_closes(limits_broker, clients, bystanders):
    broker = limits_broker({"max_packet_size": 1024})
    others = bystanders(broker.port)
    c = clients(broker.port, "big4")
    c.send_packet(Publish(topic="p/t", payload=b"x" * 2000, qos=1, packet_id=1))
    assert c.expect_closed() is None
    assert broker.wait_metric("mqttfast_protocol_errors", 1) == 1
    others.exchange()


def test_max_inflight_window_never_exceeded(limits_broker, clients, bystanders):
    """A subscriber that does not acknowledge gets at most max_inflight unacknowledged
    QoS 1 messages; each PUBACK lets exactly one more through, in order (4.6)."""
    broker = limits_broker({"max_inflight": 3})
    others = bystanders(broker.port)
    sub = clients(broker.port, "win-sub")
    sub.subscribe(("w/t", 1))
    pub = clients(broker.port, "win-pub")
    for i in range(10):
        pub.publish("w/t", str(i).encode(), qos=1)
    first = sub.recv_publishes(3, ack=False)
    assert [p.payload for p in first] == [b"0", b"1", b"2"]
    sub.expect_no_packet(0.5)
    assert broker.metric("mqttfast_inflight_messages") == 3
    assert broker.metric("mqttfast_queued_messages") == 7
    others.exchange()  # the bystanders have their own windows
    got = first
    while len(got) < 10:
        sub.ack(got[len(got) - 3 if len(got) >= 3 else 0])  # ack the oldest unacked
        nxt = sub.recv_publish(ack=False)
        got.append(nxt)
        sub.expect_no_packet(0.05)  # one ack, one new message: never more than 3 open
    assert [p.payload for p in got] == [str(i).encode() for i in range(10)]


def _offline_session(clients, port, cid):
    c = clients(port, cid, clean_start=False)
    c.subscribe(("q/t", 1))
    c.disconnect()


def test_max_queued_messages_drops_the_newest(limits_broker, clients, bystanders):
    """An offline session queues at most max_queued_messages QoS 1 messages; the newer
    ones are dropped and counted (mqttfast_messages_dropped{reason=queue_full})."""
    broker = limits_broker({"max_queued_messages": 3})
    others = bystanders(broker.port)
    _offline_session(clients, broker.port, "q-sub")
    pub = clients(broker.port, "q-pub")
    for i in range(10):
        pub.publish("q/t", str(i).encode(), qos=1)
    assert broker.wait_metric("mqttfast_messages_dropped", 7, reason="queue_full") == 7
    others.exchange()
    back = clients(broker.port, "q-sub", clean_start=False)
    got = back.recv_publishes(3)
    assert [p.payload for p in got] == [b"0", b"1", b"2"]
    back.expect_no_packet(0.5)


def test_a_burst_in_one_read_waits_for_an_online_subscriber(limits_broker, clients, bystanders):
    """A publisher's burst of QoS 1 messages arriving in one read (a client flushing its
    offline queue at reconnect) toward an online subscriber with a short queue: the
    publisher is paused from the packet that filled half the queue, the rest of the read
    waits unacknowledged, and every message arrives, in order; none is dropped."""
    broker = limits_broker({"max_queued_messages": 40, "max_inflight": 5})
    others = bystanders(broker.port)
    sub = clients(broker.port, "burst-sub")
    sub.subscribe(("b/t", 1))
    pub = clients(broker.port, "burst-pub")
    n = 1000
    pub.send(
        b"".join(
            encode(Publish(topic="b/t", payload=str(i).encode(), qos=1, packet_id=i + 1), 4)
            for i in range(n)
        )
    )
    got = sub.recv_publishes(n, timeout=20.0)  # acknowledging each as it comes
    assert [p.payload for p in got] == [str(i).encode() for i in range(n)]
    acked = [pub.expect(Puback, timeout=5.0).packet_id for _ in range(n)]
    assert acked == list(range(1, n + 1))
    assert broker.metric("mqttfast_messages_dropped", reason="queue_full") == 0
    others.exchange()


def test_max_queued_messages_v5_publisher_told_quota_exceeded(limits_broker, clients):
    """Every matching queue full: the v5 publisher gets PUBACK 0x97 (3.4.2.1)."""
    broker = limits_broker({"max_queued_messages": 1})
    _offline_session(clients, broker.port, "q5-sub")
    pub = clients(broker.port, "q5-pub", version=5)
    assert pub.publish("q/t", b"a", qos=1).reason_code == 0
    assert pub.publish("q/t", b"b", qos=1).reason_code == 0x97
    assert broker.wait_metric("mqttfast_messages_dropped", 1, reason="queue_full") == 1


def test_max_queued_bytes_drops_the_newest(limits_broker, clients, bystanders):
    broker = limits_broker({"max_queued_bytes": 100})
    others = bystanders(broker.port)
    _offline_session(clients, broker.port, "qb-sub")
    pub = clients(broker.port, "qb-pub")
    for i in range(5):
        pub.publish("q/t", bytes([48 + i]) * 40, qos=1)  # 2 x 40 fit in 100, the 3rd not
    assert broker.wait_metric("mqttfast_messages_dropped", 3, reason="queue_full") == 3
    assert broker.metric("mqttfast_queued_bytes") == 80
    others.exchange()
    back = clients(broker.port, "qb-sub", clean_start=False)
    got = back.recv_publishes(2)
    assert [p.payload for p in got] == [b"0" * 40, b"1" * 40]
    back.expect_no_packet(0.5)


def test_queue_drops_show_in_sys(limits_broker, clients):
    broker = limits_broker({"max_queued_messages": 1})
    _offline_session(clients, broker.port, "qs-sub")
    pub = clients(broker.port, "qs-pub")
    for _i in range(4):
        pub.publish("q/t", b"m", qos=1)
    watcher = clients(broker.port, "sys-watch")
    watcher.subscribe("$SYS/broker/publish/messages/dropped")
    deadline = time.monotonic() + 5
    value = 0
    while value < 3 and time.monotonic() < deadline:
        value = int(watcher.recv_publish(timeout=2.0).payload)
    assert value == 3
