"""``relaxed`` rows (issue 17): the per-message calls only note changes; the rows are
made at the commit, once a second, for what is still held then.

Each test runs a real broker process on a real SQLite file and reads the file
(read-only) while the broker runs, or after a ``kill -9``:

* a delivery put and acknowledged between two commits is never written, and a
  restart does not send it again;
* a delivery committed and then acknowledged is deleted by the next commit (and a
  restart after that commit does not resend it);
* a committed queued delivery that leaves the queue unsent (expired [MQTT-3.3.2-5], too
  large for the client) is deleted by the next commit, without a restart;
* queued deliveries keep their order, and the move of the first ones into flight is
  committed: after a ``kill -9`` they are resent first, with DUP=1 [MQTT-4.4.0-1], then
  the rest in publish order [MQTT-4.6.0-6].
"""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mqttfast.codec.packets import Properties
from tests.helpers.rawclient import NoPacket, RawClient

from .helpers import persistent
from .test_restart import _drain, durable  # noqa: F401  (fixture)

pytestmark = pytest.mark.timeout(60)


def query(data_dir: Path, sql: str, *args: object) -> list[tuple]:
    """Read the database of a RUNNING broker (read-only; WAL readers see commits)."""
    db = sqlite3.connect(f"file:{data_dir / 'mqttfast.db'}?mode=ro", uri=True, timeout=2)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def wait_for(check: Callable[[], bool], what: str, timeout: float = 6.0) -> None:
    """Until ``check()`` (a commit comes every second in relaxed)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


def rows_of(data_dir: Path, cid: str) -> list[tuple]:
    """(payload, pid) of the stored deliveries of ``cid``, in row (= delivery) order."""
    return query(
        data_dir,
        "SELECT m.payload, d.pid FROM deliveries d JOIN messages m ON m.id = d.msg_id "
        "WHERE d.client_id = ? ORDER BY d.id",
        cid,
    )


def test_acknowledged_before_the_commit_is_never_written(durable) -> None:
    """Put and PUBACKed within one commit interval: no row, no bytes in the file, and
    no resend after a ``kill -9`` (nothing is owed: [MQTT-4.3.2-*] the PUBACK ends it)."""
    b = durable("--persistence", "relaxed")
    sub, _ = persistent("sub-never", b.port)
    sub.subscribe(("never/#", 1))
    pub = b.client()
    pub.connect("pub-never")
    markers = [f"NEVER-WRITTEN-{i:03d}-".encode() * 4 for i in range(20)]
    for m in markers:
        pub.publish("never/x", m, qos=1)
        assert sub.recv_publish(timeout=2).payload == m  # PUBACKed at once
        time.sleep(0.02)
    time.sleep(2.5)  # two commits later
    b.restart(signal.SIGKILL)
    raw = b"".join(p.read_bytes() for p in b.data_dir.iterdir() if p.name.startswith("mqttfast.db"))
    found = [m for m in markers if m in raw]
    # A commit may fall between a PUBLISH and its PUBACK (a few ms each): then that one
    # is written (and deleted later). Not more than that.
    assert len(found) <= 2, f"{len(found)} of 20 acknowledged messages were written"
    sub, connack = persistent("sub-never", b.port)
    assert connack.session_present
    assert _drain(sub) == []


def test_committed_then_acknowledged_is_deleted_by_the_next_commit(durable) -> None:
    b = durable("--persistence", "relaxed")
    sub, _ = persistent("sub-late", b.port)
    sub.subscribe(("late/#", 1))
    pub = b.client()
    pub.connect("pub-late")
    for i in range(3):
        pub.publish("late/x", f"late{i}".encode(), qos=1)
    got = [sub.recv_publish(timeout=2, ack=False) for _ in range(3)]
    assert [p.payload for p in got] == [b"late0", b"late1", b"late2"]
    # In flight, unacknowledged: the next commit writes them with their packet ids.
    wait_for(
        lambda: (
            [(p, pid != 0) for p, pid in rows_of(b.data_dir, "sub-late")]
            == [(b"late0", True), (b"late1", True), (b"late2", True)]
        ),
        "the 3 in-flight deliveries committed",
    )
    for p in got:
        sub.ack(p)
    wait_for(
        lambda: (
            rows_of(b.data_dir, "sub-late") == []
            and query(b.data_dir, "SELECT count(*) FROM messages") == [(0,)]
        ),
        "the acknowledged deliveries and their messages deleted",
    )
    b.restart(signal.SIGKILL)
    sub, connack = persistent("sub-late", b.port)
    assert connack.session_present
    assert _drain(sub) == []


def test_dropped_from_the_queue_is_deleted_without_a_restart(durable) -> None:
    """Queued messages that leave the queue unsent go with the next commit, no restart
    needed: one expired [MQTT-3.3.2-5], one larger than the client's Maximum Packet Size
    [MQTT-3.1.2-25] (both "treated as delivered")."""
    b = durable("--persistence", "relaxed")
    sub, _ = persistent("sub-exp", b.port)
    sub.subscribe(("exp/#", 1))
    sub.disconnect()
    pub = b.client()
    pub.connect("pub-exp")
    pub.publish("exp/x", b"short", qos=1, properties=Properties(message_expiry_interval=1))
    pub.publish("exp/x", b"L" * 300, qos=1)
    pub.publish("exp/x", b"kept", qos=1)
    published = time.monotonic()
    wait_for(
        lambda: [p for p, _ in rows_of(b.data_dir, "sub-exp")] == [b"short", b"L" * 300, b"kept"],
        "the 3 queued deliveries committed",
    )
    time.sleep(max(0.0, published + 1.3 - time.monotonic()))
    sub = RawClient(b.port, version=5)
    connack = sub.connect(
        "sub-exp",
        clean_start=False,
        properties=Properties(session_expiry_interval=3600, maximum_packet_size=200),
    )
    assert connack.session_present
    assert [p.payload for p in _drain(sub)] == [b"kept"]
    wait_for(
        lambda: (
            rows_of(b.data_dir, "sub-exp") == []
            and query(b.data_dir, "SELECT count(*) FROM messages") == [(0,)]
        ),
        "the expired, the too large and the acknowledged delivery deleted",
    )


def test_queue_order_and_move_into_flight_survive_kill9(durable) -> None:
    b = durable("--persistence", "relaxed")
    sub, _ = persistent("sub-ord", b.port)
    sub.subscribe(("ord/#", 1))
    sub.disconnect()
    pub = b.client()
    pub.connect("pub-ord")
    payloads = [f"ord{i}".encode() for i in range(6)]
    for p in payloads:
        pub.publish("ord/x", p, qos=1)
    wait_for(
        lambda: rows_of(b.data_dir, "sub-ord") == [(p, 0) for p in payloads],
        "6 queued deliveries committed in order",
    )
    # Receive Maximum 2: the first two move into flight and stay unacknowledged.
    sub = RawClient(b.port, version=5)
    sub.connect(
        "sub-ord",
        clean_start=False,
        properties=Properties(session_expiry_interval=3600, receive_maximum=2),
    )
    first = [sub.recv_publish(timeout=2, ack=False) for _ in range(2)]
    assert [p.payload for p in first] == payloads[:2]
    wait_for(
        lambda: (
            [(p, pid != 0) for p, pid in rows_of(b.data_dir, "sub-ord")]
            == [(p, i < 2) for i, p in enumerate(payloads)]
        ),
        "the move of the first two into flight committed",
    )
    b.restart(signal.SIGKILL)
    sub, connack = persistent("sub-ord", b.port)
    assert connack.session_present
    got = _drain(sub)
    assert [p.payload for p in got] == payloads
    assert [p.dup for p in got[:2]] == [True, True]  # resent: it was sent before
    assert not any(p.dup for p in got[2:])
    with pytest.raises(NoPacket):
        sub.recv_packet(timeout=0.3)
