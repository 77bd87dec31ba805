"""One live connection per client id cluster-wide; persistent sessions that move
between nodes; wills exactly once."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import nats
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from mqttfast.cluster.backplane import _token
from mqttfast.codec.packets import Puback, Pubcomp, Publish, Pubrec, Pubrel
from tests.helpers.rawclient import RawClient

from .clients import Client, stop_loop, sync


def test_takeover_from_another_node_v5(two_nodes) -> None:
    """[MQTT-3.1.4-3] a CONNECT with a client id connected elsewhere takes over: the
    first connection gets DISCONNECT 0x8E (Session taken over) even on another node."""
    a, b = two_nodes
    first = Client(a.port, client_id="dup-v5", v5=True)
    second = Client(b.port, client_id="dup-v5", v5=True)
    assert first.disconnected.wait(10)
    assert first.disconnect_rc == 0x8E
    assert second.connected.is_set() and not second.disconnected.is_set()
    # The survivor works, and only once.
    second.subscribe("to/dup", qos=1)
    pub = Client(a.port)
    sync(second, pub)
    pub.publish("to/dup", b"x", qos=1)
    assert second.get(5).payload == b"x"
    stop_loop(first.c)
    second.close()
    pub.close()


def test_takeover_from_another_node_311(two_nodes) -> None:
    """3.1.1: the first connection is closed [MQTT-3.1.4-2]."""
    a, b = two_nodes
    first = Client(a.port, client_id="dup-311")
    first.c.reconnect_delay_set(60, 60)  # paho must not come back by itself
    Client(b.port, client_id="dup-311")
    assert first.disconnected.wait(10)
    assert "taken over by another node" in a.log_text()


@pytest.mark.parametrize("persistence", ["off", "strict"])
def test_persistent_session_resumes_on_another_node_311(cluster, persistence) -> None:
    """Clean session 0 [MQTT-3.1.2-4]: subscriptions and the QoS 1/2 messages that
    arrived while offline are there when the client comes back to another node (with
    the nodes' SQLite persistence off and on)."""
    a, b, c = (cluster.add(["--persistence", persistence]) for _ in range(3))
    cl = Client(a.port, client_id="roamer", clean=False)
    cl.subscribe("roam/#", qos=2)
    pub = Client(c.port)
    sync(cl, pub)
    cl.close()
    time.sleep(0.3)
    for i in range(10):
        pub.publish("roam/x", str(i).encode(), qos=1 if i % 2 else 2)
    time.sleep(0.5)
    back = Client(b.port, client_id="roamer", clean=False)
    assert back.session_present is True
    got = back.collect(10, timeout=10)
    # paho hands a QoS 2 message over at PUBREL, so QoS 1 and 2 interleave; each QoS
    # keeps the publishing order [MQTT-4.6.0-5].
    assert sorted(int(m.payload) for m in got) == list(range(10))
    assert [int(m.payload) for m in got if m.qos == 1] == [1, 3, 5, 7, 9]
    assert [int(m.payload) for m in got if m.qos == 2] == [0, 2, 4, 6, 8]
    # Its subscription lives on the new node now.
    sync(back, pub)
    pub.publish("roam/y", b"after", qos=1)
    assert back.get(5).payload == b"after"
    assert back.quiet(0.5) == []
    back.close()
    pub.close()


def test_persistent_session_resumes_on_another_node_v5(three_nodes) -> None:
    """Session Expiry > 0 [MQTT-3.1.2-23]: resumed on another node with Session Present."""
    a, b, c = three_nodes
    cl = Client(a.port, client_id="roamer5", v5=True, clean=True, session_expiry=300)
    cl.subscribe("r5/#", qos=1)
    pub = Client(c.port, v5=True)
    sync(cl, pub)
    cl.close()
    time.sleep(0.3)
    for i in range(5):
        pub.publish("r5/x", str(i).encode(), qos=1)
    time.sleep(0.5)
    back = Client(b.port, client_id="roamer5", v5=True, clean=False, session_expiry=300)
    assert back.session_present is True
    assert [m.payload for m in back.collect(5)] == [str(i).encode() for i in range(5)]
    back.close()
    # Clean start on a third node: the session is gone everywhere [MQTT-3.1.2-4].
    fresh = Client(c.port, client_id="roamer5", v5=True, clean=True, session_expiry=300)
    assert fresh.session_present is False
    fresh.close()
    pub.close()


def _drop(cl: Client) -> None:
    """Lose the connection without DISCONNECT (the will fires)."""
    sock = cl.c.socket()
    stop_loop(cl.c)
    sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def test_will_fires_exactly_once_cluster_wide(three_nodes) -> None:
    """[MQTT-3.1.2-8] the will of a connection lost without DISCONNECT is published once:
    subscribers on every node get exactly one copy."""
    a, b, c = three_nodes
    subs = [Client(n.port) for n in (a, b, c)]
    for s in subs:
        s.subscribe("wills/#", qos=1)
    dying = Client(a.port, client_id="dying", will=("wills/dying", b"gone", 1, False))
    for s in subs:
        sync(s, dying)
    _drop(dying)
    for s in subs:
        got = s.collect(1, timeout=10)
        assert [m.payload for m in got] == [b"gone"]
        assert s.quiet(0.5) == []
    for s in subs:
        s.close()


def test_delayed_will_cancelled_by_resume_on_another_node(three_nodes) -> None:
    """[MQTT-3.1.3-9] a will delay longer than the time to reconnect: the session is
    resumed (on another node) and the will is never published."""
    a, b, c = three_nodes
    watcher = Client(c.port)
    watcher.subscribe("dw/#", qos=1)
    wp = Properties(PacketTypes.WILLMESSAGE)
    wp.WillDelayInterval = 3
    cl = Client(
        a.port,
        client_id="delayed",
        v5=True,
        session_expiry=60,
        will=("dw/delayed", b"late", 1, False),
        will_props=wp,
    )
    sync(watcher, cl)
    _drop(cl)
    time.sleep(0.5)
    back = Client(b.port, client_id="delayed", v5=True, clean=False, session_expiry=60)
    assert back.session_present is True
    assert watcher.quiet(4.0) == []
    back.close()
    watcher.close()


def test_delayed_will_fires_once_when_not_resumed(two_nodes) -> None:
    """[MQTT-3.1.3-9] will delay elapses without a reconnect: published once."""
    a, b = two_nodes
    watcher = Client(b.port)
    watcher.subscribe("dw2/#", qos=1)
    wp = Properties(PacketTypes.WILLMESSAGE)
    wp.WillDelayInterval = 1
    cl = Client(
        a.port,
        client_id="delayed2",
        v5=True,
        session_expiry=60,
        will=("dw2/x", b"late", 1, False),
        will_props=wp,
    )
    sync(watcher, cl)
    _drop(cl)
    got = watcher.collect(1, timeout=6)
    assert [m.payload for m in got] == [b"late"]
    assert watcher.quiet(1.0) == []
    watcher.close()


def _wills_recorded(cluster, node: str, n: int, timeout: float = 15.0) -> bool:
    """Wait until the wills KV bucket holds exactly ``n`` records of ``node``."""

    async def count() -> int:
        nc = await nats.connect(cluster.servers)
        try:
            kv = await nc.jetstream().key_value(f"mqttfast_{_token(cluster.prefix)[:12]}_wills")
            try:
                keys = await kv.keys()
            except Exception:
                return 0
            mine = 0
            for k in keys:
                e = await kv.get(k)
                if e.value and json.loads(e.value)["node"] == node:
                    mine += 1
            return mine
        finally:
            await nc.close()

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if asyncio.run(count()) == n:
            return True
        time.sleep(0.2)
    return False


def test_wills_of_a_dead_node_published_once_by_survivors(cluster, three_nodes) -> None:
    """A node is killed -9: the wills of its clients are published by the survivors,
    exactly once cluster-wide; a client that disconnected cleanly before has none."""
    a, b, c = three_nodes
    watchers = [Client(n.port) for n in (b, c)]
    for w in watchers:
        w.subscribe("deadwills/#", qos=1)
    doomed = [
        Client(a.port, client_id=f"doomed{i}", will=(f"deadwills/{i}", b"lost", 1, False))
        for i in range(3)
    ]
    for d in doomed:
        d.c.reconnect_delay_set(60, 60)  # stay away from the other nodes
    polite = Client(a.port, client_id="polite", will=("deadwills/polite", b"no", 1, False))
    polite.close()
    assert _wills_recorded(cluster, "node1", 3), "wills not recorded in JetStream"
    a.kill()
    for w in watchers:
        got = w.collect(3, timeout=20)
        assert sorted(m.topic for m in got) == [f"deadwills/{i}" for i in range(3)], (
            b.log_text()[-3000:] + c.log_text()[-3000:]
        )
    # One 3 s window for both watchers (they listen at the same time; waiting 3 s per
    # watcher, one after the other, only made the second window longer).
    for w, window in zip(watchers, (3.0, 0.0), strict=True):
        extra = [(m.topic, m.payload) for m in w.quiet(window)]
        assert extra == []  # once, from one survivor; not the polite one
    assert "published 3 will(s) of node node1" in b.log_text() + c.log_text()
    for w in watchers:
        w.close()
    for d in doomed:
        d.c.loop_stop()


def test_inflight_resent_with_dup_and_qos2_state_move_to_another_node(three_nodes) -> None:
    """A persistent session moves with its in-flight state: an unacknowledged QoS 1
    PUBLISH is re-sent with DUP=1 and the same packet id [MQTT-4.4.0-1]; a QoS 2 message
    PUBRECed before the move gets PUBREL (not the PUBLISH again) [MQTT-4.3.3-*]; after
    PUBCOMP nothing is delivered twice."""
    a, b, c = three_nodes
    first = RawClient(a.port)
    first.connect("mover", clean_start=False)
    first.subscribe(("mv/#", 2))
    pub = Client(c.port)
    sync_probe = Client(a.port)
    sync(sync_probe, pub)  # node a's interest for mv/# was sent before the probe's
    pub.publish("mv/1", b"q1", qos=1)
    pub.publish("mv/2", b"q2", qos=2)
    p1 = first.recv_until(Publish, 5, topic="mv/1")
    p2 = first.recv_until(Publish, 5, topic="mv/2")
    first.send_packet(Pubrec(packet_id=p2.packet_id))  # QoS 2 half done; QoS 1 not acked
    first.recv_until(Pubrel, 5, packet_id=p2.packet_id)
    first.close()
    time.sleep(0.3)
    again = RawClient(b.port)
    assert again.connect("mover", clean_start=False).session_present
    dup = again.recv_until(Publish, 5, topic="mv/1")
    assert (dup.dup, dup.packet_id, dup.payload) == (True, p1.packet_id, b"q1")
    again.recv_until(Pubrel, 5, packet_id=p2.packet_id)
    again.send_packet(Pubcomp(packet_id=p2.packet_id))
    again.send_packet(Puback(packet_id=dup.packet_id))
    again.expect_no_packet(1.0)  # no second copy of either
    again.close()
    sync_probe.close()
    pub.close()
