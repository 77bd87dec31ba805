"""Retained messages (MQTT 3.1.1 section 3.3.1.3)."""

from __future__ import annotations

from mqttfast.codec.packets import Suback, Subscribe, Subscription


def test_retained_delivered_on_subscribe_with_retain_flag(raw) -> None:
    """[MQTT-3.3.1-5] a RETAIN=1 message is stored; [MQTT-3.3.1-6] sent to a new
    matching subscription; [MQTT-3.3.1-8] with RETAIN=1."""
    pub = raw(client_id="pub")
    pub.publish("r/a", b"kept", qos=1, retain=True)
    sub = raw(client_id="sub")
    sub.subscribe(("r/a", 1))
    got = sub.recv_publish()
    assert (got.topic, got.payload, got.retain, got.qos) == ("r/a", b"kept", True, 1)


def test_live_delivery_has_retain_0(raw) -> None:
    """[MQTT-3.3.1-9] a message sent because it matches an established subscription
    has RETAIN=0, however the publisher set it."""
    sub = raw(client_id="sub")
    sub.subscribe("r/live")
    raw(client_id="pub").publish("r/live", b"x", retain=True)
    got = sub.recv_publish()
    assert got.retain is False


def test_retained_replaced_by_newer(raw) -> None:
    """[MQTT-3.3.1-5] only the last retained message per topic is kept."""
    pub = raw(client_id="pub")
    pub.publish("r/rep", b"old", qos=1, retain=True)
    pub.publish("r/rep", b"new", qos=1, retain=True)
    sub = raw(client_id="sub")
    sub.subscribe("r/rep")
    assert sub.recv_publish().payload == b"new"
    sub.expect_no_packet(0.4)


def test_qos0_retained_replaces(raw) -> None:
    """[MQTT-3.3.1-7] a QoS 0 RETAIN message discards the previous retained message
    (and, as mqttfast does, is stored as the new one)."""
    pub = raw(client_id="pub")
    pub.publish("r/q0", b"qos1", qos=1, retain=True)
    pub.publish("r/q0", b"qos0", qos=0, retain=True)
    pub.ping()  # the QoS 0 message is processed before the next connection subscribes
    sub = raw(client_id="sub")
    sub.subscribe(("r/q0", 1))
    got = sub.recv_publish()
    assert (got.payload, got.qos) == (b"qos0", 0)
    sub.expect_no_packet(0.4)


def test_empty_retained_deletes_and_is_forwarded(raw) -> None:
    """[MQTT-3.3.1-10] an empty RETAIN message is forwarded to current subscribers
    and removes the retained message; [MQTT-3.3.1-11] it is not stored itself."""
    pub = raw(client_id="pub")
    pub.publish("r/del", b"something", qos=1, retain=True)
    live = raw(client_id="live")
    live.subscribe("r/del")
    assert live.recv_publish().payload == b"something"  # retained, on subscribe
    pub.publish("r/del", b"", qos=1, retain=True)
    got = live.recv_publish()
    assert got.payload == b"" and got.retain is False
    later = raw(client_id="later")
    later.subscribe("r/del")
    later.expect_no_packet(0.5)


def test_non_retained_publish_keeps_retained(raw) -> None:
    """[MQTT-3.3.1-12] a RETAIN=0 message is not stored and does not replace or remove
    the retained message."""
    pub = raw(client_id="pub")
    pub.publish("r/keep", b"retained", qos=1, retain=True)
    pub.publish("r/keep", b"transient", qos=1, retain=False)
    pub.publish("r/keep", b"", qos=1, retain=False)
    sub = raw(client_id="sub")
    sub.subscribe("r/keep")
    assert sub.recv_publish().payload == b"retained"
    sub.expect_no_packet(0.4)


def test_retained_for_wildcard_filters(raw) -> None:
    """[MQTT-3.3.1-6] the last retained message on EACH matching topic is sent for a
    wildcard subscription."""
    pub = raw(client_id="pub")
    topics = ["w/a", "w/b", "w/b/c", "w", "x/a"]
    for t in topics:
        pub.publish(t, t.encode(), qos=1, retain=True)
    plus = raw(client_id="plus")
    plus.subscribe("w/+")
    assert sorted(p.topic for p in plus.recv_publishes(2)) == ["w/a", "w/b"]
    plus.expect_no_packet(0.4)
    hash_ = raw(client_id="hash")
    hash_.subscribe("w/#")
    got = hash_.recv_publishes(4)
    assert sorted(p.topic for p in got) == ["w", "w/a", "w/b", "w/b/c"]
    assert all(p.retain for p in got)
    hash_.expect_no_packet(0.4)


def test_retained_one_per_filter_in_multi_subscribe(raw) -> None:
    """[MQTT-3.8.4-4] a SUBSCRIBE with several filters acts as several SUBSCRIBEs:
    the retained messages of each filter are sent."""
    pub = raw(client_id="pub")
    pub.publish("m/1", b"one", qos=1, retain=True)
    pub.publish("m/2", b"two", qos=1, retain=True)
    sub = raw(client_id="sub")
    sub.subscribe(["m/1", "m/2"])
    assert sorted(p.payload for p in sub.recv_publishes(2)) == [b"one", b"two"]


def test_retained_qos_is_min_of_stored_and_granted(raw) -> None:
    """[MQTT-3.3.1-5] the retained message keeps its QoS; [MQTT-3.8.4-6] it is sent at
    min(stored QoS, granted QoS)."""
    pub = raw(client_id="pub")
    pub.publish("r/qos", b"x", qos=1, retain=True)
    s2 = raw(client_id="s2")
    s2.subscribe(("r/qos", 2))
    assert s2.recv_publish().qos == 1
    s0 = raw(client_id="s0")
    s0.subscribe(("r/qos", 0))
    assert s0.recv_publish().qos == 0


def test_resubscribe_resends_retained(raw) -> None:
    """[MQTT-3.8.4-3] subscribing again to an identical filter re-sends the matching
    retained messages."""
    raw(client_id="pub").publish("r/again", b"x", qos=1, retain=True)
    sub = raw(client_id="sub")
    sub.subscribe("r/again")
    assert sub.recv_publish().retain is True
    sub.subscribe("r/again")
    again = sub.recv_publish()
    assert again.retain is True and again.payload == b"x"


def test_retained_dollar_topic_not_sent_to_leading_wildcard(raw) -> None:
    """[MQTT-4.7.2-1] a retained message on a '$' topic is not sent to '#' or '+/...'
    subscribers, but is sent to an explicit '$...' filter."""
    raw(client_id="pub").publish("$data/x", b"d", qos=1, retain=True)
    wild = raw(client_id="wild")
    wild.subscribe(["#", "+/x"])
    wild.expect_no_packet(0.5)
    explicit = raw(client_id="explicit")
    explicit.subscribe("$data/+")
    assert explicit.recv_publish().payload == b"d"


def test_retained_not_sent_to_existing_subscription_twice(raw) -> None:
    """[MQTT-3.3.1-9] a retained message published while subscribed is delivered
    once (live, RETAIN=0), not again as a retained copy."""
    sub = raw(client_id="sub")
    sub.subscribe("r/once")
    raw(client_id="pub").publish("r/once", b"x", qos=1, retain=True)
    assert sub.recv_publish().retain is False
    sub.expect_no_packet(0.5)


def test_retained_survives_publisher_disconnect(raw) -> None:
    """[MQTT-3.3.1-5] the retained message belongs to the server, not the publisher's
    connection or session."""
    pub = raw(client_id="pub")
    pub.publish("r/orphan", b"x", qos=1, retain=True)
    pub.disconnect()
    sub = raw(client_id="sub")
    sub.subscribe("r/orphan")
    assert sub.recv_publish().payload == b"x"


def test_retained_sent_before_suback_or_after_but_once(raw) -> None:
    """[MQTT-3.8.4-1] the SUBACK arrives, and the retained message for the filter is
    delivered exactly once around it."""
    raw(client_id="pub").publish("r/ack", b"x", qos=1, retain=True)
    sub = raw(client_id="sub")
    sub.send_packet(Subscribe(packet_id=11, subscriptions=[Subscription("r/ack", 1)]))
    got = sub.recv_publish()
    assert got.retain is True
    assert sub.recv_until(Suback, packet_id=11).reason_codes == [1]
    sub.expect_no_packet(0.5)


def test_many_retained_all_delivered_to_wildcard(raw) -> None:
    """[MQTT-3.3.1-6] 500 retained topics: a '#' subscriber gets each one exactly once."""
    pub = raw(client_id="pub")
    for i in range(500):
        pub.publish(f"many/{i // 50}/{i}", str(i).encode(), qos=0, retain=True)
    pub.ping()
    sub = raw(client_id="sub")
    sub.subscribe("many/#")
    got = sorted(int(p.payload) for p in sub.recv_publishes(500, timeout=10))
    assert got == list(range(500))
    sub.expect_no_packet(0.5)
