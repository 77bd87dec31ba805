"""Request/response and application properties passthrough (3.3.2.3)."""

from __future__ import annotations

import pytest

from mqttfast.codec.packets import Properties, Puback, Publish, Will
from tests.helpers.rawclient import ConnectionClosed

USER_PROPS = [("b", "2"), ("a", "1"), ("a", "1"), ("a", "0"), ("ключ", "значение ✓"), ("", "")]


def test_request_response_properties_forwarded_unchanged(v5):
    """[MQTT-3.3.2-4] [MQTT-3.3.2-15] [MQTT-3.3.2-16] [MQTT-3.3.2-20]: Payload
    Format Indicator, Response Topic, Correlation Data and Content Type reach
    the subscriber unaltered."""
    s = v5("rr-sub")
    s.subscribe(("rr/req", 1))
    v5("rr-pub").publish(
        "rr/req",
        "ping ✓".encode(),
        qos=1,
        properties=Properties(
            payload_format_indicator=1,
            response_topic="rr/resp/42",
            correlation_data=b"\x00\x01corr\xff",
            content_type="application/json; charset=utf-8",
        ),
    )
    pub = s.recv_publish()
    p = pub.properties
    assert pub.payload == "ping ✓".encode()
    assert p.payload_format_indicator == 1
    assert p.response_topic == "rr/resp/42"
    assert p.correlation_data == b"\x00\x01corr\xff"
    assert p.content_type == "application/json; charset=utf-8"


def test_request_response_round_trip(v5):
    """3.3.2.3.5-6 / 4.10: a responder answers on the Response Topic with the
    Correlation Data, and the requester receives the reply."""
    requester = v5("rrt-req")
    responder = v5("rrt-resp")
    requester.subscribe(("rrt/reply/me", 1))
    responder.subscribe(("rrt/service", 1))
    requester.publish(
        "rrt/service",
        b"question",
        qos=1,
        properties=Properties(response_topic="rrt/reply/me", correlation_data=b"id-7"),
    )
    req = responder.recv_publish()
    responder.publish(
        req.properties.response_topic,
        b"answer",
        qos=1,
        properties=Properties(correlation_data=req.properties.correlation_data),
    )
    reply = requester.recv_publish()
    assert reply.payload == b"answer" and reply.properties.correlation_data == b"id-7"


def test_user_properties_forwarded_unchanged_and_in_order(v5):
    """[MQTT-3.3.2-17] [MQTT-3.3.2-18]: all User Properties, duplicates
    included, reach the subscriber unaltered and in the same order."""
    s = v5("up-sub")
    s.subscribe(("up/t", 1))
    v5("up-pub").publish("up/t", b"x", qos=1, properties=Properties(user_property=USER_PROPS))
    assert s.recv_publish().properties.user_property == USER_PROPS


def test_user_properties_on_qos0_and_retained(v5):
    """[MQTT-3.3.2-17] [MQTT-3.3.2-18]: also for QoS 0 and for the retained copy
    sent on subscribe."""
    p = v5("upr-pub")
    p.publish("upr/t", b"r", qos=0, retain=True, properties=Properties(user_property=USER_PROPS))
    p.ping()  # the QoS 0 publication was processed before the subscribe below
    s = v5("upr-sub")
    s.subscribe(("upr/t", 0))
    assert s.recv_publish().properties.user_property == USER_PROPS


def test_payload_format_indicator_zero_passes_binary(v5):
    """[MQTT-3.3.2-4]: Payload Format Indicator 0 (unspecified bytes) with
    invalid UTF-8 is forwarded unchanged."""
    s = v5("pfi0-sub")
    s.subscribe(("pfi0/t", 1))
    ack = v5("pfi0-pub").publish(
        "pfi0/t", b"\xff\xfe\x00", qos=1, properties=Properties(payload_format_indicator=0)
    )
    assert ack.reason_code == 0
    pub = s.recv_publish()
    assert pub.payload == b"\xff\xfe\x00" and pub.properties.payload_format_indicator == 0


@pytest.mark.mosquitto_deviation(
    "mosquitto 2.0.11 does not validate UTF-8 payloads (the spec says MAY; issue 4 requires it)"
)
def test_invalid_utf8_payload_with_format_indicator_rejected(v5):
    """3.3.2.3.2: a receiver that validates a payload marked as UTF-8 (Payload
    Format Indicator 1) answers bad data with PUBACK 0x99 or DISCONNECT 0x99
    (Payload format invalid); issue 4 requires the check. The message is not
    delivered."""
    s = v5("pfi1-sub")
    s.subscribe(("pfi1/t", 1))
    p = v5("pfi1-pub")
    p.send_packet(
        Publish(
            topic="pfi1/t",
            payload=b"ok \xc3\x28 bad",
            qos=1,
            packet_id=1,
            properties=Properties(payload_format_indicator=1),
        )
    )
    try:
        ack = p.recv_until(Puback, packet_id=1)
    except ConnectionClosed:
        ack = None
    if ack is not None:
        assert ack.reason_code == 0x99
    else:
        assert p.expect_closed() == 0x99
    s.expect_no_packet(0.5)


@pytest.mark.mosquitto_deviation("mosquitto 2.0.11 accepts a Response Topic with wildcards")
def test_response_topic_with_wildcard_is_protocol_error(v5):
    """[MQTT-3.3.2-14] The Response Topic MUST NOT contain wildcards: the
    server treats it as a Protocol Error, DISCONNECT 0x82."""
    c = v5("rtw")
    c.send_packet(
        Publish(topic="rtw/t", payload=b"x", properties=Properties(response_topic="reply/+"))
    )
    assert c.expect_closed() == 0x82


def test_response_topic_with_control_character_is_malformed(v5):
    """1.5.4: a receiver MAY treat a UTF-8 string holding control characters as malformed;
    the broker does for topic names by default, and the Response Topic is a Topic Name
    (3.3.2.3.5): DISCONNECT 0x81, nothing forwarded."""
    sub = v5("rtc-sub")
    sub.subscribe("rtc/#")
    c = v5("rtc")
    c.send_packet(
        Publish(topic="rtc/t", payload=b"x", properties=Properties(response_topic="reply\x07x"))
    )
    assert c.expect_closed() == 0x81
    sub.expect_no_packet(0.5)


@pytest.mark.parametrize(
    ("response_topic", "code"),
    [("reply/#", 0x82), ("reply\x1bx", 0x81)],
    ids=["wildcard", "control-character"],
)
def test_will_response_topic_checked_at_connect(v5, response_topic, code):
    """[MQTT-3.3.2-14] the will is published as a PUBLISH carrying its Response Topic, so
    the CONNECT is refused (CONNACK 0x82 for a wildcard, 0x81 for a control character
    (1.5.4)) instead of a will the server could not send as the specification requires."""
    c = v5(
        "rtwill",
        will=Will("rtwill/t", b"gone", properties=Properties(response_topic=response_topic)),
        expect_rc=None,
    )
    assert c.connack.reason_code == code
