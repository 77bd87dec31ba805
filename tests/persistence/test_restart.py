"""Retained messages and persistent sessions survive a restart (SIGTERM) and a crash (SIGKILL).

Real broker processes on a real data directory; raw MQTT clients that see
every packet. Spec statements checked: [MQTT-3.1.2-4]/[MQTT-3.1.2-5]
(session state kept while the session exists), [MQTT-3.2.2-2] (Session
Present = 1), [MQTT-4.4.0-1] (unacknowledged PUBLISH re-sent with DUP and
PUBREL re-sent on resumption), [MQTT-4.3.3-9..11] (exactly once: a
re-sent QoS 2 PUBLISH whose id awaits PUBREL is not forwarded again),
[MQTT-3.3.1-5]/3.3.2.3.x (retained message with its properties), [MQTT-3.3.2-5]
(expired messages not delivered), [MQTT-4.6.0-6] (order), 3.1.2.11.2/3.1.3.2.2
(session expiry; delayed will).
"""

from __future__ import annotations

import signal
import time

import pytest

from mqttfast.codec.packets import (
    Properties,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Subscription,
    Will,
)
from tests.helpers.rawclient import NoPacket, RawClient

from .helpers import DurableBroker, db_rows, persistent

SIGNALS = [pytest.param(signal.SIGTERM, id="sigterm"), pytest.param(signal.SIGKILL, id="sigkill")]


@pytest.fixture
def durable(tmp_path):
    brokers: list[DurableBroker] = []

    def make(*args: str) -> DurableBroker:
        b = DurableBroker(tmp_path / "data", args)
        brokers.append(b)
        return b.start()

    yield make
    for b in brokers:
        log = b.log_text()
        b.close()
        assert "Traceback" not in log, log[-4000:]


def _drain(c: RawClient, idle: float = 0.6) -> list[Publish]:
    """Every PUBLISH until the broker is quiet for ``idle`` s, acknowledged."""
    out = []
    while True:
        try:
            out.append(c.recv_publish(timeout=idle))
        except NoPacket:
            return out


@pytest.mark.parametrize("how", SIGNALS)
def test_queued_qos1_qos2_and_subscriptions_survive_restart(durable, how) -> None:
    """[MQTT-3.2.2-2] session present after the restart; the subscriptions with their
    options and identifiers are kept; queued QoS 1 and QoS 2 messages arrive once each,
    in publish order [MQTT-4.6.0-6], with the subscription identifier [MQTT-3.3.4-3]."""
    b = durable()
    sub, _ = persistent("sub-q", b.port)
    sub.subscribe(
        Subscription("q/#", 2, retain_as_published=True),
        properties=Properties(subscription_identifier=[7]),
    )
    sub.subscribe(Subscription("other/+", 1, no_local=True))
    sub.disconnect()

    pub = b.client()
    pub.connect("pub-q")
    for i in range(10):
        qos = 1 if i % 2 == 0 else 2
        ack = pub.publish(f"q/{i}", f"m{i}".encode(), qos=qos)
        assert ack.reason_code == 0
    pub.disconnect()

    b.restart(how)

    sub, connack = persistent("sub-q", b.port)
    assert connack.session_present is True
    got = _drain(sub)
    assert [p.payload for p in got] == [f"m{i}".encode() for i in range(10)]
    assert [p.qos for p in got] == [1 if i % 2 == 0 else 2 for i in range(10)]
    assert all(p.properties.subscription_identifier == [7] for p in got)
    # The subscriptions are live again: new messages flow without re-subscribing.
    pub = b.client()
    pub.connect("pub-q2")
    pub.publish("q/new", b"after", qos=2)
    pub.publish("other/x", b"other", qos=1)
    got = _drain(sub)
    assert sorted(p.payload for p in got) == [b"after", b"other"]
    sub.disconnect()
    pub.disconnect()

    # Nothing acknowledged is delivered again after a clean restart. After a crash
    # a QoS 1 message whose PUBACK was not yet committed may come again (at least
    # once, 4.3.2); a QoS 2 message never does (4.3.3).
    b.restart(how)
    sub, connack = persistent("sub-q", b.port)
    assert connack.session_present is True
    again = _drain(sub, idle=0.5)
    assert all(p.qos == 1 for p in again), again
    if how == signal.SIGTERM:
        assert again == []
    sub.disconnect()


@pytest.mark.parametrize("how", SIGNALS)
def test_inflight_state_both_directions_survives(durable, how) -> None:
    """In-flight outgoing QoS 1 (no PUBACK) is re-sent with DUP=1 and the same id;
    outgoing QoS 2 past PUBREC gets PUBREL again, not the PUBLISH [MQTT-4.4.0-1];
    an incoming QoS 2 id awaiting PUBREL is remembered, so the publisher's re-sent
    PUBLISH is not forwarded a second time [MQTT-4.3.3-9/10]."""
    b = durable()
    sub, _ = persistent("sub-i", b.port)
    sub.subscribe(("i/#", 2))
    pub, _ = persistent("pub-i", b.port)

    pub.publish("i/1", b"one", qos=1)
    p1 = sub.recv_publish(ack=False)  # QoS 1, never acknowledged
    pub.publish("i/2", b"two", qos=2)
    p2 = sub.recv_publish(ack=False)
    sub.send_packet(Pubrec(packet_id=p2.packet_id))
    sub.recv_until(Pubrel, packet_id=p2.packet_id)  # broker is now awaiting PUBCOMP
    rec = pub.publish("i/3", b"three", qos=2, packet_id=77, complete=False)
    assert isinstance(rec, Pubrec) and rec.reason_code == 0
    p3 = sub.recv_publish(ack=True)  # forwarded once (method B)
    assert p3.payload == b"three"
    sub.ping()
    pub.ping()

    b.restart(how)

    sub2, connack = persistent("sub-i", b.port)
    assert connack.session_present is True
    first = sub2.recv_packet()
    second = sub2.recv_packet()
    assert isinstance(first, Publish) and first.dup and first.packet_id == p1.packet_id
    assert first.payload == b"one" and first.qos == 1
    assert isinstance(second, Pubrel) and second.packet_id == p2.packet_id
    sub2.send_packet(Puback(packet_id=first.packet_id))
    sub2.send_packet(Pubcomp(packet_id=second.packet_id))

    pub2, connack = persistent("pub-i", b.port)
    assert connack.session_present is True
    pub2.send_packet(Publish("i/3", b"three", qos=2, dup=True, packet_id=77))
    assert pub2.recv_until(Pubrec, packet_id=77).reason_code == 0
    pub2.send_packet(Pubrel(packet_id=77))
    assert pub2.recv_until(Pubcomp, packet_id=77).reason_code == 0
    assert _drain(sub2, idle=0.6) == []  # "three" is not delivered again
    sub2.disconnect()
    pub2.disconnect()


@pytest.mark.parametrize("how", SIGNALS)
def test_retained_with_properties_survives(durable, how) -> None:
    """[MQTT-3.3.1-5] retained messages survive with their MQTT 5 properties and the
    remaining Message Expiry Interval [MQTT-3.3.2-6]; a deleted one stays deleted."""
    b = durable()
    pub = b.client()
    pub.connect("pub-r")
    props = Properties(
        content_type="text/plain",
        response_topic="reply/here",
        correlation_data=b"\x00\x01",
        payload_format_indicator=1,
        user_property=[("a", "1"), ("a", "2")],
        message_expiry_interval=3600,
    )
    pub.publish("r/one", b"first", qos=1, retain=True, properties=props)
    pub.publish("r/two", b"second", qos=2, retain=True)
    pub.publish("r/gone", b"x", qos=1, retain=True)
    pub.publish("r/gone", b"", qos=1, retain=True)  # deletes it [MQTT-3.3.1-10]
    pub.disconnect()

    b.restart(how)

    c = b.client()
    c.connect("reader")
    c.subscribe(("r/#", 2))
    got = {p.topic: p for p in _drain(c)}
    assert set(got) == {"r/one", "r/two"}
    one = got["r/one"]
    assert one.retain and one.payload == b"first" and one.qos == 1
    p = one.properties
    assert (p.content_type, p.response_topic, p.correlation_data, p.payload_format_indicator) == (
        "text/plain",
        "reply/here",
        b"\x00\x01",
        1,
    )
    assert p.user_property == [("a", "1"), ("a", "2")]
    assert 3500 < p.message_expiry_interval <= 3600
    assert got["r/two"].qos == 2 and got["r/two"].payload == b"second"
    c.disconnect()


def test_mqtt311_persistent_session_survives(durable) -> None:
    """MQTT 3.1.1 CleanSession=0 [MQTT-3.1.2-4]: subscriptions and queued QoS 1
    messages survive; CONNACK Session Present = 1 [MQTT-3.2.2-2]."""
    b = durable()
    sub = b.client(4)
    sub.connect("sub-311", clean_start=False)
    sub.subscribe(("v311/#", 1))
    sub.disconnect()
    pub = b.client(4)
    pub.connect("pub-311")
    for i in range(3):
        pub.publish("v311/t", f"n{i}".encode(), qos=1)
    pub.disconnect()
    b.restart()
    sub = b.client(4)
    assert sub.connect("sub-311", clean_start=False).session_present is True
    assert [p.payload for p in _drain(sub)] == [b"n0", b"n1", b"n2"]
    sub.disconnect()


def test_clean_start_discards_stored_session(durable) -> None:
    """[MQTT-3.1.2-4] Clean Start = 1 discards the stored session, also on disk."""
    b = durable()
    sub, _ = persistent("sub-c", b.port)
    sub.subscribe(("c/#", 1))
    sub.disconnect()
    b.restart()
    sub, connack = persistent("sub-c", b.port, clean_start=True)  # a new persistent session
    assert connack.session_present is False
    sub.disconnect()
    b.restart()
    sub, connack = persistent("sub-c", b.port)
    assert connack.session_present is True
    pub = b.client()
    pub.connect("pub-c")
    pub.publish("c/x", b"x", qos=1)  # the old subscription is gone
    assert _drain(sub, idle=0.5) == []
    sub.disconnect()
    pub.disconnect()


def test_clean_sessions_and_qos0_never_reach_the_disk(durable, tmp_path) -> None:
    """Clean sessions (expiry 0) are never written: after traffic the database
    holds no session, subscription, message or delivery row."""
    b = durable()
    sub = b.client()
    sub.connect("clean-sub")
    sub.subscribe(("z/#", 2))
    pub = b.client()
    pub.connect("clean-pub")
    for qos in (0, 1, 2):
        pub.publish("z/t", b"p", qos=qos)
    assert len(_drain(sub)) == 3
    sub.disconnect()
    pub.disconnect()
    b.stop()
    for table in ("sessions", "subscriptions", "messages", "deliveries", "qos2_in"):
        assert db_rows(tmp_path / "data", f"SELECT count(*) FROM {table}") == [(0,)], table


def test_session_and_message_expiry_while_down(durable) -> None:
    """What expires while the broker is down is gone after the restart: a session
    whose expiry passed (3.1.2.11.2), a retained message and a queued message whose
    Message Expiry passed [MQTT-3.3.2-5]; what has not expired is still there."""
    b = durable()
    short, _ = persistent("short", b.port, expiry=1)
    short.subscribe(("e/#", 1))
    short.disconnect()
    long_, _ = persistent("long", b.port, expiry=3600)
    long_.subscribe(("e/#", 1))
    long_.disconnect()
    pub = b.client()
    pub.connect("pub-e")
    pub.publish("e/keep", b"keep", qos=1, retain=True)
    pub.publish(
        "e/exp", b"exp", qos=1, retain=True, properties=Properties(message_expiry_interval=1)
    )
    pub.disconnect()
    b.stop()
    time.sleep(2.2)
    b.start()
    s, connack = persistent("short", b.port, expiry=1)
    assert connack.session_present is False
    s.disconnect()
    l2, connack = persistent("long", b.port)
    assert connack.session_present is True
    assert [p.payload for p in _drain(l2)] == [b"keep"]  # queued "exp" expired
    l2.disconnect()
    r = b.client()
    r.connect("reader-e")
    r.subscribe(("e/#", 1))
    assert [p.topic for p in _drain(r)] == ["e/keep"]
    r.disconnect()


def test_delayed_will_survives_restart(durable) -> None:
    """MQTT 5 Will Delay Interval (3.1.3.2.2): a will pending when the broker stops
    is not published by the shutdown; it is published once, after the delay, by the
    restarted broker, to a persistent subscriber."""
    b = durable()
    sub, _ = persistent("will-watch", b.port)
    sub.subscribe(("w/#", 1))
    sub.disconnect()
    dying = b.client()
    dying.connect(
        "dying",
        properties=Properties(session_expiry_interval=600),
        will=Will("w/last", b"gone", qos=1, properties=Properties(will_delay_interval=3)),
    )
    dying.close()  # no DISCONNECT: the will is due in 3 s
    time.sleep(0.3)
    b.restart()
    sub, _ = persistent("will-watch", b.port)
    assert _drain(sub, idle=0.5) == []  # not yet, and not at shutdown
    got = [sub.recv_publish(timeout=6.0)]
    got += _drain(sub, idle=0.5)
    assert [(p.topic, p.payload) for p in got] == [("w/last", b"gone")]
    sub.disconnect()


def test_delayed_will_published_when_session_expired_while_down(durable) -> None:
    """The will is published at the earlier of its delay and the session's end
    (3.1.3.2.2): a session that expired while the broker was down publishes its
    pending will when the broker starts."""
    b = durable()
    sub, _ = persistent("will-watch2", b.port)
    sub.subscribe(("w2/#", 1))
    sub.disconnect()
    dying = b.client()
    dying.connect(
        "dying2",
        properties=Properties(session_expiry_interval=1),
        will=Will("w2/last", b"bye", qos=1, properties=Properties(will_delay_interval=300)),
    )
    dying.close()
    time.sleep(0.3)
    b.stop()
    time.sleep(1.5)
    b.start()
    sub, _ = persistent("will-watch2", b.port)
    got = _drain(sub, idle=1.0)
    assert [(p.topic, p.payload) for p in got] == [("w2/last", b"bye")]
    sub.disconnect()


def test_persistence_off_keeps_nothing(tmp_path) -> None:
    """``--persistence off``: no file is written and nothing survives a restart."""
    b = DurableBroker(tmp_path / "data", ["--persistence", "off"]).start()
    try:
        sub, _ = persistent("sub-off", b.port)
        sub.subscribe(("o/#", 1))
        sub.disconnect()
        pub = b.client()
        pub.connect("pub-off")
        pub.publish("o/r", b"ret", qos=1, retain=True)
        pub.publish("o/q", b"queued", qos=1)
        pub.disconnect()
        b.restart()
        sub, connack = persistent("sub-off", b.port)
        assert connack.session_present is False
        sub.subscribe(("o/#", 1))
        assert _drain(sub, idle=0.5) == []
        sub.disconnect()
        assert not (tmp_path / "data").exists()
    finally:
        b.close()


def test_retained_store_bound(durable) -> None:
    """``--max-retained-messages 3``: a retained message for a 4th topic is delivered
    to current subscribers but not stored; replacing and deleting still work."""
    b = durable("--max-retained-messages", "3")
    watcher = b.client()
    watcher.connect("watcher")
    watcher.subscribe(("b/#", 1))
    pub = b.client()
    pub.connect("pub-b")
    for i in range(4):
        pub.publish(f"b/{i}", f"v{i}".encode(), qos=1, retain=True)
    assert len(_drain(watcher)) == 4  # all delivered live
    pub.publish("b/0", b"v0-new", qos=1, retain=True)  # replacing is allowed
    b.proc.wait_for_log("retained store full")
    b.restart()
    r = b.client()
    r.connect("reader-b")
    r.subscribe(("b/#", 1))
    assert sorted((p.topic, p.payload) for p in _drain(r)) == [
        ("b/0", b"v0-new"),
        ("b/1", b"v1"),
        ("b/2", b"v2"),
    ]
    r.disconnect()
    pub = b.client()
    pub.connect("pub-b2")
    pub.publish("b/1", b"", qos=1, retain=True)  # a delete frees a place
    pub.publish("b/3", b"v3", qos=1, retain=True)
    r = b.client()
    r.connect("reader-b2")
    r.subscribe(("b/#", 1))
    assert sorted(p.topic for p in _drain(r)) == ["b/0", "b/2", "b/3"]
    r.disconnect()
    pub.disconnect()


def test_session_connected_at_crash_expires_from_the_crash(durable) -> None:
    """3.1.2.11.2: the Session Expiry Interval starts when the Network Connection
    closes -- for a connection open when the broker was killed, at the crash. After
    the restart a session whose interval has passed since the crash is gone (the
    crash time is bounded by the last commit + 11 s), one whose interval has not
    passed is still there."""
    b = durable()
    keep, _ = persistent("at-crash-keep", b.port, expiry=20)
    gone, _ = persistent("at-crash-gone", b.port, expiry=1)
    b.crash()
    keep.close()
    gone.close()
    time.sleep(12.5)  # > 1 s expiry + the 11 s bound after the last commit
    b.start()
    c, connack = persistent("at-crash-gone", b.port, expiry=1)
    assert connack.session_present is False
    c.disconnect()
    c, connack = persistent("at-crash-keep", b.port, expiry=20)
    assert connack.session_present is True  # 20 s since the crash have not passed
    c.disconnect()
