"""Will messages (MQTT 3.1.1 sections 3.1.2.5-3.1.2.7, 3.14.4)."""

from __future__ import annotations

from mqttfast.codec.packets import Will


def will_client(
    raw,
    client_id: str,
    topic: str = "will/t",
    payload: bytes = b"gone",
    qos: int = 0,
    retain: bool = False,
    keep_alive: int = 60,
):
    return raw(
        client_id=client_id,
        keep_alive=keep_alive,
        will=Will(topic=topic, payload=payload, qos=qos, retain=retain),
    )


def test_will_published_on_unclean_close(raw) -> None:
    """[MQTT-3.1.2-8] the will is published when the connection closes without DISCONNECT."""
    watcher = raw(client_id="watcher")
    watcher.subscribe(("will/t", 1))
    dying = will_client(raw, "dying", payload=b"bye")
    dying.close()
    got = watcher.recv_publish(timeout=3)
    assert (got.topic, got.payload, got.retain) == ("will/t", b"bye", False)


def test_will_not_published_after_disconnect(raw) -> None:
    """[MQTT-3.14.4-3] / [MQTT-3.1.2-10] on DISCONNECT the will is discarded."""
    watcher = raw(client_id="watcher")
    watcher.subscribe("will/t")
    polite = will_client(raw, "polite")
    polite.disconnect()
    watcher.expect_no_packet(1.0)


def test_will_published_only_once(raw) -> None:
    """[MQTT-3.1.2-10] the will is removed once published: reconnecting and leaving
    politely does not publish it again."""
    watcher = raw(client_id="watcher")
    watcher.subscribe("will/t")
    first = will_client(raw, "once")
    first.close()
    assert watcher.recv_publish(timeout=3).payload == b"gone"
    second = raw(client_id="once")  # no will this time
    second.close()
    watcher.expect_no_packet(1.0)


def test_will_qos_honoured(raw) -> None:
    """3.1.2.6: the will is published at its Will QoS (capped by the subscription)."""
    w2 = raw(client_id="w2")
    w2.subscribe(("will/q", 2))
    w0 = raw(client_id="w0")
    w0.subscribe(("will/q", 0))
    will_client(raw, "q1", topic="will/q", qos=1).close()
    assert w2.recv_publish(timeout=3).qos == 1
    assert w0.recv_publish(timeout=3).qos == 0


def test_will_retain_1_stored_as_retained(raw) -> None:
    """[MQTT-3.1.2-17] Will Retain 1 -> the will is published as a retained message."""
    will_client(raw, "ret", topic="will/ret", payload=b"ret", qos=1, retain=True).close()
    # Wait until it has been published, then a new subscriber gets it as retained.
    live = raw(client_id="live")
    deadline_hits = []
    for _ in range(30):
        live.subscribe("will/ret")
        try:
            deadline_hits.append(live.recv_publish(timeout=0.2))
            break
        except AssertionError:
            continue
    assert deadline_hits, "the retained will never appeared"
    got = deadline_hits[0]
    assert (got.payload, got.retain) == (b"ret", True)


def test_will_retain_0_not_retained(raw) -> None:
    """[MQTT-3.1.2-16] Will Retain 0 -> published as a non-retained message: a later
    subscriber gets nothing."""
    watcher = raw(client_id="watcher")
    watcher.subscribe("will/nr")
    will_client(raw, "nr", topic="will/nr", retain=False).close()
    assert watcher.recv_publish(timeout=3).retain is False
    late = raw(client_id="late")
    late.subscribe("will/nr")
    late.expect_no_packet(0.5)


def test_will_published_on_protocol_error(raw) -> None:
    """[MQTT-3.1.2-8] (3.1.2.5: server closes because of a protocol error) a client
    that breaks the protocol is closed and its will is published."""
    watcher = raw(client_id="watcher")
    watcher.subscribe("will/t")
    bad = will_client(raw, "bad", payload=b"violation")
    bad.send(bytes([0x36, 0x00]))  # PUBLISH with QoS 3 [MQTT-3.3.1-4]
    bad.expect_closed()
    assert watcher.recv_publish(timeout=3).payload == b"violation"


def test_will_published_on_keep_alive_timeout(raw) -> None:
    """[MQTT-3.1.2-8] with [MQTT-3.1.2-24]: a client that goes silent past 1.5x its
    keep alive is disconnected and its will published."""
    watcher = raw(client_id="watcher")
    watcher.subscribe("will/t")
    silent = will_client(raw, "silent", payload=b"timeout", keep_alive=1)
    # Timing is checked in test_07; the bound here also fits mosquitto's 5 s check period.
    assert watcher.recv_publish(timeout=9).payload == b"timeout"
    silent.expect_closed(timeout=2)


def test_will_with_empty_payload_and_binary_payload(raw) -> None:
    """3.1.3.3: the will message is binary data, possibly empty."""
    watcher = raw(client_id="watcher")
    watcher.subscribe("will/+")
    will_client(raw, "bin", topic="will/bin", payload=bytes(range(256))).close()
    assert watcher.recv_publish(timeout=3).payload == bytes(range(256))
    will_client(raw, "empty", topic="will/empty", payload=b"").close()
    assert watcher.recv_publish(timeout=3).payload == b""


def test_will_topic_with_wildcard_refused(raw) -> None:
    """[MQTT-3.1.3-10] / [MQTT-3.3.2-2] the Will Topic is a topic name: wildcards are
    invalid, the CONNECT is refused (connection closed, possibly after a CONNACK
    with a non-zero code) and the will is never published."""
    watcher = raw(client_id="watcher")
    watcher.subscribe("#")
    c = raw()
    from mqttfast.codec.packets import Connect

    try:
        c.send_packet(Connect(client_id="wc", will=Will(topic="will/#", payload=b"x")))
    except Exception:
        # Our own encoder refuses to write it; build the bytes by hand.
        import struct

        s = lambda b: struct.pack("!H", len(b)) + b  # noqa: E731
        body = s(b"MQTT") + bytes([4, 0x06]) + b"\x00\x3c" + s(b"wc") + s(b"will/#") + s(b"x")
        c.send(bytes([0x10, len(body)]) + body)
    try:
        pkt = c.recv_packet()
        assert pkt.reason_code != 0, f"CONNECT with a wildcard will topic was accepted: {pkt!r}"
    except AssertionError as e:
        if "accepted" in str(e):
            raise
    c.expect_closed()
    watcher.expect_no_packet(0.6)
