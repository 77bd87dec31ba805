"""Strict persistence, pipelined (issue 17): the group-commit window on the real start-up
path, commits off the event-loop thread, and no acknowledgement before its commit."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mqttfast.app.persistence.store import SQLiteStorage
from mqttfast.codec.packets import Properties, Puback, Publish
from mqttfast.core.broker import BrokerCore
from mqttfast.core.settings import BrokerSettings
from mqttfast.transport.server import MQTTServer
from tests.helpers.broker import free_port
from tests.helpers.rawclient import RawClient

from .helpers import DurableBroker, persistent


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_group_commit_window_on_the_cli_path(tmp_path: Path) -> None:
    """Two publishers' messages 0.5 ms apart share one commit (the 2 ms window the CLI
    path never had: only MQTTServer.start set it). Counted in the real broker's
    /metrics (mqttfast_persistence_commits_total). Without the window every message is
    its own commit (the first is already on its way to the disk when the second comes)."""
    mport = free_port()
    broker = DurableBroker(tmp_path / "data", ["--metrics-port", str(mport)]).start()
    try:
        sub, _ = persistent("window-sub", broker.port)
        sub.subscribe(("w/#", 1))
        sub.disconnect()  # offline persistent session: every message is stored for it
        a = RawClient(broker.port, 5)
        a.connect("window-a")
        b = RawClient(broker.port, 5)
        b.connect("window-b")
        rounds = 30
        before = metric(mport, "mqttfast_persistence_commits_total")
        for i in range(1, rounds + 1):
            time.sleep(0.01)  # an idle broker (under load the commit in flight is the window)
            a.send_packet(Publish("w/a", b"a", qos=1, packet_id=i))
            time.sleep(0.0005)
            b.send_packet(Publish("w/b", b"b", qos=1, packet_id=i))
            assert a.expect(Puback).packet_id == i
            assert b.expect(Puback).packet_id == i
        commits = metric(mport, "mqttfast_persistence_commits_total") - before
        # With the window: about one commit per round (+ a periodic one now and then).
        assert commits <= rounds * 1.5, f"{commits} commits for {rounds} pairs of messages"
        a.close()
        b.close()
    finally:
        broker.close()


class InProcessBroker:
    """A strict broker on an event loop in a thread, on a real socket, whose storage
    runs ``hook(ops)`` in the writer thread just before each COMMIT."""

    def __init__(
        self, data_dir: Path, hook: Callable[[list[Any]], None], window: float = 0.002
    ) -> None:
        self.storage = SQLiteStorage(str(data_dir), "strict", window=window)
        self.storage.before_commit = hook
        self.core = BrokerCore(BrokerSettings(), storage=self.storage)
        self.storage.recover(self.core)
        self.loop = asyncio.new_event_loop()
        self.server = MQTTServer(self.core)
        self.port = 0
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.port = self.call(self.server.start("127.0.0.1", 0))[0][1]

    def call(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.call(self.server.stop())
        self.loop.call_soon_threadsafe(self.storage.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def blocked(tmp_path: Path) -> Iterator[tuple[InProcessBroker, threading.Event, threading.Event]]:
    entered = threading.Event()
    go = threading.Event()

    def hook(ops: list[Any]) -> None:
        if any(sql.startswith("INSERT OR REPLACE INTO messages") for sql, _ in ops):
            entered.set()
            assert go.wait(20), "test never released the commit"

    broker = InProcessBroker(tmp_path / "data", hook)
    try:
        yield broker, entered, go
    finally:
        go.set()
        broker.close()


def stored_payloads(data_dir: str) -> set[bytes]:
    db = sqlite3.connect(f"file:{data_dir}/mqttfast.db?mode=ro", uri=True)
    try:
        return {row[0] for row in db.execute("SELECT payload FROM messages")}
    finally:
        db.close()


def test_no_puback_before_its_commit_returns_and_order_is_kept(
    blocked: tuple[InProcessBroker, threading.Event, threading.Event],
) -> None:
    """[MQTT-4.3.2-2] / strict durability: the PUBACK of a QoS 1 message for a persistent
    session leaves only once the transaction holding it is committed. The commit is held
    in the writer thread; meanwhile the event loop keeps running and collects the next
    publishes (pipelining), and every PUBACK arrives afterwards, in order
    [MQTT-4.6.0-2], each for a message already visible in the committed database."""
    broker, entered, go = blocked
    sub = RawClient(broker.port, 5)
    sub.connect("pipe-sub", clean_start=False, properties=Properties(session_expiry_interval=3600))
    sub.subscribe(("p/#", 1))
    sub.disconnect()
    pub = RawClient(broker.port, 5)
    pub.connect("pipe-pub")
    start = broker.storage.commits
    pub.send_packet(Publish("p/x", b"m1", qos=1, packet_id=1))
    assert entered.wait(10), "the commit of the first message never started"
    # The commit is blocked in the writer thread; the loop is not.
    broker.call(asyncio.sleep(0), timeout=2)
    for i in range(2, 11):
        pub.send_packet(Publish("p/x", f"m{i}".encode(), qos=1, packet_id=i))
    pub.expect_no_packet(0.5)  # nothing acknowledged while its commit has not returned
    assert stored_payloads(broker.storage.data_dir) == set()
    go.set()
    for i in range(1, 11):
        ack = pub.expect(Puback, timeout=5)
        assert ack.packet_id == i, f"PUBACK {ack.packet_id} came in place of {i}"
        assert f"m{i}".encode() in stored_payloads(broker.storage.data_dir)
    # The nine publishes that arrived during the first commit shared the next one.
    assert broker.storage.commits - start <= 3, broker.storage.commits - start
    pub.close()


def test_outgoing_qos2_publish_waits_for_its_commit(
    blocked: tuple[InProcessBroker, threading.Event, threading.Event],
) -> None:
    """[MQTT-4.3.3-*] exactly once across a restart: an outgoing QoS 2 PUBLISH to a
    persistent session leaves only once its packet id is committed (a QoS 1 delivery
    need not wait: at least once allows the re-send a crash may cause)."""
    broker, entered, go = blocked
    sub = RawClient(broker.port, 5)
    sub.connect("q2-sub", clean_start=False, properties=Properties(session_expiry_interval=3600))
    sub.subscribe(("q/#", 2))
    pub = RawClient(broker.port, 5)
    pub.connect("q2-pub")
    pub.send_packet(Publish("q/x", b"exactly-once", qos=2, packet_id=1))
    assert entered.wait(10), "the commit never started"
    sub.expect_no_packet(0.5)
    pub.expect_no_packet(0.1)  # nor the PUBREC
    go.set()
    got = sub.expect(Publish, timeout=5)
    assert got.payload == b"exactly-once" and got.qos == 2
    assert b"exactly-once" in stored_payloads(broker.storage.data_dir)
    sub.close()
    pub.close()


def test_puback_waits_for_the_commit_while_the_online_subscriber_has_not_acked(
    blocked: tuple[InProcessBroker, threading.Event, threading.Event],
) -> None:
    """Ack-or-commit: the subscriber is online and got the message (QoS 1 deliveries do
    not wait for the disk) but has not acknowledged it: the publisher's PUBACK waits for
    the commit holding the message."""
    broker, entered, go = blocked
    sub = RawClient(broker.port, 5)
    sub.connect("on-sub", clean_start=False, properties=Properties(session_expiry_interval=3600))
    sub.subscribe(("o/#", 1))
    pub = RawClient(broker.port, 5)
    pub.connect("on-pub")
    pub.send_packet(Publish("o/x", b"unacked", qos=1, packet_id=1))
    got = sub.expect(Publish, timeout=5)
    assert got.payload == b"unacked"
    assert entered.wait(10), "the commit of the unacknowledged delivery never started"
    pub.expect_no_packet(0.5)  # neither committed nor acknowledged by the subscriber
    go.set()
    assert pub.expect(Puback, timeout=5).packet_id == 1
    assert b"unacked" in stored_payloads(broker.storage.data_dir)
    sub.close()
    pub.close()


def test_puback_needs_no_commit_once_the_subscriber_acked(tmp_path: Path) -> None:
    """Ack-or-commit: a delivery acknowledged by its (persistent) subscriber before it was
    written owes nothing to the disk: the publisher's PUBACK leaves without a commit, and
    the message is never written (with a 2 s window, no commit starts meanwhile)."""
    writes: list[Any] = []
    broker = InProcessBroker(tmp_path / "data", writes.append)
    try:
        sub = RawClient(broker.port, 5)
        sub.connect(
            "ak-sub", clean_start=False, properties=Properties(session_expiry_interval=3600)
        )
        sub.subscribe(("a/#", 1))
        pub = RawClient(broker.port, 5)
        pub.connect("ak-pub")
        time.sleep(0.2)
        broker.storage.window = 2.0  # (set now: the CONNACKs above waited for it)
        start = broker.storage.commits
        pub.send_packet(Publish("a/x", b"acked-first", qos=1, packet_id=7))
        got = sub.expect(Publish, timeout=5)
        assert got.payload == b"acked-first"
        sub.send_packet(Puback(got.packet_id))
        assert pub.expect(Puback, timeout=5).packet_id == 7
        assert broker.storage.commits == start
        assert not any(
            sql.startswith("INSERT OR REPLACE INTO messages") for ops in writes for sql, _ in ops
        )
        sub.close()
        pub.close()
    finally:
        broker.close()
    assert b"acked-first" not in stored_payloads(str(tmp_path / "data"))


def test_shared_delivery_moved_to_another_member_holds_the_puback(tmp_path: Path) -> None:
    """Ack-or-commit must not count a shared-subscription delivery that leaves its session
    only to go to another member (4.8.2) as acknowledged: the publisher's PUBACK waits for
    the commit of the new member's copy. (With a 1 s window nothing is committed when x
    goes: without this the PUBACK left at once, before anything was stored.)"""
    writes: list[Any] = []
    broker = InProcessBroker(tmp_path / "data", writes.append)
    persist = Properties(session_expiry_interval=3600)
    try:
        y = RawClient(broker.port, 5)
        y.connect("sh-y", clean_start=False, properties=persist)
        y.subscribe(("$share/g/s/#", 1))
        y.disconnect()
        x = RawClient(broker.port, 5)
        x.connect(
            "sh-x",
            clean_start=False,
            properties=Properties(session_expiry_interval=3600, receive_maximum=1),
        )
        x.subscribe(("$share/g/s/#", 1))
        other = RawClient(broker.port, 5)
        other.connect("sh-other")
        pub = RawClient(broker.port, 5)
        pub.connect("sh-pub")
        time.sleep(0.5)  # the sessions' and subscriptions' commits are done
        broker.storage.window = 1.0  # (set now: the CONNACKs above waited for it)
        other.send_packet(Publish("s/0", b"fills-x-window", qos=1, packet_id=1))
        assert x.expect(Publish, timeout=5).payload == b"fills-x-window"  # not acked
        pub.send_packet(Publish("s/1", b"moved", qos=1, packet_id=2))
        x.expect_no_packet(0.2)  # queued at x (receive maximum 1), preferred to offline y
        x.close()  # x's queued shared message goes to y's queue
        ack = pub.expect(Puback, timeout=5)
        assert ack.packet_id == 2
        assert b"moved" in stored_payloads(broker.storage.data_dir), "PUBACK before commit"
        pub.close()
        other.close()
    finally:
        broker.close()
    db = sqlite3.connect(f"file:{tmp_path}/data/mqttfast.db?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT m.payload FROM deliveries d JOIN messages m ON m.id = d.msg_id "
            "WHERE d.client_id = 'sh-y'"
        ).fetchall()
    finally:
        db.close()
    assert rows == [(b"moved",)]
