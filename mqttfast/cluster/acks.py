"""Acknowledgements wait for NATS: a PUBACK/PUBREC leaves only once nats-server has the message.

Without this, a node acknowledged a QoS 1/2 message as soon as it was queued for NATS;
killed before the bytes left (nats-py's buffer, the socket), it had acknowledged a
message no other node would ever see (the publisher does not resend what was acked).

How: the sender writes each loop turn's messages as one batch (``batch_no``); when a
batch holds a QoS > 0 message whose publisher waits, a PING follows it on the same
connection. nats-server answers PINGs in order, after processing everything before
them, so its PONG confirms the batch (the message is then in the subscribing nodes'
connections or JetStream). The transport hands each connection's output of a turn to
:meth:`AckGate.gate` (the same seam a strict storage uses, which runs after this one):
output of a connection whose acknowledgements wait for an unconfirmed batch is held,
in order, and released when the PONG comes, or dropped with the connection
(``release(False)``: the client resends what was not acknowledged) if NATS does not
answer within :data:`ACK_WAIT_LIMIT`.

Only those connections' output goes through the gate (issue 16): without a storage's
gate behind this one, the transport is told which connections to gate (``flusher.gated``
is :attr:`AckGate.need`): a connection is in it from the turn an acknowledgement of it
waits until that batch is confirmed, so it holds every connection with output held
here (nothing of a connection overtakes its held bytes). Every other connection (a
QoS 0 subscriber, a publisher whose messages no other node wants) is written as on a
single node: a small read's reply directly, the rest in the same turn, no gate call.

Journaled messages (journal.py, issue 15): a batch holding messages that some persistent
session could receive also writes them to the JetStream journal; such a batch is
confirmed only once its PONG *and* every JetStream PubAck of its journal writes came
(``journal_sent`` / ``journal_acked``). A JetStream error, or no PubAck within
:data:`ACK_WAIT_LIMIT`, fails the acknowledgements waiting (``release(False)``: the
publishers are disconnected unacknowledged and resend), as a lost NATS connection does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

ACK_WAIT_LIMIT = 10.0  # seconds an acknowledgement may wait for nats-server's PONG

Release = Callable[[bool], None]


class _Pong:
    """Stands in nats-py's queue of PONG futures (``Client._pongs``): the PONG calls
    ``set_result`` inline in the parser, without a Future or a scheduled callback."""

    __slots__ = ("acks", "batch")

    def __init__(self, acks: AckGate, batch: int) -> None:
        self.acks = acks
        self.batch = batch

    def set_result(self, _value: Any) -> None:
        self.acks.pong(self.batch)

    def done(self) -> bool:
        return False

    def cancel(self) -> bool:
        return False


class AckGate:
    def __init__(self) -> None:
        self.batch_no = 0  # the batch the outbox is filling
        self.confirmed = -1  # every batch up to this one is in nats-server
        self.ping_due = False  # the batch being filled holds a message somebody waits for
        # core connection -> last batch its output waits for; the transport's ``gated``
        # (bind_output): changed in place only, never rebound.
        self.need: dict[Any, int] = {}
        self.waiting: list[tuple[int, Any, Release, float]] = []
        self.inner: Callable[[Any, Release], None] | None = None  # a strict storage's gate
        self.sent = -1  # the last batch written out in full
        # The connection to NATS broke: batches up to this one may be lost with it.
        self.broken = -1
        self.timeouts = 0
        self.ponged = -1  # every batch up to this one had its PONG
        # batch -> [journal PubAcks still due, when the first was sent] (journal.py)
        self.journal: dict[int, list[Any]] = {}
        self.journal_errors = 0
        # (first, last) batch ranges that may be lost: unconfirmed when the connection
        # broke or a journal write failed (progress.resent asks; a few dozen kept).
        self.lost: list[tuple[int, int]] = []

    def bind_output(self, flusher: Any) -> None:
        """Take the transport's output gate, keeping the storage's as the next step."""
        self.inner = flusher.gate
        flusher.gate = self.gate
        if self.inner is None:  # else every output goes on to the storage's gate
            flusher.gated = self.need

    # -- the router's side (synchronous) ------------------------------------------------

    def hold(self, conn: Any) -> None:
        """``conn``'s acknowledgement of a message in the current batch waits for it."""
        self.need[conn] = self.batch_no
        self.ping_due = True

    def hold_for(self, conn: Any, batch: int) -> None:
        """``conn``'s next output waits for the earlier ``batch`` (still unconfirmed)."""
        if self.need.get(conn, -1) < batch:
            self.need[conn] = batch
        self.ping_due = True

    def take_batch(self) -> tuple[int, bool]:
        """The sender takes the outbox: (its number, whether a PING must follow it)."""
        no = self.batch_no
        self.batch_no = no + 1
        ping = self.ping_due
        self.ping_due = False
        return no, ping

    def pong_for(self, batch: int) -> _Pong:
        return _Pong(self, batch)

    # -- the journal (journal.py): PubAcks of JetStream -----------------------------

    def pong(self, batch: int) -> None:
        """nats-server answered the PING that followed ``batch``."""
        if batch > self.ponged:
            self.ponged = batch
        self._advance()

    def _advance(self) -> None:
        limit = self.ponged
        journal = self.journal
        if journal:
            first = min(journal) - 1
            if first < limit:
                limit = first
        self.confirm(limit)

    def journal_sent(self, batch: int) -> None:
        """One journal write of ``batch`` went out; its PubAck is due."""
        entry = self.journal.get(batch)
        if entry is None:
            self.journal[batch] = [1, time.monotonic()]
        else:
            entry[0] += 1

    def journal_acked(self, batch: int, ok: bool) -> None:
        """JetStream answered one journal write of ``batch`` (``ok``: stored)."""
        entry = self.journal.get(batch)
        if entry is None:
            return  # given up on already (journal_failed)
        if not ok:
            self.journal_failed()
            return
        entry[0] -= 1
        if entry[0] <= 0:
            del self.journal[batch]
            self._advance()

    def journal_failed(self) -> int:
        """A journal write was refused or not answered in time: every acknowledgement
        not confirmed yet is dropped with its connection (they resend), as when the NATS
        connection breaks (some of them may rely on the failed write)."""
        self.journal_errors += 1
        self.broken = max(self.broken, self.batch_no - 1)
        self._lost_upto(self.broken)
        for batch in [b for b in self.journal if b <= self.broken]:
            del self.journal[batch]
        failed = self._fail({w[1] for w in self.waiting})
        self._advance()
        return failed

    # -- the transport's side ---------------------------------------------------------

    def gate(self, conn: Any, release: Release) -> None:
        need = self.need.get(conn)
        if need is not None:
            if need > self.confirmed:
                if need <= self.broken:  # its message went down with the old connection
                    self._fail({conn})
                    release(False)
                    return
                self.waiting.append((need, conn, release, time.monotonic()))
                return
            del self.need[conn]
        self._pass(conn, release)

    def _pass(self, conn: Any, release: Release) -> None:
        inner = self.inner
        if inner is None:
            release(True)
        else:
            inner(conn, release)

    def confirm(self, batch: int) -> None:
        """nats-server has every batch up to ``batch``: release what waited for them.
        A connection's entries keep their order (its needs never decrease)."""
        if batch <= self.confirmed:
            return
        self.confirmed = batch
        need = self.need
        ready = [w for w in self.waiting if w[0] <= batch]
        if ready:
            self.waiting = [w for w in self.waiting if w[0] > batch]
        for _, conn, release, _t in ready:
            if need.get(conn, batch + 1) <= batch:
                del need[conn]
            self._pass(conn, release)
        if need:
            # Connections held whose output never came to the gate (closed before their
            # acknowledgement was flushed): no longer gated, and not kept alive here.
            for conn in [c for c, n in need.items() if n <= batch]:
                del need[conn]

    def confirm_all(self) -> None:
        """Nothing is in flight any more (never connected: local delivery only)."""
        self.confirm(self.batch_no - 1)

    def expire(self, now: float) -> int:
        """Drop (with their connections) outputs that waited longer than ACK_WAIT_LIMIT."""
        if self.journal and now - min(e[1] for e in self.journal.values()) >= ACK_WAIT_LIMIT:
            self.timeouts += 1
            return self.journal_failed()
        if not self.waiting or now - self.waiting[0][3] < ACK_WAIT_LIMIT:
            return 0
        late = {w[1] for w in self.waiting if now - w[3] >= ACK_WAIT_LIMIT}
        self.timeouts += len(late)
        return self._fail(late)

    def connection_lost(self) -> int:
        """The NATS connection broke: whatever was sent and not confirmed may be lost
        (PONGs of the old connection never come): those acknowledgements never leave."""
        self.broken = self.batch_no - 1
        self._lost_upto(self.broken)
        for batch in [b for b in self.journal if b <= self.broken]:
            del self.journal[batch]  # their PubAcks may never come
        return self._fail({w[1] for w in self.waiting})

    def _lost_upto(self, last: int) -> None:
        if last > self.confirmed:
            self.lost.append((self.confirmed + 1, last))
            del self.lost[:-64]

    def maybe_lost(self, batch: int) -> bool:
        """Was ``batch`` sent, not confirmed, and then its connection (or its journal
        write) failed? Its messages may never have reached nats-server."""
        return any(first <= batch <= last for first, last in self.lost)

    def _fail(self, conns: set[Any]) -> int:
        # The whole output of those connections: what follows a dropped ack must not leave.
        dropped = [w for w in self.waiting if w[1] in conns]
        self.waiting = [w for w in self.waiting if w[1] not in conns]
        for conn in conns:
            self.need.pop(conn, None)
        for _, _conn, release, _t in dropped:
            release(False)
        return len(conns)
