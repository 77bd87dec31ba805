"""Clean and persistent sessions (MQTT 3.1.1 sections 3.1.2.4, 3.2.2.2, 4.1, 4.4)."""

from __future__ import annotations

import pytest

from mqttfast.codec.packets import Puback, Pubcomp, Publish, Pubrec, Pubrel


def test_session_present_0_for_new_persistent_session(raw) -> None:
    """[MQTT-3.2.2-3] CleanSession=0 without stored state -> Session Present 0."""
    assert raw().connect("fresh", clean_start=False).session_present is False


def test_session_present_1_when_resuming(raw) -> None:
    """[MQTT-3.2.2-2] CleanSession=0 with stored state -> Session Present 1;
    [MQTT-3.1.2-4] the session is resumed."""
    c = raw(client_id="p", clean_start=False)
    c.subscribe(("keep/t", 1))
    c.disconnect()
    again = raw()
    assert again.connect("p", clean_start=False).session_present is True


def test_persistent_session_keeps_subscriptions(raw) -> None:
    """[MQTT-3.1.2-4] / 4.1: the subscriptions of a persistent session survive a
    disconnect and deliver on reconnect without re-subscribing."""
    c = raw(client_id="p", clean_start=False)
    c.subscribe(("keep/t", 1))
    c.disconnect()
    again = raw(client_id="p", clean_start=False)
    raw(client_id="pub").publish("keep/t", b"after", qos=1)
    assert again.recv_publish().payload == b"after"


def test_offline_qos1_and_qos2_queued_and_delivered_in_order(raw) -> None:
    """[MQTT-3.1.2-5] QoS 1 and 2 messages arriving while the client is offline are
    stored in its session; [MQTT-4.6.0-6] and delivered in order on reconnect."""
    c = raw(client_id="p", clean_start=False)
    c.subscribe(("off/#", 2))
    c.disconnect()
    pub = raw(client_id="pub")
    for i in range(10):
        pub.publish(f"off/{i % 2}", str(i).encode(), qos=1 + i % 2)
    again = raw()
    assert again.connect("p", clean_start=False).session_present is True
    got = again.recv_publishes(10, timeout=5)
    for qos in (1, 2):
        assert [int(p.payload) for p in got if p.qos == qos] == list(range(qos - 1, 10, 2))
    again.expect_no_packet(0.5)


def test_offline_qos_downgraded_to_granted(raw) -> None:
    """[MQTT-3.8.4-6] queued messages keep the granted-QoS cap."""
    c = raw(client_id="p", clean_start=False)
    c.subscribe(("cap", 1))
    c.disconnect()
    raw(client_id="pub").publish("cap", b"x", qos=2)
    again = raw(client_id="p", clean_start=False)
    assert again.recv_publish().qos == 1


def test_clean_session_discards_previous_session(raw) -> None:
    """[MQTT-3.1.2-6] CleanSession=1 discards the previous session: Session Present 0,
    old subscriptions gone, queued messages gone."""
    c = raw(client_id="p", clean_start=False)
    c.subscribe(("gone", 1))
    c.disconnect()
    raw(client_id="pub").publish("gone", b"queued", qos=1)
    clean = raw()
    assert clean.connect("p", clean_start=True).session_present is False
    clean.expect_no_packet(0.5)
    raw(client_id="pub2").publish("gone", b"live", qos=1)
    clean.expect_no_packet(0.5)


def test_clean_session_state_not_kept_after_disconnect(raw) -> None:
    """[MQTT-3.1.2-6] the state of a CleanSession=1 session ends with the connection:
    a later CleanSession=0 connect finds nothing (Session Present 0)."""
    c = raw(client_id="p", clean_start=True)
    c.subscribe(("x", 1))
    c.disconnect()
    later = raw()
    assert later.connect("p", clean_start=False).session_present is False
    raw(client_id="pub").publish("x", b"x", qos=1)
    later.expect_no_packet(0.5)


def test_unacked_qos1_redelivered_with_dup_on_reconnect(raw) -> None:
    """[MQTT-4.4.0-1] on reconnect with CleanSession=0 the server re-sends
    unacknowledged PUBLISH packets with their original packet ids;
    [MQTT-3.3.1-1] with DUP=1."""
    c = raw(client_id="p", clean_start=False)
    c.subscribe(("redo", 1))
    raw(client_id="pub").publish("redo", b"again", qos=1)
    first = c.recv_publish(ack=False)
    assert first.dup is False
    c.close()  # no PUBACK, no DISCONNECT
    again = raw(client_id="p", clean_start=False)
    redo = again.recv_publish(ack=False)
    assert (redo.payload, redo.packet_id, redo.dup, redo.qos) == (
        b"again",
        first.packet_id,
        True,
        1,
    )
    again.send_packet(Puback(packet_id=redo.packet_id))
    again.expect_no_packet(0.5)


def test_acked_qos1_not_redelivered(raw) -> None:
    """[MQTT-4.3.2-1] an acknowledged message is no longer unacknowledged: no
    redelivery after reconnect."""
    c = raw(client_id="p", clean_start=False)
    c.subscribe(("acked", 1))
    raw(client_id="pub").publish("acked", b"x", qos=1)
    c.recv_publish(ack=True)
    c.ping()  # the PUBACK is processed before we leave
    c.disconnect()
    again = raw(client_id="p", clean_start=False)
    again.expect_no_packet(0.6)


def test_qos2_unreceived_publish_redelivered_with_dup(raw) -> None:
    """[MQTT-4.4.0-1] a QoS 2 PUBLISH without PUBREC is re-sent with the same id and DUP=1."""
    c = raw(client_id="p", clean_start=False)
    c.subscribe(("redo2", 2))
    raw(client_id="pub").publish("redo2", b"x", qos=2)
    first = c.recv_publish(ack=False)
    c.close()
    again = raw(client_id="p", clean_start=False)
    redo = again.recv_publish(ack=False)
    assert (redo.packet_id, redo.dup, redo.qos) == (first.packet_id, True, 2)
    again.ack(redo)
    again.expect_no_packet(0.5)


def test_qos2_pubrel_resent_after_reconnect(raw) -> None:
    """[MQTT-4.4.0-1] after our PUBREC, a reconnect makes the server re-send the PUBREL
    (not the PUBLISH): the message is not delivered twice."""
    c = raw(client_id="p", clean_start=False)
    c.subscribe(("rel", 2))
    raw(client_id="pub").publish("rel", b"x", qos=2)
    first = c.recv_publish(ack=False)
    c.send_packet(Pubrec(packet_id=first.packet_id))
    assert c.recv_until(Pubrel).packet_id == first.packet_id
    c.close()  # before PUBCOMP
    again = raw(client_id="p", clean_start=False)
    rel = again.expect(Pubrel)
    assert rel.packet_id == first.packet_id
    again.send_packet(Pubcomp(packet_id=rel.packet_id))
    again.expect_no_packet(0.5)


def test_inbound_qos2_state_kept_across_reconnect(raw) -> None:
    """[MQTT-4.3.3-2] exactly once across a reconnect: the publisher got PUBREC,
    reconnects (CleanSession=0), re-sends the PUBLISH with DUP and then PUBREL; the
    subscriber receives the message exactly once and the publisher gets PUBCOMP."""
    sub = raw(client_id="sub")
    sub.subscribe(("eo", 2))
    pub = raw(client_id="pub", clean_start=False)
    pub.send_packet(Publish(topic="eo", payload=b"once", qos=2, packet_id=41))
    assert pub.expect(Pubrec).packet_id == 41
    pub.close()
    pub2 = raw(client_id="pub", clean_start=False)
    pub2.send_packet(Publish(topic="eo", payload=b"once", qos=2, packet_id=41, dup=True))
    assert pub2.expect(Pubrec).packet_id == 41
    pub2.send_packet(Pubrel(packet_id=41))
    assert pub2.expect(Pubcomp).packet_id == 41
    assert sub.recv_publish().payload == b"once"
    sub.expect_no_packet(0.6)


def test_offline_queue_while_other_messages_flow(raw) -> None:
    """[MQTT-3.1.2-5] QoS 0 messages published while offline may be dropped, QoS 1
    must be queued: after reconnect the QoS 1 message is there."""
    c = raw(client_id="p", clean_start=False)
    c.subscribe(("mix", 1))
    c.disconnect()
    pub = raw(client_id="pub")
    pub.publish("mix", b"q1", qos=1)
    again = raw(client_id="p", clean_start=False)
    assert b"q1" in [p.payload for p in again.recv_publishes(1)]


@pytest.mark.broker_args("--max-queued-messages", "3")
def test_max_queued_messages_bound(raw) -> None:
    """Issue 3: the offline queue is bounded (--max-queued-messages 3): after 8 QoS 1
    messages offline, the reconnecting client receives at most 3, in publish order."""
    c = raw(client_id="p", clean_start=False)
    c.subscribe(("bound", 1))
    c.disconnect()
    pub = raw(client_id="pub")
    for i in range(8):
        pub.publish("bound", str(i).encode(), qos=1)
    again = raw(client_id="p", clean_start=False)
    got = []
    try:
        while True:
            got.append(int(again.recv_publish(timeout=1.0).payload))
    except AssertionError:
        pass
    assert 1 <= len(got) <= 3
    assert got == sorted(got)


def test_unsubscribe_persists_in_session(raw) -> None:
    """[MQTT-3.10.4-2] an UNSUBSCRIBE is part of the session state: after reconnect
    the removed subscription stays removed."""
    c = raw(client_id="p", clean_start=False)
    c.subscribe(["u/a", "u/b"])
    c.unsubscribe("u/a")
    c.disconnect()
    again = raw(client_id="p", clean_start=False)
    pub = raw(client_id="pub")
    pub.publish("u/a", b"a")
    pub.publish("u/b", b"b")
    assert again.recv_publish().payload == b"b"
    again.expect_no_packet(0.4)


def test_redelivery_order_then_queued(raw) -> None:
    """[MQTT-4.6.0-1] re-sent PUBLISH packets go out in their original order (DUP=1),
    followed by messages queued while offline (DUP=0), all in publish order
    ([MQTT-4.6.0-6])."""
    c = raw(client_id="p", clean_start=False)
    c.subscribe(("ro", 1))
    pub = raw(client_id="pub")
    for i in range(3):
        pub.publish("ro", str(i).encode(), qos=1)
    inflight = c.recv_publishes(3, ack=False)
    c.close()
    pub.ping()
    for i in range(3, 5):
        pub.publish("ro", str(i).encode(), qos=1)
    again = raw(client_id="p", clean_start=False)
    got = again.recv_publishes(5)
    assert [int(p.payload) for p in got] == list(range(5))
    assert [p.dup for p in got[:3]] == [True] * 3
    assert [p.packet_id for p in got[:3]] == [p.packet_id for p in inflight]
    assert [p.dup for p in got[3:]] == [False, False]
