"""Message Expiry Interval (3.3.2.3.3): expired messages are not delivered and
the forwarded interval is reduced by the time the message waited."""

from __future__ import annotations

import time

import pytest

from mqttfast.codec.packets import Properties


def _offline_subscriber(v5, cid: str, topic: str) -> None:
    s = v5(cid, session_expiry=60)
    s.subscribe((topic, 1))
    s.disconnect()


def test_expired_message_not_delivered_from_offline_queue(v5):
    """[MQTT-3.3.2-5] A queued message whose Message Expiry Interval passed
    before onward delivery started is deleted; a message without expiry
    queued after it is still delivered."""
    _offline_subscriber(v5, "mx-sub", "mx/t")
    p = v5("mx-pub")
    p.publish("mx/t", b"short", qos=1, properties=Properties(message_expiry_interval=1))
    p.publish("mx/t", b"forever", qos=1)
    time.sleep(2.0)
    s = v5("mx-sub", clean_start=False, session_expiry=60)
    assert s.connack.session_present is True
    pub = s.recv_publish()
    assert pub.payload == b"forever"
    s.expect_no_packet(0.5)


def test_forwarded_expiry_reduced_by_waiting_time(v5):
    """[MQTT-3.3.2-6] The PUBLISH sent to a client carries the Message Expiry
    Interval minus the time the message waited in the server."""
    _offline_subscriber(v5, "mxd-sub", "mxd/t")
    v5("mxd-pub").publish("mxd/t", b"m", qos=1, properties=Properties(message_expiry_interval=60))
    time.sleep(1.6)
    s = v5("mxd-sub", clean_start=False, session_expiry=60)
    pub = s.recv_publish()
    assert pub.properties is not None and pub.properties.message_expiry_interval is not None
    assert 55 <= pub.properties.message_expiry_interval <= 59, pub.properties


def test_expiry_forwarded_on_live_delivery(v5):
    """[MQTT-3.3.2-6] Delivered at once, the message still carries its Message
    Expiry Interval (reduced by at most the time spent, i.e. 59 or 60 here)."""
    s = v5("mxl-sub")
    s.subscribe(("mxl/t", 1))
    v5("mxl-pub").publish("mxl/t", b"m", qos=1, properties=Properties(message_expiry_interval=60))
    pub = s.recv_publish()
    assert pub.properties is not None and pub.properties.message_expiry_interval in (59, 60)


def test_no_expiry_added_when_none_was_set(v5):
    """3.3.2.3.3: absent Message Expiry Interval means the message does not
    expire; the server does not invent one."""
    s = v5("mxn-sub")
    s.subscribe(("mxn/t", 1))
    v5("mxn-pub").publish("mxn/t", b"m", qos=1)
    pub = s.recv_publish()
    assert pub.properties is None or pub.properties.message_expiry_interval is None


def test_expired_retained_message_not_delivered(v5):
    """[MQTT-3.3.2-5] 3.3.2.3.3: a retained message whose expiry passed is not
    sent to a new subscriber."""
    v5("mxr-pub").publish(
        "mxr/t", b"old", qos=1, retain=True, properties=Properties(message_expiry_interval=1)
    )
    time.sleep(2.0)
    s = v5("mxr-sub")
    s.subscribe(("mxr/t", 1))
    s.expect_no_packet(0.5)


def test_retained_message_expiry_reduced(v5):
    """[MQTT-3.3.2-6] A retained message delivered on subscribe carries its
    remaining expiry, reduced by the time it has been stored."""
    v5("mxr2-pub").publish(
        "mxr2/t", b"kept", qos=1, retain=True, properties=Properties(message_expiry_interval=60)
    )
    time.sleep(1.6)
    s = v5("mxr2-sub")
    s.subscribe(("mxr2/t", 1))
    pub = s.recv_publish()
    assert pub.retain is True and pub.payload == b"kept"
    assert pub.properties is not None
    assert 55 <= pub.properties.message_expiry_interval <= 59, pub.properties


@pytest.mark.mosquitto_deviation(
    "mosquitto 2.0.11 drops an expired QoS 2 message it had already sent, instead of "
    "resending it on session resume ([MQTT-4.3.3-7])"
)
def test_inflight_qos2_message_redelivered_despite_expiry(v5):
    """[MQTT-4.3.3-7] [MQTT-4.4.0-1] [MQTT-3.3.2-5]: expiry is not applied to a
    QoS 2 PUBLISH that was already sent; unacknowledged, it is resent with
    DUP 1 and the same packet identifier when the session resumes, even
    after its expiry interval passed."""
    s = v5("mxi-sub", session_expiry=60)
    s.subscribe(("mxi/t", 2))
    v5("mxi-pub").publish(
        "mxi/t", b"inflight", qos=2, properties=Properties(message_expiry_interval=1)
    )
    first = s.recv_publish(ack=False)
    assert first.qos == 2
    s.close()
    time.sleep(1.6)
    again = v5("mxi-sub", clean_start=False, session_expiry=60)
    assert again.connack.session_present is True
    pub = again.recv_publish()
    assert (pub.payload, pub.dup, pub.packet_id) == (b"inflight", True, first.packet_id)


@pytest.mark.mosquitto_deviation(
    "mosquitto 2.0.11 drops the expired message but then stalls the queue: 'last' only "
    "goes out after the next publication, and after it (out of order)"
)
def test_message_expires_while_waiting_for_receive_maximum(v5):
    """[MQTT-3.3.2-5]: a message held back by the subscriber's Receive Maximum
    has not started onward delivery; if it expires meanwhile it is deleted,
    while a later message without expiry is still delivered."""
    from mqttfast.codec.packets import Puback

    s = v5("mxq-sub", properties=Properties(receive_maximum=1))
    s.subscribe(("mxq/t", 1))
    p = v5("mxq-pub")
    p.publish("mxq/t", b"first", qos=1)
    p.publish("mxq/t", b"short", qos=1, properties=Properties(message_expiry_interval=1))
    p.publish("mxq/t", b"last", qos=1)
    first = s.recv_publish(ack=False)
    assert first.payload == b"first"
    s.expect_no_packet(1.6)
    s.send_packet(Puback(packet_id=first.packet_id))
    assert s.recv_publish().payload == b"last"
    s.expect_no_packet(0.4)
