"""QoS 2 exactly once when the NATS connection breaks between a message's forward and its
PUBREC (progress.resent, acks.maybe_lost): the publisher is disconnected unacknowledged
and re-sends the PUBLISH (DUP); its node, which holds the packet id as unreleased,
forwards it again as a copy that nodes which had the first forward recognise."""

from __future__ import annotations

import re
import signal
import time
from collections import Counter

import pytest

from mqttfast.codec.packets import Pubcomp, Publish, Pubrec, Pubrel
from tests.helpers.rawclient import RawClient

from .clients import Client, sync
from .conftest import Cluster, NatsServer


def _reconnected(node, count: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while len(re.findall(r"NATS (reconnected|reachable again)", node.log_text())) < count:
        assert time.monotonic() < deadline, node.log_text()[-3000:]
        time.sleep(0.05)


def _held_and_lost(nats_server: NatsServer, pub: RawClient, topic: str, nodes: list) -> None:
    """QoS 2 PUBLISH "held" (packet id 2) while nats-server is frozen, then nats-server
    killed with what the node wrote to it: the PUBREC never left (it waited for
    nats-server, [MQTT-4.3.2-2]) and the publisher is dropped unacknowledged. nats-server
    back (same port, same JetStream store), ``nodes`` reconnected."""
    nats_server.freeze()
    try:
        pub.send_packet(Publish(topic=topic, payload=b"held", qos=2, packet_id=2))
        pub.expect_no_packet(0.5)  # the PUBREC waits for nats-server
    finally:
        assert nats_server.proc is not None
        nats_server.proc.send_signal(signal.SIGKILL)
        nats_server.proc.wait(5)
    assert pub.expect_closed(timeout=10) is None  # dropped unacknowledged: it re-sends
    pub.close()
    nats_server.start()
    for node in nodes:
        _reconnected(node, 1)


def _resend_held(port: int, client_id: str, topic: str) -> None:
    """The publisher back: "held" re-sent with DUP, its exchange completed, then
    "after" (packet id 3)."""
    pub = RawClient(port)
    assert pub.connect(client_id, clean_start=False, timeout=10).session_present
    pub.send_packet(Publish(topic=topic, payload=b"held", qos=2, packet_id=2, dup=True))
    pub.recv_until(Pubrec, timeout=10, packet_id=2)
    pub.send_packet(Pubrel(packet_id=2))
    pub.recv_until(Pubcomp, timeout=10, packet_id=2)
    pub.publish(topic, b"after", qos=2, packet_id=3, timeout=10)
    pub.close()


@pytest.mark.timeout(90)
def test_a_qos2_forward_lost_with_the_nats_connection_is_forwarded_again(
    nats_server: NatsServer, cluster: Cluster
) -> None:
    """nats-server frozen (SIGSTOP), then killed: the QoS 2 PUBLISH node a wrote to it
    meanwhile is gone with it, and its PUBREC never left (it waited for nats-server,
    [MQTT-4.3.2-2]). With nats-server back, the client re-sends the PUBLISH with DUP: it
    is forwarded again, and the persistent subscriber on node b gets every message
    exactly once [MQTT-4.3.3-9]. Before, node a answered the re-sent PUBLISH with a
    PUBREC and forwarded nothing: the acknowledged message was lost."""
    a = cluster.add()
    b = cluster.add()
    sub = Client(b.port, client_id="q2b-sub", clean=False)
    sub.subscribe("q2b/#", qos=2)
    probe = Client(a.port)
    sync(sub, probe)
    probe.close()
    pub = RawClient(a.port)
    pub.connect("q2b-pub", clean_start=False)
    pub.publish("q2b/x", b"before", qos=2, packet_id=1)
    assert [m.payload for m in sub.collect(1, timeout=5)] == [b"before"]
    _held_and_lost(nats_server, pub, "q2b/x", [a, b])
    _resend_held(a.port, "q2b-pub", "q2b/x")
    got = Counter(m.payload for m in sub.collect(10, timeout=5))
    assert got == {b"held": 1, b"after": 1}, got
    sub.close()


@pytest.mark.timeout(90)
def test_a_copy_is_not_delivered_again_to_a_session_that_got_the_original_in_a_take_over(
    nats_server: NatsServer, cluster: Cluster
) -> None:
    """As above, with the persistent subscriber that got the first forward offline on
    node a (queued there) and then taken over by node b, which never got that forward
    from NATS: the snapshot brings it along, and the copy the publisher's re-send makes
    reaches node b after. The session got the message already (exactly once
    [MQTT-4.3.3-9]): the copy goes only to the subscriber on node b that never had it.
    Before, both got it: the node decided "new" from what reached it through NATS (17
    and 8 duplicates in the kill -9 + NATS restart test, 1 in ~60 runs)."""
    a = cluster.add()
    b = cluster.add()
    moved = Client(a.port, client_id="q2h-moved", clean=False)
    moved.subscribe("q2h/#", qos=2)
    other = Client(b.port, client_id="q2h-other", clean=False)
    other.subscribe("q2h/#", qos=2)
    probe = Client(a.port)
    sync(other, probe)
    probe.close()
    moved.close()  # offline: its session stays on node a, its messages queue there
    pub = RawClient(a.port)
    pub.connect("q2h-pub", clean_start=False)
    pub.publish("q2h/x", b"before", qos=2, packet_id=1)
    assert [m.payload for m in other.collect(1, timeout=5)] == [b"before"]
    _held_and_lost(nats_server, pub, "q2h/x", [a, b])  # "held" queued for the session
    moved = Client(b.port, client_id="q2h-moved", clean=False)  # taken over from node a
    assert moved.session_present
    assert sorted(m.payload for m in moved.collect(2, timeout=10)) == [b"before", b"held"]
    _resend_held(a.port, "q2h-pub", "q2h/x")
    assert Counter(m.payload for m in other.collect(10, timeout=5)) == {b"held": 1, b"after": 1}
    assert Counter(m.payload for m in moved.collect(10, timeout=3)) == {b"after": 1}
    for c in (moved, other):
        c.close()
