"""Will messages in MQTT 5: Will Delay Interval (3.1.3.2.2) and will properties."""

from __future__ import annotations

import time

import pytest

from mqttfast.codec.packets import Properties, Will


def _watch(v5, topic: str):
    w = v5("watch-" + topic.replace("/", "-"))
    w.subscribe((topic, 1))
    return w


def test_will_published_after_delay(v5):
    """[MQTT-3.1.2-8] 3.1.3.2.2: the will is published when the Will Delay
    Interval has passed after the connection closed (not before)."""
    w = _watch(v5, "wd/t")
    c = v5(
        "wd",
        session_expiry=60,
        will=Will("wd/t", b"late", qos=1, properties=Properties(will_delay_interval=1)),
    )
    c.close()
    start = time.monotonic()
    pub = w.recv_publish(timeout=3.0)
    elapsed = time.monotonic() - start
    assert pub.payload == b"late"
    assert elapsed >= 0.8, f"will published after {elapsed:.2f}s, before its 1 s delay"


def test_will_cancelled_when_session_resumed_in_time(v5):
    """[MQTT-3.1.2-26] [MQTT-3.1.2-8]: a new connection to the session before
    the Will Delay Interval passes means the will is not sent."""
    w = _watch(v5, "wdc/t")
    c = v5(
        "wdc",
        session_expiry=60,
        will=Will("wdc/t", b"never", properties=Properties(will_delay_interval=1)),
    )
    c.close()
    time.sleep(0.2)
    v5("wdc", clean_start=False, session_expiry=60)
    w.expect_no_packet(1.6)


@pytest.mark.mosquitto_deviation(
    "mosquitto 2.0.11 holds the will for the Will Delay even though Session Expiry 0 ends the session"
)
def test_will_at_once_when_session_expiry_zero(v5):
    """[MQTT-3.1.2-8] 3.1.3.2.2: the will goes out at the earlier of the delay
    and the session end; Session Expiry 0 ends the session at disconnect, so a
    60 s Will Delay does not hold the will back."""
    w = _watch(v5, "wd0/t")
    c = v5(
        "wd0",
        session_expiry=0,
        will=Will("wd0/t", b"now", properties=Properties(will_delay_interval=60)),
    )
    c.close()
    assert w.recv_publish(timeout=1.0).payload == b"now"


def test_will_when_session_expiry_shorter_than_delay(v5):
    """[MQTT-3.1.2-8]: Session Expiry 1 s with Will Delay 60 s: the will is
    published when the session ends, about 1 s after the disconnect."""
    w = _watch(v5, "wds/t")
    c = v5(
        "wds",
        session_expiry=1,
        will=Will("wds/t", b"session-end", properties=Properties(will_delay_interval=60)),
    )
    c.close()
    w.expect_no_packet(0.5)
    assert w.recv_publish(timeout=2.5).payload == b"session-end"


def test_will_properties_forwarded(v5):
    """[MQTT-3.3.2-4] [MQTT-3.3.2-15] [MQTT-3.3.2-16] [MQTT-3.3.2-17]
    [MQTT-3.3.2-18] [MQTT-3.3.2-20] (3.1.3.2): the will's Payload Format
    Indicator, Content Type, Response Topic, Correlation Data and User
    Properties reach the subscriber unchanged; Message Expiry is forwarded."""
    w = _watch(v5, "wp/t")
    user = [("k", "v"), ("k", "v2"), ("a", "")]
    c = v5(
        "wp",
        will=Will(
            "wp/t",
            "adieu ✓".encode(),
            qos=1,
            properties=Properties(
                payload_format_indicator=1,
                content_type="text/plain",
                response_topic="wp/reply",
                correlation_data=b"\x01\x02",
                user_property=user,
                message_expiry_interval=60,
            ),
        ),
    )
    c.close()
    pub = w.recv_publish()
    p = pub.properties
    assert pub.payload == "adieu ✓".encode()
    assert p.payload_format_indicator == 1
    assert p.content_type == "text/plain"
    assert p.response_topic == "wp/reply"
    assert p.correlation_data == b"\x01\x02"
    assert p.user_property == user
    assert p.message_expiry_interval in (59, 60)
    assert p.will_delay_interval is None


def test_will_retain_and_qos(v5):
    """[MQTT-3.1.2-17]: a will with Will Retain 1 is published as a retained
    message (a later subscriber gets it with RETAIN 1) at its will QoS."""
    c = v5("wr", will=Will("wr/t", b"ret", qos=1, retain=True))
    c.close()
    time.sleep(0.3)
    s = v5("wr-sub")
    s.subscribe(("wr/t", 1))
    pub = s.recv_publish()
    assert (pub.payload, pub.retain, pub.qos) == (b"ret", True, 1)


def test_will_on_malformed_packet(v5):
    """[MQTT-3.1.2-8] 4.13: a connection closed because of a malformed packet is
    not a normal DISCONNECT: the will is published."""
    w = _watch(v5, "wmf/t")
    c = v5("wmf", will=Will("wmf/t", b"err"))
    c.send(bytes([0x30, 5, 0, 2, 0xC3, 0x28, 0]))  # topic is not UTF-8
    c.expect_closed()  # the reason code (0x81) is checked in test_v5_09_reason_codes
    assert w.recv_publish().payload == b"err"


@pytest.mark.mosquitto_deviation(
    "mosquitto 2.0.11 discards the will when it closes a connection for a second CONNECT"
)
def test_will_on_protocol_error(v5):
    """[MQTT-3.1.2-8] [MQTT-3.1.0-2]: a connection closed for a protocol error
    (second CONNECT) is not a normal DISCONNECT: the will is published."""
    from mqttfast.codec.packets import Connect

    w = _watch(v5, "wpe/t")
    c = v5("wpe", will=Will("wpe/t", b"err"))
    c.send_packet(Connect(client_id="wpe", protocol_version=5))
    c.expect_closed()  # the reason code (0x82) is checked in test_v5_09_reason_codes
    assert w.recv_publish().payload == b"err"


def test_will_on_takeover_with_clean_start(v5):
    """[MQTT-3.1.2-8] 3.1.4: a takeover with Clean Start 1 closes the old
    connection and ends its session: its will (no delay) is published."""
    w = _watch(v5, "wto/t")
    v5("wto", session_expiry=60, will=Will("wto/t", b"old"))
    v5("wto", clean_start=True, session_expiry=60)
    assert w.recv_publish().payload == b"old"


@pytest.mark.mosquitto_deviation(
    "mosquitto 2.0.11 never publishes a delayed will whose session a Clean Start takeover ended"
)
def test_delayed_will_on_takeover_with_clean_start(v5):
    """[MQTT-3.1.2-8] 3.1.3.2.2: the will goes out at the earlier of the Will
    Delay and the session end; a Clean Start 1 takeover ends the old session
    at once, so even a 30 s delayed will is published now."""
    w = _watch(v5, "wtod/t")
    v5(
        "wtod",
        session_expiry=60,
        will=Will("wtod/t", b"old", properties=Properties(will_delay_interval=30)),
    )
    v5("wtod", clean_start=True, session_expiry=60)
    assert w.recv_publish().payload == b"old"
