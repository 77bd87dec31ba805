"""A node started before NATS is ready (a cluster's cold start: JetStream still
electing its leaders) keeps retrying, serves its clients meanwhile, and once NATS is
complete works as if it had been there from the start."""

from __future__ import annotations

import pytest

from .clients import Client, sync
from .conftest import NatsServer, Node


@pytest.mark.timeout(90)
def test_a_node_that_found_jetstream_missing_records_its_sessions_once_it_is_there(
    prefix: str,
) -> None:
    """Node a connects to a nats-server without JetStream: its connection is made, its
    JetStream steps fail, it closes that connection and retries. The same server comes
    back with JetStream: node a connects, and a persistent session made there is
    recorded, so that node b adopts it when node a is killed (Session Present 1, its
    subscription still delivering). Before, closing the incomplete connection was taken
    for a NATS outage whose reconcile never came: node a's session records stayed paused
    and its sessions died with it."""
    plain = NatsServer(jetstream=False).start()
    full = NatsServer(port=plain.port)
    nodes: list[Node] = []
    try:
        a = Node(plain.url, "node1", prefix)
        nodes.append(a)
        a.start()
        a.wait_for_log("unreachable", 10)
        plain.stop()
        full.start()
        a.wait_for_log("NATS reachable again", 20)
        b = Node(full.url, "node2", prefix)
        nodes.append(b)
        b.start()
        sub = Client(a.port, client_id="cold-sub", clean=False)
        sub.subscribe("cold/#", qos=1)
        probe = Client(b.port)
        sync(sub, probe)
        probe.close()
        sub.close()  # offline, its session kept on node a
        a.kill()
        back = Client(b.port, client_id="cold-sub", clean=False)
        assert back.session_present, b.log_text()[-3000:]
        pub = Client(b.port)
        pub.publish("cold/x", b"after", qos=1)
        assert [m.payload for m in back.collect(1, timeout=10)] == [b"after"]
        for c in (back, pub):
            c.close()
        assert "Traceback" not in a.log_text() + b.log_text()
    finally:
        for node in nodes:
            node.cleanup()
        plain.cleanup()
        full.cleanup()
