"""Interest-based routing between nodes: paho-mqtt 3.1.1/5 and mosquitto_pub/sub on
different nodes of a real NATS-backed cluster."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time

import nats
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from mqttfast.cluster.subjects import topic_to_subject

from .clients import Client, sync


def test_cross_node_delivery_one_copy_with_overlapping_filters(two_nodes) -> None:
    """Overlapping filters on the subscriber's node: one copy per message
    [MQTT-3.3.4-2 (one copy per client)], QoS = min(publish, granted) [MQTT-3.8.4-6]."""
    a, b = two_nodes
    sub = Client(b.port)
    sub.subscribe(("a/#", 1), ("a/+", 1), ("a/b", 1), ("+/b", 1))
    pub = Client(a.port)
    sync(sub, pub)
    for i in range(20):
        pub.publish("a/b", f"m{i}".encode(), qos=2)
    pub.publish("a", b"parent", qos=0)  # a/# matches its parent level [MQTT-4.7.1-2]
    got = sub.collect(21, timeout=10)
    # Per topic in order [MQTT-4.6.0-5]; the QoS 0 'a' may overtake queued QoS 1 'a/b'.
    ab = [m for m in got if m.topic == "a/b"]
    assert [m.payload for m in ab] == [f"m{i}".encode() for i in range(20)]
    assert all(m.qos == 1 for m in ab)
    assert [(m.topic, m.payload, m.qos) for m in got if m.topic == "a"] == [("a", b"parent", 0)]
    assert sub.quiet(0.5) == []
    sub.close()
    pub.close()


def test_qos_downgraded_per_subscription_across_nodes(three_nodes) -> None:
    a, b, c = three_nodes
    s0 = Client(b.port)
    s0.subscribe("q/x", qos=0)
    s2 = Client(c.port)
    s2.subscribe("q/x", qos=2)
    pub = Client(a.port)
    sync(s0, pub)
    sync(s2, pub)
    pub.publish("q/x", b"1", qos=1)
    pub.publish("q/x", b"2", qos=2)
    assert [m.qos for m in s0.collect(2)] == [0, 0]
    assert [m.qos for m in s2.collect(2)] == [1, 2]
    for cl in (s0, s2, pub):
        cl.close()


def test_v5_properties_travel_between_nodes(two_nodes) -> None:
    """User properties, content type, response topic, correlation data, payload format
    indicator [MQTT-3.3.2-4, -17, -18, -20], subscription identifiers [MQTT-3.3.4-3] and
    the remaining message expiry [MQTT-3.3.2-6] on a message from another node."""
    a, b = two_nodes
    sub = Client(b.port, v5=True)
    sp = Properties(PacketTypes.SUBSCRIBE)
    sp.SubscriptionIdentifier = 7
    sub.subscribe(("v5/+", SubscribeOptions(qos=1)), props=sp)
    pub = Client(a.port, v5=True)
    sync(sub, pub)
    pp = Properties(PacketTypes.PUBLISH)
    pp.UserProperty = [("k", "v"), ("k", "v2"), ("é", "line\nbreak")]
    pp.ContentType = "application/json"
    pp.ResponseTopic = "reply/here"
    pp.CorrelationData = b"\x00\x01corr"
    pp.PayloadFormatIndicator = 1
    pp.MessageExpiryInterval = 60
    pub.publish("v5/t", b'{"x": 1}', qos=1, props=pp)
    m = sub.get(10)
    p = m.properties
    assert p.UserProperty == [("k", "v"), ("k", "v2"), ("é", "line\nbreak")]
    assert p.ContentType == "application/json"
    assert p.ResponseTopic == "reply/here"
    assert p.CorrelationData == b"\x00\x01corr"
    assert p.PayloadFormatIndicator == 1
    assert p.SubscriptionIdentifier == [7]
    assert 58 <= p.MessageExpiryInterval <= 60
    # A plain message carries none of them.
    pub.publish("v5/u", b"plain", qos=1)
    m = sub.get(10)
    assert not hasattr(m.properties, "UserProperty") and not hasattr(m.properties, "ContentType")
    sub.close()
    pub.close()


def test_retain_as_published_and_no_local(two_nodes) -> None:
    """Retain As Published [MQTT-3.3.1-12/13] for a message from another node; No Local
    [MQTT-3.8.3-3]: the publisher's own subscription does not get it back, others do."""
    a, b = two_nodes
    rap = Client(b.port, v5=True)
    rap.subscribe(("r/#", SubscribeOptions(qos=1, retainAsPublished=True)))
    plain = Client(b.port, v5=True)
    plain.subscribe(("r/#", SubscribeOptions(qos=1)))
    pub = Client(a.port, v5=True)
    pub.subscribe(("r/#", SubscribeOptions(qos=1, noLocal=True)))
    sync(rap, pub)
    sync(plain, pub)
    pub.publish("r/1", b"kept", qos=1, retain=True)
    assert rap.get(10).retain is True
    assert plain.get(10).retain is False
    assert pub.quiet(0.7) == []
    pub.publish("r/1", b"", qos=1, retain=True)  # clean up the retained message
    for cl in (rap, plain, pub):
        cl.close()


WEIRD_TOPICS = [
    "dot.ted/level",
    "with space/x",
    "*/star",
    "gt/>",
    "/leading",
    "trailing/",
    "empty//level",
    "ünïcödé/日本",
    "$dollar/t",
]


def test_every_legal_topic_crosses_nodes_mosquitto_clients(two_nodes) -> None:
    """Topics nats-server's own MQTT listener refuses (spaces, '*'/'>' levels) and the
    ones it maps specially ('.', empty levels, '$') travel intact between nodes."""
    a, b = two_nodes
    args = ["mosquitto_sub", "-p", str(b.port), "-q", "1", "-v", "-t", "warm/up"]
    for t in WEIRD_TOPICS:
        args += ["-t", t]
    sub = subprocess.Popen(args, stdout=subprocess.PIPE)
    lines: list[str] = []
    reader = threading.Thread(
        target=lambda: lines.extend(ln.decode().rstrip("\n") for ln in sub.stdout), daemon=True
    )
    reader.start()
    pub = Client(a.port)
    try:
        deadline = time.monotonic() + 15
        while "warm/up x" not in lines and time.monotonic() < deadline:
            pub.publish("warm/up", b"x", qos=0)
            time.sleep(0.2)
        for t in WEIRD_TOPICS:
            subprocess.run(
                ["mosquitto_pub", "-p", str(a.port), "-q", "1", "-t", t, "-m", t],
                check=True,
                timeout=10,
            )
        want = sorted(f"{t} {t}" for t in WEIRD_TOPICS)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if sorted(x for x in lines if not x.startswith("warm/up")) == want:
                break
            time.sleep(0.1)
        time.sleep(0.3)  # and nothing more
        assert sorted(x for x in lines if not x.startswith("warm/up")) == want
    finally:
        sub.terminate()
        sub.wait(5)
        pub.close()


def test_nats_native_client_interoperates(cluster, prefix) -> None:
    """A plain nats-py client publishes to and subscribes from MQTT clients; the subject is
    nats-server's MQTT subject under the prefix ('a/b.c' -> '<prefix>.a.b//c')."""
    node = cluster.add()
    sub = Client(node.port)
    sub.subscribe("from/nats/#")
    pub = Client(node.port)

    async def run() -> tuple[list, list]:
        nc = await nats.connect(cluster.servers)
        seen: list = []

        async def on_msg(m) -> None:
            seen.append(m)

        s = await nc.subscribe(f"{prefix}.to.nats.>", cb=on_msg)
        await nc.flush()
        await asyncio.sleep(0.3)
        await asyncio.to_thread(pub.publish, "to/nats/x.y", b"hello nats", 1)
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        got: list = []
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:  # until the node's interest is up
            await nc.publish(topic_to_subject("from/nats/a b.c", prefix), b"hello mqtt")
            await asyncio.sleep(0.2)
            got = sub.collect(1, timeout=0.1)
        await s.unsubscribe()
        await nc.close()
        return seen, got

    seen, got = asyncio.run(run())
    assert [(m.subject, m.data) for m in seen[:1]] == [(f"{prefix}.to.nats.x//y", b"hello nats")]
    assert [(m.topic, m.payload) for m in got] == [("from/nats/a b.c", b"hello mqtt")]
    sub.close()
    pub.close()


def test_local_delivery_does_not_cross_nats(cluster) -> None:
    """Local subscribers are served in-process; a node with no remote interest receives
    nothing from NATS (interest-based: msgs_in stays 0 on the idle node)."""
    a = cluster.add()
    b = cluster.add(["--sys-interval", "1"])
    sub = Client(a.port)
    sub.subscribe("local/x")
    pub = Client(a.port)
    for i in range(50):
        pub.publish("local/x", str(i).encode(), qos=1)
    assert len(sub.collect(50)) == 50
    stat = Client(b.port)
    stat.subscribe("$SYS/broker/cluster/msgs_in", qos=0)
    m = stat.get(10)
    assert int(m.payload) == 0
    for cl in (sub, pub, stat):
        cl.close()


def test_acl_applies_at_the_subscribers_node(cluster, tmp_path) -> None:
    """The subscriber's node checks read access for messages from other nodes too:
    its ACL lets anonymous clients read public/# only (the publisher's node has none)."""
    acl = tmp_path / "acl"
    acl.write_text("topic read public/#\ntopic read probe/#\n")
    conf = tmp_path / "node.toml"
    conf.write_text(f'[auth]\nallow_anonymous = true\nacl_file = "{acl}"\n')
    a = cluster.add()
    b = cluster.add(["--config", str(conf)])
    sub = Client(b.port)
    sub.subscribe("#", qos=1)
    pub = Client(a.port)
    sync(sub, pub)
    pub.publish("secret/x", b"no", qos=1)
    pub.publish("public/x", b"yes", qos=1)
    got = sub.collect(1, timeout=10) + sub.quiet(0.7)
    assert [(m.topic, m.payload) for m in got] == [("public/x", b"yes")]
    sub.close()
    pub.close()


def test_plugin_on_deliver_applies_at_the_subscribers_node(cluster, tmp_path) -> None:
    """A plug-in's on_deliver runs where the subscriber is, for messages from other nodes
    too: node B's plug-in (tests/plugins/sample.py Recorder) skips hidden/# for its
    subscriber; node A has no plug-in, so its own subscriber gets both messages."""
    conf = tmp_path / "node.toml"
    conf.write_text('[[plugin]]\nclass = "tests.plugins.sample:Recorder"\n')
    a = cluster.add()
    b = cluster.add(["--config", str(conf)])
    sub_b = Client(b.port)
    sub_b.subscribe("#", qos=1)
    sub_a = Client(a.port)
    sub_a.subscribe("#", qos=1)
    pub = Client(a.port)
    sync(sub_b, pub)
    pub.publish("hidden/x", b"no", qos=1)
    pub.publish("shown/x", b"yes", qos=1)
    got_b = sub_b.collect(1, timeout=10) + sub_b.quiet(0.7)
    assert [(m.topic, m.payload) for m in got_b] == [("shown/x", b"yes")]
    got_a = [(m.topic, m.payload) for m in sub_a.collect(2, timeout=10)]
    assert got_a == [("hidden/x", b"no"), ("shown/x", b"yes")]
    for cl in (sub_a, sub_b, pub):
        cl.close()


def test_order_kept_with_overlapping_filters_under_volume(two_nodes) -> None:
    """[MQTT-4.6.0-5] messages of one topic from one publisher arrive in order although
    NATS hands them to the node through several overlapping subscriptions."""
    a, b = two_nodes
    sub = Client(b.port)
    sub.subscribe(("o/#", 0), ("o/+", 0), ("+/x", 0), ("o/x", 0), ("#", 0))
    pub = Client(a.port)
    sync(sub, pub)
    n = 3000
    for i in range(n):
        pub.c.publish("o/x", str(i).encode(), 0)
    got = [int(m.payload) for m in sub.collect(n, timeout=20) if m.topic == "o/x"]
    assert len(got) >= n * 0.99  # QoS 0 may drop under pressure, never reorder
    assert got == sorted(got) and len(set(got)) == len(got)
    sub.close()
    pub.close()
