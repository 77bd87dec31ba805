"""SUBSCRIBE / UNSUBSCRIBE / PUBLISH routing (MQTT 3.1.1 sections 3.3, 3.8-3.11, 4.7)."""

from __future__ import annotations

import struct

import pytest

from mqttfast.codec.packets import Puback, Publish, Suback, Subscribe, Subscription, Unsuback


def test_exact_topic_delivery(raw) -> None:
    """[MQTT-4.5.0-1] a message is delivered to clients with matching subscriptions;
    [MQTT-3.3.2-3] the topic name sent matches the subscription."""
    sub = raw(client_id="sub")
    pub = raw(client_id="pub")
    assert sub.subscribe("a/b/c").reason_codes == [0]
    pub.publish("a/b/c", b"payload-1")
    got = sub.recv_publish()
    assert (got.topic, got.payload, got.qos, got.retain, got.dup) == (
        "a/b/c",
        b"payload-1",
        0,
        False,
        False,
    )
    pub.publish("a/b/d", b"other")
    sub.expect_no_packet(0.3)


def test_suback_same_packet_id(raw) -> None:
    """[MQTT-3.8.4-1] SUBSCRIBE is answered by SUBACK; [MQTT-3.8.4-2] with the same packet id."""
    c = raw(client_id="c")
    c.send_packet(Subscribe(packet_id=4242, subscriptions=[Subscription("x/y", 1)]))
    ack = c.expect(Suback)
    assert ack.packet_id == 4242 and ack.reason_codes == [1]


def test_suback_one_code_per_filter_in_order(raw) -> None:
    """[MQTT-3.8.4-4] several filters act like several SUBSCRIBEs with one SUBACK;
    [MQTT-3.8.4-5] one return code per filter; [MQTT-3.9.3-1] in the same order."""
    c = raw(client_id="c")
    ack = c.subscribe([("f/2", 2), ("f/0", 0), ("f/1", 1), ("f/+/x", 2)])
    assert ack.reason_codes == [2, 0, 1, 2]
    c.publish("f/1", b"one")
    assert c.recv_publish().payload == b"one"


def test_plus_wildcard(raw) -> None:
    """4.7.1.3: '+' matches exactly one level, including an empty one."""
    sub = raw(client_id="sub")
    sub.subscribe("sport/+/player1")
    pub = raw(client_id="pub")
    for topic in (
        "sport/tennis/player1",
        "sport//player1",
        "sport/tennis/player2",
        "sport/tennis/x/player1",
        "sport/player1",
    ):
        pub.publish(topic, topic.encode())
    got = [p.topic for p in sub.recv_publishes(2)]
    assert got == ["sport/tennis/player1", "sport//player1"]
    sub.expect_no_packet(0.3)


def test_hash_wildcard_matches_parent_and_children(raw) -> None:
    """4.7.1.2: "sport/#" matches "sport" itself and every level below it."""
    sub = raw(client_id="sub")
    sub.subscribe("sport/#")
    pub = raw(client_id="pub")
    for topic in ("sport", "sport/tennis", "sport/tennis/player1/ranking", "sports", "x/sport"):
        pub.publish(topic, b".")
    assert [p.topic for p in sub.recv_publishes(3)] == [
        "sport",
        "sport/tennis",
        "sport/tennis/player1/ranking",
    ]
    sub.expect_no_packet(0.3)


def test_hash_alone_matches_everything_but_dollar(raw) -> None:
    """[MQTT-4.7.2-1] '#' matches all topics except those starting with '$'."""
    sub = raw(client_id="sub")
    sub.subscribe("#")
    pub = raw(client_id="pub")
    pub.publish("/leading/slash", b"1")
    pub.publish("plain", b"2")
    assert [p.topic for p in sub.recv_publishes(2)] == ["/leading/slash", "plain"]


def test_wildcards_do_not_match_dollar_topics(raw) -> None:
    """[MQTT-4.7.2-1] filters starting with '#' or '+' do not match topics starting
    with '$'; a filter starting with '$' does."""
    wild = raw(client_id="wild")
    wild.subscribe(["#", "+/x", "+/#"])
    explicit = raw(client_id="explicit")
    explicit.subscribe("$app/#")
    pub = raw(client_id="pub")
    pub.publish("$app/x", b"dollar")
    got = explicit.recv_publish()
    assert got.topic == "$app/x"
    wild.expect_no_packet(0.4)


def test_sys_topics_not_matched_by_hash(raw) -> None:
    """[MQTT-4.7.2-1] a '#' subscriber receives no $SYS messages even when the
    broker publishes them (retained $SYS topics are not sent on subscribe either)."""
    c = raw(client_id="c")
    c.subscribe("#")
    c.expect_no_packet(0.5)


@pytest.mark.mosquitto_deviation(
    "mosquitto 2.0 sends one copy per matching subscription, each at that subscription's QoS; "
    "[MQTT-3.3.5-1] and issue 3 require one copy at the maximum QoS"
)
def test_overlapping_subscriptions_one_copy_max_qos(raw) -> None:
    """[MQTT-3.3.5-1] overlapping subscriptions: the client gets the message at the
    highest QoS among the matching subscriptions, and (mqttfast, as the issue
    requires) exactly one copy."""
    sub = raw(client_id="sub")
    sub.subscribe([("ov/+", 0), ("ov/#", 2), ("ov/t", 1)])
    pub = raw(client_id="pub")
    pub.publish("ov/t", b"m", qos=2)
    got = sub.recv_publish()
    assert got.qos == 2 and got.payload == b"m"
    sub.expect_no_packet(0.5)


def test_qos_downgraded_to_granted(raw) -> None:
    """[MQTT-3.8.4-6] delivered QoS = min(published QoS, granted QoS)."""
    s0 = raw(client_id="s0")
    s1 = raw(client_id="s1")
    s2 = raw(client_id="s2")
    s0.subscribe(("dg", 0))
    s1.subscribe(("dg", 1))
    s2.subscribe(("dg", 2))
    pub = raw(client_id="pub")
    pub.publish("dg", b"q2", qos=2)
    assert (s0.recv_publish().qos, s1.recv_publish().qos, s2.recv_publish().qos) == (0, 1, 2)
    pub.publish("dg", b"q1", qos=1)
    assert (s0.recv_publish().qos, s1.recv_publish().qos, s2.recv_publish().qos) == (0, 1, 1)
    pub.publish("dg", b"q0", qos=0)
    assert (s0.recv_publish().qos, s1.recv_publish().qos, s2.recv_publish().qos) == (0, 0, 0)


def test_resubscribe_replaces_subscription(raw) -> None:
    """[MQTT-3.8.4-3] an identical filter replaces the existing subscription
    (new QoS applies; still one copy per message)."""
    c = raw(client_id="c")
    assert c.subscribe(("re/t", 0)).reason_codes == [0]
    assert c.subscribe(("re/t", 1)).reason_codes == [1]
    pub = raw(client_id="pub")
    pub.publish("re/t", b"x", qos=1)
    got = c.recv_publish()
    assert got.qos == 1
    c.expect_no_packet(0.4)


def test_client_receives_its_own_messages(raw) -> None:
    """3.1.1 has no "no local": a subscriber that publishes on its filter gets the message."""
    c = raw(client_id="echo")
    c.subscribe("echo/t")
    c.publish("echo/t", b"me")
    assert c.recv_publish().payload == b"me"


def test_unsubscribe_stops_delivery(raw) -> None:
    """[MQTT-3.10.4-2] after UNSUBSCRIBE no new messages are sent for that filter;
    [MQTT-3.10.4-4] UNSUBACK carries the UNSUBSCRIBE's packet id."""
    c = raw(client_id="c")
    c.subscribe("u/t")
    ack = c.unsubscribe("u/t", packet_id=777)
    assert isinstance(ack, Unsuback) and ack.packet_id == 777
    raw(client_id="pub").publish("u/t", b"late")
    c.expect_no_packet(0.4)


def test_unsubscribe_unknown_filter_still_acked(raw) -> None:
    """[MQTT-3.10.4-5] UNSUBACK is sent even when no subscription was deleted."""
    c = raw(client_id="c")
    assert c.unsubscribe("never/subscribed").packet_id > 0


def test_unsubscribe_compares_filters_literally(raw) -> None:
    """[MQTT-3.10.4-1] UNSUBSCRIBE compares filters character by character:
    unsubscribing "lit/+" does not remove "lit/a" (nor the reverse)."""
    c = raw(client_id="c")
    c.subscribe(["lit/a", "lit/+"])
    c.unsubscribe("lit/a")
    pub = raw(client_id="pub")
    pub.publish("lit/a", b"still")
    assert c.recv_publish().payload == b"still"
    c.unsubscribe("lit/+")
    pub.publish("lit/a", b"gone")
    c.expect_no_packet(0.4)


def test_unsubscribe_several_filters_one_unsuback(raw) -> None:
    """[MQTT-3.10.4-6] several filters in one UNSUBSCRIBE are handled as a sequence
    with a single UNSUBACK."""
    c = raw(client_id="c")
    c.subscribe(["m/1", "m/2", "m/3"])
    c.unsubscribe("m/1", "m/3")
    pub = raw(client_id="pub")
    for t in ("m/1", "m/2", "m/3"):
        pub.publish(t, t.encode())
    assert c.recv_publish().topic == "m/2"
    c.expect_no_packet(0.4)


def test_messages_to_one_topic_keep_order_per_qos(raw) -> None:
    """[MQTT-4.6.0-6] every topic is an ordered topic: for the same topic and QoS,
    messages from one publisher arrive in the order sent (QoS 0, 1, 2 interleaved;
    the order is checked per QoS as the statement says)."""
    sub = raw(client_id="sub")
    sub.subscribe(("ord", 2))
    pub = raw(client_id="pub")
    for i in range(60):
        pub.publish("ord", str(i).encode(), qos=i % 3)
    got = sub.recv_publishes(60, timeout=10)
    for qos in (0, 1, 2):
        seq = [int(p.payload) for p in got if p.qos == qos]
        assert seq == list(range(qos, 60, 3))


def test_qos1_order_beyond_inflight_window(raw) -> None:
    """[MQTT-4.6.0-6] 300 QoS 1 messages (more than any in-flight window) arrive in order."""
    sub = raw(client_id="sub")
    sub.subscribe(("ord1", 1))
    pub = raw(client_id="pub")
    for i in range(300):
        pub.send_packet(Publish(topic="ord1", payload=str(i).encode(), qos=1, packet_id=i + 1))
    got = [int(p.payload) for p in sub.recv_publishes(300, timeout=15)]
    assert got == list(range(300))
    acks = sorted(pub.recv_until(Puback, timeout=5).packet_id for _ in range(300))
    assert acks == list(range(1, 301))


def test_fan_out_to_many_subscribers(raw) -> None:
    """[MQTT-4.5.0-1] each matching subscriber gets the message (20 subscribers)."""
    subs = [raw(client_id=f"fan{i}") for i in range(20)]
    for i, s in enumerate(subs):
        s.subscribe("fan/+" if i % 2 else "fan/#")
    raw(client_id="pub").publish("fan/out", b"all")
    for s in subs:
        assert s.recv_publish().payload == b"all"


def test_large_payload_delivered_intact(raw) -> None:
    """A 1 MiB payload goes through unchanged (remaining length on 3 bytes)."""
    payload = bytes(range(256)) * 4096
    sub = raw(client_id="sub")
    sub.subscribe(("big", 1))
    raw(client_id="pub").publish("big", payload, qos=1, timeout=10)
    got = sub.recv_publish(timeout=10)
    assert got.payload == payload


def test_empty_payload_delivered(raw) -> None:
    """A zero-length payload is a valid message (3.3.3)."""
    sub = raw(client_id="sub")
    sub.subscribe("empty")
    raw(client_id="pub").publish("empty", b"")
    assert sub.recv_publish().payload == b""


def test_utf8_topic_delivered(raw) -> None:
    """[MQTT-3.3.2-1] topic names are UTF-8 strings: a non-ASCII topic round-trips."""
    sub = raw(client_id="sub")
    sub.subscribe("unicode/+/ü")
    raw(client_id="pub").publish("unicode/日本/ü", b"x")
    assert sub.recv_publish().topic == "unicode/日本/ü"


def test_publish_wildcard_topic_closes(raw) -> None:
    """[MQTT-3.3.2-2] a topic name with wildcards is a protocol violation -> close."""
    c = raw(client_id="bad")
    topic = b"a/+/b"
    c.send(bytes([0x30, 2 + len(topic) + 1]) + struct.pack("!H", len(topic)) + topic + b"x")
    c.expect_closed()


def test_publish_empty_topic_closes(raw) -> None:
    """[MQTT-4.7.3-1] topic names are at least one character long -> empty topic closes."""
    c = raw(client_id="bad")
    c.send(bytes([0x30, 3]) + b"\x00\x00x")
    c.expect_closed()


def test_invalid_filter_refused(raw) -> None:
    """[MQTT-4.7.1-1] '#' must be last and alone in its level; [MQTT-3.8.4-5] the
    server refuses that subscription: SUBACK 0x80 for it, or (as a protocol
    violation, [MQTT-4.8.0-1]) closes the connection. It never grants it."""
    c = raw(client_id="c")
    pid = 9
    c.send_packet(Subscribe(packet_id=pid, subscriptions=[Subscription("a/#/b", 0)]))
    try:
        pkt = c.recv_packet()
    except AssertionError:
        assert c.closed_by_peer
        return
    assert isinstance(pkt, Suback) and pkt.packet_id == pid and pkt.reason_codes == [0x80]


def test_empty_filter_refused(raw) -> None:
    """[MQTT-4.7.3-1] topic filters are at least one character long: an empty filter
    is refused (SUBACK 0x80 for it, or the connection is closed); never granted."""
    c = raw(client_id="c")
    c.send(bytes([0x82, 5]) + b"\x00\x05" + b"\x00\x00" + b"\x01")
    try:
        pkt = c.recv_packet()
    except AssertionError:
        assert c.closed_by_peer
        return
    assert isinstance(pkt, Suback) and pkt.packet_id == 5 and pkt.reason_codes == [0x80]


def test_invalid_plus_filter_refused(raw) -> None:
    """[MQTT-4.7.1-2] '+' must occupy a whole level: "a/b+" is refused (0x80 or close)."""
    c = raw(client_id="c")
    c.send_packet(Subscribe(packet_id=3, subscriptions=[Subscription("a/b+", 1)]))
    try:
        pkt = c.recv_packet()
    except AssertionError:
        assert c.closed_by_peer
        return
    assert isinstance(pkt, Suback) and pkt.reason_codes == [0x80]


def test_topic_levels_are_case_sensitive_and_spaces_allowed(raw) -> None:
    """4.7.3: topics are case sensitive and may contain spaces."""
    sub = raw(client_id="sub")
    sub.subscribe("Case/Sensitive topic")
    pub = raw(client_id="pub")
    pub.publish("case/sensitive topic", b"no")
    pub.publish("Case/Sensitive topic", b"yes")
    assert sub.recv_publish().payload == b"yes"
    sub.expect_no_packet(0.3)


def test_subscription_active_once_suback_received(raw) -> None:
    """[MQTT-3.8.4-1] once SUBACK is received, the subscription is in place:
    a message published right after it by another client is delivered."""
    pub = raw(client_id="pub")
    for i in range(5):
        c = raw(client_id=f"late{i}")
        c.subscribe(f"race/{i}")
        pub.publish(f"race/{i}", b"r")
        assert c.recv_publish().payload == b"r"


def test_qos0_publish_not_acknowledged(raw) -> None:
    """QoS 0 PUBLISH from a client gets no acknowledgement ([MQTT-3.3.4-1], Table 3.4)."""
    c = raw(client_id="q0")
    c.publish("nobody/listens", b"x", qos=0)
    c.expect_no_packet(0.3)


@pytest.mark.parametrize("count", [200])
def test_many_subscriptions_one_client(raw, count) -> None:
    """Many filters on one client: each SUBACK granted, each topic delivered once."""
    c = raw(client_id="many")
    ack = c.subscribe([(f"many/{i}", 1) for i in range(count)])
    assert ack.reason_codes == [1] * count
    pub = raw(client_id="pub")
    for i in range(0, count, 20):
        pub.publish(f"many/{i}", str(i).encode())
    got = [p.payload for p in c.recv_publishes(count // 20)]
    assert got == [str(i).encode() for i in range(0, count, 20)]
