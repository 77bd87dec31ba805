"""Shared subscriptions across nodes: NATS queue groups (MQTT 5, 4.8.2)."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from mqttfast.codec.packets import Properties
from tests.helpers.rawclient import RawClient

from .clients import Client, sync


def test_shared_subscription_each_message_to_one_member_cluster_wide(three_nodes) -> None:
    """[MQTT-4.8.2-?] each message of a shared subscription goes to exactly one member
    (here members on three nodes); another group gets its own copy; QoS 1 kept."""
    a, b, c = three_nodes
    g = [Client(n.port, v5=True) for n in (a, b, c)]
    for cl in g:
        cl.subscribe("$share/g/work/#", qos=1)
    h = Client(b.port)  # 3.1.1 member of another group (mqttfast honours $share for 3.x)
    h.subscribe("$share/h/work/#", qos=2)
    pub = Client(a.port)
    for cl in (*g, h):
        sync(cl, pub)
    n = 300
    for i in range(n):
        pub.publish(f"work/{i % 7}", str(i).encode(), qos=1)
    # Until the members together have n messages (each has only its share, so waiting
    # for n at one member ran into the timeout, 3 s per member), then 0.5 s more in
    # which a late second copy would arrive.
    got: list = []
    per_member = [0 for _ in g]
    deadline = time.monotonic() + 10
    while len(got) < n and time.monotonic() < deadline:
        for i, cl in enumerate(g):
            msgs = cl.collect(n, timeout=0.05)
            per_member[i] += len(msgs)
            got += msgs
    time.sleep(0.5)
    for i, cl in enumerate(g):
        msgs = cl.quiet(0)
        per_member[i] += len(msgs)
        got += msgs
    counts = Counter(m.payload for m in got)
    assert len(counts) == n and set(counts.values()) == {1}, per_member
    assert all(m.qos == 1 for m in got)
    assert sum(1 for x in per_member if x) >= 2, per_member  # really spread over nodes
    hg = h.collect(n, timeout=10)
    assert sorted(int(m.payload) for m in hg) == list(range(n))
    assert {m.qos for m in hg} == {1}
    assert h.quiet(0.3) == [] and all(cl.quiet(0.1) == [] for cl in g)
    for cl in (*g, h, pub):
        cl.close()


def test_shared_member_on_publishing_node_is_a_candidate(two_nodes) -> None:
    """The only member sits on the publisher's node: it gets every message once."""
    a, b = two_nodes
    m = Client(a.port)
    m.subscribe("$share/solo/s/x", qos=1)
    pub = Client(a.port)
    other = Client(b.port)
    sync(m, other)
    for i in range(50):
        pub.publish("s/x", str(i).encode(), qos=1)
    assert sorted(int(x.payload) for x in m.collect(50)) == list(range(50))
    assert m.quiet(0.3) == []
    for cl in (m, pub, other):
        cl.close()


def _raw_member(port: int, client_id: str, **connect: object) -> RawClient:
    """An MQTT 5 member that never acknowledges: 5 messages in flight, the rest queued
    for it on its node (Receive Maximum 5)."""
    m = RawClient(port, version=5)
    m.connect(client_id, properties=Properties(receive_maximum=5), **connect)
    assert m.subscribe(("$share/g/mv/t", 1)).reason_codes == [1]
    return m


def _two_members_and_100_messages(a, b, client_id: str) -> tuple[RawClient, Client, Client]:
    """Member 1 on node a (holds 5 unacknowledged, the rest of node a's share queued),
    member 2 on node b; 100 QoS 1 messages published on node b (NATS splits them)."""
    m1 = _raw_member(a.port, client_id)
    m2 = Client(b.port, v5=True)
    m2.subscribe("$share/g/mv/t", qos=1)
    pub = Client(b.port)
    for i in range(100):
        pub.publish("mv/t", str(i).encode(), qos=1)
    assert len(m1.recv_publishes(5, ack=False)) == 5  # NATS gave node a about half
    return m1, m2, pub


def _all_once(member: Client, n: int) -> None:
    got = Counter(int(m.payload) for m in member.collect(n, timeout=15))
    assert sorted(got) == list(range(n)), sorted(set(range(n)) - set(got))[:20]
    assert set(got.values()) == {1}, [k for k, v in got.items() if v > 1]


@pytest.mark.timeout(60)
def test_a_departed_members_messages_go_to_a_member_on_another_node(two_nodes) -> None:
    """4.8.2 (as the single-node broker does): the QoS 1 messages of a member that leaves
    unacknowledged (in flight and queued) go to another member, here the only other one,
    on another node. Each message reaches the group once."""
    a, b = two_nodes
    m1, m2, pub = _two_members_and_100_messages(a, b, "mv-1")
    m1.close()  # no PUBACK ever: its session (clean start, expiry 0) ends
    _all_once(m2, 100)
    assert m2.quiet(0.3) == []
    for cl in (m2, pub):
        cl.close()


@pytest.mark.timeout(60)
def test_a_member_node_leaving_moves_its_members_messages(two_nodes) -> None:
    """Issue 15: "a member's node leaving moves undelivered QoS 1 messages as the
    single-node broker does": node a stops (SIGTERM) while its member holds
    unacknowledged messages; they reach the member on node b, once each."""
    a, b = two_nodes
    m1, m2, pub = _two_members_and_100_messages(a, b, "mv-leave")
    a.stop()  # SIGTERM: clients get DISCONNECT 0x8B, then the node leaves NATS
    _all_once(m2, 100)
    assert "Traceback" not in a.log_text()
    m1.close()
    for cl in (m2, pub):
        cl.close()


@pytest.mark.timeout(60)
def test_an_online_member_elsewhere_is_preferred_to_an_absent_one(two_nodes) -> None:
    """4.8.2 as on a single node: while a member is online, messages are not queued for
    an offline persistent member (here the only member on the node NATS may pick)."""
    a, b = two_nodes
    away = RawClient(a.port, version=5)
    away.connect("mv-away", clean_start=True, properties=Properties(session_expiry_interval=300))
    assert away.subscribe(("$share/g/mv/t", 1)).reason_codes == [1]
    away.disconnect()
    away.close()
    m2 = Client(b.port, v5=True)
    m2.subscribe("$share/g/mv/t", qos=1)
    pub = Client(a.port)
    n = 60
    for i in range(n):
        pub.publish("mv/t", str(i).encode(), qos=1)
    got = Counter(int(m.payload) for m in m2.collect(n, timeout=15))
    assert sorted(got) == list(range(n)), sorted(set(range(n)) - set(got))[:20]
    back = RawClient(a.port, version=5)
    connack = back.connect(
        "mv-away", clean_start=False, properties=Properties(session_expiry_interval=300)
    )
    assert connack.session_present
    back.expect_no_packet(0.5)  # nothing was queued for it
    back.close()
    for cl in (m2, pub):
        cl.close()
