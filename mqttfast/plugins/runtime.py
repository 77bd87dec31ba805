"""The ``[[plugin]]`` and ``[[bridge]]`` config tables, and starting/stopping what they name.

Used by both the ``mqttfast`` command and :class:`mqttfast.Broker`:
``Extensions.prepare`` (before listening: plug-in hooks must see the first client),
``await ext.start(api)`` (once listening), ``await ext.stop(server)``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .base import Plugin
from .manager import PluginError, PluginHooks, entry_point_plugins, load_plugin

log = logging.getLogger("mqttfast.plugins")


@dataclass
class PluginSpec:
    """One ``[[plugin]]`` table: ``class = "pkg.mod:Class"`` or ``entry_point = "name"``
    (from the ``mqttfast.plugins`` group), and an ``options`` table."""

    class_: str = ""
    entry_point: str = ""
    options: dict = field(default_factory=dict)


def parse_plugin_tables(value: Any, errors: list[str]) -> list[PluginSpec]:
    """Validate ``[[plugin]]`` tables; errors as ``plugin[i].key: message``."""
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        errors.append("plugin: expected array of tables ([[plugin]])")
        return []
    out: list[PluginSpec] = []
    for i, table in enumerate(value):
        p = f"plugin[{i}]"
        if not isinstance(table, dict):
            errors.append(f"{p}: expected table")
            continue
        spec = PluginSpec()
        for key, v in table.items():
            if key in ("class", "entry_point"):
                if not isinstance(v, str) or not v:
                    errors.append(f"{p}.{key}: expected non-empty string")
                    continue
                setattr(spec, "class_" if key == "class" else key, v)
            elif key == "options":
                if not isinstance(v, dict):
                    errors.append(f"{p}.options: expected table")
                    continue
                spec.options = v
            else:
                errors.append(f"{p}.{key}: unknown key")
        if bool(spec.class_) == bool(spec.entry_point):
            errors.append(f"{p}: exactly one of 'class' or 'entry_point' is required")
        out.append(spec)
    return out


def load_specs(specs: Iterable[PluginSpec]) -> list[Plugin]:
    plugins: list[Plugin] = []
    for i, spec in enumerate(specs):
        try:
            if spec.class_:
                plugins.append(load_plugin(spec.class_, spec.options))
            else:
                found = entry_point_plugins([spec.entry_point], {spec.entry_point: spec.options})
                if not found:
                    raise PluginError(
                        f"no entry point {spec.entry_point!r} in group 'mqttfast.plugins'"
                    )
                plugins.extend(found)
        except PluginError as err:
            raise PluginError(f"plugin[{i}]: {err}") from None
    return plugins


class Extensions:
    """The plug-ins and bridges of one broker."""

    def __init__(self, core: Any, hooks: PluginHooks | None, bridge_cfgs: list) -> None:
        self.core = core
        self.hooks = hooks
        self.bridge_cfgs = bridge_cfgs
        self.bridges: list[Any] = []
        self.api: Any = None

    @classmethod
    def prepare(cls, cfg: Any, core: Any, extra: Iterable[Plugin | str] = ()) -> Extensions:
        plugins = load_specs(getattr(cfg, "plugin", None) or [])
        for p in extra:
            plugins.append(load_plugin(p) if isinstance(p, str) else p)
        hooks = None
        if plugins:
            hooks = PluginHooks(core.hooks, plugins)
            hooks.install(core)
        return cls(core, hooks, list(getattr(cfg, "bridge", None) or []))

    async def start(self, api: Any = None) -> None:
        if api is None:
            from mqttfast.embed import BrokerAPI

            api = BrokerAPI(self.core)
        self.api = api
        if self.hooks is not None:
            await self.hooks.start(api)
            log.info("plug-ins: %s", ", ".join(p.name for p in self.hooks.plugins))
        if self.bridge_cfgs:
            from mqttfast.app.bridge import Bridge

            for bc in self.bridge_cfgs:
                bridge = Bridge(api, bc)
                bridge.start()
                self.bridges.append(bridge)

    async def stop(self, server: Any = None) -> None:
        """Bridges first, then the listeners and clients, then the plug-ins (they see
        the last disconnects)."""
        for bridge in self.bridges:
            await bridge.stop()
        self.bridges.clear()
        if server is not None:
            await server.stop()
        if self.hooks is not None:
            await self.hooks.stop()
        api = self.api
        if api is not None and hasattr(api, "_close_subscriptions"):
            await api._close_subscriptions()


__all__ = ["PluginSpec", "parse_plugin_tables", "load_specs", "Extensions"]
