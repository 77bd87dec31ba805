"""Broker plug-ins: the :class:`Plugin` interface, its manager and the bundled plug-ins.

Bundled (each loadable by dotted path in a ``[[plugin]]`` config table):

* ``mqttfast.plugins.message_logger:MessageLogger``: messages matching topic
  filters to SQLite or JSON lines;
* ``mqttfast.plugins.webhook:Webhook``: HTTP POST on connect/disconnect/publish;
* ``mqttfast.plugins.http_auth:HttpAuth``: authentication and authorisation by an
  HTTP endpoint (the EMQX pattern).

See docs/plugins.md.
"""

from .base import ClientInfo, DisconnectReason, Plugin, Properties
from .manager import ENTRY_POINT_GROUP, PluginError, PluginHooks, entry_point_plugins, load_plugin

__all__ = [
    "Plugin",
    "ClientInfo",
    "DisconnectReason",
    "Properties",
    "PluginHooks",
    "PluginError",
    "load_plugin",
    "entry_point_plugins",
    "ENTRY_POINT_GROUP",
]
