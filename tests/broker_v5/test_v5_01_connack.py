"""CONNACK in MQTT 5: the properties a server announces (3.2.2.3) and the
assigned client identifier, server keep alive and problem information rules."""

from __future__ import annotations

import time

import pytest

from mqttfast.codec.packets import Properties, Puback, Subscription

NEVER_SENT_AS_2 = (None, 0, 1)


def test_assigned_client_identifier_for_empty_id(v5):
    """[MQTT-3.2.2-16] [MQTT-3.1.3-6] [MQTT-3.1.3-7] A zero-length ClientID gets a
    CONNACK with an Assigned Client Identifier, unique among the server's sessions."""
    a = v5("")
    b = v5("")
    ida = a.connack.properties and a.connack.properties.assigned_client_identifier
    idb = b.connack.properties and b.connack.properties.assigned_client_identifier
    assert ida and idb, (a.connack, b.connack)
    assert ida != idb
    assert a.connack.reason_code == 0 and a.connack.session_present is False


def test_assigned_client_identifier_is_used_for_the_session(v5):
    """[MQTT-3.1.3-7] The server processes the CONNECT as if the client had
    provided the assigned ClientID: a later connection with that id and Clean
    Start 0 resumes the session (Session Present 1)."""
    a = v5("", session_expiry=60)
    assigned = a.connack.properties.assigned_client_identifier
    a.subscribe(("assigned/t", 1))
    a.disconnect()
    b = v5(assigned, clean_start=False, session_expiry=60)
    assert b.connack.session_present is True
    p = v5("pub")
    p.publish("assigned/t", b"x", qos=1)
    assert b.recv_publish().payload == b"x"


def test_no_assigned_identifier_when_client_supplies_one(v5):
    """3.2.2.3.7: the Assigned Client Identifier answers a zero-length ClientID;
    a client that sent its own id keeps it (no property in CONNACK)."""
    c = v5("my-own-id")
    assert c.connack.properties is None or c.connack.properties.assigned_client_identifier is None


def test_maximum_qos_absent_when_qos2_supported(v5):
    """[MQTT-3.2.2-9] Maximum QoS is sent only by a server that does not support
    QoS 1 or 2 (and then only as 0 or 1). mqttfast supports QoS 2, so the
    property is absent and a QoS 2 PUBLISH completes its flow."""
    c = v5("mq")
    assert c.connack.properties is None or c.connack.properties.maximum_qos is None
    comp = c.publish("mq/t", b"x", qos=2)
    assert comp.reason_code == 0


def test_retain_available(v5):
    """3.2.2.3.5 / [MQTT-3.2.2-14]: Retain Available is absent or 1 on a
    server that supports retained messages, and a retained message is then
    delivered to a new subscriber."""
    c = v5("ra")
    value = c.connack.properties and c.connack.properties.retain_available
    assert value in (None, 1)
    c.publish("ra/t", b"kept", qos=1, retain=True)
    s = v5("ra-sub")
    s.subscribe(("ra/t", 1))
    pub = s.recv_publish()
    assert pub.payload == b"kept" and pub.retain is True


@pytest.mark.broker_args("--max-packet-size", "2048")
def test_maximum_packet_size_announced(v5):
    """3.2.2.3.6: a server with a configured maximum packet size announces it in
    CONNACK, so that clients obey [MQTT-3.2.2-15]."""
    c = v5("mps")
    assert c.connack.properties is not None
    assert c.connack.properties.maximum_packet_size == 2048


def test_topic_alias_maximum_announced(v5):
    """3.2.2.3.8 / [MQTT-3.2.2-17] [MQTT-3.2.2-18]: a server accepting topic
    aliases announces Topic Alias Maximum > 0 (absent would forbid clients to
    use any alias)."""
    c = v5("tam")
    assert c.connack.properties is not None
    assert c.connack.properties.topic_alias_maximum is not None
    assert c.connack.properties.topic_alias_maximum >= 1


def test_feature_availability_flags(v5):
    """3.2.2.3.11-13: Wildcard, Subscription Identifier and Shared Subscription
    Available are absent (= supported) or 1; and each feature then works."""
    c = v5("feat")
    p = c.connack.properties or Properties()
    assert p.wildcard_subscription_available in (None, 1)
    assert p.subscription_identifier_available in (None, 1)
    assert p.shared_subscription_available in (None, 1)
    suback = c.subscribe(
        Subscription("feat/#", 1),
        Subscription("$share/g/feat2/+", 1),
        properties=Properties(subscription_identifier=[9]),
    )
    assert suback.reason_codes == [1, 1]


def test_receive_maximum_is_valid(v5):
    """3.2.2.3.3: Receive Maximum, when sent, is 1..65535 (0 is a protocol
    error); absent means 65535."""
    c = v5("rm")
    value = c.connack.properties and c.connack.properties.receive_maximum
    assert value is None or 1 <= value <= 65535


def test_no_response_information_unless_requested(v5):
    """[MQTT-3.1.2-31] Without Request Response Information (default 0) the
    server MUST NOT return Response Information."""
    c = v5("ri", properties=Properties(request_response_information=0))
    assert c.connack.properties is None or c.connack.properties.response_information is None


def test_no_reason_string_when_problem_information_not_requested(v5):
    """[MQTT-3.1.2-32] With Request Problem Information 0 the server MUST NOT
    send a Reason String or User Properties on packets other than PUBLISH,
    CONNACK or DISCONNECT (here: the PUBACK 0x10, a SUBACK, the UNSUBACK 0x11)."""
    c = v5("rpi", properties=Properties(request_problem_information=0))
    ack = c.publish("nobody/listens", b"x", qos=1)
    assert isinstance(ack, Puback)
    suback = c.subscribe(("rpi/t", 0))
    unsuback = c.unsubscribe("never/subscribed")
    for pkt in (ack, suback, unsuback):
        assert pkt.properties is None or (
            pkt.properties.reason_string is None and pkt.properties.user_property is None
        ), pkt


@pytest.mark.mosquitto_deviation(
    "mosquitto 2.0.11 closes a Keep Alive 1 connection only after ~6 s and sends no DISCONNECT 0x8D"
)
def test_server_keep_alive_is_enforced(v5):
    """[MQTT-3.2.2-21] [MQTT-3.2.2-22] [MQTT-3.1.2-24]: the server uses the
    client's Keep Alive unless it sends Server Keep Alive, and closes a silent
    connection after 1.5 times the effective value, with DISCONNECT 0x8D."""
    c = v5("ska", keep_alive=1)
    server_ka = c.connack.properties and c.connack.properties.server_keep_alive
    effective = server_ka if server_ka is not None else 1
    assert effective >= 1, "Server Keep Alive 0 would switch keep alive off"
    assert effective <= 2, f"server overrode Keep Alive 1 with {effective}: too long to test"
    start = time.monotonic()
    assert c.expect_closed(timeout=1.5 * effective + 1.5) == 0x8D
    assert time.monotonic() - start >= effective - 0.1, "closed before the keep alive elapsed"
