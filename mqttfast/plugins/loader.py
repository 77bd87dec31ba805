"""The one plug-in loader: ``"package.module:Class"`` paths, entry points and config
tables become :class:`~mqttfast.plugins.base.Plugin` instances.

Classes written for the deprecated ``AuthPlugin`` interface (``[[auth.plugin]]``)
load too: they are wrapped in a Plugin (:mod:`mqttfast.plugins.legacy_auth`), so one
dispatcher (:class:`~mqttfast.plugins.manager.PluginHooks`) runs every extension.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from .base import Plugin
from .legacy_auth import AuthPlugin, wrap_auth_plugin

log = logging.getLogger("mqttfast.plugins")

ENTRY_POINT_GROUP = "mqttfast.plugins"


class PluginError(ValueError):
    """A plug-in could not be loaded (bad path, not a Plugin, constructor failed)."""


def import_class(path: str) -> type:
    """The class named by ``"package.module:Class"`` (or ``package.module.Class``)."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise PluginError(f"plug-in {path!r}: expected 'package.module:Class'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise PluginError(f"plug-in {path!r}: cannot import {module_name}: {exc}") from None
    cls = getattr(module, attr, None)
    if not isinstance(cls, type):
        raise PluginError(f"plug-in {path!r}: {attr} is not a class")
    return cls


def instantiate(cls: type, options: Mapping[str, Any] | None, what: str) -> Plugin:
    """A Plugin from a Plugin subclass or (wrapped) a deprecated AuthPlugin subclass."""
    if not issubclass(cls, (Plugin, AuthPlugin)):
        raise PluginError(f"{what}: {cls.__name__} is not a mqttfast.Plugin subclass")
    try:
        obj = cls(dict(options or {}))
    except Exception as exc:
        raise PluginError(f"{what}: {exc}") from None
    return obj if isinstance(obj, Plugin) else wrap_auth_plugin(obj)


def load_plugin(path: str, options: Mapping[str, Any] | None = None) -> Plugin:
    """Instantiate ``"package.module:Class"`` (or ``package.module.Class``) with options."""
    return instantiate(import_class(path), options, f"plug-in {path!r}")


def entry_point_plugins(
    names: Iterable[str] | None = None, options: Mapping[str, Mapping[str, Any]] | None = None
) -> list[Plugin]:
    """Plug-ins installed under the ``mqttfast.plugins`` entry-point group (all, or
    only ``names``), in name order."""
    from importlib.metadata import entry_points

    wanted = set(names) if names is not None else None
    out: list[Plugin] = []
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if wanted is not None and ep.name not in wanted:
            continue
        try:
            cls = ep.load()
        except Exception as exc:
            raise PluginError(f"entry point {ep.name!r}: {exc}") from None
        if not isinstance(cls, type):
            raise PluginError(f"entry point {ep.name!r}: not a mqttfast.Plugin subclass")
        out.append(instantiate(cls, (options or {}).get(ep.name, {}), f"entry point {ep.name!r}"))
    return out


def load_tables(tables: Iterable[Any], where: str = "plugin") -> list[Plugin]:
    """``[[plugin]]`` tables (:class:`mqttfast.app.schema.PluginTable`: ``class_``,
    ``entry_point``, ``options``), in order; PluginError names the table."""
    plugins: list[Plugin] = []
    for i, spec in enumerate(tables):
        try:
            if spec.class_:
                plugins.append(load_plugin(spec.class_, spec.options))
                continue
            found = entry_point_plugins([spec.entry_point], {spec.entry_point: spec.options})
            if not found:
                raise PluginError(
                    f"no entry point {spec.entry_point!r} in group {ENTRY_POINT_GROUP!r}"
                )
            plugins.extend(found)
        except PluginError as err:
            raise PluginError(f"{where}[{i}]: {err}") from None
    return plugins


__all__ = [
    "PluginError",
    "load_plugin",
    "load_tables",
    "import_class",
    "instantiate",
    "entry_point_plugins",
    "ENTRY_POINT_GROUP",
]
