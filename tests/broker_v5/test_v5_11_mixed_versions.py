"""MQTT 3.1.1 and 5.0 clients on one broker: messages flow both ways; MQTT 5
properties are dropped toward 3.1.1 (whose PUBLISH has no property field)."""

from __future__ import annotations

from mqttfast.codec.packets import Properties, Subscription


def test_v5_publisher_to_v311_subscriber(v5):
    """3.3.2.3 / 3.1.1 section 3.3: a 3.1.1 subscriber gets the v5 message with
    the same topic, payload and QoS and no properties (its decoder would fail
    on a property field)."""
    old = v5("mix-old", version=4)
    old.subscribe(("mix/t", 1))
    new = v5("mix-new")
    new.publish(
        "mix/t",
        b"hello",
        qos=1,
        properties=Properties(
            user_property=[("k", "v")],
            content_type="text/plain",
            response_topic="mix/r",
            correlation_data=b"c",
            payload_format_indicator=1,
            message_expiry_interval=60,
        ),
    )
    pub = old.recv_publish()
    assert (pub.topic, pub.payload, pub.qos) == ("mix/t", b"hello", 1)
    assert pub.properties is None


def test_v5_topic_alias_resolved_for_v311_subscriber(v5):
    """3.3.2.3.4: a message a v5 client sent with a Topic Alias and an empty
    topic reaches a 3.1.1 subscriber with the full topic name."""
    old = v5("mixa-old", version=4)
    old.subscribe(("mixa/t", 0))
    new = v5("mixa-new")
    new.publish("mixa/t", b"1", properties=Properties(topic_alias=1))
    new.publish("", b"2", properties=Properties(topic_alias=1))
    assert [(m.topic, m.payload) for m in old.recv_publishes(2)] == [
        ("mixa/t", b"1"),
        ("mixa/t", b"2"),
    ]


def test_v311_publisher_to_v5_subscriber(v5):
    """A 3.1.1 publication reaches a v5 subscriber, with that subscriber's own
    Subscription Identifier and options applied (Retain As Published)."""
    new = v5("mixb-new")
    new.subscribe(
        Subscription("mixb/t", qos=2, retain_as_published=True),
        properties=Properties(subscription_identifier=[11]),
    )
    old = v5("mixb-old", version=4)
    old.publish("mixb/t", b"from 3.1.1", qos=2, retain=True)
    pub = new.recv_publish()
    assert (pub.topic, pub.payload, pub.qos, pub.retain) == ("mixb/t", b"from 3.1.1", 2, True)
    assert pub.properties.subscription_identifier == [11]


def test_v5_will_to_v311_subscriber(v5):
    """A v5 client's will (with properties) reaches a 3.1.1 subscriber without them."""
    from mqttfast.codec.packets import Will

    old = v5("mixw-old", version=4)
    old.subscribe(("mixw/t", 0))
    c = v5(
        "mixw-new", will=Will("mixw/t", b"gone", properties=Properties(user_property=[("x", "y")]))
    )
    c.close()
    pub = old.recv_publish()
    assert pub.payload == b"gone" and pub.properties is None


def test_v311_and_v5_share_a_group(v5):
    """4.8.2: shared subscriptions mix protocol versions: a 3.1.1 and a v5
    member of one group together get each message exactly once."""
    old = v5("mixs-old", version=4)
    new = v5("mixs-new")
    old.subscribe(("$share/g/mixs/t", 1))
    new.subscribe(("$share/g/mixs/t", 1))
    p = v5("mixs-pub")
    for i in range(6):
        p.publish("mixs/t", b"%d" % i, qos=1)
    from tests.helpers.rawclient import NoPacket

    got = []
    for c in (old, new):
        while True:
            try:
                got.append(c.recv_publish(0.8).payload)
            except NoPacket:
                break
    assert sorted(got) == [b"%d" % i for i in range(6)]
