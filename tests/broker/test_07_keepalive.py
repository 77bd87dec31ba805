"""Keep alive (MQTT 3.1.1 sections 3.1.2.10, 3.12)."""

from __future__ import annotations

import time

import pytest

from mqttfast.codec.packets import Publish

KEEPALIVE_TIMING = pytest.mark.mosquitto_deviation(
    "mosquitto 2.0.11 checks keep alive only about every 5 s: a keep_alive=1 client is "
    "closed after ~6 s instead of 1.5 s"
)


@KEEPALIVE_TIMING
def test_silent_client_disconnected_after_one_and_a_half_keep_alive(raw) -> None:
    """[MQTT-3.1.2-24] no packet within 1.5x keep alive -> the server disconnects
    (checked: not before ~1.5 s, and by 1.5 s plus scheduling slack)."""
    c = raw(client_id="silent", keep_alive=1)
    start = time.monotonic()
    c.expect_closed(timeout=3.5)
    elapsed = time.monotonic() - start
    assert 1.4 <= elapsed <= 3.0, f"closed after {elapsed:.2f}s for keep alive 1 s"


@KEEPALIVE_TIMING
def test_keep_alive_2_timing(raw) -> None:
    """[MQTT-3.1.2-24] keep alive 2 s -> closed between ~3 s and 3 s plus slack."""
    c = raw(client_id="silent2", keep_alive=2)
    start = time.monotonic()
    c.expect_closed(timeout=6)
    elapsed = time.monotonic() - start
    assert 2.9 <= elapsed <= 4.5, f"closed after {elapsed:.2f}s for keep alive 2 s"


def test_pingreq_keeps_connection_alive(raw) -> None:
    """[MQTT-3.1.2-23] / [MQTT-3.12.4-1] PINGREQ within the keep alive keeps the
    connection open: 4 s of pings every 0.5 s with keep alive 1."""
    c = raw(client_id="pinger", keep_alive=1)
    end = time.monotonic() + 4
    while time.monotonic() < end:
        c.ping()
        time.sleep(0.5)
    assert c.is_open()


def test_any_packet_resets_keep_alive(raw) -> None:
    """[MQTT-3.1.2-24] any control packet counts, not only PINGREQ: QoS 0 PUBLISHes
    every 0.5 s keep a keep_alive=1 connection open."""
    c = raw(client_id="talker", keep_alive=1)
    end = time.monotonic() + 4
    while time.monotonic() < end:
        c.send_packet(Publish(topic="ka/talk", payload=b"."))
        time.sleep(0.5)
    assert c.is_open()


def test_keep_alive_zero_means_no_timeout(raw) -> None:
    """3.1.2.10: keep alive 0 turns the mechanism off: a silent connection stays open."""
    c = raw(client_id="forever", keep_alive=0)
    c.expect_no_packet(2.5)
    assert c.is_open()


@KEEPALIVE_TIMING
def test_keep_alive_timeout_does_not_affect_others(raw) -> None:
    """[MQTT-3.1.2-24] the timeout closes only the silent client; others keep working."""
    sub = raw(client_id="sub", keep_alive=0)
    sub.subscribe("ka/x")
    silent = raw(client_id="silent", keep_alive=1)
    silent.expect_closed(timeout=3.5)
    raw(client_id="pub").publish("ka/x", b"ok", qos=1)
    assert sub.recv_publish().payload == b"ok"
