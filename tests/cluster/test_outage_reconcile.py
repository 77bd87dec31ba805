"""One node cut off from NATS (the other keeps it) for longer than the dead-node
detection: the survivor adopts its persistent sessions while it still holds them. When
NATS is back the cut-off node reconciles (mqttfast/cluster/sessions.py, reconcile): one
holder per session, one live connection per client id, the messages queued at the
adopter meanwhile delivered. Real nats-server, real node processes, paho clients; the
cut is a TCP relay between node 1 and nats-server that the test stops and restarts (a
fault injector: nats-server and both nodes are untouched)."""

from __future__ import annotations

import re
import signal
import socket
import threading
import time

import pytest

from tests.helpers.broker import free_port

from .clients import Client, stop_loop, sync
from .conftest import Cluster, Node
from .test_session_failover import _record, _wait_adopted
from .test_sessions import _drop

pytestmark = pytest.mark.timeout(60)

RECONCILED = re.compile(
    r"reconciled (\d+) session\(s\) after the NATS outage: (\d+) kept, (\d+) reclaimed "
    r"\((\d+) message\(s\) in\), (\d+) closed here \(client on another node\), (\d+) dropped "
    r"here \(held by another node\); (\d+) message\(s\) moved out, (\d+) not movable "
    r"\(lost\), (\d+) discarded"
)


class Relay:
    """127.0.0.1:port -> 127.0.0.1:target, byte for byte. ``cut()`` closes every relayed
    connection and refuses new ones (the node sees its NATS connection drop, nats-server
    sees the node go); ``mend()`` listens again on the same port. ``upstream`` cleared:
    what the node writes is not read (its socket buffers fill, its writes wait), what
    nats-server sends still reaches it."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self.listener: socket.socket | None = None
        self.socks: list[socket.socket] = []
        self.lock = threading.Lock()
        self.upstream = threading.Event()
        self.upstream.set()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def mend(self) -> Relay:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(16)
        self.listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()
        return self

    def _accept(self, s: socket.socket) -> None:
        while True:
            try:
                down, _ = s.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(("127.0.0.1", self.target), timeout=2)
                up.settimeout(None)
            except OSError:
                down.close()
                continue
            with self.lock:
                self.socks += [down, up]
            for a, b, gate in ((down, up, self.upstream), (up, down, None)):
                threading.Thread(target=self._pump, args=(a, b, gate), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket, gate: threading.Event | None) -> None:
        try:
            while gate is None or gate.wait(30):
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for x in (a, b):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        if self.listener is not None:
            try:
                self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept()
            except OSError:
                pass
            self.listener.close()
            self.listener = None
        with self.lock:
            socks, self.socks = self.socks, []
        for x in socks:
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            x.close()


@pytest.fixture
def cut_pair(cluster: Cluster, nats_server):
    """Node 1 reaches NATS through a relay, node 2 directly."""
    relay = Relay(nats_server.port).mend()
    a = Node(relay.url, "node1", cluster.prefix)
    cluster.nodes.append(a)
    a.start()
    b = cluster.add()
    try:
        yield relay, a, b
    finally:
        relay.cut()


def _outage(relay: Relay, a: Node, b: Node) -> None:
    """Cut node 1 off until node 2 declared it dead and adopted its session(s)."""
    relay.cut()
    a.wait_for_log("lost NATS", timeout=10)
    _wait_adopted([b], "node1", 1, timeout=15)


def _reconciled(a: Node, timeout: float = 20.0) -> tuple[int, ...]:
    """The counts of node 1's reconcile log line (checked, kept, reclaimed, messages
    in, closed, dropped, messages out, lost, discarded); exactly one reconcile per
    reconnect."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = RECONCILED.findall(a.log_text())
        if found:
            time.sleep(0.3)  # a second one, were there one, would show now
            found = RECONCILED.findall(a.log_text())
            assert len(found) == 1, found
            return tuple(int(x) for x in found[0])
        time.sleep(0.1)
    raise AssertionError("no reconcile: " + a.log_text()[-3000:])


def _wait_sys(node: Node, figure: str, want: bytes, timeout: float = 10.0) -> None:
    """$SYS/broker/cluster/<figure> of ``node`` (republished every 2 s) reaches ``want``."""
    c = Client(node.port)
    c.subscribe(f"$SYS/broker/cluster/{figure}", qos=0)
    deadline = time.monotonic() + timeout
    last = None
    try:
        while time.monotonic() < deadline:
            try:
                last = c.get(timeout=max(0.1, deadline - time.monotonic())).payload
            except Exception:
                break
            if last == want:
                return
    finally:
        c.close()
    raise AssertionError(f"{figure} on {node.node_id}: {last!r}, not {want!r}")


def test_adopted_session_reclaimed_with_messages_queued_at_the_adopter(cluster, cut_pair) -> None:
    """The persistent subscriber stays connected to node 1 through the outage; node 2
    adopts its session and queues the QoS 1 messages published on node 2 meanwhile.
    When NATS is back node 1 reclaims the session: the subscriber gets those messages,
    in order and once each [MQTT-4.6.0-5: order per topic of one publisher], and the
    record names node 1 again; node 2 holds no copy."""
    relay, a, b = cut_pair
    sub = Client(a.port, client_id="rc-keep", clean=False)
    sub.subscribe("rc/#", qos=1)
    pub = Client(b.port, v5=True)
    sync(sub, pub)
    pub.publish("rc/x", b"before", qos=1)
    assert sub.get(5).payload == b"before"
    _outage(relay, a, b)
    assert _record(cluster, "rc-keep")["node"] == "node2"
    for i in range(5):
        pub.publish("rc/x", f"out{i}".encode(), qos=1)  # queued at node 2 (adopted)
    assert sub.quiet(0.3) == []  # node 1 cannot get them while cut off
    relay.mend()
    assert _reconciled(a) == (1, 0, 1, 5, 0, 0, 0, 0, 0)
    got = sub.collect(5, timeout=10)
    assert [m.payload for m in got] == [f"out{i}".encode() for i in range(5)]
    assert sub.quiet(0.5) == []
    assert _record(cluster, "rc-keep")["node"] == "node1"
    _wait_sys(a, "sessions_reconciled", b"1")
    # Node 2 gave its copy up: a message now reaches the subscriber once, from node 1.
    sync(sub, pub)
    pub.publish("rc/x", b"after", qos=1)
    assert [m.payload for m in sub.collect(1, timeout=5)] == [b"after"]
    assert sub.quiet(0.5) == []
    assert sub.connected.is_set() and not sub.disconnected.is_set()
    sub.close()
    pub.close()


def test_client_reconnected_elsewhere_keeps_its_session(cluster, cut_pair) -> None:
    """The client reconnects to node 2 during the outage while its old connection to
    node 1 is still open. When node 1 is back it closes that old connection with
    DISCONNECT 0x8E Session taken over [MQTT-3.1.4-3: one connection per client id]; the
    client on node 2 keeps its session (record, subscriptions, deliveries)."""
    relay, a, b = cut_pair
    old = Client(a.port, client_id="rc-move", v5=True, clean=False, session_expiry=300)
    old.c.reconnect_delay_set(60, 120)  # paho must not come back on its own here
    old.subscribe("mv/#", qos=1)
    _outage(relay, a, b)
    new = Client(b.port, client_id="rc-move", v5=True, clean=False, session_expiry=300)
    assert new.session_present is True  # the adopted session
    pub = Client(b.port, v5=True)
    pub.publish("mv/x", b"during", qos=1)
    assert new.get(5).payload == b"during"
    relay.mend()
    assert _reconciled(a) == (1, 0, 0, 0, 1, 0, 0, 0, 0)
    assert old.disconnected.wait(10)
    assert old.disconnect_rc == 0x8E
    assert not new.disconnected.is_set()
    assert _record(cluster, "rc-move")["node"] == "node2"
    pub.publish("mv/x", b"after", qos=1)
    assert [m.payload for m in new.collect(1, timeout=5)] == [b"after"]
    assert new.quiet(0.5) == []
    assert not new.disconnected.is_set()
    new.close()
    pub.close()
    stop_loop(old.c)


def test_offline_copy_gives_way_and_its_messages_move(cluster, cut_pair) -> None:
    """The client is offline (session held by node 1) when node 1 is cut off; node 2
    adopts the session. Messages published on each node meanwhile are queued in each
    copy. When NATS is back node 1's copy gives way to the recorded owner: its queued
    messages are pushed there, and the client, back on node 2, gets all of them once."""
    relay, a, b = cut_pair
    cl = Client(a.port, client_id="rc-off", clean=False)
    cl.subscribe("off/#", qos=1)
    cl.close()
    local = Client(a.port)
    pub = Client(b.port)
    _outage(relay, a, b)
    for i in range(3):
        local.publish("off/a", f"a{i}".encode(), qos=1)  # queued in node 1's copy
        pub.publish("off/b", f"b{i}".encode(), qos=1)  # queued in node 2's copy
    relay.mend()
    # rc-off dropped here (3 messages moved to node 2), the publisher's session kept
    assert _reconciled(a) == (2, 1, 0, 0, 0, 1, 3, 0, 0)
    back = Client(b.port, client_id="rc-off", clean=False)
    assert back.session_present is True
    got = back.collect(6, timeout=10)
    assert [m.payload for m in got if m.topic == "off/b"] == [b"b0", b"b1", b"b2"]
    assert [m.payload for m in got if m.topic == "off/a"] == [b"a0", b"a1", b"a2"]
    assert back.quiet(0.5) == []
    assert _record(cluster, "rc-off")["node"] == "node2"
    back.close()
    local.close()
    pub.close()


def test_clean_start_during_the_outage_ends_the_older_copy(cluster, cut_pair) -> None:
    """3.1.1: the client (clean session 0) leaves node 1, node 1 is cut off, node 2
    adopts the session and queues 2 messages for it; the client comes back to node 1
    with clean session 1 (Session Present 0 [MQTT-3.2.2-1]). When NATS is back the
    older copy on node 2 ends, its 2 messages are not delivered to the new session,
    the session record goes, and node 1 owns the client id."""
    relay, a, b = cut_pair
    old = Client(a.port, client_id="rc-fresh", clean=False)
    old.subscribe("fr/#", qos=1)
    old.close()
    pub = Client(b.port)
    _outage(relay, a, b)
    pub.publish("fr/x", b"old1", qos=1)
    pub.publish("fr/x", b"old2", qos=1)
    new = Client(a.port, client_id="rc-fresh", clean=True)
    assert new.session_present is False
    relay.mend()
    assert _reconciled(a) == (1, 0, 1, 0, 0, 0, 0, 0, 2)
    assert new.quiet(0.5) == []
    assert _record(cluster, "rc-fresh") is None
    new.close()
    # Nothing of the older session anywhere: back on node 2 (clean session 0), none.
    again = Client(b.port, client_id="rc-fresh", clean=False)
    assert again.session_present is False
    assert again.quiet(0.5) == []
    again.close()
    pub.close()


def test_a_will_published_during_the_outage_is_not_published_again(cluster, cut_pair) -> None:
    """[MQTT-3.1.2-8] a will is published once. Node 2 takes node 1 for dead during the
    outage and publishes the wills node 1 recorded, although their client is still
    connected to node 1. When that client later goes away without DISCONNECT, node 1
    must not publish the will a second time. A will set on a connection made during the
    outage (not recorded then) is recorded when NATS is back: node 1 dying later, node 2
    publishes it."""
    relay, a, b = cut_pair
    watcher = Client(b.port)
    watcher.subscribe("ow/#", qos=1)
    early = Client(a.port, client_id="ow-early", clean=False, will=("ow/early", b"w1", 1, False))
    sync(watcher, early)
    _outage(relay, a, b)
    assert [m.payload for m in watcher.collect(1, timeout=10)] == [b"w1"]
    late = Client(a.port, client_id="ow-late", will=("ow/late", b"w2", 1, False))
    relay.mend()
    _reconciled(a)
    a.wait_for_log("1 will(s) of clients still connected here", timeout=10)
    sync(watcher, early)
    _drop(early)
    assert watcher.quiet(1.5) == []  # no second w1
    a.kill()  # node 1 dies: node 2 publishes the will recorded after the outage
    assert [m.payload for m in watcher.collect(1, timeout=20)] == [b"w2"]
    assert watcher.quiet(0.5) == []
    watcher.close()
    stop_loop(late.c)


def test_a_node_that_stalled_reconciles_like_after_an_outage(cluster, cut_pair) -> None:
    """Node 1 is stopped (SIGSTOP) for longer than the dead-node detection while its NATS
    connection stays up: node 2 adopts its persistent session and queues the QoS 1
    messages published meanwhile. When node 1 runs again nothing tells it that, except
    the time that passed: it reconciles as after an outage, reclaims the session with
    those messages (in order, once each [MQTT-4.6.0-5]) and owns the record again."""
    _relay, a, b = cut_pair
    sub = Client(a.port, client_id="st-keep", clean=False)
    sub.subscribe("st/#", qos=1)
    pub = Client(b.port)
    sync(sub, pub)
    a.signal(signal.SIGSTOP)
    try:
        _wait_adopted([b], "node1", 1, timeout=20)
        for i in range(5):
            pub.publish("st/x", f"s{i}".encode(), qos=1)  # queued at node 2 (adopted)
    finally:
        a.signal(signal.SIGCONT)
    a.wait_for_log("did not run for", timeout=10)
    assert _reconciled(a) == (1, 0, 1, 5, 0, 0, 0, 0, 0)
    got = sub.collect(5, timeout=10)
    assert [m.payload for m in got] == [f"s{i}".encode() for i in range(5)]
    assert sub.quiet(0.5) == []
    assert _record(cluster, "st-keep")["node"] == "node1"
    sync(sub, pub)
    pub.publish("st/x", b"after", qos=1)
    assert [m.payload for m in sub.collect(1, timeout=5)] == [b"after"]
    assert sub.quiet(0.5) == []
    sub.close()
    pub.close()
