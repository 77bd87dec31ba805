"""Publish/subscribe, QoS flows, retained messages, sessions and queues (3.1.1 rules)."""

from __future__ import annotations

from typing import Any

from mqttfast.codec.packets import Unsuback

from .conftest import (
    Disconnect,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Unsubscribe,
)


def test_wildcards_and_exact(client):
    s = client(4)
    s.connect("s")
    s.subscribe(("a/+/c", 0), ("x/#", 0))
    p = client(4)
    p.connect("p")
    for t in ("a/b/c", "a/b/d", "x", "x/y/z", "a/c"):
        p.publish(t, b"m")
    assert [m.topic for m in s.publishes()] == ["a/b/c", "x", "x/y/z"]


def test_dollar_topics_not_matched_by_leading_wildcards(client, broker):
    """[MQTT-4.7.2-1] '#' and '+/...' do not match topics starting with '$'."""
    s = client(4)
    s.connect("s")
    s.subscribe("#", "+/x", "$foo/#")
    # $foo/x matches only "$foo/#"; bar/x matches "#" and "+/x": one copy each.
    broker.publish("$foo/x", b"1")
    broker.publish("bar/x", b"2")
    assert [m.payload for m in s.publishes()] == [b"1", b"2"]


def test_overlapping_subscriptions_one_copy_max_qos(client):
    """[MQTT-3.3.5-1] overlapping filters: one copy at the highest granted QoS."""
    s = client(4)
    s.connect("s")
    s.subscribe(("a/#", 0), ("a/+", 2), ("a/b", 1))
    p = client(4)
    p.connect("p")
    p.publish("a/b", b"x", qos=2)
    p.send(Pubrel(1))
    got = s.publishes()
    assert len(got) == 1 and got[0].qos == 2


def test_qos_downgrade_to_granted(client):
    """[MQTT-3.8.4-6] delivery at min(published QoS, granted QoS)."""
    s = client(4)
    s.connect("s")
    s.subscribe(("a", 1))
    p = client(4)
    p.connect("p")
    p.publish("a", b"x", qos=2)
    (m,) = s.publishes()
    assert m.qos == 1 and m.packet_id != 0
    p.publish("a", b"y", qos=0)
    (m,) = s.publishes()
    assert m.qos == 0


def test_qos1_flow_and_puback(client):
    """[MQTT-4.3.2-*] QoS 1: PUBACK to the publisher, PUBLISH with packet id to the subscriber."""
    s = client(4)
    s.connect("s")
    s.subscribe(("a", 1))
    p = client(4)
    p.connect("p")
    acks = p.publish("a", b"x", qos=1, packet_id=77)
    assert [(type(a), a.packet_id) for a in acks] == [(Puback, 77)]
    (m,) = s.publishes()
    s.send(Puback(m.packet_id))
    assert broker_inflight(s) == 0


def broker_inflight(c) -> int:
    return len(c.conn.session.inflight)


def test_qos2_inbound_exactly_once(client):
    """[MQTT-4.3.3-*] a re-sent QoS 2 PUBLISH before PUBREL is not forwarded again."""
    s = client(4)
    s.connect("s")
    s.subscribe(("a", 2))
    p = client(4)
    p.connect("p")
    assert [type(x) for x in p.publish("a", b"x", qos=2, packet_id=5)] == [Pubrec]
    p.send(Publish("a", b"x", 2, False, True, 5))  # DUP re-send
    assert [type(x) for x in p.received()] == [Pubrec]
    p.send(Pubrel(5))
    assert [(type(x), x.packet_id) for x in p.received()] == [(Pubcomp, 5)]
    assert len(s.publishes()) == 1
    # The id is free again: a new message with id 5 is a new message.
    p.publish("a", b"y", qos=2, packet_id=5)
    assert [m.payload for m in s.publishes()] == [b"y"]


def test_qos2_outbound_flow(client):
    s = client(4)
    s.connect("s")
    s.subscribe(("a", 2))
    p = client(4)
    p.connect("p")
    p.publish("a", b"x", qos=2)
    (m,) = s.publishes()
    s.send(Pubrec(m.packet_id))
    (rel,) = s.received()
    assert isinstance(rel, Pubrel) and rel.packet_id == m.packet_id
    s.send(Pubcomp(m.packet_id))
    assert broker_inflight(s) == 0


def test_qos2_inbound_state_survives_reconnect(client):
    """[MQTT-4.3.3-*] PUBREL after a reconnect of a persistent session completes the flow
    without a second delivery."""
    s = client(4)
    s.connect("s")
    s.subscribe(("a", 0))
    p = client(4)
    p.connect("pub", clean=False)
    p.publish("a", b"once", qos=2, packet_id=9)
    p.conn.connection_lost()
    p = client(4)
    assert p.connect("pub", clean=False).session_present
    p.send(Publish("a", b"once", 2, False, True, 9))
    assert [type(x) for x in p.received()] == [Pubrec]
    p.send(Pubrel(9))
    assert [type(x) for x in p.received()] == [Pubcomp]
    assert [m.payload for m in s.publishes()] == [b"once"]


def test_redelivery_with_dup_after_reconnect(client):
    """[MQTT-4.4.0-1] unacknowledged PUBLISH re-sent with DUP=1 on session resumption;
    [MQTT-3.3.1-1] DUP set; PUBREL re-sent for messages past PUBREC."""
    s = client(4)
    s.connect("s", clean=False)
    s.subscribe(("a", 2), ("b", 1))
    p = client(4)
    p.connect("p")
    p.publish("a", b"q2", qos=2)
    p.publish("b", b"q1", qos=1)
    m2, m1 = s.publishes()
    s.send(Pubrec(m2.packet_id))
    assert isinstance(s.received()[0], Pubrel)
    s.conn.connection_lost()
    s = client(4)
    assert s.connect("s", clean=False).session_present
    pkts = s.received()
    assert [(type(x).__name__, x.packet_id) for x in pkts] == [
        ("Pubrel", m2.packet_id),
        ("Publish", m1.packet_id),
    ]
    assert pkts[1].dup is True and pkts[1].payload == b"q1"
    s.send(Pubcomp(m2.packet_id), Puback(m1.packet_id))
    assert broker_inflight(s) == 0


def test_offline_queue_delivered_in_order(client):
    """[MQTT-4.6.0-*] messages queued for an offline persistent session arrive in order;
    QoS 0 is not queued for an offline client."""
    s = client(4)
    s.connect("s", clean=False)
    s.subscribe(("t", 1))
    s.send(Disconnect())
    p = client(4)
    p.connect("p")
    for i in range(5):
        p.publish("t", str(i).encode(), qos=1)
    p.publish("t", b"q0", qos=0)
    s = client(4)
    s.connect("s", clean=False)
    got = s.publishes()
    assert [m.payload for m in got] == [b"0", b"1", b"2", b"3", b"4"]
    assert all(not m.dup for m in got)


def test_inflight_window_and_ordering(make_broker, core_impl):
    """max_inflight bounds unacknowledged QoS 1 messages; the rest follow in order."""
    from .conftest import FakeClient

    b = make_broker(max_inflight=2)
    s = FakeClient(b, core_impl, 4)
    s.connect("s")
    s.subscribe(("t", 1))
    p = FakeClient(b, core_impl, 4)
    p.connect("p")
    for i in range(5):
        p.publish("t", str(i).encode(), qos=1)
    got = s.publishes()
    assert [m.payload for m in got] == [b"0", b"1"]
    s.send(Puback(got[0].packet_id))
    got2 = s.publishes()
    assert [m.payload for m in got2] == [b"2"]
    s.send(Puback(got[1].packet_id), Puback(got2[0].packet_id))
    assert [m.payload for m in s.publishes()] == [b"3", b"4"]


def test_offline_queue_limit_drops_newest_and_counts(make_broker, core_impl):
    """Queue bound: at max_queued_messages new messages are dropped (mosquitto) and counted."""
    from .conftest import FakeClient

    b = make_broker(max_queued_messages=3)
    s = FakeClient(b, core_impl, 4)
    s.connect("s", clean=False)
    s.subscribe(("t", 1))
    s.send(Disconnect())
    p = FakeClient(b, core_impl, 4)
    p.connect("p")
    for i in range(5):
        p.publish("t", str(i).encode(), qos=1)
    assert b.stats.dropped_queue_full == 2 and b.sessions["s"].dropped == 2
    s = FakeClient(b, core_impl, 4)
    s.connect("s", clean=False)
    assert [m.payload for m in s.publishes()] == [b"0", b"1", b"2"]


def test_retained_semantics(client):
    """[MQTT-3.3.1-5] stored, [MQTT-3.3.1-6] sent on subscribe with RETAIN=1 [MQTT-3.3.1-8],
    replaced by newer, [MQTT-3.3.1-10/11] deleted by empty payload, [MQTT-3.3.1-9] live
    deliveries carry RETAIN=0 (3.1.1)."""
    p = client(4)
    p.connect("p")
    p.publish("r/a", b"1", qos=1, retain=True)
    p.publish("r/a", b"2", qos=1, retain=True)
    p.publish("r/b", b"3", qos=0, retain=True)
    s = client(4)
    s.connect("s")
    s.subscribe(("r/+", 2))
    got = sorted((m.topic, m.payload, m.qos, m.retain) for m in s.after_suback)
    assert got == [("r/a", b"2", 1, True), ("r/b", b"3", 0, True)]
    s.ack_all(s.after_suback)
    p.publish("r/a", b"live", qos=0, retain=True)
    (live,) = s.publishes()
    assert live.retain is False
    p.publish("r/a", b"", qos=0, retain=True)
    (empty,) = s.publishes()
    assert empty.payload == b""
    s2 = client(4)
    s2.connect("s2")
    s2.subscribe("r/#")
    assert [m.topic for m in s2.after_suback] == ["r/b"]


def test_retained_wildcard_filters_and_dollar(client, broker):
    broker.publish("$SYS/x", b"s", retain=True)
    broker.publish("a", b"1", retain=True)
    broker.publish("a/b/c", b"2", retain=True)
    s = client(4)
    s.connect("s")
    s.subscribe("#")
    assert sorted(m.topic for m in s.after_suback) == ["a", "a/b/c"]
    s.subscribe("a/#")
    assert sorted(m.topic for m in s.after_suback) == ["a", "a/b/c"]
    s.subscribe("+/+/c")
    assert [m.topic for m in s.after_suback] == ["a/b/c"]
    s.subscribe("$SYS/#")
    assert [m.topic for m in s.after_suback] == ["$SYS/x"]


def test_suback_codes_per_filter_311(client):
    """[MQTT-3.9.3-1] one return code per filter, in order; 0x80 for a refused filter."""
    s = client(4)
    s.connect("s")
    ack = s.subscribe(("a", 2), ("a/#/b", 1), ("c", 1))
    assert ack.reason_codes == [2, 0x80, 1]


def test_unsubscribe_stops_delivery(client):
    """[MQTT-3.10.4-1/4/5] UNSUBACK always; no more messages after unsubscribing."""
    s = client(4)
    s.connect("s")
    s.subscribe("a")
    s.send(Unsubscribe(7, ["a", "never"]))
    (ack,) = s.received()
    assert isinstance(ack, Unsuback) and ack.packet_id == 7
    p = client(4)
    p.connect("p")
    p.publish("a", b"x")
    assert s.received() == []


def test_resubscribe_replaces(client, broker):
    """[MQTT-3.8.4-3] same filter again replaces the subscription (new QoS), one entry."""
    s = client(4)
    s.connect("s")
    s.subscribe(("a", 0))
    s.subscribe(("a", 1))
    assert broker.subscriptions.count == 1
    broker.publish("a", b"x", qos=1)
    (m,) = s.publishes()
    assert m.qos == 1


def test_sys_topics_published(make_broker, core_impl, clock):
    from .conftest import FakeClient

    b = make_broker(sys_interval=10)
    s = FakeClient(b, core_impl, 4)
    s.connect("s")
    s.subscribe("$SYS/broker/#")
    b.tick()
    topics = {m.topic: m.payload for m in s.publishes()}
    assert topics["$SYS/broker/version"].startswith(b"mqttfast version")
    assert topics["$SYS/broker/clients/connected"] == b"1"
    assert "$SYS/broker/load/messages/received/1min" in topics
    clock.advance(5)
    b.tick()
    assert s.received() == []
    clock.advance(5)
    b.tick()
    assert "$SYS/broker/uptime" in {m.topic for m in s.publishes()}


def test_client_cannot_publish_to_sys(client):
    s = client(4)
    s.connect("s")
    s.subscribe("$SYS/#")
    p = client(4)
    p.connect("p")
    p.publish("$SYS/broker/version", b"fake", qos=1)
    assert s.received() == []


def test_publish_authorisation_follows_the_hooks_in_place(client, broker):
    """The default hooks are not called per PUBLISH (they allow all); hooks that override
    authorise_publish are, also when set after clients connected (the plug-in manager
    replaces broker.hooks), and a refused QoS 0 message reaches nobody."""
    from mqttfast.core.hooks import Hooks

    s = client(4)
    s.connect("s")
    s.subscribe("t/#")
    p = client(4)
    p.connect("p")
    p.publish("t/open", b"1")
    asked = []

    class NoSecrets(Hooks):
        def authorise_publish(self, client, topic, qos, retain):  # type: ignore[no-untyped-def]
            asked.append(topic)
            return not topic.startswith("t/secret")

    broker.hooks = NoSecrets()
    p.publish("t/secret", b"2")
    p.publish("t/public", b"3")
    assert asked == ["t/secret", "t/public"]
    assert [m.payload for m in s.publishes()] == [b"1", b"3"]


def test_fanout_encodes_once_per_shape(client):
    """The same head bytes are written to every subscriber of one shape."""
    subs = []
    for i in range(3):
        c = client(4)
        c.connect(f"s{i}")
        c.subscribe(("t", 1))
        subs.append(c)
    seen = []
    for c in subs:
        c.sink.writelines = lambda parts, c=c: seen.append(tuple(parts))
    p = client(4)
    p.connect("p")
    p.publish("t", b"payload", qos=1)
    assert len(seen) == 3
    assert seen[0][0] is seen[1][0] is seen[2][0]
    assert len({s[1] for s in seen}) in (1, 2, 3)


def test_long_subscriber_queue_pauses_publisher(make_broker, core_impl):
    """An online subscriber whose queue passes half of max_queued_messages pauses the
    publisher instead of losing messages; acknowledgements drain it and resume reading."""
    from .conftest import FakeClient

    b = make_broker(max_inflight=1, max_queued_messages=4)
    s = FakeClient(b, core_impl, 4)
    s.connect("s")
    s.subscribe(("t", 1))
    p = FakeClient(b, core_impl, 4)
    p.connect("p")
    for i in range(4):
        p.publish("t", str(i).encode(), qos=1)
    assert p.sink.paused
    got = []
    for _ in range(4):
        (m,) = s.publishes()
        got.append(m.payload)
        s.send(Puback(m.packet_id))
    assert got == [b"0", b"1", b"2", b"3"] and not p.sink.paused
    assert b.stats.dropped_queue_full == 0


def test_pause_takes_effect_within_one_read(make_broker, core_impl):
    """One read can hold many PUBLISHes (a client flushing its offline queue at
    reconnect): once a packet of it pauses the publisher, the rest of the read waits
    (Connection.deferred) instead of overflowing the subscriber's queue. Nothing is
    dropped, acknowledged before it is handled, or reordered; the transport hands the
    rest back when reading resumes (resume_deferred) [MQTT-4.6.0-6]."""
    from .conftest import FakeClient

    b = make_broker(max_inflight=1, max_queued_messages=4)
    s = FakeClient(b, core_impl, 4)
    s.connect("s")
    s.subscribe(("t", 1))
    p = FakeClient(b, core_impl, 4)
    p.connect("p")
    p.send(*(Publish("t", str(i).encode(), qos=1, packet_id=i + 1) for i in range(12)))
    assert p.sink.paused
    acked = [a.packet_id for a in p.received() if isinstance(a, Puback)]
    assert acked == [1, 2, 3, 4]  # handled; the other 8 wait unacknowledged
    assert len(p.conn.deferred) == 8
    got = []
    for _ in range(60):
        for m in s.publishes():
            got.append(m.payload)
            s.send(Puback(m.packet_id))
        if not p.sink.paused:
            p.conn.resume_deferred()  # what the transport does when it resumes reading
        if len(got) == 12:
            break
    assert got == [str(i).encode() for i in range(12)]
    acked += [a.packet_id for a in p.received() if isinstance(a, Puback)]
    assert acked == list(range(1, 13))
    assert b.stats.dropped_queue_full == 0 and not p.conn.deferred


class _FarPublisher:
    """A publisher whose pause takes effect late (on another node, pausing it is a
    message there): what the core's back-pressure reads of a publisher."""

    state = 1  # CONNECTED
    session = None

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        self.blocked_by: Any = frozenset()
        self.sink = self
        self.pauses = 0

    def pause_reading(self) -> None:
        self.pauses += 1

    def resume_reading(self) -> None:
        pass


def test_messages_of_a_paused_publisher_still_on_their_way_are_queued(make_broker, core_impl):
    """Over max_queued_messages, an online subscriber still queues the messages of a
    publisher it has paused (they were on their way: on another node the pause lands a
    round trip later), up to 4x the limit; others are dropped as before, counted."""
    from mqttfast.core.message import Message

    from .conftest import FakeClient

    b = make_broker(max_inflight=1, max_queued_messages=4)
    s = FakeClient(b, core_impl, 4)
    s.connect("s")
    s.subscribe(("t", 1))
    far = _FarPublisher("far")
    for i in range(20):
        b.router.publish(Message("t", str(i).encode(), 1, origin="far"), 0.0, far)
    assert far.pauses == 1  # paused once, at the high water
    assert len(s.conn.session.queue) == 16 and b.stats.dropped_queue_full == 3
    other = _FarPublisher("other")  # not paused by s: the plain limit
    b.router.publish(Message("t", b"x", 1, origin="other"), 0.0, other)
    assert b.stats.dropped_queue_full == 4
    got = []
    for _ in range(40):
        for m in s.publishes():
            got.append(m.payload)
            s.send(Puback(m.packet_id))
    assert got == [str(i).encode() for i in range(17)]


def test_mutual_publishers_never_deadlock(make_broker, core_impl):
    """Two clients publishing QoS 1 to each other: a client with messages in flight
    toward it is never paused, so its acknowledgements keep flowing."""
    from .conftest import FakeClient

    b = make_broker(max_inflight=1, max_queued_messages=2)
    a = FakeClient(b, core_impl, 4)
    a.connect("a")
    a.subscribe(("to/a", 1))
    c = FakeClient(b, core_impl, 4)
    c.connect("c")
    c.subscribe(("to/c", 1))
    c.publish("to/a", b"x", qos=1)  # a now has one in flight
    for _i in range(3):
        a.publish("to/c", b"y", qos=1)  # c's queue grows past the high water
    assert not a.sink.paused  # a has an unacknowledged message toward it


def test_many_retained_on_subscribe_neither_dropped_nor_flooding(make_broker, core_impl):
    """A '#' subscription over more retained messages than the queue bound: QoS 1 ones
    are fed through the in-flight window as acks come back, QoS 0 ones stop while the
    output is congested and resume with it; nothing is dropped."""
    from .conftest import FakeClient

    b = make_broker(max_inflight=10, max_queued_messages=100)
    for i in range(500):
        b.publish(f"r/{i}", b"q1", qos=1, retain=True)
    s = FakeClient(b, core_impl, 4)
    s.connect("s")
    s.subscribe(("#", 1))
    got = list(s.after_suback)
    assert len(got) == 10
    for _ in range(100):
        if not got:
            break
        batch, got = got, []
        for m in batch:
            s.send(Puback(m.packet_id))
        got = s.publishes()
        got_all = got
        assert len(got_all) <= 10
    assert b.stats.dropped_queue_full == 0 and not s.conn.session.backlog

    b2 = make_broker()
    for i in range(300):
        b2.publish(f"z/{i}", b"q0", retain=True)
    c = FakeClient(b2, core_impl, 4)
    c.connect("c")
    # Congested from the first write: only what was written before the flag counts.
    c.sink.write = lambda data, c=c: (c.sink.chunks.append(bytes(data)), c.conn.writing_paused())
    c.subscribe("z/#")
    first = c.after_suback
    assert len(first) <= 1  # the SUBACK itself already congested the fake transport
    c.sink.write = lambda data, c=c: c.sink.chunks.append(bytes(data))
    c.conn.writing_resumed()
    assert len(first) + len(c.publishes()) == 300
    assert b2.stats.dropped_qos0_buffer_full == 0


def test_stuck_subscriber_stops_pausing_publishers(make_broker, core_impl, clock):
    """A subscriber that never drains pauses its publishers at most max_publisher_pause;
    then they flow again (others keep receiving) and its QoS 0 excess is dropped, counted."""
    from .conftest import FakeClient

    b = make_broker(output_hard_limit=1000, max_publisher_pause=1.0)
    stuck = FakeClient(b, core_impl, 4)
    stuck.connect("stuck")
    stuck.subscribe("t")
    fast = FakeClient(b, core_impl, 4)
    fast.connect("fast")
    fast.subscribe("t")
    p = FakeClient(b, core_impl, 4)
    p.connect("p")
    stuck.conn.writing_paused()
    stuck.sink.buffer_size = 5000
    p.publish("t", b"1")
    assert p.sink.paused
    clock.advance(0.5)
    b.tick()
    assert p.sink.paused
    clock.advance(0.6)
    b.tick()
    assert not p.sink.paused
    p.publish("t", b"2")
    assert not p.sink.paused
    assert [m.payload for m in fast.publishes()] == [b"1", b"2"]
    assert b.stats.dropped_qos0_buffer_full == 2
    # Once it drains it may pause publishers again.
    stuck.sink.buffer_size = 0
    stuck.conn.writing_resumed()
    stuck.conn.writing_paused()
    p.publish("t", b"3")
    assert p.sink.paused


def test_topic_level_and_subscription_limits(make_broker, core_impl):
    """max_topic_levels refuses deep topics (v5 0x90 / 0x8F, 3.1.1 dropped / 0x80);
    max_subscriptions_per_client gives 0x97 (3.1.1 0x80) beyond the limit."""
    from mqttfast.codec.packets import Subscription as Sub

    from .conftest import FakeClient

    b = make_broker(max_topic_levels=3, max_subscriptions_per_client=2)
    s = FakeClient(b, core_impl, 5)
    s.connect("s")
    ack = s.subscribe(Sub("a/b/c"), Sub("a/b/c/d"), Sub("x"), Sub("y"))
    assert ack.reason_codes == [0, 0x8F, 0, 0x97]
    ack = s.subscribe(Sub("x", 1))  # replacing an existing one is not a new subscription
    assert ack.reason_codes == [1]
    p = FakeClient(b, core_impl, 5)
    p.connect("p")
    (a,) = p.publish("a/b/c/d", b"deep", qos=1)
    assert a.reason_code == 0x90
    p.publish("a/b/c", b"ok")
    assert [m.payload for m in s.publishes()] == [b"ok"]
    s3 = FakeClient(b, core_impl, 4)
    s3.connect("s3")
    assert s3.subscribe(Sub("a/b/c/d"), Sub("q"), Sub("r"), Sub("t")).reason_codes == [
        0x80,
        0,
        0,
        0x80,
    ]
