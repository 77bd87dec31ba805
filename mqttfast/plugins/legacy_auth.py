"""The deprecated ``AuthPlugin`` interface (``[[auth.plugin]]``), run as a Plugin.

Before issue 13 authentication plug-ins had their own base class, loader and
dispatcher. Their classes keep working: :func:`wrap_auth_plugin` turns one into a
:class:`~mqttfast.plugins.base.Plugin` whose hooks call the old methods:

* ``authenticate(client_id, username, password, peer)`` runs in a worker thread (it
  was allowed to block), bounded by the plug-in's ``hook_timeout``;
* ``authorise_publish`` / ``authorise_subscribe`` (on the filter without its
  ``$share/group/`` prefix) / ``authorise_receive`` (as ``on_deliver``).

One difference: a plug-in's "allow" no longer overrides the ACL file; both must allow
(the plug-ins and the files are checked one after the other, a "deny" wins).
Only the methods a class overrides become hooks, so an authentication-only plug-in
adds nothing to the per-message path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from .base import ClientInfo, Plugin

Peer = tuple[Any, ...] | str | None


class AuthPlugin:
    """Deprecated base class of authentication/authorisation plug-ins: write a
    :class:`~mqttfast.plugins.base.Plugin` with the same hooks instead.

    Every method returns ``None`` ("no opinion") unless overridden; ``authenticate``
    may block (it runs in a worker thread)."""

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options: Mapping[str, Any] = dict(options or {})

    def authenticate(
        self, client_id: str, username: str | None, password: bytes | None, peer: Peer
    ) -> bool | int | None:
        return None

    def authorise_publish(self, client_id: str, username: str | None, topic: str) -> bool | None:
        return None

    def authorise_subscribe(
        self, client_id: str, username: str | None, topic_filter: str
    ) -> bool | None:
        return None

    def authorise_receive(self, client_id: str, username: str | None, topic: str) -> bool | None:
        return None

    def reload(self) -> None:
        """Called on SIGHUP; raise to report a problem (the plug-in keeps running)."""


def _strip_share(topic_filter: str) -> str:
    if topic_filter.startswith("$share/"):
        return topic_filter[len("$share/") :].partition("/")[2]
    return topic_filter


class _Wrapped(Plugin):
    """The hooks of one AuthPlugin instance (only the overridden ones are attached)."""

    def __init__(self, legacy: AuthPlugin) -> None:
        super().__init__(legacy.options)
        self.legacy = legacy

    @property
    def name(self) -> str:
        return type(self.legacy).__name__

    def reload(self) -> None:
        self.legacy.reload()


def _authenticate(self: _Wrapped, client: ClientInfo, username: str | None, password: Any) -> Any:
    loop = asyncio.get_running_loop()
    return loop.run_in_executor(
        None, self.legacy.authenticate, client.client_id, username, password, client.peer
    )


def _authorise_publish(
    self: _Wrapped, client: ClientInfo, topic: str, qos: int, retain: bool
) -> Any:
    answer = self.legacy.authorise_publish(client.client_id, client.username, topic)
    return None if answer is None else bool(answer)


def _authorise_subscribe(self: _Wrapped, client: ClientInfo, topic_filter: str, qos: int) -> Any:
    answer = self.legacy.authorise_subscribe(
        client.client_id, client.username, _strip_share(topic_filter)
    )
    return None if answer is None else bool(answer)


def _on_deliver(self: _Wrapped, client: ClientInfo, message: Any) -> Any:
    answer = self.legacy.authorise_receive(client.client_id, client.username, message.topic)
    return None if answer is None else bool(answer)


_HOOKS = {
    "authenticate": ("authenticate", _authenticate),
    "authorise_publish": ("authorise_publish", _authorise_publish),
    "authorise_subscribe": ("authorise_subscribe", _authorise_subscribe),
    "authorise_receive": ("on_deliver", _on_deliver),
}


def wrap_auth_plugin(legacy: AuthPlugin) -> Plugin:
    """A Plugin running ``legacy``'s overridden methods as hooks."""
    attrs = {
        hook: fn
        for method, (hook, fn) in _HOOKS.items()
        if getattr(type(legacy), method) is not getattr(AuthPlugin, method)
    }
    cls = type(f"AuthPlugin[{type(legacy).__name__}]", (_Wrapped,), attrs)
    plugin: Plugin = cls(legacy)
    return plugin


__all__ = ["AuthPlugin", "wrap_auth_plugin"]
