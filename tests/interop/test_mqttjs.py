"""Interop with MQTT.js (npm ``mqtt``, MQTT 3.1.1 and 3.1), run by node as a subprocess
(tests/interop/js/mqttjs_client.js). Issue 3: publish/subscribe, retained, QoS 2, will."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from mqttfast.codec.packets import Will

from ._proc import LineProcess, require_program

SCRIPT = Path(__file__).parent / "js" / "mqttjs_client.js"


def mqttjs(port: int, **opts) -> LineProcess:
    node = require_program("node")
    return LineProcess([node, str(SCRIPT), json.dumps({"port": port, **opts})])


def payload(event: dict) -> bytes:
    return base64.b64decode(event["payload"])


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_mqttjs_subscriber_receives_from_raw_publisher(broker, raw, qos) -> None:
    """MQTT.js subscribes (QoS n), a raw client publishes QoS n: delivered at QoS n."""
    with mqttjs(broker.port, mode="sub", topic="js/in", qos=qos, count=3) as js:
        assert js.wait_json("subscribed")["granted"] == [qos]
        pub = raw(client_id="rawpub")
        for i in range(3):
            pub.publish("js/in", f"m{i}".encode(), qos=qos)
        events = [e for e in js.json_events(timeout=10) if e["event"] == "message"]
        assert js.wait() == 0, js.lines
    assert [payload(e) for e in events] == [b"m0", b"m1", b"m2"]
    assert all(e["qos"] == qos and e["topic"] == "js/in" and not e["retain"] for e in events)


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_mqttjs_publisher_reaches_raw_subscriber(broker, raw, qos) -> None:
    """MQTT.js publishes QoS n (it waits for PUBACK / PUBCOMP); a raw subscriber gets each."""
    sub = raw(client_id="rawsub")
    sub.subscribe(("js/out/#", 2))
    msgs = [{"topic": f"js/out/{i}", "payload": f"p{i}", "qos": qos} for i in range(5)]
    with mqttjs(broker.port, mode="pub", messages=msgs) as js:
        assert js.wait_json("published")["count"] == 5
        assert js.wait() == 0, js.lines
    got = sub.recv_publishes(5)
    assert [(p.topic, p.payload, p.qos) for p in got] == [
        (f"js/out/{i}", f"p{i}".encode(), qos) for i in range(5)
    ]


def test_mqttjs_to_mqttjs_qos2(broker) -> None:
    """Two MQTT.js clients exchange QoS 2 messages through the broker, exactly once each."""
    with mqttjs(broker.port, mode="sub", topic="js/q2", qos=2, count=10, clientId="js-sub") as sub:
        sub.wait_json("subscribed")
        msgs = [{"topic": "js/q2", "payload": str(i), "qos": 2} for i in range(10)]
        with mqttjs(broker.port, mode="pub", messages=msgs, clientId="js-pub") as pub:
            pub.wait_json("published")
            assert pub.wait() == 0
        events = [e for e in sub.json_events(timeout=10) if e["event"] == "message"]
        assert sub.wait() == 0
    assert [int(payload(e)) for e in events] == list(range(10))
    assert all(e["qos"] == 2 for e in events)


def test_mqttjs_retained(broker, raw) -> None:
    """A retained message published by MQTT.js is delivered to a later MQTT.js subscriber
    with the retain flag ([MQTT-3.3.1-6], [MQTT-3.3.1-8])."""
    msgs = [
        {"topic": "js/ret/a", "payload": "kept-a", "qos": 1, "retain": True},
        {"topic": "js/ret/b", "payload": "kept-b", "qos": 0, "retain": True},
    ]
    with mqttjs(broker.port, mode="pub", messages=msgs) as pub:
        pub.wait_json("published")
        assert pub.wait() == 0
    raw(client_id="sync").ping()  # the QoS 0 retained one is processed by now
    with mqttjs(broker.port, mode="sub", topic="js/ret/+", qos=1, count=2) as sub:
        events = [e for e in sub.json_events(timeout=10) if e["event"] == "message"]
        assert sub.wait() == 0
    assert sorted((e["topic"], payload(e), e["retain"]) for e in events) == [
        ("js/ret/a", b"kept-a", True),
        ("js/ret/b", b"kept-b", True),
    ]


def test_mqttjs_will_published_when_process_dies(broker, raw) -> None:
    """[MQTT-3.1.2-8] an MQTT.js client with a will is killed (SIGKILL): the broker
    publishes its will."""
    watcher = raw(client_id="watcher")
    watcher.subscribe(("js/will", 1))
    js = mqttjs(
        broker.port,
        mode="will",
        clientId="js-dying",
        timeoutMs=30000,
        will={"topic": "js/will", "payload": "js-gone", "qos": 1},
    )
    try:
        js.wait_json("connected")
        js.kill()
    finally:
        js.close()
    got = watcher.recv_publish(timeout=5)
    assert (got.topic, got.payload, got.qos) == ("js/will", b"js-gone", 1)


def test_mqttjs_receives_raw_clients_will(broker, raw) -> None:
    """A will of another client reaches an MQTT.js subscriber."""
    with mqttjs(broker.port, mode="sub", topic="js/w2", qos=1, count=1) as js:
        js.wait_json("subscribed")
        dying = raw(client_id="dying", will=Will(topic="js/w2", payload=b"bye", qos=1))
        dying.close()
        events = [e for e in js.json_events(timeout=10) if e["event"] == "message"]
        assert js.wait() == 0
    assert payload(events[0]) == b"bye"


def test_mqttjs_persistent_session(broker, raw) -> None:
    """clean=false: MQTT.js subscribes, leaves; a QoS 1 message is queued and delivered
    when it comes back (sessionPresent true)."""
    with mqttjs(
        broker.port, mode="sub", topic="js/ps", qos=1, count=1, clientId="js-ps", clean=False
    ) as first:
        first.wait_json("subscribed")
        raw(client_id="p1").publish("js/ps", b"live", qos=1)
        first.json_events(timeout=10)
        assert first.wait() == 0
    raw(client_id="p2").publish("js/ps", b"queued", qos=1)
    with mqttjs(
        broker.port, mode="sub", topic="js/ps", qos=1, count=1, clientId="js-ps", clean=False
    ) as again:
        assert again.wait_json("connected")["sessionPresent"] is True
        events = [e for e in again.json_events(timeout=10) if e["event"] == "message"]
        assert again.wait() == 0
    assert payload(events[0]) == b"queued"


def test_mqttjs_mqtt31(broker, raw) -> None:
    """MQTT.js speaking MQTT 3.1 (MQIsdp, protocolVersion 3) publishes and subscribes."""
    with mqttjs(
        broker.port, mode="sub", topic="js/31", qos=1, count=1, protocolVersion=3, clientId="js31"
    ) as js:
        js.wait_json("subscribed")
        raw(client_id="p").publish("js/31", b"old-school", qos=1)
        events = [e for e in js.json_events(timeout=10) if e["event"] == "message"]
        assert js.wait() == 0
    assert payload(events[0]) == b"old-school"
