"""The configuration model under its historical name.

The model lives in :mod:`mqttfast.app.schema` (every key, type, default, bound and
doc string) and :mod:`mqttfast.app.loader` (TOML, mosquitto.conf and flags into one
:class:`Config`; the mapping to the core's BrokerSettings). This module re-exports
both so ``from mqttfast.app.config import Config, ConfigError, load_toml`` keeps
working; new code imports from those modules.
"""

from __future__ import annotations

from .loader import (
    apply_flags,
    broker_settings,
    from_dict,
    load_file,
    load_mosquitto,
    load_toml,
    resolve_paths,
)
from .schema import (
    LISTENER_DOCS,
    SECTIONS,
    Config,
    ConfigError,
    PluginTable,
    reference_rows,
)

__all__ = [
    "Config",
    "ConfigError",
    "PluginTable",
    "SECTIONS",
    "LISTENER_DOCS",
    "reference_rows",
    "from_dict",
    "load_toml",
    "load_mosquitto",
    "load_file",
    "apply_flags",
    "resolve_paths",
    "broker_settings",
]
