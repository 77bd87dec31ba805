"""Session expiry (3.1.2.11.2), Clean Start and Session Present (3.2.2.1.1),
and the Session Expiry Interval on DISCONNECT (3.14.2.2.2)."""

from __future__ import annotations

import time

from mqttfast.codec.packets import Disconnect, Properties, Will

NEVER = 0xFFFFFFFF


def _queue_one(v5, topic: str, payload: bytes = b"queued") -> None:
    v5("publisher-" + topic.replace("/", "-")).publish(topic, payload, qos=1)


def test_session_expiry_zero_ends_session_at_disconnect(v5):
    """[MQTT-3.1.2-25] (inverse) / 3.1.2.11.2: with Session Expiry Interval 0
    (absent) the session ends when the connection closes: a reconnect with
    Clean Start 0 gets Session Present 0 [MQTT-3.2.2-3] and no old subscription."""
    a = v5("se0", session_expiry=0)
    a.subscribe(("se0/t", 1))
    a.close()
    time.sleep(0.2)
    b = v5("se0", clean_start=False, session_expiry=60)
    assert b.connack.session_present is False
    _queue_one(v5, "se0/t")
    b.expect_no_packet(0.5)


def test_session_expiry_positive_keeps_session(v5):
    """[MQTT-3.1.2-25] [MQTT-3.1.2-5] [MQTT-3.2.2-3]: with Session Expiry
    Interval > 0 the session survives the connection; Clean Start 0 resumes it
    with Session Present 1, its subscriptions and the QoS 1 message queued
    while offline."""
    a = v5("se60", session_expiry=60)
    a.subscribe(("se60/t", 1))
    a.disconnect()
    _queue_one(v5, "se60/t")
    b = v5("se60", clean_start=False, session_expiry=60)
    assert b.connack.session_present is True
    pub = b.recv_publish()
    assert (pub.topic, pub.payload, pub.qos) == ("se60/t", b"queued", 1)


def test_session_expiry_never(v5):
    """3.1.2.11.2: 0xFFFFFFFF means the session does not expire; it survives a
    disconnect (Session Present 1 on resume)."""
    a = v5("senever", session_expiry=NEVER)
    a.subscribe(("senever/t", 1))
    a.close()
    time.sleep(0.3)
    b = v5("senever", clean_start=False, session_expiry=NEVER)
    assert b.connack.session_present is True
    # Leave nothing behind: end the session explicitly.
    b.disconnect(properties=Properties(session_expiry_interval=0))


def test_session_expires_after_interval(v5):
    """[MQTT-4.1.0-2] The server discards the session state once the
    connection is closed and the Session Expiry Interval has passed."""
    a = v5("se1", session_expiry=1)
    a.subscribe(("se1/t", 1))
    a.disconnect()
    time.sleep(2.0)
    b = v5("se1", clean_start=False, session_expiry=60)
    assert b.connack.session_present is False
    _queue_one(v5, "se1/t")
    b.expect_no_packet(0.5)


def test_clean_start_discards_existing_session(v5):
    """[MQTT-3.1.2-4] [MQTT-3.2.2-2]: Clean Start 1 discards an existing
    session; Session Present is 0 and the old subscriptions are gone."""
    a = v5("cs", session_expiry=60)
    a.subscribe(("cs/t", 1))
    a.disconnect()
    b = v5("cs", clean_start=True, session_expiry=60)
    assert b.connack.session_present is False
    _queue_one(v5, "cs/t")
    b.expect_no_packet(0.5)


def test_clean_start_zero_without_session_creates_one(v5):
    """[MQTT-3.1.2-6] [MQTT-3.2.2-3]: Clean Start 0 and no existing session:
    a new session, Session Present 0."""
    c = v5("fresh-cs0", clean_start=False, session_expiry=60)
    assert c.connack.session_present is False
    assert c.connack.reason_code == 0


def test_disconnect_sets_session_expiry_to_zero(v5):
    """3.14.2.2.2: the Session Expiry Interval on DISCONNECT replaces the one
    from CONNECT; 0 ends the session at once (resume gets Session Present 0)."""
    a = v5("dse0", session_expiry=60)
    a.subscribe(("dse0/t", 1))
    a.disconnect(properties=Properties(session_expiry_interval=0))
    time.sleep(0.2)
    b = v5("dse0", clean_start=False, session_expiry=60)
    assert b.connack.session_present is False


def test_disconnect_extends_session_expiry(v5):
    """3.14.2.2.2: a CONNECT with Session Expiry 1 and a DISCONNECT with 60: the
    session outlives the original 1 s."""
    a = v5("dse60", session_expiry=1)
    a.subscribe(("dse60/t", 1))
    a.disconnect(properties=Properties(session_expiry_interval=60))
    time.sleep(1.8)
    b = v5("dse60", clean_start=False, session_expiry=60)
    assert b.connack.session_present is True


def test_disconnect_nonzero_expiry_after_zero_is_protocol_error(v5):
    """3.14.2.2.2: if the CONNECT's Session Expiry Interval was 0, a non-zero one
    on the client's DISCONNECT is a Protocol Error: the server does not treat it
    as a valid DISCONNECT, answers DISCONNECT 0x82 and closes (so the will,
    which a normal DISCONNECT would discard, is published)."""
    watcher = v5("dse-watch")
    watcher.subscribe(("dse/will", 0))
    a = v5("dse-bad", session_expiry=0, will=Will("dse/will", b"gone"))
    a.send_packet(Disconnect(reason_code=0, properties=Properties(session_expiry_interval=30)))
    assert a.expect_closed() == 0x82
    assert watcher.recv_publish().payload == b"gone"


def test_session_present_after_takeover(v5):
    """[MQTT-3.2.2-3] [MQTT-3.1.4-3]: a second connection with the same
    ClientID and Clean Start 0 takes the live session over (Session Present 1)
    and the first connection is closed (its DISCONNECT 0x8E is checked in
    test_v5_09_reason_codes)."""
    a = v5("take", session_expiry=60)
    a.subscribe(("take/t", 1))
    b = v5("take", clean_start=False, session_expiry=60)
    assert b.connack.session_present is True
    a.expect_closed()
    _queue_one(v5, "take/t")
    assert b.recv_publish().payload == b"queued"


def test_connack_session_expiry_if_changed(v5):
    """3.2.2.3.2: if the server uses a Session Expiry Interval other than the
    client's, it says so in CONNACK; otherwise the client's value applies.
    Either way a CONNACK value, when present, is what the session keeps:
    a session with a granted value > 0 is resumable after disconnect."""
    a = v5("granted", session_expiry=30)
    granted = a.connack.properties and a.connack.properties.session_expiry_interval
    a.subscribe(("granted/t", 1))
    a.disconnect()
    b = v5("granted", clean_start=False, session_expiry=30)
    assert b.connack.session_present is (granted != 0)


def test_disconnect_nonzero_expiry_after_absent_is_protocol_error(v5):
    """3.14.2.2.2 / 3.1.2.11.2: an absent Session Expiry Interval in CONNECT
    means 0, so a non-zero one on DISCONNECT is the same Protocol Error:
    DISCONNECT 0x82 from the server."""
    a = v5("dse-absent")
    assert a.connack.properties is None or a.connack.properties.session_expiry_interval in (None, 0)
    a.send_packet(Disconnect(reason_code=0, properties=Properties(session_expiry_interval=30)))
    assert a.expect_closed() == 0x82
    b = v5("dse-absent", clean_start=False)
    assert b.connack.session_present is False
