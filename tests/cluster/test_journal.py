"""Issue 15: "kill -9 one of three mqttfast nodes under QoS 1/2 load with
persistent-session subscribers: clients reconnect to the survivors (through a TCP load
balancer ...), no acknowledged QoS 1/2 message is lost, no QoS 2 duplicate".

Here the node killed is the SUBSCRIBERS' node (never restarted): what it held for their
persistent sessions (queued, in flight, just handed over by nats-server) is replayed by
the survivor that adopts the session, from the JetStream journal (journal.py,
progress.py). Real nats-server, real broker processes, paho clients, haproxy front."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from .clients import Client, assert_arrived, count_until, stop_loop, sync
from .conftest import Cluster
from .haproxy import Haproxy
from .test_failure import CountingPublisher, Qos2Publisher


def _reconnect(sub: Client, port: int) -> None:
    stop_loop(sub.c)
    sub.connect(port)


def _durable_subscribers(a, b, prefix: str, topic_filter: str, qos: int) -> list[Client]:
    """A 3.1.1 (clean session 0) and a v5 (Session Expiry 600) subscriber on node b,
    their interest known on node a."""
    subs = [
        Client(b.port, client_id=f"{prefix}311", clean=False),
        Client(b.port, client_id=f"{prefix}5", v5=True, clean=False, session_expiry=600),
    ]
    for s in subs:
        s.subscribe(topic_filter, qos=qos)
    probe = Client(a.port)
    for s in subs:
        sync(s, probe)
    probe.close()
    return subs


@pytest.mark.timeout(150)
def test_subscribers_node_killed_under_qos1_load_loses_no_acknowledged_message(
    three_nodes, cluster: Cluster
) -> None:
    """Persistent-session subscribers (3.1.1 clean session 0, v5 Session Expiry) on node
    B; 3000 QoS 1 messages from node A; B is SIGKILLed a third of the way in and not
    restarted; the subscribers reconnect through haproxy to a survivor (Session Present
    1) and receive every message A acknowledged (duplicates allowed, counted)."""
    a, b, _c = three_nodes
    front = Haproxy([n.port for n in three_nodes]).start()
    try:
        subs = _durable_subscribers(a, b, "jsub", "jl/#", 1)
        pub = CountingPublisher(a.port, "jpub")
        total = 3000
        got = [Counter[int]() for _ in subs]
        for n in range(total):
            pub.publish("jl/x", n)
            if n == total // 3:
                b.kill()  # SIGKILL, not restarted
                for s in subs:  # through the front to a survivor
                    _reconnect(s, front.port)
                    assert s.session_present, "the survivor adopted the session"
            if n % 50 == 0:
                time.sleep(0.01)
        acked = pub.wait_acked(total)
        for s, g in zip(subs, got, strict=True):
            g.update(count_until(s, acked))
            assert_arrived(s.client_id, g, acked, total, False)  # QoS 1: duplicates allowed
        assert len(acked) == total
        assert not b.running()
        pub.close()
        for s in subs:
            s.close()
        replayed = sum(
            "journaled message(s) replayed" in n.log_text() for n in three_nodes if n is not b
        )
        assert replayed, "the adopter read the journal"
    finally:
        front.stop()


@pytest.mark.timeout(150)
def test_subscribers_node_killed_under_qos2_load_no_loss_no_duplicate(
    three_nodes, cluster: Cluster
) -> None:
    """As above with QoS 2 end to end: QoS 2 publisher on A, QoS 2 subscriptions of
    persistent sessions (3.1.1 and v5 with Session Expiry) on B, B SIGKILLed mid-stream
    and not restarted. Every acknowledged message arrives, and none twice [MQTT-4.3.3]:
    a PUBREL of B left only once "PUBREC received, packet id P" was in JetStream, so the
    adopter re-sends either the PUBLISH or the PUBREL, never both."""
    a, b, _c = three_nodes
    front = Haproxy([n.port for n in three_nodes]).start()
    try:
        subs = _durable_subscribers(a, b, "jq2sub", "jq2/#", 2)
        pub = Qos2Publisher(a.port, "jq2pub")
        total = 3000
        for n in range(total):
            pub.publish("jq2/x", n)
            if n == total // 3:
                b.kill()
                for s in subs:
                    _reconnect(s, front.port)
                    assert s.session_present
            if n % 50 == 0:
                time.sleep(0.01)
        acked = pub.wait_acked(total)

        def what_the_survivors_said() -> None:
            for node in (a, _c):
                print(node.node_id, [ln for ln in node.log_text().splitlines() if "cluster" in ln])

        for s in subs:
            g = count_until(s, acked)
            assert_arrived(s.client_id, g, acked, total, True, what_the_survivors_said)
        assert len(acked) == total
        assert not b.running()
        pub.close()
        for s in subs:
            s.close()
    finally:
        front.stop()


@pytest.mark.timeout(120)
def test_offline_session_queue_survives_its_nodes_kill_9(three_nodes, cluster: Cluster) -> None:
    """Messages queued for an OFFLINE persistent session on node B (acknowledged to the
    publisher on A) are not lost when B is killed -9 and not restarted: the survivor
    that adopts the session (after the heartbeat detection) replays them; the client,
    back through haproxy, receives all of them."""
    a, b, _c = three_nodes
    front = Haproxy([n.port for n in three_nodes]).start()
    try:
        sub = Client(b.port, client_id="joff", clean=False)
        sub.subscribe("off/#", qos=1)
        pub = Client(a.port)
        sync(sub, pub)
        sub.close()  # offline: B queues for it
        time.sleep(0.3)
        total = 200
        for n in range(total):
            pub.publish("off/x", str(n).encode(), qos=1)  # waits for each PUBACK
        time.sleep(0.3)  # B's progress record names them as held
        b.kill()
        # Detection (6 s) and adoption by a survivor, then the client comes back.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if any("adopted 1 persistent session" in n.log_text() for n in (a, _c)):
                break
            time.sleep(0.2)
        back = Client(front.port, client_id="joff", clean=False)
        assert back.session_present
        got = count_until(back, set(range(total)))
        lost = set(range(total)) - set(got)
        dups = sum(v - 1 for v in got.values())
        print(f"queued={total} received={len(got)} dups={dups} lost={len(lost)}")
        assert not lost, sorted(lost)[:20]
        back.close()
        pub.close()
    finally:
        front.stop()
