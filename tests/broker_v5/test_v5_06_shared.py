"""Shared subscriptions $share/{ShareName}/{filter} (4.8.2)."""

from __future__ import annotations

import pytest

from mqttfast.codec.packets import Properties, Puback, Publish, Subscribe, Subscription
from tests.helpers.rawclient import NoPacket


def _collect(client, limit: int, timeout: float = 1.0) -> list[Publish]:
    got: list[Publish] = []
    while len(got) < limit:
        try:
            got.append(client.recv_publish(timeout))
        except NoPacket:
            break
    return got


def test_each_message_to_exactly_one_member(v5):
    """4.8.2: each message matching a shared subscription goes to exactly one
    member of the group; a normal subscription on the same filter still gets
    every message (mixed correctly)."""
    a = v5("sh-a")
    b = v5("sh-b")
    normal = v5("sh-normal")
    assert a.subscribe(("$share/g/sh/#", 1)).reason_codes == [1]
    assert b.subscribe(("$share/g/sh/#", 1)).reason_codes == [1]
    normal.subscribe(("sh/#", 1))
    p = v5("sh-pub")
    sent = [b"m%d" % i for i in range(10)]
    for m in sent:
        p.publish("sh/t", m, qos=1)
    got_a = _collect(a, 10)
    got_b = _collect(b, 10)
    shared = sorted(m.payload for m in got_a + got_b)
    assert shared == sorted(sent), "every message exactly once across the group"
    assert all(m.topic == "sh/t" for m in got_a + got_b), "topic without the $share prefix"
    assert [m.payload for m in normal.recv_publishes(10)] == sent


def test_two_groups_each_get_every_message(v5):
    """4.8.2: every share group receives each message once (ShareName
    distinguishes independent groups on the same filter)."""
    g1 = v5("shg-1")
    g2 = v5("shg-2")
    g1.subscribe(("$share/one/shg/t", 1))
    g2.subscribe(("$share/two/shg/t", 1))
    v5("shg-pub").publish("shg/t", b"x", qos=1)
    assert g1.recv_publish().payload == b"x"
    assert g2.recv_publish().payload == b"x"


@pytest.mark.mosquitto_deviation(
    "mosquitto 2.0.11 sends retained messages on a shared subscribe (4.8.2 says they are not sent)"
)
def test_retained_not_sent_on_shared_subscribe(v5):
    """3.3.1.3 / 4.8.2 (3.8.4): retained messages are not sent when a shared
    subscription is made; a normal subscription gets them."""
    v5("shr-pub").publish("shr/t", b"kept", qos=1, retain=True)
    s = v5("shr")
    assert s.subscribe(("$share/g/shr/t", 1)).reason_codes == [1]
    s.expect_no_packet(0.5)
    n = v5("shr-normal")
    n.subscribe(("shr/t", 1))
    assert n.recv_publish().payload == b"kept"


@pytest.mark.mosquitto_deviation(
    "mosquitto 2.0.11 subscribes some as plain filters (SUBACK 1), others get DISCONNECT 0x81"
)
@pytest.mark.parametrize(
    "bad", ["$share//t", "$share/a+b/t", "$share/g", "$share/a#/t", "$share/g/"]
)
def test_invalid_share_names_are_a_protocol_error(v5, bad):
    """[MQTT-4.8.2-1] [MQTT-4.8.2-2]: a ShareName must be at least one character,
    contain no '+' or '#', and be followed by '/' and a topic filter. A filter that is
    not so formed is a protocol error (issue 14): DISCONNECT 0x82, not SUBACK 0x8F."""
    c = v5("shbad")
    c.send_packet(Subscribe(1, [Subscription(bad, 1), Subscription("ok/t", 1)]))
    assert c.expect_closed() == 0x82


def test_unsubscribe_shared(v5):
    """3.10.4: UNSUBSCRIBE with the full $share filter removes the member
    (UNSUBACK 0x00) and it receives no more messages."""
    c = v5("shun")
    c.subscribe(("$share/g/shun/t", 1))
    assert c.unsubscribe("$share/g/shun/t").reason_codes == [0]
    v5("shun-pub").publish("shun/t", b"x", qos=1)
    c.expect_no_packet(0.5)


def test_shared_respects_granted_qos(v5):
    """[MQTT-4.8.2-3] The server respects the granted QoS of the member's
    subscription: QoS 2 publication to a QoS 0 member arrives at QoS 0."""
    c = v5("shq")
    c.subscribe(("$share/g/shq/t", 0))
    v5("shq-pub").publish("shq/t", b"x", qos=2)
    pub = c.recv_publish()
    assert pub.qos == 0 and pub.payload == b"x"


@pytest.mark.mosquitto_deviation(
    "mosquitto 2.0.11 drops the unacknowledged message (the spec says SHOULD redeliver; issue 4 requires it)"
)
def test_unacked_qos1_goes_to_another_member_when_session_ends(v5):
    """4.8.2: if the connection to the chosen member breaks before it acks a
    QoS 1 message and its session ends, the server SHOULD send the message to
    another member of the group (the spec says SHOULD; issue 4 requires it).
    Which member is chosen first is implementation-specific, so the test
    makes the other member the only remaining one."""
    a = v5("shf-a", session_expiry=0)
    a.subscribe(("$share/g/shf/t", 1))
    v5("shf-pub").publish("shf/t", b"orphan", qos=1)
    pub = a.recv_publish(ack=False)
    assert pub.payload == b"orphan"
    b = v5("shf-b", session_expiry=0)
    b.subscribe(("$share/g/shf/t", 1))
    a.close()  # no PUBACK, no DISCONNECT: the session (expiry 0) ends now
    assert b.recv_publish(timeout=3.0).payload == b"orphan"


def test_negative_puback_not_redelivered_to_other_member(v5):
    """[MQTT-4.8.2-6] If a member answers PUBACK with a reason code >= 0x80,
    the server discards the message and does not send it to another member."""
    a = v5("shn-a")
    a.subscribe(("$share/g/shn/t", 1))
    v5("shn-pub").publish("shn/t", b"refused", qos=1)
    pub = a.recv_publish(ack=False)
    b = v5("shn-b")
    b.subscribe(("$share/g/shn/t", 1))
    a.send_packet(Puback(packet_id=pub.packet_id, reason_code=0x80))
    b.expect_no_packet(0.8)
    a.expect_no_packet(0.2)


def test_share_filter_with_wildcards(v5):
    """4.8.2: the filter after the ShareName may contain wildcards."""
    c = v5("shw")
    c.subscribe(("$share/g/shw/+/x", 1))
    v5("shw-pub").publish("shw/a/x", b"m", qos=1)
    assert c.recv_publish().topic == "shw/a/x"


def test_shared_and_normal_subscription_on_one_client(v5):
    """4.8.2: a client with a shared and a non-shared subscription matching one
    message gets a copy for the non-shared one and, being the only group
    member, the group's copy too: two copies."""
    c = v5("shmix")
    c.subscribe(("shmix/t", 1))
    c.subscribe(("$share/g/shmix/t", 1))
    v5("shmix-pub").publish("shmix/t", b"m", qos=1)
    assert [m.payload for m in c.recv_publishes(2)] == [b"m", b"m"]
    c.expect_no_packet(0.3)


def test_unacked_qos2_completed_to_same_member_on_reconnect(v5):
    """[MQTT-4.8.2-4]: a QoS 2 message whose delivery to the chosen member
    broke off is completed to that member when it reconnects (DUP 1, same
    packet id), and is not handed to another member meanwhile."""
    a = v5("shq2-a", session_expiry=60)
    a.subscribe(("$share/g/shq2/t", 2))
    v5("shq2-pub").publish("shq2/t", b"once", qos=2)
    first = a.recv_publish(ack=False)
    b = v5("shq2-b")
    b.subscribe(("$share/g/shq2/t", 2))
    a.close()
    b.expect_no_packet(1.0)
    a2 = v5("shq2-a", clean_start=False, session_expiry=60)
    again = a2.recv_publish()
    assert (again.payload, again.dup, again.packet_id) == (b"once", True, first.packet_id)
    b.expect_no_packet(0.3)


def test_unacked_qos2_not_sent_to_other_member_when_session_ends(v5):
    """[MQTT-4.8.2-5]: if the chosen member's session ends before it reconnects,
    a QoS 2 message it had not completed MUST NOT be sent to any other member
    (issue 4's wording "QoS 1/2 go to another member" holds for QoS 1 only)."""
    a = v5("shq2e-a", session_expiry=0)
    a.subscribe(("$share/g/shq2e/t", 2))
    v5("shq2e-pub").publish("shq2e/t", b"once", qos=2)
    a.recv_publish(ack=False)
    b = v5("shq2e-b")
    b.subscribe(("$share/g/shq2e/t", 2))
    a.close()
    b.expect_no_packet(1.2)


def test_shared_subscription_identifier_delivered(v5):
    """[MQTT-3.3.4-3]: a Subscription Identifier given with a shared
    subscription is carried by the messages that subscription delivers."""
    c = v5("shsid")
    c.subscribe(("$share/g/shsid/t", 1), properties=Properties(subscription_identifier=[77]))
    v5("shsid-pub").publish("shsid/t", b"m", qos=1)
    assert c.recv_publish().properties.subscription_identifier == [77]
