"""Session takeover: a second connection with the same client id ([MQTT-3.1.4-2])."""

from __future__ import annotations

from mqttfast.codec.packets import Will


def test_second_connection_disconnects_first(raw) -> None:
    """[MQTT-3.1.4-2] if the client id is already connected the server disconnects
    the existing client (3.1.1: no packet, the connection is closed)."""
    first = raw(client_id="same")
    second = raw(client_id="same")
    first.expect_closed()
    assert second.is_open()


def test_takeover_keeps_persistent_session(raw) -> None:
    """[MQTT-3.1.2-4] / [MQTT-3.2.2-2] taking over a persistent session resumes it:
    Session Present 1 and the subscriptions stay."""
    first = raw(client_id="same", clean_start=False)
    first.subscribe(("to/t", 1))
    second = raw()
    assert second.connect("same", clean_start=False).session_present is True
    first.expect_closed()
    raw(client_id="pub").publish("to/t", b"x", qos=1)
    assert second.recv_publish().payload == b"x"


def test_takeover_with_clean_session_discards_state(raw) -> None:
    """[MQTT-3.1.2-6] taking over with CleanSession=1 starts a new session."""
    first = raw(client_id="same", clean_start=False)
    first.subscribe(("to/t", 1))
    second = raw()
    assert second.connect("same", clean_start=True).session_present is False
    first.expect_closed()
    raw(client_id="pub").publish("to/t", b"x", qos=1)
    second.expect_no_packet(0.5)


def test_takeover_inflight_message_redelivered_to_new_connection(raw) -> None:
    """[MQTT-4.4.0-1] an unacknowledged QoS 1 message of the taken-over connection is
    re-sent on the new one (same packet id, DUP=1)."""
    first = raw(client_id="same", clean_start=False)
    first.subscribe(("to/q", 1))
    raw(client_id="pub").publish("to/q", b"x", qos=1)
    pending = first.recv_publish(ack=False)
    second = raw(client_id="same", clean_start=False)
    redo = second.recv_publish()
    assert (redo.payload, redo.packet_id, redo.dup) == (b"x", pending.packet_id, True)


def test_takeover_publishes_will_of_old_connection(raw) -> None:
    """[MQTT-3.1.2-8] the old connection is closed by the server without DISCONNECT,
    so its will is published (3.1.1; MQTT 5 differs, see issue 4)."""
    watcher = raw(client_id="watcher")
    watcher.subscribe("to/will")
    first = raw(client_id="same", will=Will(topic="to/will", payload=b"taken"))
    second = raw(client_id="same")
    first.expect_closed()
    assert watcher.recv_publish(timeout=3).payload == b"taken"
    assert second.is_open()


def test_takeover_chain(raw) -> None:
    """[MQTT-3.1.4-2] repeated takeovers: every earlier connection is closed, the
    last one works."""
    conns = [raw(client_id="chain") for _ in range(5)]
    for c in conns[:-1]:
        c.expect_closed()
    assert conns[-1].is_open()


def test_different_ids_do_not_take_over(raw) -> None:
    """[MQTT-3.1.4-2] only the same client id triggers a takeover."""
    a = raw(client_id="id-a")
    b = raw(client_id="id-b")
    assert a.is_open() and b.is_open()
