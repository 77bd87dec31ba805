"""The plug-in interface: :class:`Plugin` and the small objects its hooks receive.

Every hook is optional and may be a plain method or an ``async def``. A plug-in
that does not define a hook costs nothing for that hook: the manager
(:mod:`mqttfast.plugins.manager`) only calls what a class overrides.
See docs/plugins.md.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mqttfast.codec.packets import Properties

if TYPE_CHECKING:
    from mqttfast.core.message import Message
    from mqttfast.plugins.api import BrokerAPI

# What a hook may return: the value itself, or an awaitable of it (async hooks).
MaybeAwaitable = Any | Awaitable[Any]


@dataclass(slots=True, frozen=True)
class ClientInfo:
    """Who a hook is about. ``peer`` is "host:port" (or "unix:..."; "" for internal)."""

    client_id: str
    username: str | None = None
    peer: str = ""
    protocol_version: int = 4


@dataclass(slots=True, frozen=True)
class DisconnectReason:
    """Why a client went away.

    ``by`` is "client" (it sent DISCONNECT; ``reason_code`` is the code it sent),
    "server" (the broker closed it; the code sent to a v5 client, or None) or
    "network" (the connection was lost; ``reason_code`` None).
    """

    by: str
    reason_code: int | None = None


class Plugin:
    """Base class of broker plug-ins. Override only the hooks you need.

    Constructed as ``Plugin(options)`` with the ``options`` table of its
    ``[[plugin]]`` config entry (``self.options``). ``self.broker`` is the
    :class:`mqttfast.plugins.api.BrokerAPI` of the broker it runs in (set before
    :meth:`start`): ``await self.broker.publish(...)``, ``self.broker.clients`` ...

    Hooks (each sync or ``async``; an exception is logged and isolated):

    * ``authenticate(client, username, password)`` -> None (no opinion: ask the
      next plug-in, then the password file), True (accept), False (0x86), or a
      CONNACK reason code.
    * ``authorise_publish(client, topic, qos, retain)`` -> None/True or False
      (dropped; v5 publishers get 0x87).
    * ``authorise_subscribe(client, topic_filter, qos)`` -> None/True or False
      (SUBACK 0x87 / 0x80). Must be synchronous (SUBACK is not deferred).
    * ``on_publish(client, message)`` before routing. ``message`` is the broker's
      message: set ``message.topic``, ``message.payload`` (bytes) or
      ``message.properties`` to change it. Return None/True to go on, False to
      drop it (0x80 Unspecified error) or a PUBACK reason code >= 0x80 to drop it
      with that code (v5 publishers see it; 3.1.1 ones get a normal ack).
    * ``on_deliver(client, message)`` before a message goes to a subscriber;
      return False to skip that subscriber. A synchronous hook on the hot path:
      keep it cheap (an async one is only notified).
    * ``on_subscribe(client, topic_filter, qos)``, ``on_unsubscribe(client, topic_filter)``
    * ``on_connect(client)``, ``on_disconnect(client, reason: DisconnectReason)``
    * ``on_tick(now)`` every ``tick_interval`` seconds (a ``time.monotonic()`` value).
    * ``start(broker)`` / ``stop()``: life cycle (open files, start workers, flush).
    * ``reload()`` on SIGHUP (re-read files); an exception is logged.

    Plug-ins see clients only as :class:`ClientInfo` values and act on the broker
    only through ``self.broker`` (e.g. ``self.broker.pause_reading(client_id)``).
    """

    #: Seconds between ``on_tick`` calls.
    tick_interval: float = 1.0
    #: Seconds an async hook may take before it counts as failed.
    hook_timeout: float = 10.0

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options: dict[str, Any] = dict(options or {})
        self.broker: BrokerAPI | None = None

    @property
    def name(self) -> str:
        return type(self).__name__

    # -- life cycle -------------------------------------------------------
    def start(self, broker: BrokerAPI) -> MaybeAwaitable:
        """Called once the broker is listening."""

    def stop(self) -> MaybeAwaitable:
        """Called when the broker stops, before its listeners close."""

    # The hooks are deliberately not defined here: the manager detects which ones a
    # plug-in has with ``getattr``. Their signatures are listed in the class docstring.


HOOK_NAMES = (
    "authenticate",
    "authorise_publish",
    "authorise_subscribe",
    "on_publish",
    "on_deliver",
    "on_subscribe",
    "on_unsubscribe",
    "on_connect",
    "on_disconnect",
    "on_tick",
)

__all__ = ["Plugin", "ClientInfo", "DisconnectReason", "Properties", "HOOK_NAMES"]

if TYPE_CHECKING:  # for documentation tools
    _Message = Message
