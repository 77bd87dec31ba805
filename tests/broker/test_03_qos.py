"""QoS 1 and QoS 2 flows in both directions (MQTT 3.1.1 sections 3.3-3.7, 4.3)."""

from __future__ import annotations

import pytest

from mqttfast.codec.packets import Puback, Pubcomp, Publish, Pubrec, Pubrel


def test_qos1_puback_same_packet_id(raw) -> None:
    """[MQTT-4.3.2-2] / [MQTT-3.3.4-1] a QoS 1 PUBLISH is answered by PUBACK with its packet id."""
    c = raw(client_id="p")
    c.send_packet(Publish(topic="q1", payload=b"x", qos=1, packet_id=321))
    ack = c.expect(Puback)
    assert ack.packet_id == 321


def test_qos2_pubrec_pubcomp_same_packet_id(raw) -> None:
    """[MQTT-4.3.3-2] QoS 2 PUBLISH -> PUBREC with its id; PUBREL -> PUBCOMP with the same id."""
    c = raw(client_id="p")
    c.send_packet(Publish(topic="q2", payload=b"x", qos=2, packet_id=65535))
    assert c.expect(Pubrec).packet_id == 65535
    c.send_packet(Pubrel(packet_id=65535))
    assert c.expect(Pubcomp).packet_id == 65535


def test_outgoing_qos1_has_packet_id_and_dup_0(raw) -> None:
    """[MQTT-4.3.2-1] the server sends QoS 1 with an unused non-zero packet id and DUP 0
    ([MQTT-2.3.1-1]); the message stays unacknowledged until PUBACK."""
    sub = raw(client_id="sub")
    sub.subscribe(("o1", 1))
    raw(client_id="pub").publish("o1", b"x", qos=1)
    got = sub.recv_publish(ack=False)
    assert got.qos == 1 and got.packet_id != 0 and got.dup is False
    sub.send_packet(Puback(packet_id=got.packet_id))
    sub.expect_no_packet(0.4)


def test_outgoing_qos2_full_flow(raw) -> None:
    """[MQTT-4.3.3-1] server as QoS 2 sender: PUBLISH (DUP 0, id) -> our PUBREC ->
    server PUBREL with the same id -> our PUBCOMP; nothing more afterwards."""
    sub = raw(client_id="sub")
    sub.subscribe(("o2", 2))
    raw(client_id="pub").publish("o2", b"x", qos=2)
    got = sub.recv_publish(ack=False)
    assert got.qos == 2 and got.packet_id != 0 and got.dup is False
    sub.send_packet(Pubrec(packet_id=got.packet_id))
    rel = sub.expect(Pubrel)
    assert rel.packet_id == got.packet_id
    sub.send_packet(Pubcomp(packet_id=got.packet_id))
    sub.expect_no_packet(0.4)


def test_inflight_packet_ids_are_unique(raw) -> None:
    """[MQTT-4.3.2-1] / 2.3.1: packet ids of unacknowledged QoS 1 messages to one
    client are distinct."""
    sub = raw(client_id="sub")
    sub.subscribe(("uniq", 1))
    pub = raw(client_id="pub")
    for i in range(10):
        pub.publish("uniq", str(i).encode(), qos=1)
    got = sub.recv_publishes(10, ack=False)
    ids = [p.packet_id for p in got]
    assert len(set(ids)) == 10 and 0 not in ids


def test_qos2_duplicate_publish_before_pubrel_delivered_once(raw) -> None:
    """[MQTT-4.3.3-2] until PUBREL, a re-sent PUBLISH with the same id is answered
    with PUBREC again and must not cause a duplicate onward delivery."""
    sub = raw(client_id="sub")
    sub.subscribe(("once", 2))
    pub = raw(client_id="pub")
    pub.send_packet(Publish(topic="once", payload=b"exactly", qos=2, packet_id=7))
    assert pub.expect(Pubrec).packet_id == 7
    pub.send_packet(Publish(topic="once", payload=b"exactly", qos=2, packet_id=7, dup=True))
    assert pub.expect(Pubrec).packet_id == 7
    pub.send_packet(Pubrel(packet_id=7))
    assert pub.expect(Pubcomp).packet_id == 7
    got = sub.recv_publish()
    assert got.payload == b"exactly"
    sub.expect_no_packet(0.6)


def test_qos2_same_id_after_pubcomp_is_a_new_message(raw) -> None:
    """4.3.3: once PUBCOMP is sent the packet id may be reused: a new PUBLISH with it
    is a new message and is delivered."""
    sub = raw(client_id="sub")
    sub.subscribe(("reuse", 2))
    pub = raw(client_id="pub")
    pub.publish("reuse", b"first", qos=2, packet_id=5)
    pub.publish("reuse", b"second", qos=2, packet_id=5)
    assert [p.payload for p in sub.recv_publishes(2)] == [b"first", b"second"]


def test_pubrel_for_unknown_id_answered_with_pubcomp(raw) -> None:
    """[MQTT-4.3.3-2] the receiver MUST respond to a PUBREL with a PUBCOMP of the
    same id (also when it holds no state for it, e.g. after a clean restart)."""
    c = raw(client_id="c")
    c.send_packet(Pubrel(packet_id=999))
    assert c.expect(Pubcomp).packet_id == 999


def test_dup_flag_not_propagated(raw) -> None:
    """[MQTT-3.3.1-3] the DUP flag of an incoming PUBLISH is not propagated to subscribers."""
    sub = raw(client_id="sub")
    sub.subscribe(("dupt", 1))
    pub = raw(client_id="pub")
    pub.publish("dupt", b"d", qos=1, dup=True)
    got = sub.recv_publish()
    assert got.dup is False


def test_qos0_delivery_dup_0(raw) -> None:
    """[MQTT-3.3.1-2] DUP is 0 on every QoS 0 message."""
    sub = raw(client_id="sub")
    sub.subscribe(("d0", 0))
    raw(client_id="pub").publish("d0", b"x", qos=1, dup=True)
    got = sub.recv_publish()
    assert got.qos == 0 and got.dup is False and got.packet_id == 0


def test_unacked_qos1_not_resent_on_same_connection(raw) -> None:
    """4.4: in 3.1.1 re-sending happens only on reconnect; while connected the server
    waits for the PUBACK (no spurious redelivery within a short window)."""
    sub = raw(client_id="sub")
    sub.subscribe(("nores", 1))
    raw(client_id="pub").publish("nores", b"x", qos=1)
    first = sub.recv_publish(ack=False)
    sub.expect_no_packet(1.0)
    sub.send_packet(Puback(packet_id=first.packet_id))


def test_qos1_publisher_gets_puback_without_subscribers(raw) -> None:
    """[MQTT-4.3.2-2] PUBACK is sent even when nobody subscribes."""
    c = raw(client_id="c")
    assert c.publish("nobody", b"x", qos=1).packet_id > 0


def test_qos2_publisher_flow_without_subscribers(raw) -> None:
    """[MQTT-4.3.3-2] the full QoS 2 flow completes even when nobody subscribes."""
    c = raw(client_id="c")
    assert isinstance(c.publish("nobody", b"x", qos=2), Pubcomp)


def test_qos2_publisher_many_in_parallel(raw) -> None:
    """Several QoS 2 flows interleaved on one connection each complete, and each
    message is delivered exactly once."""
    sub = raw(client_id="sub")
    sub.subscribe(("par", 2))
    pub = raw(client_id="pub")
    for pid in range(1, 21):
        pub.send_packet(Publish(topic="par", payload=str(pid).encode(), qos=2, packet_id=pid))
    recs = sorted(pub.recv_until(Pubrec).packet_id for _ in range(20))
    assert recs == list(range(1, 21))
    for pid in range(1, 21):
        pub.send_packet(Pubrel(packet_id=pid))
    comps = sorted(pub.recv_until(Pubcomp).packet_id for _ in range(20))
    assert comps == list(range(1, 21))
    got = sorted(int(p.payload) for p in sub.recv_publishes(20, timeout=5))
    assert got == list(range(1, 21))
    sub.expect_no_packet(0.5)


@pytest.mark.broker_args("--max-inflight", "2")
def test_max_inflight_window_respected(raw) -> None:
    """Issue 3 in-flight window (--max-inflight 2): at most 2 unacknowledged QoS 1
    messages are sent to a client; the rest follow, in order, as PUBACKs arrive
    ([MQTT-4.6.0-6] ordering kept)."""
    sub = raw(client_id="sub")
    sub.subscribe(("win", 1))
    pub = raw(client_id="pub")
    for i in range(6):
        pub.publish("win", str(i).encode(), qos=1)
    first = sub.recv_publishes(2, ack=False)
    sub.expect_no_packet(0.5)
    received = list(first)
    for p in first:
        sub.send_packet(Puback(packet_id=p.packet_id))
    while len(received) < 6:
        p = sub.recv_publish(ack=False)
        received.append(p)
        sub.send_packet(Puback(packet_id=p.packet_id))
    assert [int(p.payload) for p in received] == list(range(6))


@pytest.mark.broker_args("--max-inflight", "1")
def test_max_inflight_qos2_window(raw) -> None:
    """With a window of 1, the second QoS 2 message waits until the first flow is
    complete (PUBCOMP), then arrives."""
    sub = raw(client_id="sub")
    sub.subscribe(("win2", 2))
    pub = raw(client_id="pub")
    pub.publish("win2", b"a", qos=2)
    pub.publish("win2", b"b", qos=2)
    first = sub.recv_publish(ack=False)
    assert first.payload == b"a"
    sub.expect_no_packet(0.5)
    sub.ack(first)
    assert sub.recv_publish().payload == b"b"


def test_publish_qos1_packet_id_zero_closes(raw) -> None:
    """[MQTT-2.3.1-1] QoS > 0 PUBLISH must carry a non-zero packet id; 0 closes."""
    c = raw(client_id="c")
    c.send(bytes([0x32, 6]) + b"\x00\x01t" + b"\x00\x00" + b"x")
    c.expect_closed()


def test_unsubscribe_completes_started_qos1_delivery(raw) -> None:
    """[MQTT-3.10.4-3] after UNSUBSCRIBE the server completes QoS 1/2 deliveries it had
    started: our late PUBACK is accepted and nothing is re-sent; the connection stays up."""
    sub = raw(client_id="sub")
    sub.subscribe(("us/q1", 1))
    raw(client_id="pub").publish("us/q1", b"x", qos=1)
    started = sub.recv_publish(ack=False)
    sub.unsubscribe("us/q1")
    sub.send_packet(Puback(packet_id=started.packet_id))
    sub.expect_no_packet(0.5)
    assert sub.is_open()


def test_unsubscribe_completes_started_qos2_delivery(raw) -> None:
    """[MQTT-3.10.4-3] a QoS 2 delivery started before UNSUBSCRIBE is completed: our
    PUBREC is answered with PUBREL, then PUBCOMP closes the flow."""
    sub = raw(client_id="sub")
    sub.subscribe(("us/q2", 2))
    raw(client_id="pub").publish("us/q2", b"x", qos=2)
    started = sub.recv_publish(ack=False)
    sub.unsubscribe("us/q2")
    sub.send_packet(Pubrec(packet_id=started.packet_id))
    assert sub.recv_until(Pubrel).packet_id == started.packet_id
    sub.send_packet(Pubcomp(packet_id=started.packet_id))
    sub.expect_no_packet(0.5)


def test_longest_topic_name_delivered(raw) -> None:
    """[MQTT-4.7.3-3] topic names up to 65535 bytes are valid: a 65535-byte topic is
    delivered unchanged."""
    topic = "t" * 65535
    sub = raw(client_id="sub")
    sub.subscribe(("#", 1))
    raw(client_id="pub").publish(topic, b"long", qos=1)
    got = sub.recv_publish()
    assert got.topic == topic and got.payload == b"long"


def test_retained_qos2_kept_at_qos2(raw) -> None:
    """[MQTT-3.3.1-5] the server stores the retained message with its QoS: a QoS 2
    retained message goes to a new QoS 2 subscriber at QoS 2."""
    raw(client_id="pub").publish("rq2", b"x", qos=2, retain=True)
    sub = raw(client_id="sub")
    sub.subscribe(("rq2", 2))
    got = sub.recv_publish()
    assert (got.qos, got.retain) == (2, True)
