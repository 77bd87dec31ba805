"""Connection life: CONNECT rules, keep alive, takeover, wills, session present."""

from __future__ import annotations

from mqttfast.codec.errors import MQTTError
from mqttfast.codec.packets import Pingreq, Pingresp

from .conftest import (
    Connack,
    Connect,
    Disconnect,
    Properties,
    Publish,
    Subscribe,
    Subscription,
    Will,
)


def test_empty_client_id_clean_session_gets_assigned_id(client, broker):
    """[MQTT-3.1.3-6] [MQTT-3.1.3-7] empty id + clean session: accepted with a unique id."""
    c = client(4)
    ack = c.connect("", clean=True)
    assert ack.reason_code == 0
    assert c.conn.client_id and c.conn.client_id in broker.sessions


def test_empty_client_id_v5_assigned_identifier_property(client):
    """[MQTT-3.2.2-16] v5 CONNACK carries the Assigned Client Identifier."""
    c = client(5)
    ack = c.connect("", clean=True)
    assert ack.reason_code == 0
    assert ack.properties.assigned_client_identifier == c.conn.client_id


def test_empty_client_id_persistent_session_refused_311(client, broker):
    """[MQTT-3.1.3-8] empty id + clean session 0: CONNACK 0x02 and close."""
    c = client(4)
    ack = c.connect("", clean=False)
    assert ack.reason_code == 0x02 and not ack.session_present
    assert c.closed and not broker.sessions


def test_empty_client_id_persistent_session_refused_v5(client):
    """[MQTT-3.1.3-8] (v5 form): 0x85 Client Identifier not valid."""
    c = client(5)
    ack = c.connect("", clean=False)
    assert ack.reason_code == 0x85 and c.closed


def test_mqtt31_empty_and_long_client_id_refused(client):
    """MQTT 3.1 (3.1.3.1): the identifier must be 1-23 characters; else return code 2."""
    c = client(3)
    assert c.connect("", clean=True).reason_code == 2
    c = client(3)
    assert c.connect("x" * 24).reason_code == 2
    c = client(3)
    ack = c.connect("x" * 23)
    assert ack.reason_code == 0 and not c.closed


def test_first_packet_must_be_connect(client):
    """[MQTT-3.1.0-1] anything before CONNECT closes the connection."""
    c = client(4)
    c.send(Pingreq())
    assert c.closed and c.received() == []


def test_connect_timeout(client, broker, clock):
    """No CONNECT within connect_timeout: closed by tick()."""
    c = client(4)
    clock.advance(broker.settings.connect_timeout - 0.5)
    broker.tick()
    assert not c.closed
    clock.advance(1.0)
    broker.tick()
    assert c.closed


def test_second_connect_is_protocol_violation(client):
    """[MQTT-3.1.0-2] a second CONNECT closes the connection; v5 gets DISCONNECT 0x82."""
    c = client(4)
    c.connect("c1")
    c.send(Connect("c1", 4))
    assert c.closed
    c5 = client(5)
    c5.connect("c5")
    c5.send(Connect("c5", 5))
    pkts = c5.received()
    assert isinstance(pkts[-1], Disconnect) and pkts[-1].reason_code == 0x82
    assert c5.closed


def test_session_takeover(client, broker):
    """[MQTT-3.1.4-2] a second connection with the same id closes the first; v5 gets 0x8E."""
    a = client(5)
    a.connect("same")
    b = client(5)
    b.connect("same")
    pkts = a.received()
    assert isinstance(pkts[-1], Disconnect) and pkts[-1].reason_code == 0x8E
    assert a.closed and not b.closed
    assert broker.sessions["same"].conn is b.conn


def test_keepalive_one_and_a_half_times(client, broker, clock):
    """[MQTT-3.1.2-24] close after 1.5x keep alive without a control packet; not before."""
    c = client(4)
    c.connect("ka", keep_alive=10)
    clock.advance(14.0)
    broker.tick()
    assert not c.closed
    c.send(Pingreq())
    assert isinstance(c.received()[0], Pingresp)
    clock.advance(14.9)
    broker.tick()
    assert not c.closed
    clock.advance(0.2)
    broker.tick()
    assert c.closed


def test_keepalive_timeout_v5_disconnect_0x8d_and_will(client, broker, clock):
    """Keep alive expiry is ungraceful: will published [MQTT-3.1.2-8], v5 DISCONNECT 0x8D."""
    sub = client(4)
    sub.connect("sub")
    sub.subscribe(("will/#", 1))
    c = client(5)
    c.connect("ka5", keep_alive=2, will=Will("will/ka5", b"gone", 1))
    clock.advance(3.1)
    broker.tick()
    pkts = c.received()
    assert isinstance(pkts[-1], Disconnect) and pkts[-1].reason_code == 0x8D
    got = sub.publishes()
    assert [(p.topic, p.payload, p.qos) for p in got] == [("will/ka5", b"gone", 1)]


def test_will_on_ungraceful_close(client):
    """[MQTT-3.1.2-8] connection lost without DISCONNECT: will published, with retain."""
    sub = client(4)
    sub.connect("sub")
    sub.subscribe(("w", 2))
    c = client(4)
    c.connect("dies", will=Will("w", b"bye", 2, retain=True))
    c.conn.connection_lost()
    (p,) = sub.publishes()
    assert p.topic == "w" and p.payload == b"bye" and p.qos == 2
    # Will retain honoured: a new subscriber gets it as retained.
    late = client(4)
    late.connect("late")
    late.subscribe(("w", 0))
    assert [(m.payload, m.retain) for m in late.after_suback] == [(b"bye", True)]


def test_no_will_after_disconnect(client):
    """[MQTT-3.1.2-10] DISCONNECT discards the will."""
    sub = client(4)
    sub.connect("sub")
    sub.subscribe("w")
    c = client(4)
    c.connect("polite", will=Will("w", b"bye"))
    c.send(Disconnect())
    c.conn.connection_lost()
    assert sub.received() == []
    assert c.closed


def test_v5_disconnect_with_will_message(client):
    """v5 DISCONNECT 0x04 publishes the will (3.14.2.1)."""
    sub = client(4)
    sub.connect("sub")
    sub.subscribe("w")
    c = client(5)
    c.connect("c", will=Will("w", b"bye"))
    c.send(Disconnect(0x04))
    assert [p.payload for p in sub.publishes()] == [b"bye"]


def test_will_on_protocol_violation(client):
    """A protocol error closes the connection ungracefully: will published."""
    sub = client(4)
    sub.connect("sub")
    sub.subscribe("w")
    c = client(4)
    c.connect("bad", will=Will("w", b"err"))
    c.conn.protocol_violation(MQTTError(0x81, "test"))
    assert c.closed
    assert [p.payload for p in sub.publishes()] == [b"err"]


def test_session_present_flag(client):
    """[MQTT-3.2.2-1] clean -> 0; [MQTT-3.2.2-2] stored session -> 1; [MQTT-3.2.2-3] none -> 0."""
    c = client(4)
    assert c.connect("p", clean=False).session_present is False
    c.send(Disconnect())
    c = client(4)
    assert c.connect("p", clean=False).session_present is True
    c.send(Disconnect())
    c = client(4)
    assert c.connect("p", clean=True).session_present is False
    c.send(Disconnect())
    c = client(4)
    assert c.connect("p", clean=False).session_present is False


def test_mqtt31_connack_has_no_session_present(client):
    c = client(3)
    c.connect("p31", clean=False)
    c.send(Disconnect())
    c = client(3)
    assert c.connect("p31", clean=False).session_present is False


def test_clean_session_discards_subscriptions(client, broker):
    """[MQTT-3.1.2-6] clean session: state ends with the connection."""
    c = client(4)
    c.connect("cs", clean=True)
    c.subscribe("a")
    c.send(Disconnect())
    assert "cs" not in broker.sessions and broker.subscriptions.count == 0


def test_unsupported_protocol_version_connack_1(client):
    """[MQTT-3.1.2-2] unsupported protocol level: CONNACK 0x01, then close."""
    c = client(4)
    c.conn.protocol_violation(MQTTError(0x84, "protocol level 6"), None)
    (ack,) = c.received()
    assert isinstance(ack, Connack) and ack.reason_code == 1 and c.closed


def test_auth_hook_refusal_maps_reason_codes(make_broker, core_impl):
    from mqttfast.core.hooks import Hooks

    from .conftest import FakeClient

    class Deny(Hooks):
        def authenticate(self, client, username, password):
            return 0x86 if password != b"ok" else 0

    b = make_broker()
    b.hooks = Deny()
    c = FakeClient(b, core_impl, 4)
    assert c.connect("x", username="u", password=b"no").reason_code == 4
    c = FakeClient(b, core_impl, 5)
    assert c.connect("x", username="u", password=b"no").reason_code == 0x86
    c = FakeClient(b, core_impl, 5)
    assert c.connect("x", username="u", password=b"ok").reason_code == 0


def test_publish_before_connect_closes(client):
    c = client(4)
    c.send(Publish("a", b"x"))
    assert c.closed


def test_subscribe_packet_after_close_ignored(client):
    c = client(4)
    c.connect("z")
    c.send(Disconnect(), Subscribe(1, [Subscription("a")]))
    assert c.closed and c.received() == []


def test_v5_connack_properties(make_broker, core_impl):
    """CONNACK v5 advertises limits that differ from the defaults (3.2.2.3)."""
    from .conftest import FakeClient

    b = make_broker(
        receive_maximum=100,
        maximum_qos=1,
        retain_available=False,
        max_packet_size=1000,
        topic_alias_maximum=5,
        shared_subscription_available=False,
        max_session_expiry=60,
    )
    c = FakeClient(b, core_impl, 5)
    ack = c.connect("v5", properties=Properties(session_expiry_interval=3600))
    p = ack.properties
    assert (
        p.receive_maximum,
        p.maximum_qos,
        p.retain_available,
        p.maximum_packet_size,
        p.topic_alias_maximum,
        p.shared_subscription_available,
        p.session_expiry_interval,
    ) == (100, 1, 0, 1000, 5, 0, 60)


def test_churn_leaves_nothing_behind(client, broker, clock):
    """Clean sessions that connect, subscribe (normal and shared), publish and go away
    (gracefully, by loss, by takeover, by keep-alive) leave no state behind."""
    from mqttfast.codec.packets import Subscription as Sub

    for i in range(50):
        c = client(5 if i % 2 else 4)
        c.connect(f"c{i % 7}", keep_alive=5, will=Will("w/x", b"bye"))
        c.subscribe(("a/#", 1), Sub("$share/g/b/+", 1))
        c.publish("a/b", b"x", qos=1)
        if i % 3 == 0:
            c.send(Disconnect())
        elif i % 3 == 1:
            c.conn.connection_lost()
        else:
            clock.advance(10)
            broker.tick()
    broker.tick()
    for c in list(broker.connections):
        c.connection_lost()
    assert not broker.sessions and not broker.connections and not broker.pending
    assert not broker.offline and not broker.pending_wills
    assert broker.subscriptions.count == 0 and len(broker.subscriptions.tree) == 0
    assert not broker.subscriptions.groups


def test_will_topic_must_be_publishable(make_broker, core_impl):
    """A will the client could not publish is refused at CONNECT (0x87 / 3.1.1 code 5)."""
    from mqttfast.core.hooks import Hooks

    from .conftest import FakeClient

    class NoSecrets(Hooks):
        def authorise_publish(self, client, topic, qos, retain):
            return not topic.startswith("secret/")

    b = make_broker()
    b.hooks = NoSecrets()
    c = FakeClient(b, core_impl, 4)
    assert c.connect("a", will=Will("secret/x", b"w")).reason_code == 5 and c.closed
    c = FakeClient(b, core_impl, 5)
    assert c.connect("b", will=Will("$SYS/x", b"w")).reason_code == 0x87
    c = FakeClient(b, core_impl, 5)
    assert c.connect("c", will=Will("public/x", b"w")).reason_code == 0
