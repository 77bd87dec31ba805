"""Topic aliases (3.3.2.3.4) in both directions."""

from __future__ import annotations

import pytest

from mqttfast.codec.packets import Properties, Publish


def _alias_max(c) -> int:
    value = c.connack.properties and c.connack.properties.topic_alias_maximum
    assert value, f"server announced no Topic Alias Maximum: {c.connack!r}"
    return value


def test_client_alias_mapping_is_used(v5):
    """[MQTT-3.3.2-12] The server accepts every alias 1..its Topic Alias
    Maximum: a PUBLISH with topic and alias sets the mapping, a later PUBLISH
    with an empty topic and that alias goes to the mapped topic; subscribers
    get the full topic name."""
    s = v5("ta-sub")
    s.subscribe(("ta/#", 1))
    p = v5("ta-pub")
    top = _alias_max(p)
    p.publish("ta/one", b"1", qos=1, properties=Properties(topic_alias=1))
    p.publish("", b"2", qos=1, properties=Properties(topic_alias=1))
    p.publish("ta/two", b"3", qos=1, properties=Properties(topic_alias=top))
    p.publish("", b"4", qos=1, properties=Properties(topic_alias=top))
    got = [(m.topic, m.payload) for m in s.recv_publishes(4)]
    assert got == [("ta/one", b"1"), ("ta/one", b"2"), ("ta/two", b"3"), ("ta/two", b"4")]


def test_client_alias_can_be_remapped(v5):
    """3.3.2.3.4: a PUBLISH with a non-empty topic and an existing alias
    replaces the mapping [MQTT-3.3.2-12]."""
    s = v5("tar-sub")
    s.subscribe(("tar/#", 0))
    p = v5("tar-pub")
    p.publish("tar/a", b"1", properties=Properties(topic_alias=1))
    p.publish("tar/b", b"2", properties=Properties(topic_alias=1))
    p.publish("", b"3", properties=Properties(topic_alias=1))
    assert [(m.topic, m.payload) for m in s.recv_publishes(3)] == [
        ("tar/a", b"1"),
        ("tar/b", b"2"),
        ("tar/b", b"3"),
    ]


@pytest.mark.mosquitto_deviation(
    "mosquitto 2.0.11 answers Topic Alias 0 with DISCONNECT 0x81 (the packet is well formed)"
)
def test_alias_zero_is_topic_alias_invalid(v5):
    """[MQTT-3.3.2-8] A Topic Alias of 0 is not allowed: the server sends
    DISCONNECT 0x94 (Topic Alias invalid) and closes (3.3.2.3.4)."""
    c = v5("ta0")
    c.send_packet(Publish(topic="ta0/t", payload=b"x", properties=Properties(topic_alias=0)))
    assert c.expect_closed() == 0x94


def test_alias_above_maximum_is_topic_alias_invalid(v5):
    """[MQTT-3.3.2-9] A client MUST NOT send an alias greater than the server's
    Topic Alias Maximum; the server answers DISCONNECT 0x94 (3.3.2.3.4)."""
    c = v5("tabig")
    top = _alias_max(c)
    c.send_packet(
        Publish(topic="tabig/t", payload=b"x", properties=Properties(topic_alias=top + 1))
    )
    assert c.expect_closed() == 0x94


def test_empty_topic_without_mapping_is_protocol_error(v5):
    """3.3.2.3.4 / 3.3.4: a zero-length Topic Name with an alias that has no
    mapping is a Protocol Error: DISCONNECT 0x82."""
    c = v5("tanomap")
    c.send_packet(Publish(topic="", payload=b"x", properties=Properties(topic_alias=1)))
    assert c.expect_closed() == 0x82


def test_empty_topic_without_alias_is_protocol_error(v5):
    """3.3.2.1: a zero-length Topic Name without a Topic Alias is a Protocol
    Error: DISCONNECT 0x82."""
    c = v5("tanoalias")
    c.send_packet(Publish(topic="", payload=b"x"))
    assert c.expect_closed() == 0x82


def test_alias_mapping_not_carried_to_new_connection(v5):
    """[MQTT-3.3.2-7] Topic Alias mappings do not survive the network
    connection, even when the session does: after reconnecting, an empty
    topic with the old alias is a Protocol Error (0x82)."""
    a = v5("tascope", session_expiry=60)
    a.publish("tascope/t", b"x", qos=1, properties=Properties(topic_alias=1))
    a.disconnect()
    b = v5("tascope", clean_start=False, session_expiry=60)
    b.send_packet(Publish(topic="", payload=b"x", properties=Properties(topic_alias=1)))
    assert b.expect_closed() == 0x82


def test_server_sends_no_alias_without_client_maximum(v5):
    """[MQTT-3.1.2-30] If the client's Topic Alias Maximum is absent or 0 the
    server MUST NOT send any Topic Alias: every PUBLISH has the full topic."""
    s = v5("tan-sub")
    s.subscribe(("tan/t", 0))
    p = v5("tan-pub")
    for i in range(5):
        p.publish("tan/t", b"%d" % i)
    for m in s.recv_publishes(5):
        assert m.topic == "tan/t"
        assert m.properties is None or m.properties.topic_alias is None


def test_server_aliases_within_client_maximum(v5):
    """[MQTT-3.1.2-29] [MQTT-3.3.2-11]: with Topic Alias Maximum 2 from the
    client, any alias the server uses is 1..2, and every PUBLISH resolves to
    the topic that was published (an empty topic only after the server set
    that alias on this connection)."""
    s = v5("tas-sub", properties=Properties(topic_alias_maximum=2))
    s.subscribe(("tas/#", 0))
    p = v5("tas-pub")
    topics = ["tas/a", "tas/b", "tas/c", "tas/a", "tas/b", "tas/c", "tas/a", "tas/a"]
    for i, t in enumerate(topics):
        p.publish(t, b"%d" % i)
    mapping: dict[int, str] = {}
    resolved = []
    for m in s.recv_publishes(len(topics)):
        alias = m.properties.topic_alias if m.properties else None
        if alias is not None:
            assert 1 <= alias <= 2, f"alias {alias} outside the client's maximum 2"
            if m.topic:
                mapping[alias] = m.topic
            else:
                assert alias in mapping, f"alias {alias} used before it was set"
        else:
            assert m.topic, "empty topic without alias"
        resolved.append(m.topic or mapping[alias])
    assert resolved == topics
