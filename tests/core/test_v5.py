"""MQTT 5.0 features in the core: properties, reason codes, flow control, aliases,
subscription options, shared subscriptions, expiry, will delay, enhanced auth."""

from __future__ import annotations

from mqttfast.codec.packets import Auth, Unsuback

from .conftest import (
    Disconnect,
    FakeClient,
    Properties,
    Puback,
    Publish,
    Pubrec,
    Pubrel,
    Subscription,
    Unsubscribe,
    Will,
)


def test_puback_no_matching_subscribers(client):
    """3.4.2.1: PUBACK/PUBREC 0x10 when nobody is subscribed (v5 only)."""
    p = client(5)
    p.connect("p")
    (ack,) = p.publish("nobody", b"x", qos=1)
    assert isinstance(ack, Puback) and ack.reason_code == 0x10
    (rec,) = p.publish("nobody", b"x", qos=2)
    assert isinstance(rec, Pubrec) and rec.reason_code == 0x10
    p3 = client(4)
    p3.connect("p3")
    (ack,) = p3.publish("nobody", b"x", qos=1)
    assert ack.reason_code == 0


def test_properties_forwarded_unchanged(client):
    """3.3.2.3: response topic, correlation data, content type, payload format and user
    properties reach v5 subscribers unchanged and in order; 3.1.1 subscribers get none."""
    s5 = client(5)
    s5.connect("s5")
    s5.subscribe("req")
    s4 = client(4)
    s4.connect("s4")
    s4.subscribe("req")
    p = client(5)
    p.connect("p")
    props = Properties(
        response_topic="resp/1",
        correlation_data=b"\x01\x02",
        content_type="text/plain",
        payload_format_indicator=1,
        user_property=[("b", "2"), ("a", "1"), ("b", "3")],
    )
    p.publish("req", "hé".encode(), properties=props)
    (m,) = s5.publishes()
    mp = m.properties
    assert (
        mp.response_topic,
        mp.correlation_data,
        mp.content_type,
        mp.payload_format_indicator,
        mp.user_property,
    ) == ("resp/1", b"\x01\x02", "text/plain", 1, [("b", "2"), ("a", "1"), ("b", "3")])
    (m4,) = s4.publishes()
    assert m4.payload == "hé".encode()


def test_payload_format_invalid_0x99(client):
    p = client(5)
    p.connect("p")
    (ack,) = p.publish("t", b"\xff\xfe", qos=1, properties=Properties(payload_format_indicator=1))
    assert ack.reason_code == 0x99


def test_inbound_topic_alias(client):
    """3.3.2.3.4: alias set with a topic, then used with an empty topic."""
    s = client(4)
    s.connect("s")
    s.subscribe("long/topic/name")
    p = client(5)
    p.connect("p")
    p.publish("long/topic/name", b"1", properties=Properties(topic_alias=3))
    p.publish("", b"2", properties=Properties(topic_alias=3))
    assert [(m.topic, m.payload) for m in s.publishes()] == [
        ("long/topic/name", b"1"),
        ("long/topic/name", b"2"),
    ]


def test_invalid_topic_alias_disconnect_0x94(client):
    """[MQTT-3.3.2-8/9] alias 0 or above Topic Alias Maximum: DISCONNECT 0x94."""
    p = client(5)
    p.connect("p")
    p.send(Publish("t", b"x", properties=Properties(topic_alias=11)))  # maximum is 10
    (d,) = p.received()
    assert isinstance(d, Disconnect) and d.reason_code == 0x94 and p.closed


def test_unknown_topic_alias_protocol_error(client):
    p = client(5)
    p.connect("p")
    p.send(Publish("", b"x", properties=Properties(topic_alias=2)))
    (d,) = p.received()
    assert d.reason_code == 0x82 and p.closed


def test_outbound_topic_aliases_within_client_maximum(client):
    """Server->client aliases: first send carries topic+alias, then empty topic + alias;
    never more aliases than the client's Topic Alias Maximum [MQTT-3.3.2-10]."""
    s = client(5)
    s.connect("s", properties=Properties(topic_alias_maximum=1))
    s.subscribe("#")
    p = client(5)
    p.connect("p")
    p.publish("a/b", b"1")
    p.publish("a/b", b"2")
    p.publish("c", b"3")
    p.publish("c", b"4")
    p.publish("a/b", b"5")
    m1, m2, m3, m4, m5 = s.publishes()
    assert (m1.topic, m1.properties.topic_alias) == ("a/b", 1)
    assert (m2.topic, m2.properties.topic_alias) == ("", 1)
    # Maximum 1: the least recently used mapping is replaced (topic + alias again).
    assert (m3.topic, m3.properties.topic_alias) == ("c", 1)
    assert (m4.topic, m4.properties.topic_alias) == ("", 1)
    assert (m5.topic, m5.properties.topic_alias) == ("a/b", 1)


def test_no_local(client):
    """3.8.3.1 No Local: own messages not delivered on that subscription."""
    c = client(5)
    c.connect("c")
    c.subscribe(Subscription("t", 0, no_local=True))
    c.publish("t", b"mine")
    assert c.received() == []
    other = client(5)
    other.connect("o")
    other.publish("t", b"theirs")
    assert [m.payload for m in c.publishes()] == [b"theirs"]


def test_retain_as_published(client):
    s = client(5)
    s.connect("s")
    s.subscribe(Subscription("rap", 0, retain_as_published=True), Subscription("norap", 0))
    p = client(5)
    p.connect("p")
    p.publish("rap", b"1", retain=True)
    p.publish("norap", b"2", retain=True)
    assert [(m.topic, m.retain) for m in s.publishes()] == [("rap", True), ("norap", False)]


def test_retain_handling(client, broker):
    """Retain Handling 0: always; 1: only if the subscription is new; 2: never."""
    broker.publish("r", b"kept", retain=True)
    s = client(5)
    s.connect("s")
    s.subscribe(Subscription("r", 0, retain_handling=1))
    assert len(s.after_suback) == 1
    s.subscribe(Subscription("r", 0, retain_handling=1))
    assert s.after_suback == []
    s.subscribe(Subscription("r", 0, retain_handling=0))
    assert len(s.after_suback) == 1
    s2 = client(5)
    s2.connect("s2")
    s2.subscribe(Subscription("r", 0, retain_handling=2))
    assert s2.after_suback == []


def test_subscription_identifiers_one_copy_all_ids(client):
    """3.3.4: one copy per client at the highest QoS, carrying every matching
    subscription identifier."""
    s = client(5)
    s.connect("s")
    s.subscribe(("a/#", 0), properties=Properties(subscription_identifier=[7]))
    s.subscribe(("a/+", 1), properties=Properties(subscription_identifier=[9]))
    s.subscribe(("a/b", 1))
    p = client(5)
    p.connect("p")
    p.publish("a/b", b"x", qos=1)
    (m,) = s.publishes()
    assert m.qos == 1 and sorted(m.properties.subscription_identifier) == [7, 9]


def test_shared_subscription_round_robin_and_no_retained(client, broker):
    """4.8.2: each message to one member; retained messages not sent on shared subscribe."""
    broker.publish("job/1", b"old", retain=True)
    a = client(5)
    a.connect("a")
    a.subscribe(("$share/g/job/+", 1))
    assert a.after_suback == []
    b = client(5)
    b.connect("b")
    b.subscribe(("$share/g/job/+", 1))
    n = client(5)
    n.connect("n")
    n.subscribe(("job/+", 0))
    p = client(5)
    p.connect("p")
    for i in range(4):
        p.publish("job/1", str(i).encode(), qos=1)
    ga = [m.payload for m in a.publishes()]
    gb = [m.payload for m in b.publishes()]
    assert sorted(ga + gb) == [b"0", b"1", b"2", b"3"] and len(ga) == 2 and len(gb) == 2
    assert len(n.publishes()) == 4


def test_shared_message_moves_to_other_member_when_session_ends(client):
    """4.8.2: a QoS 1 message unacknowledged by a member whose session ends goes to another."""
    a = client(5)
    a.connect("a")
    a.subscribe(("$share/g/t", 1))
    b = client(5)
    b.connect("b")
    b.subscribe(("$share/g/t", 1))
    p = client(5)
    p.connect("p")
    p.publish("t", b"1", qos=1)
    p.publish("t", b"2", qos=1)
    got_a = a.publishes()
    got_b = b.publishes()
    assert len(got_a) == 1 and len(got_b) == 1
    a.conn.connection_lost()  # session expiry 0: ends now
    moved = b.publishes()
    assert [m.payload for m in moved] == [got_a[0].payload]


def test_shared_no_local_is_protocol_error(client):
    """[MQTT-3.8.3-4]"""
    c = client(5)
    c.connect("c")
    c.send(
        __import__("mqttfast.codec.packets", fromlist=["Subscribe"]).Subscribe(
            1, [Subscription("$share/g/t", 0, no_local=True)]
        )
    )
    (d,) = c.received()
    assert isinstance(d, Disconnect) and d.reason_code == 0x82


def test_suback_v5_reason_codes(make_broker, core_impl):
    b = make_broker(shared_subscription_available=False, wildcard_subscription_available=False)
    c = FakeClient(b, core_impl, 5)
    c.connect("c")
    ack = c.subscribe(("ok", 1), ("a/#/x", 0), ("$share/g/t", 0), ("w/+", 0))
    assert ack.reason_codes == [1, 0x8F, 0x9E, 0xA2]
    # "$share//t" is a protocol error (DISCONNECT 0x82), not SUBACK 0x8F [MQTT-4.8.2-1]:
    # tests/broker_v5/test_v5_13_strict.py checks it on a real socket.


def test_unsuback_v5_codes(client):
    c = client(5)
    c.connect("c")
    c.subscribe("a")
    c.send(Unsubscribe(3, ["a", "b"]))
    (ack,) = c.received()
    assert isinstance(ack, Unsuback) and ack.reason_codes == [0, 0x11]


def test_message_expiry_queued_and_decremented(client, clock):
    """3.3.2.3.3: expired messages are not delivered; the forwarded interval is the
    received one minus the time waited."""
    s = client(5)
    s.connect("s", clean=False, properties=Properties(session_expiry_interval=300))
    s.subscribe(("t", 1))
    s.send(Disconnect())
    p = client(5)
    p.connect("p")
    p.publish("t", b"short", qos=1, properties=Properties(message_expiry_interval=5))
    p.publish("t", b"long", qos=1, properties=Properties(message_expiry_interval=60))
    clock.advance(10)
    s = client(5)
    s.connect("s", clean=False, properties=Properties(session_expiry_interval=300))
    (m,) = s.publishes()
    assert m.payload == b"long" and m.properties.message_expiry_interval == 50


def test_retained_message_expiry(client, broker, clock):
    p = client(5)
    p.connect("p")
    p.publish("r", b"x", retain=True, properties=Properties(message_expiry_interval=3))
    clock.advance(4)
    s = client(5)
    s.connect("s")
    s.subscribe("r")
    assert s.after_suback == [] and broker.retained.count == 0


def test_session_expiry(client, broker, clock):
    """3.1.2.11.2: session kept for the interval after disconnect, then freed."""
    c = client(5)
    c.connect("e", clean=False, properties=Properties(session_expiry_interval=30))
    c.subscribe("t")
    c.send(Disconnect())
    clock.advance(29)
    broker.tick()
    assert "e" in broker.sessions
    clock.advance(2)
    broker.tick()
    assert "e" not in broker.sessions and broker.subscriptions.count == 0


def test_disconnect_can_change_session_expiry(client, broker):
    c = client(5)
    c.connect("e", clean=False, properties=Properties(session_expiry_interval=30))
    c.send(Disconnect(0, Properties(session_expiry_interval=0)))
    assert "e" not in broker.sessions


def test_disconnect_expiry_after_zero_is_protocol_error(client):
    """[MQTT-3.14.2-2]"""
    c = client(5)
    c.connect("e")
    c.send(Disconnect(0, Properties(session_expiry_interval=10)))
    (d,) = c.received()
    assert isinstance(d, Disconnect) and d.reason_code == 0x82


def test_will_delay_published_after_delay(client, broker, clock):
    """3.1.3.2.2: delayed will published when the delay expires."""
    s = client(5)
    s.connect("s")
    s.subscribe("w")
    c = client(5)
    c.connect(
        "c",
        clean=False,
        properties=Properties(session_expiry_interval=100),
        will=Will("w", b"late", 0, properties=Properties(will_delay_interval=10, content_type="x")),
    )
    c.conn.connection_lost()
    broker.tick()
    assert s.received() == []
    clock.advance(10)
    broker.tick()
    (m,) = s.publishes()
    assert m.payload == b"late" and m.properties.content_type == "x"


def test_will_delay_cancelled_by_reconnect(client, broker, clock):
    s = client(5)
    s.connect("s")
    s.subscribe("w")
    props = Properties(session_expiry_interval=100)
    c = client(5)
    c.connect(
        "c",
        clean=False,
        properties=props,
        will=Will("w", b"late", 0, properties=Properties(will_delay_interval=10)),
    )
    c.conn.connection_lost()
    clock.advance(5)
    c = client(5)
    c.connect("c", clean=False, properties=props)
    clock.advance(10)
    broker.tick()
    assert s.received() == []


def test_will_published_at_session_end_before_delay(client, broker, clock):
    """The will goes at the earlier of will delay and session expiry."""
    s = client(5)
    s.connect("s")
    s.subscribe("w")
    c = client(5)
    c.connect(
        "c",
        clean=False,
        properties=Properties(session_expiry_interval=3),
        will=Will("w", b"x", 0, properties=Properties(will_delay_interval=60)),
    )
    c.conn.connection_lost()
    clock.advance(3)
    broker.tick()
    assert [m.payload for m in s.publishes()] == [b"x"]


def test_client_receive_maximum_honoured(client):
    """[MQTT-3.3.4-7] never more unacknowledged QoS 1/2 than the client's Receive Maximum."""
    s = client(5)
    s.connect("s", properties=Properties(receive_maximum=1))
    s.subscribe(("t", 2))
    p = client(5)
    p.connect("p")
    p.publish("t", b"1", qos=1)
    p.publish("t", b"2", qos=2)
    p.send(Pubrel(2))
    (m,) = s.publishes()
    s.send(Puback(m.packet_id))
    (m2,) = [x for x in s.received() if isinstance(x, Publish)]
    assert m2.payload == b"2"


def test_receive_maximum_exceeded_0x93(make_broker, core_impl):
    """[MQTT-3.3.4-9] a client sending more QoS 2 than our Receive Maximum: DISCONNECT 0x93."""
    b = make_broker(receive_maximum=2)
    p = FakeClient(b, core_impl, 5)
    p.connect("p")
    p.publish("t", b"1", qos=2, packet_id=1)
    p.publish("t", b"2", qos=2, packet_id=2)
    p.send(Publish("t", b"3", 2, False, False, 3))
    d = p.received()[-1]
    assert isinstance(d, Disconnect) and d.reason_code == 0x93


def test_client_maximum_packet_size(client):
    """[MQTT-3.1.2-25] a PUBLISH too large for one subscriber is dropped for it only."""
    small = client(5)
    small.connect("small", properties=Properties(maximum_packet_size=64))
    small.subscribe(("t", 1))
    big = client(5)
    big.connect("big")
    big.subscribe(("t", 1))
    p = client(5)
    p.connect("p")
    p.publish("t", b"x" * 100, qos=1)
    p.publish("t", b"ok", qos=1)
    assert [m.payload for m in small.publishes()] == [b"ok"]
    assert len(big.publishes()) == 2


def test_server_shutdown_disconnect_0x8b(client, broker):
    c5 = client(5)
    c5.connect("c5")
    c4 = client(4)
    c4.connect("c4")
    broker.shutdown()
    (d,) = c5.received()
    assert isinstance(d, Disconnect) and d.reason_code == 0x8B
    assert c5.closed and c4.closed and c4.received() == []


def test_enhanced_auth_challenge_response(make_broker, core_impl):
    """4.12: CONNECT with a method -> AUTH 0x18 -> AUTH 0x18 -> CONNACK; re-auth 0x19."""
    from mqttfast.core.hooks import AUTH_CONTINUE, AUTH_FAIL, AUTH_SUCCESS, AuthStep, Hooks

    class Echo(Hooks):
        def auth_start(self, client, method, data):
            if method != "ECHO":
                return None
            return AuthStep(AUTH_CONTINUE, b"challenge", state=data)

        def auth_continue(self, client, method, data, state):
            if data == b"challenge:" + state:
                return AuthStep(AUTH_SUCCESS, b"welcome")
            return AuthStep(AUTH_FAIL, reason_code=0x87)

    b = make_broker()
    b.hooks = Echo()
    c = FakeClient(b, core_impl, 5)
    from mqttfast.codec.packets import Connect

    c.send(
        Connect(
            "ea", 5, properties=Properties(authentication_method="ECHO", authentication_data=b"n1")
        )
    )
    (a,) = c.received()
    assert (
        isinstance(a, Auth)
        and a.reason_code == 0x18
        and a.properties.authentication_data == b"challenge"
    )
    c.send(
        Auth(0x18, Properties(authentication_method="ECHO", authentication_data=b"challenge:n1"))
    )
    (ack,) = c.received()
    assert ack.reason_code == 0 and ack.properties.authentication_data == b"welcome"
    # Re-authentication.
    c.send(Auth(0x19, Properties(authentication_method="ECHO", authentication_data=b"n2")))
    (a,) = c.received()
    assert a.reason_code == 0x18
    c.send(
        Auth(0x18, Properties(authentication_method="ECHO", authentication_data=b"challenge:n2"))
    )
    (ok,) = c.received()
    assert isinstance(ok, Auth) and ok.reason_code == 0
    # Unknown method: 0x8C.
    c2 = FakeClient(b, core_impl, 5)
    c2.send(Connect("x", 5, properties=Properties(authentication_method="NOPE")))
    (ack,) = c2.received()
    assert ack.reason_code == 0x8C and c2.closed


def test_takeover_will_delay_cancelled_when_resumed(client, broker):
    """3.1.3.2.2: takeover with Clean Start 0 and a will delay > 0: the will is not sent."""
    s = client(5)
    s.connect("s")
    s.subscribe("w")
    props = Properties(session_expiry_interval=60)
    a = client(5)
    a.connect(
        "dup",
        clean=False,
        properties=props,
        will=Will("w", b"x", 0, properties=Properties(will_delay_interval=5)),
    )
    b = client(5)
    b.connect("dup", clean=False, properties=props)
    assert s.received() == []
    a2 = client(4)
    a2.connect("dup4", will=Will("w", b"y"))
    b2 = client(4)
    b2.connect("dup4")
    assert [m.payload for m in s.publishes()] == [b"y"]


def test_backpressure_qos0_drop_and_publisher_pause(make_broker, core_impl):
    """A congested subscriber pauses publishers; over the hard limit QoS 0 is dropped
    (counted), QoS 1 is queued; draining resumes the publisher and the queue."""
    b = make_broker(output_hard_limit=1000)
    s = FakeClient(b, core_impl, 4)
    s.connect("s")
    s.subscribe(("t", 1))
    p = FakeClient(b, core_impl, 4)
    p.connect("p")
    s.conn.writing_paused()
    p.publish("t", b"a")
    assert p.sink.paused and len(s.publishes()) == 1
    s.sink.buffer_size = 5000
    p.publish("t", b"b")
    p.publish("t", b"c", qos=1)
    assert b.stats.dropped_qos0_buffer_full == 1 and s.received() == []
    s.sink.buffer_size = 0
    s.conn.writing_resumed()
    assert not p.sink.paused
    assert [m.payload for m in s.publishes()] == [b"c"]


def test_server_redirect_and_server_keep_alive(make_broker, core_impl):
    """4.11 redirection (0x9C/0x9D with Server Reference) and 3.2.2.3.14 Server Keep Alive."""
    b = make_broker(server_reference="other:1883")
    c = FakeClient(b, core_impl, 5)
    ack = c.connect("r")
    assert ack.reason_code == 0x9C and ack.properties.server_reference == "other:1883"
    b = make_broker(server_reference="new:1883", server_moved=True)
    c = FakeClient(b, core_impl, 5)
    assert c.connect("r").reason_code == 0x9D
    c = FakeClient(b, core_impl, 4)
    assert c.connect("r").reason_code == 3
    b = make_broker(server_keep_alive=30)
    c = FakeClient(b, core_impl, 5)
    ack = c.connect("k", keep_alive=600)
    assert ack.properties.server_keep_alive == 30 and c.conn.keepalive_limit == 45


def test_client_publish_with_subscription_identifier_protocol_error(client):
    """[MQTT-3.3.4-6] a PUBLISH from a client must not carry a Subscription Identifier."""
    p = client(5)
    p.connect("p")
    p.send(Publish("t", b"x", properties=Properties(subscription_identifier=[3])))
    (d,) = p.received()
    assert isinstance(d, Disconnect) and d.reason_code == 0x82 and p.closed


def test_response_topic_with_wildcard_protocol_error(client):
    """[MQTT-3.3.2-14] the Response Topic is a Topic Name: wildcards are a protocol error."""
    p = client(5)
    p.connect("p")
    p.send(Publish("t", b"x", properties=Properties(response_topic="r/#")))
    (d,) = p.received()
    assert d.reason_code == 0x82 and p.closed


def test_will_payload_format_invalid_connack_0x99(client):
    c = client(5)
    ack = c.connect(
        "w", will=Will("w", b"\xff", 0, properties=Properties(payload_format_indicator=1))
    )
    assert ack.reason_code == 0x99 and c.closed


def test_v311_client_not_limited_by_receive_maximum(make_broker, core_impl):
    """Receive Maximum is an MQTT 5 notion: a 3.1.1 client may have more QoS 2 open."""
    b = make_broker(receive_maximum=2)
    p = FakeClient(b, core_impl, 4)
    p.connect("p")
    for pid in range(1, 6):
        (rec,) = p.publish("t", b"x", qos=2, packet_id=pid)
        assert isinstance(rec, Pubrec)
    assert not p.closed


def test_shared_inflight_qos2_not_moved_when_session_ends(client):
    """[MQTT-4.8.2-5] an in-flight QoS 2 message of a member whose session ends is not
    sent to another member."""
    a = client(5)
    a.connect("a")
    a.subscribe(("$share/g/t", 2))
    p = client(5)
    p.connect("p")
    p.publish("t", b"once", qos=2)
    assert len(a.publishes()) == 1
    b = client(5)
    b.connect("b")
    b.subscribe(("$share/g/t", 2))
    a.conn.connection_lost()
    assert b.received() == []


def test_reason_strings_on_refusal_and_disconnect(client):
    """3.2.2.3.10 / 3.14.2.2.3: reason strings explain a refused CONNECT and a
    server DISCONNECT; none when Request Problem Information is 0."""
    c = client(5)
    ack = c.connect("", clean=False)
    assert ack.reason_code == 0x85 and ack.properties.reason_string
    c = client(5)
    ack = c.connect("", clean=False, properties=Properties(request_problem_information=0))
    assert ack.reason_code == 0x85 and (
        ack.properties is None or ack.properties.reason_string is None
    )
    c = client(5)
    c.connect("rs")
    c.send(Publish("", b"x"))
    (d,) = c.received()
    assert d.reason_code == 0x82 and d.properties.reason_string


def test_puback_quota_exceeded_when_every_queue_is_full(make_broker, core_impl):
    """3.4.2.1: 0x97 Quota exceeded when the message could not be queued anywhere."""
    b = make_broker(max_queued_messages=1)
    s = FakeClient(b, core_impl, 5)
    s.connect("s", clean=False, properties=Properties(session_expiry_interval=60))
    s.subscribe(("t", 1))
    s.send(Disconnect())
    p = FakeClient(b, core_impl, 5)
    p.connect("p")
    (a1,) = p.publish("t", b"1", qos=1)
    (a2,) = p.publish("t", b"2", qos=1)
    assert (a1.reason_code, a2.reason_code) == (0, 0x97)


def test_pubrec_failure_ends_outbound_qos2_flow(client):
    """4.3.3 / 3.5.2.1: a PUBREC with a reason code >= 0x80 ends the flow: no PUBREL,
    the packet id and the Receive Maximum slot are free again."""
    s = client(5)
    s.connect("s", properties=Properties(receive_maximum=1))
    s.subscribe(("t", 2))
    p = client(5)
    p.connect("p")
    p.publish("t", b"1", qos=2)
    p.publish("t", b"2", qos=2)
    (m1,) = s.publishes()
    s.send(Pubrec(m1.packet_id, 0x80))
    pkts = s.received()
    assert [type(x).__name__ for x in pkts] == ["Publish"] and pkts[0].payload == b"2"


def test_subscription_identifiers_unavailable_0xa1(make_broker, core_impl):
    b = make_broker(subscription_identifier_available=False)
    c = FakeClient(b, core_impl, 5)
    ack = c.connect("c")
    assert ack.properties.subscription_identifier_available == 0
    ack = c.subscribe(("t", 0), properties=Properties(subscription_identifier=[5]))
    assert ack.reason_codes == [0xA1]


def test_outbound_alias_replacement_is_least_recently_used(client):
    s = client(5)
    s.connect("s", properties=Properties(topic_alias_maximum=2))
    s.subscribe("#")
    p = client(5)
    p.connect("p")
    for t in ("a", "b", "a", "c", "a", "b"):
        p.publish(t, t.encode())
    got = [(m.topic, m.properties.topic_alias) for m in s.publishes()]
    # a->1, b->2, a hit, c replaces b (least recently used), a still aliased, b replaces c.
    assert got == [("a", 1), ("b", 2), ("", 1), ("c", 2), ("", 1), ("b", 2)]


def test_message_expiry_forwarded_unchanged_when_no_time_passed(client, clock):
    """[MQTT-3.3.2-6] the forwarded Message Expiry Interval is the received value minus the
    time waited, never more: at a clock value where (now + 60) - now is 60 plus one float
    ulp, a message forwarded at once still carries 60, not 61."""
    clock.now = 8150.0003703700995  # (now + 60) - now == 60.00000000000091 here
    assert (clock.now + 60) - clock.now > 60
    s = client(5)
    s.connect("s")
    s.subscribe(("t", 0))
    p = client(5)
    p.connect("p")
    p.publish("t", b"x", properties=Properties(message_expiry_interval=60))
    (m,) = s.publishes()
    assert m.properties.message_expiry_interval == 60
