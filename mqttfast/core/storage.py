"""The durable-state seam: what the core tells a storage backend, and the no-op default.

The core calls these methods where durable state changes; a backend (the app
layer's SQLite store, ``mqttfast.app.persistence``) records them. The default
:class:`MemoryStorage` does nothing, so a broker without persistence pays
nothing but an attribute test.

Only *persistent* sessions are recorded: the backend decides in
:meth:`Storage.session_update` (called after CONNECT) and marks the session
``session.persisted = True``. Every per-message call site is guarded by that
flag, so clean-session and QoS 0 traffic never reaches the backend.

Group commit: the backend buffers changes in memory. The transport builds one
output flusher and hands it to :meth:`Storage.bind_output`, where the backend
installs its own hooks, so every way of starting a broker gets the backend's
policy (group-commit window included):

* ``flusher.commit()`` -- called before a turn's bytes are written (a
  synchronous commit; the default for a durable backend: :meth:`flush`);
* ``flusher.delay()`` -- seconds to hold the turn's output so that more changes
  join the pending commit (:meth:`flush_delay`);
* ``flusher.gate(conn, release)`` -- pipelined backends: the transport hands
  over the bytes of a turn for core connection ``conn`` instead of writing
  them, and the backend calls ``release(True)`` once what they rely on is
  durable (after that connection's earlier output), or ``release(False)`` if
  it never will be (the transport then drops the bytes and the connection:
  nothing unstored is acknowledged).

A PUBACK/PUBREC (or anything else) therefore leaves only after the state that
justifies it is committed ("strict"); a "relaxed" backend commits at most
every N seconds instead. A strict backend may leave changes whose loss is
harmless (a delivery removed after its PUBACK: at worst a QoS 1 duplicate)
for a later commit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .broker import BrokerCore
    from .message import Delivery, Message
    from .session import Session
    from .subscriptions import SubEntry


class Storage:
    """Interface and no-op implementation. ``durable`` is False: nothing survives."""

    durable = False
    # What a failed commit does (app config persistence.on_error): "stop" or "degrade".
    on_error = "stop"

    # -- retained messages (one per topic) -----------------------------------
    def retained_put(self, msg: Message) -> None: ...
    def retained_delete(self, topic: str) -> None: ...

    # -- sessions --------------------------------------------------------------
    def session_update(self, session: Session) -> None:
        """After CONNECT: persist the session if its expiry is > 0, else forget it."""

    def session_put(self, session: Session) -> None:
        """The session row changed: expiry, offline deadline, pending (delayed) will."""

    def session_delete(self, session: Session) -> None:
        """The session ended: forget it with its subscriptions and messages."""

    def subscription_put(self, session: Session, entry: SubEntry) -> None: ...
    def subscription_delete(self, session: Session, full_filter: str) -> None: ...

    # -- outgoing QoS 1/2 (queued: pid 0; in flight: the packet id) ----------
    def delivery_put(self, session: Session, d: Delivery, pid: int) -> None:
        """``d`` is queued (pid 0) or in flight (its packet id, state ``d.state``): a new
        delivery, or one that moved from the queue into flight, or PUBREC received."""

    def delivery_remove(self, session: Session, d: Delivery) -> None:
        """``d`` is gone: acknowledged, or dropped unsent (expired in the queue, too large
        for the client), or given to another member of its shared subscription. Also
        called for a delivery never put (a new one too large): then a no-op."""

    # -- incoming QoS 2 packet ids awaiting PUBREL ---------------------------
    def qos2_put(self, session: Session, pid: int) -> None: ...
    def qos2_delete(self, session: Session, pid: int) -> None: ...

    # -- life cycle ------------------------------------------------------------
    def bind_output(self, flusher: Any) -> None:
        """The transport's output flusher exists: install this backend's hooks on it."""
        if self.durable:
            flusher.commit = self.flush
            flusher.delay = self.flush_delay

    def flush(self) -> None:
        """End of an event-loop turn, before socket writes: commit (per policy)."""

    def flush_delay(self) -> float:
        """Seconds the transport should hold this turn's output to let more changes
        join the pending commit (group commit); 0 = flush now."""
        return 0.0

    def tick(self, now: float) -> None:
        """Periodic: commit what is due even when no socket was written."""

    def recover(self, broker: BrokerCore) -> dict[str, Any]:
        """Load the stored state into a fresh broker; return counts for the log."""
        return {}

    def close(self) -> None:
        """Final commit; release files."""


class MemoryStorage(Storage):
    """Keeps nothing: the in-memory broker (tests, ``--persistence off``)."""


__all__ = ["Storage", "MemoryStorage"]
