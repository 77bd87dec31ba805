"""limits.max_subscriptions_per_client: filters past the quota get SUBACK 0x97 Quota
exceeded (v5, 3.9.3) or 0x80 (3.1.1 [MQTT-3.9.3-2]); re-subscribing an existing filter
(a replacement [MQTT-3.8.4-3]) and filters after an unsubscribe still work."""

from __future__ import annotations

import time


def test_max_subscriptions_v5_0x97(limits_broker, clients, bystanders):
    broker = limits_broker({"max_subscriptions_per_client": 2})
    others = bystanders(broker.port, version=5)
    c = clients(broker.port, "subs5", version=5)
    assert c.subscribe(("a", 1), ("b", 1), ("c", 1)).reason_codes == [1, 1, 0x97]
    assert c.subscribe(("a", 0)).reason_codes == [0]  # replacing one is not a new one
    assert c.subscribe(("d", 1)).reason_codes == [0x97]
    c.unsubscribe("b")
    assert c.subscribe(("d", 1)).reason_codes == [1]
    c.publish("d", b"x", qos=1)
    assert c.recv_publish().payload == b"x"
    assert broker.wait_metric("mqttfast_subscriptions_refused", 2) == 2
    others.exchange()


def test_max_subscriptions_311_0x80(limits_broker, clients, bystanders):
    broker = limits_broker({"max_subscriptions_per_client": 1})
    others = bystanders(broker.port)
    c = clients(broker.port, "subs4")
    assert c.subscribe(("a", 1), ("b", 1)).reason_codes == [1, 0x80]
    assert c.is_open()
    assert broker.wait_metric("mqttfast_subscriptions_refused", 1) == 1
    others.exchange()


def test_subscription_refusals_in_sys(limits_broker, clients):
    broker = limits_broker({"max_subscriptions_per_client": 1})
    c = clients(broker.port, "subs-sys")
    assert c.subscribe(("$SYS/broker/subscriptions/refused", 0), ("x", 0)).reason_codes == [0, 0x80]
    deadline = time.monotonic() + 5
    value = 0
    while value < 1 and time.monotonic() < deadline:
        value = int(c.recv_publish(timeout=2.0).payload)
    assert value == 1
