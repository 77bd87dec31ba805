"""A persistent QoS 2 subscriber moving between nodes while a publisher on one of them
keeps publishing: every acknowledged message reaches it exactly once [MQTT-4.3.3].

The old node hands the session's queue over in the take-over's reply; what it routes
while the reply is on its way reaches the new node before the session is installed there,
and the new node reads those messages from the journal (journal.after_takeover, and its
later passes 1 s and 11 s after). Moves ~0.7 s apart, and ~0.1 s apart: then the session
often moves on before that read ran, and the node it moves to reads them (the old node
hands on the ids it came with and those the session got since, journal.given_up; before
that, 1 to 79 of 3,000 were lost in 7 of 7 runs).
"""

from __future__ import annotations

import threading
import time

import pytest

from .clients import Client, assert_arrived, count_until, stop_loop, sync
from .conftest import Cluster, NatsServer, Node
from .test_failure import Qos2Publisher
from .test_outage_reconcile import Relay

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("every, pause", [(750, 0.5), (250, 0.0)], ids=["slow", "fast"])
def test_qos2_subscriber_moving_between_nodes_under_load_gets_each_message_once(
    cluster: Cluster, every: int, pause: float
) -> None:
    a, b = cluster.add(), cluster.add()
    other = Client(b.port)  # on b: a forwards every message to b
    other.subscribe("tk/#", qos=2)
    sub = Client(a.port, client_id="tk-sub", v5=True, clean=False, session_expiry=600)
    sub.subscribe("tk/#", qos=2)
    pub = Qos2Publisher(a.port, "tk-pub")
    probe = Client(a.port)
    sync(other, probe)
    probe.close()
    total, moves = 3000, 0
    for n in range(total):
        pub.publish("tk/x", n)
        if n % every == every // 2:  # a take-over while the publisher's messages flow
            stop_loop(sub.c)
            sub.connect(b.port if sub.port == a.port else a.port)
            assert sub.session_present
            moves += 1
            time.sleep(pause)
        if n % 50 == 0:
            time.sleep(0.01)
    acked = pub.wait_acked(total)
    assert len(acked) == total and moves == total // every

    def what_the_nodes_said() -> None:
        for node in (a, b):
            print("=====", node.node_id)
            print(node.log_text()[-20000:])

    got = count_until(sub, acked)
    assert_arrived(sub.client_id, got, acked, total, True, what_the_nodes_said)
    for c in (sub, other):
        c.close()
    pub.close()


def test_take_over_reply_does_not_overtake_what_the_snapshot_holds(
    cluster: Cluster, nats_server: NatsServer
) -> None:
    """The old node's reply to a take-over (the session's snapshot, with the messages
    queued for it) leaves after every message it routed before giving the session up.
    Else the new node installs the snapshot, then gets those messages from NATS again,
    live: twice [MQTT-4.3.3-3]. Node a's writes to NATS wait here (a relay stops reading
    them) behind 20 MB for another node, while 20 QoS 2 messages for an offline
    session are routed; the session is then taken over by node b. Seen in a failure
    test: 17 duplicates after a NATS reconnect left node a's sender waiting."""
    relay = Relay(nats_server.port).mend()
    a = Node(relay.url, "node1", cluster.prefix)
    cluster.nodes.append(a)
    a.start()
    b = cluster.add()
    other = Client(b.port)
    other.subscribe("ord/#", "big/#", qos=0)
    sub = Client(a.port, client_id="ord-sub", v5=True, clean=False, session_expiry=600)
    sub.subscribe("ord/#", qos=2)
    probe = Client(a.port)
    sync(other, probe)
    stop_loop(sub.c)  # offline: the session stays on node a, its messages queue there
    sub.c.socket().close()
    pub = Qos2Publisher(a.port, "ord-pub")
    relay.upstream.clear()
    try:
        for _ in range(300):
            probe.c.publish("big/x", bytes(65536), qos=0)
        time.sleep(1.0)  # node a's sender waits for the socket
        for n in range(20):
            pub.publish("ord/x", n)
        time.sleep(0.5)  # queued in the offline session and in node a's outbox
        connecting = threading.Thread(target=sub.connect, args=(b.port,), daemon=True)
        connecting.start()
        time.sleep(0.3)  # node b's take request reached node a
    finally:
        relay.upstream.set()
    connecting.join(15)
    assert sub.session_present
    acked = pub.wait_acked(20, 15.0)
    got = count_until(sub, acked)
    assert_arrived(sub.client_id, got, acked, 20, True)
    for c in (sub, other, probe):
        c.close()
    pub.close()
    relay.cut()
