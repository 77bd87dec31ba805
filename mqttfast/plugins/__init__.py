"""Broker plug-ins: the :class:`Plugin` interface, its loader, its dispatcher, the
:class:`BrokerAPI` plug-ins talk to, and the bundled plug-ins.

* :mod:`.base`: ``Plugin``, ``ClientInfo``, ``DisconnectReason`` (the interface);
* :mod:`.api`: ``BrokerAPI`` (publish, Python subscriptions, views, flow control);
* :mod:`.loader`: the one loader (dotted paths, entry points, config tables);
* :mod:`.manager`: ``PluginHooks``, the one hook dispatcher;
* :mod:`.legacy_auth`: the deprecated ``AuthPlugin`` interface, run as a Plugin.

Bundled (each loadable by dotted path in a ``[[plugin]]`` config table):

* ``mqttfast.plugins.message_logger:MessageLogger``: messages matching topic
  filters to SQLite or JSON lines;
* ``mqttfast.plugins.webhook:Webhook``: HTTP POST on connect/disconnect/publish;
* ``mqttfast.plugins.http_auth:HttpAuth``: authentication and authorisation by an
  HTTP endpoint (the EMQX pattern).

See docs/plugins.md.
"""

from .base import ClientInfo, DisconnectReason, Plugin, Properties
from .loader import ENTRY_POINT_GROUP, PluginError, entry_point_plugins, load_plugin, load_tables
from .manager import PluginHooks

__all__ = [
    "Plugin",
    "ClientInfo",
    "DisconnectReason",
    "Properties",
    "PluginHooks",
    "PluginError",
    "load_plugin",
    "load_tables",
    "entry_point_plugins",
    "ENTRY_POINT_GROUP",
]
