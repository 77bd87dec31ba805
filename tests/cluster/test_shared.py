"""Shared subscriptions across nodes: NATS queue groups (MQTT 5, 4.8.2)."""

from __future__ import annotations

from collections import Counter

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
    got = []
    per_member = []
    deadline_msgs = n
    for cl in g:
        msgs = cl.collect(deadline_msgs, timeout=3)
        per_member.append(len(msgs))
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
