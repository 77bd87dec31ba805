"""Adapter from the core's hook seam (:class:`mqttfast.core.hooks.Hooks`) to :class:`Authenticator`.

Wiring, in the app layer::

    auth = Authenticator(password_file=..., acl_file=..., allow_anonymous=...,
                         plugins=[load_plugin(spec, options)])
    broker = BrokerCore(settings, hooks=SecurityHooks(auth))
    loop.add_signal_handler(signal.SIGHUP, auth.reload)

Notes for the integrator:

* ``authenticate`` here is synchronous because the core's seam is; PBKDF2 at
  the default strength costs ~0.1-0.3 s of CPU per attempt, which then blocks
  the event loop. When the core can defer CONNACK, call
  ``Authenticator.authenticate_async`` instead (hashing in a worker thread).
  The per-source rate limiter bounds how often one address can cost that.
* ``authorise_receive`` is not yet called by the core; it should be checked
  for every delivery (retained messages on subscribe included) so a
  wildcard subscription that overlaps a ``deny`` never delivers the denied
  topics. ``authorise_subscribe`` alone cannot guarantee that.
* Shared subscriptions (``$share/<group>/<filter>``) are checked on ``<filter>``.
"""

from __future__ import annotations

from typing import Any

from mqttfast.core.hooks import Hooks

from .auth import Authenticator

__all__ = ["SecurityHooks", "strip_share"]


def strip_share(topic_filter: str) -> str:
    """``$share/group/a/b`` -> ``a/b``; anything else unchanged."""
    if topic_filter.startswith("$share/"):
        _, _, rest = topic_filter[len("$share/") :].partition("/")
        return rest
    return topic_filter


class SecurityHooks(Hooks):
    def __init__(self, authenticator: Authenticator) -> None:
        self.auth = authenticator

    def authenticate(self, client: Any, username: str | None, password: bytes | None) -> int:
        return int(
            self.auth.authenticate(
                client.client_id, username, password, getattr(client, "peer", None)
            )
        )

    def authorise_publish(self, client: Any, topic: str, qos: int, retain: bool) -> bool:
        return self.auth.authorise_publish(client.client_id, client.username, topic)

    def authorise_subscribe(self, client: Any, topic_filter: str, qos: int) -> bool:
        return self.auth.authorise_subscribe(
            client.client_id, client.username, strip_share(topic_filter)
        )

    def authorise_receive(self, client: Any, topic: str) -> bool:
        if client.client_id.startswith("\x00"):
            # The broker's own subscribers (bridges, the embedding API): no MQTT client
            # id can hold U+0000 [MQTT-1.5.4-2]; an ACL would deny them as anonymous.
            return True
        return self.auth.authorise_receive(client.client_id, client.username, topic)
