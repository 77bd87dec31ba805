"""limits.max_topic_length and limits.max_topic_levels: topics and filters the broker
accepts. Neither is a malformed packet, so v5 is told with a reason code where the
packet has an acknowledgement (3.4.2.1 0x90 Topic Name invalid, 3.9.3 0x8F Topic Filter
invalid); 3.1.1 SUBACK has only 0x80 [MQTT-3.9.3-2]."""

from __future__ import annotations

import time

from mqttfast.codec.packets import Publish

LIMIT = 32
LONG = "t/" + "x" * (LIMIT - 1)  # LIMIT + 1 bytes
OK = "t/" + "x" * (LIMIT - 2)  # exactly LIMIT bytes
WIDE = "t/" + "é" * (LIMIT // 2)  # LIMIT // 2 + 2 characters, but LIMIT + 2 bytes


def test_topic_length_v5_qos1_qos2_refused_with_0x90_and_stays_connected(
    limits_broker, clients, bystanders
):
    """3.4.2.1 / 3.5.2.1: PUBACK / PUBREC 0x90; the message goes nowhere."""
    broker = limits_broker({"max_topic_length": LIMIT})
    others = bystanders(broker.port, version=5)
    sub = clients(broker.port, "len-sub", version=5)
    sub.subscribe(("t/#", 1))
    pub = clients(broker.port, "len-pub", version=5)
    assert pub.publish(LONG, b"a", qos=1).reason_code == 0x90
    assert pub.publish(WIDE, b"b", qos=1).reason_code == 0x90  # bytes, not characters
    assert pub.publish(LONG, b"c", qos=2, complete=False).reason_code == 0x90
    assert pub.publish(OK, b"ok", qos=1).reason_code == 0
    assert sub.recv_publish().payload == b"ok"
    sub.expect_no_packet(0.3)
    assert broker.wait_metric("mqttfast_topic_too_long", 3) == 3
    others.exchange()


def test_topic_length_v5_qos0_gets_disconnect_0x90(limits_broker, clients, bystanders):
    """QoS 0 has no acknowledgement: DISCONNECT 0x90 (3.14.2.1) then close."""
    broker = limits_broker({"max_topic_length": LIMIT})
    others = bystanders(broker.port, version=5)
    pub = clients(broker.port, "len-pub0", version=5)
    pub.publish(LONG, b"a", qos=0)
    assert pub.expect_closed() == 0x90
    others.exchange()
    assert broker.wait_metric("mqttfast_topic_too_long", 1) == 1


def test_topic_length_311_publish_closes_the_connection(limits_broker, clients, bystanders):
    """3.1.1 cannot carry a reason: the connection is closed (4.13.1), any QoS."""
    broker = limits_broker({"max_topic_length": LIMIT})
    others = bystanders(broker.port)
    for qos in (0, 1):
        pub = clients(broker.port, f"len-311-{qos}")
        pub.send_packet(Publish(topic=LONG, payload=b"a", qos=qos, packet_id=qos))
        assert pub.expect_closed() is None
        others.exchange()
    assert broker.wait_metric("mqttfast_topic_too_long", 2) == 2


def test_topic_length_subscribe_filter_0x8f_v5_0x80_311(limits_broker, clients, bystanders):
    """[MQTT-3.9.3-1] one code per filter: the long one refused, the others granted."""
    broker = limits_broker({"max_topic_length": LIMIT})
    others = bystanders(broker.port)
    v5 = clients(broker.port, "len-sub5", version=5)
    assert v5.subscribe(("t/" + "+/" * 20 + "#", 1), ("a/b", 1)).reason_codes == [0x8F, 1]
    v4 = clients(broker.port, "len-sub4")
    assert v4.subscribe(("a/b", 1), (LONG, 1)).reason_codes == [1, 0x80]
    assert v4.is_open() and v5.is_open()
    assert broker.wait_metric("mqttfast_topic_too_long", 2) == 2
    others.exchange()


def test_topic_length_counter_in_sys(limits_broker, clients):
    broker = limits_broker({"max_topic_length": 40})  # the $SYS filter itself is 34 bytes
    watcher = clients(broker.port, "sys-watch")
    pub = clients(broker.port, "len-pub", version=5)
    assert pub.publish("t/" + "x" * 39, b"a", qos=1).reason_code == 0x90
    assert watcher.subscribe("$SYS/broker/publish/topic too long").reason_codes == [0]
    deadline = time.monotonic() + 5
    value = 0
    while value < 1 and time.monotonic() < deadline:
        value = int(watcher.recv_publish(timeout=2.0).payload)
    assert value == 1


def test_topic_length_zero_means_protocol_maximum(limits_broker, clients):
    broker = limits_broker({"max_topic_length": 0})
    pub = clients(broker.port, "big", version=5)
    sub = clients(broker.port, "big-sub", version=5)
    topic = "t/" + "y" * 60000
    sub.subscribe((topic, 1))
    pub.publish(topic, b"z", qos=1)
    assert sub.recv_publish().topic == topic


def test_topic_levels_v5_publish_0x90_subscribe_0x8f(limits_broker, clients, bystanders):
    """limits.max_topic_levels = 3: a 4-level topic is refused, 3 levels pass."""
    broker = limits_broker({"max_topic_levels": 3})
    others = bystanders(broker.port, version=5)
    c = clients(broker.port, "levels5", version=5)
    assert c.subscribe(("a/b/c/d", 1), ("a/b/c", 1)).reason_codes == [0x8F, 1]
    assert c.publish("a/b/c/d", b"x", qos=1).reason_code == 0x90
    assert c.publish("a/b/c/d", b"x", qos=2, complete=False).reason_code == 0x90
    assert c.publish("a/b/c", b"ok", qos=1).reason_code == 0
    assert c.recv_publish().payload == b"ok"
    assert c.is_open()
    assert broker.wait_metric("mqttfast_topic_levels_refused", 3) == 3
    others.exchange()


def test_topic_levels_311_subscribe_0x80_publish_dropped(limits_broker, clients, bystanders):
    broker = limits_broker({"max_topic_levels": 3})
    others = bystanders(broker.port)
    c = clients(broker.port, "levels4")
    assert c.subscribe(("a/#", 1), ("a/b/c/d", 1)).reason_codes == [1, 0x80]
    c.publish("a/b/c/d", b"x", qos=0)
    c.publish("a/b/c", b"ok", qos=0)
    assert c.recv_publish().payload == b"ok"
    assert broker.wait_metric("mqttfast_topic_levels_refused", 2) == 2
    others.exchange()
