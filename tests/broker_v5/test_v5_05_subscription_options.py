"""Subscription options (3.8.3.1): No Local, Retain As Published, Retain
Handling; and Subscription Identifiers (3.8.2.1.2, 3.3.4)."""

from __future__ import annotations

import pytest

from mqttfast.codec.packets import Properties, Subscribe, Subscription


def test_no_local(v5):
    """[MQTT-3.8.3-3] With No Local 1, messages are not forwarded to the
    connection with the publisher's ClientID; other subscribers still get them."""
    me = v5("nl-me")
    other = v5("nl-other")
    me.subscribe(Subscription("nl/t", qos=1, no_local=True))
    other.subscribe(("nl/t", 1))
    me.publish("nl/t", b"mine", qos=1)
    assert other.recv_publish().payload == b"mine"
    me.expect_no_packet(0.5)


def test_no_local_off_echoes_own_messages(v5):
    """3.8.3.1: with No Local 0 (the default) the publisher receives its own
    message on a matching subscription."""
    me = v5("nl0")
    me.subscribe(("nl0/t", 1))
    me.publish("nl0/t", b"echo", qos=1)
    assert me.recv_publish().payload == b"echo"


@pytest.mark.mosquitto_deviation(
    "mosquitto 2.0.11 grants No Local on a shared subscription (SUBACK 0x00)"
)
def test_no_local_on_shared_subscription_is_protocol_error(v5):
    """[MQTT-3.8.3-4] It is a Protocol Error to set No Local on a Shared
    Subscription: DISCONNECT 0x82."""
    c = v5("nlshare")
    c.send_packet(
        Subscribe(packet_id=1, subscriptions=[Subscription("$share/g/nls/t", qos=0, no_local=True)])
    )
    assert c.expect_closed() == 0x82


def test_retain_as_published_zero_clears_retain(v5):
    """[MQTT-3.3.1-12] With Retain As Published 0 the server sets RETAIN 0 when
    forwarding a message published with RETAIN 1 to an existing subscription."""
    s = v5("rap0")
    s.subscribe(Subscription("rap0/t", qos=1, retain_as_published=False))
    v5("rap0-pub").publish("rap0/t", b"r", qos=1, retain=True)
    pub = s.recv_publish()
    assert pub.payload == b"r" and pub.retain is False


def test_retain_as_published_one_keeps_retain(v5):
    """[MQTT-3.3.1-13] With Retain As Published 1 the RETAIN flag equals the one
    of the received PUBLISH (1 for a retained, 0 for a normal message)."""
    s = v5("rap1")
    s.subscribe(Subscription("rap1/t", qos=1, retain_as_published=True))
    p = v5("rap1-pub")
    p.publish("rap1/t", b"r", qos=1, retain=True)
    p.publish("rap1/t", b"n", qos=1, retain=False)
    a, b = s.recv_publishes(2)
    assert (a.payload, a.retain) == (b"r", True)
    assert (b.payload, b.retain) == (b"n", False)


def test_retained_on_subscribe_has_retain_set(v5):
    """3.3.1.3: a retained message sent because of a new subscription has
    RETAIN 1, whatever Retain As Published says."""
    v5("rons-pub").publish("rons/t", b"r", qos=1, retain=True)
    s = v5("rons")
    s.subscribe(Subscription("rons/t", qos=1, retain_as_published=False))
    pub = s.recv_publish()
    assert pub.payload == b"r" and pub.retain is True


def _retained(v5, topic: str) -> None:
    v5("rh-pub-" + topic.replace("/", "-")).publish(topic, b"kept", qos=1, retain=True)


def test_retain_handling_0_sends_on_every_subscribe(v5):
    """[MQTT-3.3.1-9] [MQTT-3.8.4-4]: Retain Handling 0 sends the retained
    messages on every SUBSCRIBE, also when the subscription already exists."""
    _retained(v5, "rh0/t")
    s = v5("rh0")
    for _ in range(2):
        s.subscribe(Subscription("rh0/t", qos=1, retain_handling=0))
        assert s.recv_publish().payload == b"kept"


def test_retain_handling_1_only_for_new_subscription(v5):
    """[MQTT-3.3.1-10] Retain Handling 1 sends retained messages only if the
    subscription did not already exist."""
    _retained(v5, "rh1/t")
    s = v5("rh1")
    s.subscribe(Subscription("rh1/t", qos=1, retain_handling=1))
    assert s.recv_publish().payload == b"kept"
    s.subscribe(Subscription("rh1/t", qos=1, retain_handling=1))
    s.expect_no_packet(0.5)


def test_retain_handling_2_never_sends(v5):
    """[MQTT-3.3.1-11] Retain Handling 2: no retained messages at subscribe
    time; later publications are delivered normally."""
    _retained(v5, "rh2/t")
    s = v5("rh2")
    s.subscribe(Subscription("rh2/t", qos=1, retain_handling=2))
    s.expect_no_packet(0.5)
    v5("rh2-live").publish("rh2/t", b"live", qos=1)
    assert s.recv_publish().payload == b"live"


@pytest.mark.mosquitto_deviation(
    "mosquitto 2.0.11 answers Retain Handling 3 with 0x81; the spec calls it a Protocol Error (0x82)"
)
def test_retain_handling_3_is_protocol_error(v5):
    """3.8.3.1: Retain Handling 3 is a Protocol Error: DISCONNECT 0x82
    (mosquitto 2.0 says 0x81; the spec words it as a Protocol Error)."""
    c = v5("rh3")
    c.send(bytes([0x82, 10, 0, 1, 0, 0, 4]) + b"rh/t" + bytes([0x30]))
    assert c.expect_closed() == 0x82


def test_subscription_options_reserved_bits_malformed(v5):
    """[MQTT-3.8.3-5] Non-zero reserved bits (7-6) in the Subscription Options
    make the SUBSCRIBE malformed: DISCONNECT 0x81."""
    c = v5("resbits")
    c.send(bytes([0x82, 10, 0, 1, 0, 0, 4]) + b"rb/t" + bytes([0xC0]))
    assert c.expect_closed() == 0x81


def test_subscription_identifier_delivered(v5):
    """[MQTT-3.3.4-3] A message matching a subscription with a Subscription
    Identifier carries that identifier; also the retained message sent on
    subscribe."""
    v5("sid-ret").publish("sid/r", b"ret", qos=1, retain=True)
    s = v5("sid")
    s.subscribe(("sid/#", 1), properties=Properties(subscription_identifier=[42]))
    ret = s.recv_publish()
    assert ret.payload == b"ret" and ret.properties.subscription_identifier == [42]
    v5("sid-pub").publish("sid/x", b"live", qos=1)
    live = s.recv_publish()
    assert live.payload == b"live" and live.properties.subscription_identifier == [42]


@pytest.mark.mosquitto_deviation(
    "mosquitto sends one copy per matching subscription (allowed by [MQTT-3.3.4-5]); "
    "issue 4 requires one copy per client"
)
def test_overlapping_subscriptions_one_copy_with_all_identifiers(v5):
    """[MQTT-3.3.4-2] [MQTT-3.3.4-3] [MQTT-3.3.4-4]: a client with overlapping
    subscriptions gets one copy (as issue 4 requires), at the highest QoS of
    the matching subscriptions, carrying every matching Subscription Identifier
    (order not significant); a matching subscription without identifier adds none."""
    s = v5("sidov")
    s.subscribe(("sidov/+", 0), properties=Properties(subscription_identifier=[5]))
    s.subscribe(("sidov/#", 1), properties=Properties(subscription_identifier=[7]))
    s.subscribe(("+/x", 0))
    v5("sidov-pub").publish("sidov/x", b"m", qos=2)
    pub = s.recv_publish()
    assert pub.qos == 1
    assert sorted(pub.properties.subscription_identifier) == [5, 7]
    s.expect_no_packet(0.5)


def test_overlapping_subscriptions_identifiers_per_copy(v5):
    """[MQTT-3.3.4-3] [MQTT-3.3.4-4] [MQTT-3.3.4-5]: whether the server sends
    one copy or one per subscription, together the copies carry exactly the
    identifiers of the matching subscriptions, and one of them has the
    highest QoS [MQTT-3.3.4-2]."""
    s = v5("sidany")
    s.subscribe(("sidany/+", 0), properties=Properties(subscription_identifier=[5]))
    s.subscribe(("sidany/#", 1), properties=Properties(subscription_identifier=[7]))
    v5("sidany-pub").publish("sidany/x", b"m", qos=1)
    first = s.recv_publish()
    ids = list(first.properties.subscription_identifier)
    qos = {first.qos}
    if ids != [5, 7] and ids != [7, 5]:
        second = s.recv_publish()
        ids += second.properties.subscription_identifier
        qos.add(second.qos)
    assert sorted(ids) == [5, 7]
    assert max(qos) == 1
    s.expect_no_packet(0.5)


@pytest.mark.mosquitto_deviation(
    "mosquitto 2.0.11 answers Subscription Identifier 0 with 0x81; the spec calls it a Protocol Error (0x82)"
)
def test_subscription_identifier_zero_is_protocol_error(v5):
    """3.8.2.1.2: a Subscription Identifier of 0 is a Protocol Error:
    DISCONNECT 0x82."""
    c = v5("sid0")
    c.send_packet(
        Subscribe(
            packet_id=1,
            subscriptions=[Subscription("sid0/t")],
            properties=Properties(subscription_identifier=[0]),
        )
    )
    assert c.expect_closed() == 0x82


@pytest.mark.mosquitto_deviation(
    "mosquitto 2.0.11 accepts a client PUBLISH carrying a Subscription Identifier"
)
def test_client_publish_with_subscription_identifier_is_protocol_error(v5):
    """[MQTT-3.3.4-6] A PUBLISH from a client MUST NOT contain a Subscription
    Identifier: the server closes with DISCONNECT 0x82."""
    from mqttfast.codec.packets import Publish

    c = v5("sidpub")
    c.send_packet(
        Publish(topic="sidpub/t", payload=b"x", properties=Properties(subscription_identifier=[3]))
    )
    assert c.expect_closed() == 0x82


def test_resubscribe_replaces_identifier(v5):
    """[MQTT-3.8.4-3] A SUBSCRIBE with an identical filter replaces the
    subscription, identifier included."""
    s = v5("sidre")
    s.subscribe(("sidre/t", 1), properties=Properties(subscription_identifier=[1]))
    s.subscribe(("sidre/t", 1), properties=Properties(subscription_identifier=[2]))
    v5("sidre-pub").publish("sidre/t", b"m", qos=1)
    assert s.recv_publish().properties.subscription_identifier == [2]
    s.expect_no_packet(0.3)
