"""Authentication and authorisation seam. The default allows everything.

The core calls these synchronously on the connection's path; the app layer
(password files, ACLs, plug-ins) subclasses :class:`Hooks`. ``client`` is the
core :class:`~mqttfast.core.connection.Connection` (read ``client_id``,
``username``, ``peer``, ``protocol_version``).

Enhanced authentication (MQTT 5, 4.12): when CONNECT carries an
Authentication Method, :meth:`Hooks.auth_start` is asked; it returns ``None``
if it does not know the method (CONNACK 0x8C), or an :class:`AuthStep`.
``continue`` steps send AUTH 0x18 with the step's data and wait for the
client's AUTH, which goes to :meth:`Hooks.auth_continue`. The same pair runs
for re-authentication (AUTH 0x19 after CONNACK).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mqttfast.codec.constants import ReasonCode

AUTH_SUCCESS = "success"
AUTH_CONTINUE = "continue"
AUTH_FAIL = "fail"


class AuthStep:
    __slots__ = ("status", "data", "reason_code", "state")

    def __init__(
        self,
        status: str,
        data: bytes | None = None,
        reason_code: int = ReasonCode.NOT_AUTHORIZED,
        state: Any = None,
    ) -> None:
        self.status = status  # AUTH_SUCCESS / AUTH_CONTINUE / AUTH_FAIL
        self.data = data  # Authentication Data to send back
        self.reason_code = reason_code  # for AUTH_FAIL: the CONNACK/DISCONNECT reason code
        self.state = state  # handed back to auth_continue


class Hooks:
    """Allow-all defaults. Return values are plain ints/bools to keep the hot path cheap."""

    def authenticate(self, client: Any, username: str | None, password: bytes | None) -> int:
        """Plain CONNECT authentication. Return 0 to accept, or an MQTT 5 reason
        code (0x86 bad user name or password, 0x87 not authorised, ...); the core
        maps it to the 3.1.1 CONNACK return code for older clients."""
        return 0

    def begin_authenticate(
        self, client: Any, username: str | None, password: bytes | None, done: Callable[[int], None]
    ) -> int | None:
        """Plain CONNECT authentication that may finish later (e.g. password hashing in a
        worker thread). Return the reason code now, or None and call ``done(code)`` later
        on the broker's thread; meanwhile the core holds CONNACK and stops reading the
        connection. The default answers at once with :meth:`authenticate`."""
        return self.authenticate(client, username, password)

    def authorise_receive(self, client: Any, topic: str) -> bool:
        """May this client receive a message on ``topic``? Asked for every delivery
        (retained messages on subscribe included) only when a subclass overrides it;
        ``client`` is the session (``client_id``, ``username``)."""
        return True

    def authorise_publish(self, client: Any, topic: str, qos: int, retain: bool) -> bool:
        return True

    def authorise_subscribe(self, client: Any, topic_filter: str, qos: int) -> bool:
        return True

    def auth_start(self, client: Any, method: str, data: bytes | None) -> AuthStep | None:
        """First step of enhanced authentication; None = method not supported."""
        return None

    def auth_continue(self, client: Any, method: str, data: bytes | None, state: Any) -> AuthStep:
        return AuthStep(AUTH_FAIL, reason_code=ReasonCode.NOT_AUTHORIZED)

    # -- events (plug-ins: mqttfast.plugins) ----------------------------------
    # The core calls the methods below only where ``events`` is True (read once
    # per call site), so a broker without plug-ins pays nothing for them.
    events = False
    # message_received alone has its own flag, so plug-ins that only watch connections
    # and subscriptions add nothing per message either.
    messages = False

    def message_received(self, client: Any, msg: Any, done: Callable[[int], None]) -> int | None:
        """An authorised client PUBLISH (a core ``Message``) before routing; may change
        ``msg.topic/payload/properties``. Return 0 to route it, a PUBACK reason code
        >= 0x80 to drop it (v5 publishers are told), or None and call ``done(code)``
        later on the broker's thread (the acknowledgement waits)."""
        return 0

    def client_connected(self, client: Any) -> None:
        """After CONNACK was sent."""

    def client_disconnected(self, client: Any, reason_code: int | None, by: str) -> None:
        """A connected client is gone; ``by`` is "client" (DISCONNECT, its reason code),
        "server" (the code sent, None if none) or "network" (connection lost)."""

    def subscribed(self, client: Any, topic_filter: str, qos: int) -> None:
        """A subscription was granted (``topic_filter`` as sent, $share/.. included)."""

    def unsubscribed(self, client: Any, topic_filter: str) -> None:
        """A subscription was removed by UNSUBSCRIBE."""


# Mapping of MQTT 5 CONNACK reason codes to 3.1.1 return codes (3.2.2.3).
CONNACK_311: dict[int, int] = {
    0x00: 0,
    0x84: 1,  # unsupported protocol version
    0x85: 2,  # client identifier not valid
    0x88: 3,
    0x89: 3,
    0x80: 3,
    0x83: 3,
    0x97: 3,
    0x9F: 3,
    0x8A: 5,
    0x86: 4,  # bad user name or password
    0x87: 5,
    0x8C: 5,  # not authorised
    0x9C: 3,
    0x9D: 3,  # redirection: server unavailable here
}


def connack_code_for(protocol_version: int, reason_code: int) -> int:
    if protocol_version >= 5:
        return reason_code
    return CONNACK_311.get(reason_code, 3)
