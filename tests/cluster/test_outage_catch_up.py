"""A node cut off from NATS for less than the dead-node detection (no adoption): the
QoS 1 messages other nodes acknowledged meanwhile for its persistent sessions never
reached it (nats-server had no interest of it to send them to); they are in the journal
(journal.py), and the node delivers them from there once NATS is back
(``Journal.catch_up``). The cut is the TCP relay of test_outage_reconcile.py."""

from __future__ import annotations

import re
import time
from collections import Counter

import pytest

from .clients import Client, sync
from .conftest import Node
from .test_outage_reconcile import Relay, cut_pair  # noqa: F401 (fixture)

pytestmark = pytest.mark.timeout(60)

CAUGHT_UP = re.compile(r"(\d+) journaled message\(s\) published during the NATS outage")


def test_messages_published_while_a_node_was_away_from_nats_reach_it(cluster, cut_pair) -> None:
    """Issue 15 ("no acknowledged QoS 1/2 message is lost", a node losing NATS): every
    message acknowledged to the publisher on node 2 while node 1 was cut off reaches
    node 1's persistent-session subscriber afterwards, once each."""
    _published_while_cut_off_arrive_once(*cut_pair, 50)


def test_a_catch_up_larger_than_the_queue_limit_waits_for_room(cluster, nats_server) -> None:
    """The catch-up brings 200 messages to a connected session whose queue holds 40
    (and 5 in flight): it hands them over as the client drains the queue instead of
    letting the queue limit drop 155 of them (journal.py ``_room``); they were
    acknowledged to their publisher, so none may be lost."""
    relay = Relay(nats_server.port).mend()
    a = Node(
        relay.url,
        "node1",
        cluster.prefix,
        ["--max-queued-messages", "40", "--max-inflight", "5"],
    )
    cluster.nodes.append(a)
    a.start()
    b = cluster.add()
    try:
        _published_while_cut_off_arrive_once(relay, a, b, 200)
        assert "queue full" not in a.log_text()
    finally:
        relay.cut()


def _published_while_cut_off_arrive_once(relay: Relay, a: Node, b: Node, n: int) -> None:
    sub = Client(a.port, client_id="cu-sub", clean=False)
    sub.subscribe("cu/#", qos=1)
    pub = Client(b.port)
    sync(sub, pub)
    pub.publish("cu/x", b"before", qos=1)
    assert sub.get(5).payload == b"before"
    relay.cut()
    a.wait_for_log("lost NATS", timeout=10)
    for i in range(n):  # acknowledged once in the journal (node 1 is not dead yet)
        pub.publish("cu/x", str(i).encode(), qos=1)
    assert sub.quiet(0.3) == []  # nothing can reach node 1 now
    relay.mend()
    got: Counter[bytes] = Counter()
    deadline = time.monotonic() + 20
    while len(got) < n and time.monotonic() < deadline:
        got.update(m.payload for m in sub.collect(n, timeout=1))
    got.update(m.payload for m in sub.quiet(0.5))
    assert sorted(got) == sorted(str(i).encode() for i in range(n)), len(got)
    assert set(got.values()) == {1}
    found = CAUGHT_UP.findall(a.log_text())
    assert found and int(found[-1]) == n, found
    assert "adopted" not in b.log_text()  # a short outage: node 1 kept its session
    sub.close()
    pub.close()
