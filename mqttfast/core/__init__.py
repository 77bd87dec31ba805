"""The socket-free broker core (no sockets, no asyncio). See docs/architecture.md.

Public seams
------------
``BrokerCore(settings, hooks, clock, router, storage)``
    Owns sessions, connections, the subscription store, the retained store and
    the timers. The transport calls ``broker.connection_made(sink, peer)`` once
    per socket and ``broker.tick(now)`` on a timer (keep alive, connect timeout,
    will delay, session expiry, $SYS); ``broker.shutdown()`` closes everyone
    (v5: DISCONNECT 0x8B). ``broker.publish(topic, payload, ...)`` injects a
    message as the broker itself. ``clock`` is any ``() -> float``; tests pass a
    ``FakeClock`` and drive time with ``clock.advance()`` + ``broker.tick()``.

``Connection`` (returned by ``connection_made``)
    ``packets_received(list)`` with decoded packets, ``protocol_violation(err,
    protocol_version)`` when the decoder raised ``MQTTError``,
    ``connection_lost()``, ``writing_paused()`` / ``writing_resumed()`` from the
    transport's flow control.

``Sink`` (``sink.py``, a Protocol implemented by the transport)
    ``write(bytes)``, ``writelines(parts)``, ``close()`` (flush, then close),
    ``pause_reading()``, ``resume_reading()``, ``get_write_buffer_size()``.
    Writes may be batched; the core never waits on them.

``ConnState`` (``states.py``)
    The connection states (an IntEnum): AWAIT_CONNECT, AUTHENTICATING, CONNECTED,
    CLOSED, AUTH_WAIT. Nobody compares a state with a bare number.

``Router`` (``router.py``)
    The one routing seam: ``publish(msg, now, publisher) -> matched``,
    ``subscribe``, ``unsubscribe``, ``drop_session``, ``redistribute``,
    ``retained_for``, and its ``filters`` (``DeliveryFilters``: receive_check,
    deliver_check, queue high/low water), given at construction.
    ``LocalRouter`` delivers in-process through ``outbound.py`` (encode once per
    shape, QoS 0 fast path, in-flight window, queue, back-pressure).

Packet handlers (``handlers.py``)
    One static table, packet class -> handler, handed to connections by the broker.

``Hooks`` (``hooks.py``)
    Authentication (plain and deferred), authorisation of publish, subscribe and
    receive, and MQTT 5 enhanced authentication (``auth_start`` /
    ``auth_continue``). Allow-all by default; ``mqttfast.app.scram`` is a worked
    SCRAM-SHA-256 example.

``BrokerSettings`` (``settings.py``)
    Every knob, with mosquitto-like defaults.
"""

from .broker import BrokerCore, FakeClock
from .connection import Connection
from .hooks import AuthStep, Hooks
from .message import Message
from .router import DeliveryFilters, LocalRouter, Router
from .settings import BrokerSettings
from .sink import Sink
from .states import ConnState

__all__ = [
    "BrokerCore",
    "BrokerSettings",
    "Connection",
    "ConnState",
    "DeliveryFilters",
    "Sink",
    "FakeClock",
    "Hooks",
    "AuthStep",
    "LocalRouter",
    "Router",
    "Message",
]
