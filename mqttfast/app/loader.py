"""Reading a configuration: TOML files, mosquitto.conf files and command-line flags
all end in the same :class:`~mqttfast.app.schema.Config`, and one function maps it to
the core's :class:`~mqttfast.core.settings.BrokerSettings`.

Validation collects every problem (unknown keys included) as ``"<key path>: <message>"``
(``listener[1].port: expected integer``; array indexes start at 0) and raises
:class:`ConfigError` with all of them; ``mqttfast check-config FILE`` prints them and
exits 2.

Precedence: built-in defaults < the file < command-line flags (:func:`apply_flags`).
Relative file paths in a file resolve against that file's directory.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tomllib
from collections.abc import Callable, Mapping
from typing import Any

from mqttfast.codec.constants import MAX_PACKET_SIZE
from mqttfast.core.settings import BrokerSettings

from .schema import (
    LISTENER_CHECKS,
    LISTENER_PATHS,
    SECTIONS,
    Config,
    ConfigError,
    ListenerConfig,
    PluginTable,
    sections,
    toml_key,
)

log = logging.getLogger("mqttfast")

ADMIN_TOKEN_ENV = "MQTTFAST_ADMIN_TOKEN"
# No listener configured: these addresses only (mosquitto 2's "local only mode").
LOCAL_ONLY = ("127.0.0.1", "::1")


def _type_of(annotation: Any) -> tuple[type, bool]:
    """(base type, optional) of a field annotation string like 'int | None'."""
    text = str(annotation).replace(" ", "")
    optional = text.endswith("|None")
    base = text.removesuffix("|None")
    types = {"int": int, "float": float, "bool": bool, "str": str, "dict": dict, "list": list}
    return {**types, "list[str]": StrList}.get(base, object), optional


class StrList(list):
    """The type of a ``list[str]`` key (an array whose items must be strings)."""


_TYPE_NAMES = {
    int: "integer",
    float: "number",
    bool: "boolean",
    str: "string",
    dict: "table",
    list: "array",
    StrList: "array",
}


def _check_value(
    path: str, value: Any, typ: type, checks: dict[str, Any], errors: list[str]
) -> Any:
    """The value converted to ``typ`` or None after appending an error."""
    is_bool = isinstance(value, bool)
    if typ is int:
        ok = isinstance(value, int) and not is_bool
    elif typ is float:
        ok = isinstance(value, (int, float)) and not is_bool
        if ok:
            value = float(value)
    elif typ is object:
        ok = True
    elif typ is StrList:
        ok = isinstance(value, list)
        if ok and not all(isinstance(v, str) for v in value):
            errors.append(f"{path}: expected array of strings")
            return None
    else:
        ok = isinstance(value, typ)
    if not ok:
        errors.append(
            f"{path}: expected {_TYPE_NAMES.get(typ, typ.__name__)}, got {_describe(value)}"
        )
        return None
    lo, hi, choices = checks.get("lo"), checks.get("hi"), checks.get("choices")
    if lo is not None and value < lo:
        errors.append(f"{path}: must be >= {lo:g}, got {value}")
        return None
    if hi is not None and value > hi:
        errors.append(f"{path}: must be <= {hi:g}, got {value}")
        return None
    if choices:
        match = next((c for c in choices if c.lower() == str(value).lower()), None)
        if match is None:
            errors.append(f"{path}: must be one of {', '.join(choices)}, got {value!r}")
            return None
        value = match
    return value


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


def _fill(
    obj: Any,
    table: Any,
    path: str,
    errors: list[str],
    present: set[str],
    checks_of: Callable[[dataclasses.Field], dict[str, Any]],
) -> None:
    if not isinstance(table, dict):
        errors.append(f"{path}: expected table, got {_describe(table)}")
        return
    fields = {toml_key(f.name): f for f in dataclasses.fields(obj)}
    for key, value in table.items():
        kpath = f"{path}.{key}"
        f = fields.get(key)
        if f is None:
            errors.append(f"{kpath}: unknown key")
            continue
        present.add(kpath)
        default = getattr(obj, f.name)
        if dataclasses.is_dataclass(default):
            _fill(default, value, kpath, errors, present, checks_of)
            continue
        typ, _ = _type_of(f.type)
        converted = _check_value(kpath, value, typ, checks_of(f), errors)
        if converted is not None:
            setattr(obj, f.name, converted)


def _meta_checks(f: dataclasses.Field) -> dict[str, Any]:
    return {k: f.metadata.get(k) for k in ("lo", "hi", "choices")}


def from_dict(data: dict[str, Any], source: str = "", base_dir: str | None = None) -> Config:
    """Validate a parsed TOML document (or a translated mosquitto.conf) into a Config.
    Relative file paths resolve against ``base_dir`` (the file's directory; None: the
    working directory). Raises ConfigError with every problem found."""
    cfg = Config(source=source)
    errors: list[str] = []
    present = cfg.present
    for key, value in data.items():
        if key == "listener":
            if isinstance(value, dict):
                value = [value]
            if not isinstance(value, list):
                errors.append(
                    f"listener: expected array of tables ([[listener]]), got {_describe(value)}"
                )
                continue
            for i, table in enumerate(value):
                lc = ListenerConfig()
                _fill(
                    lc,
                    table,
                    f"listener[{i}]",
                    errors,
                    present,
                    lambda f: LISTENER_CHECKS.get(f.name, {}),
                )
                cfg.listener.append(lc)
        elif key == "plugin":
            cfg.plugin.extend(_plugin_tables(value, "plugin", errors))
        elif key == "bridge":
            from mqttfast.app.bridge import parse_bridge_tables

            cfg.bridge.extend(parse_bridge_tables(value, errors))
        elif key in SECTIONS:
            _fill(getattr(cfg, key), value, key, errors, present, _meta_checks)
        else:
            errors.append(f"{key}: unknown key")
    _check_listeners(cfg, errors)
    _check_auth(cfg, errors)
    if base_dir is not None:
        resolve_paths(cfg, base_dir)
    if errors:
        raise ConfigError(errors, source, cfg)
    return cfg


def _plugin_tables(value: Any, where: str, errors: list[str]) -> list[PluginTable]:
    """``[[plugin]]`` (or ``[[auth.plugin]]``) tables; errors as ``plugin[i].key: ...``."""
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        errors.append(f"{where}: expected array of tables ([[{where}]]), got {_describe(value)}")
        return []
    out: list[PluginTable] = []
    for i, table in enumerate(value):
        p = f"{where}[{i}]"
        spec = PluginTable()
        _fill(spec, table, p, errors, set(), _meta_checks)
        if isinstance(table, dict) and bool(spec.class_) == bool(spec.entry_point):
            errors.append(f"{p}.class: exactly one of 'class' or 'entry_point' is required")
        out.append(spec)
    return out


def resolve_paths(cfg: Config, base_dir: str) -> None:
    """Relative file paths of a config file resolve against its directory (as systemd
    units and mosquitto users expect), not against the broker's working directory."""

    def fix(obj: Any, name: str) -> None:
        value = getattr(obj, name)
        if isinstance(value, str) and value and not os.path.isabs(value):
            setattr(obj, name, os.path.normpath(os.path.join(base_dir, value)))

    # Only what the file says: a default (data_dir "mqttfast-data") stays relative to the
    # working directory, as without a file.
    for section, obj in sections(cfg):
        for f in dataclasses.fields(obj):
            if f.metadata.get("path") and f"{section}.{toml_key(f.name)}" in cfg.present:
                fix(obj, f.name)
    for lc in cfg.listener:
        for name in LISTENER_PATHS:
            fix(lc, name)  # their defaults are None: anything set came from the file
    for bc in cfg.bridge:
        for name in ("cafile", "certfile", "keyfile", "queue_file"):
            if hasattr(bc, name):
                fix(bc, name)


def _check_listeners(cfg: Config, errors: list[str]) -> None:
    seen: dict[tuple[str, Any], int] = {}
    for i, lc in enumerate(cfg.listener):
        p = f"listener[{i}]"
        tls_only = [k for k in ("keyfile", "cafile", "ciphers") if getattr(lc, k)]
        tls_only += [
            k for k in ("require_certificate", "use_identity_as_username") if getattr(lc, k)
        ]
        if lc.certfile is None:
            for k in tls_only:
                errors.append(f"{p}.{k}: needs {p}.certfile (TLS)")
        if lc.require_certificate and not lc.cafile:
            errors.append(f"{p}.require_certificate: needs {p}.cafile to verify clients against")
        if lc.use_identity_as_username and not lc.cafile:
            errors.append(f"{p}.use_identity_as_username: needs {p}.cafile")
        if not lc.path.startswith("/"):
            errors.append(f"{p}.path: must start with '/'")
        if lc.unix_path is not None and not lc.unix_path:
            errors.append(f"{p}.unix_path: must not be empty")
        key: tuple[str, Any] = ("unix", lc.unix_path) if lc.unix_path else (lc.address, lc.port)
        bad = any(e.startswith(f"{p}.") for e in errors)
        if (lc.port != 0 or lc.unix_path) and not bad:
            if key in seen:
                errors.append(f"{p}: same address as listener[{seen[key]}]")
            seen[key] = i


def _check_auth(cfg: Config, errors: list[str]) -> None:
    if cfg.auth.plugin:  # deprecated spelling of [[plugin]]: same tables, same loader
        cfg.auth.plugin = _plugin_tables(cfg.auth.plugin, "auth.plugin", errors)
    rl = cfg.auth.rate_limit
    if rl.max_delay < rl.base_delay:
        errors.append("auth.rate_limit.max_delay: must be >= auth.rate_limit.base_delay")


def load_toml(path: str) -> Config:
    """A TOML config file; raises ConfigError (every message names the file)."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as err:
        raise ConfigError([f"{path}: cannot read: {err.strerror or err}"], path) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError([f"{path}: TOML syntax error: {err}"], path) from None
    return from_dict(data, path, _directory_of(path))


def load_mosquitto(path: str, warn: Callable[[str], None] | None = None) -> Config:
    """A mosquitto.conf, translated (mqttfast.app.mosquitto_conf) then validated as TOML."""
    from .mosquitto_conf import translate

    data = translate(path, warn or (lambda msg: log.warning("%s", msg)))
    cfg = from_dict(data, path, _directory_of(path))
    cfg.mosquitto = True
    return cfg


def load_file(
    path: str, mosquitto: bool = False, warn: Callable[[str], None] | None = None
) -> Config:
    return load_mosquitto(path, warn) if mosquitto else load_toml(path)


def _directory_of(path: str) -> str:
    return os.path.dirname(os.path.abspath(path))


# ---------------------------------------------------------------------------- flags
# argparse dest -> (section, field) for every key with a flag (schema ``flag=``).
FLAG_KEYS: dict[str, tuple[str, str]] = {
    f.metadata["flag"]: (name, f.name)
    for name, cls in SECTIONS.items()
    for f in dataclasses.fields(cls)
    if f.metadata.get("flag")
}
FLAG_KEYS["log_level"] = ("logging", "level")
FLAG_KEYS["log_format"] = ("logging", "format")


def apply_flags(cfg: Config, flags: Mapping[str, Any]) -> None:
    """Command-line values over the file: ``flags`` holds only what was given
    (argparse dest -> value; None = not given). ``host``/``port`` replace the first
    listener's address/port; ``--port`` alone keeps the local-only default."""
    given = {k: v for k, v in flags.items() if v is not None}
    host, port = given.pop("host", None), given.pop("port", None)
    if cfg.listener:
        if host is not None:
            cfg.listener[0].address = host
        if port is not None:
            cfg.listener[0].port = port
    elif host is not None:
        cfg.listener.append(
            ListenerConfig(port=cfg.local_port if port is None else port, address=host)
        )
    elif port is not None:
        cfg.local_port = port
    if "worker_index" in given:
        cfg.worker_index = given.pop("worker_index")
    if given.get("persistence") == "on":
        given["persistence"] = "strict"
    if isinstance(given.get("cluster"), str):
        given["cluster"] = [u.strip() for u in given["cluster"].split(",") if u.strip()]
    for dest, value in given.items():
        where = FLAG_KEYS.get(dest)
        if where is None:
            continue  # not a config key (--config, --version ...)
        section, name = where
        setattr(getattr(cfg, section), name, value)
        cfg.present.add(f"{section}.{toml_key(name)}")
        cfg.flags.add(f"{section}.{toml_key(name)}")
    if "metrics_port" in given:
        cfg.metrics.enabled = True
    if "admin_port" in given:
        cfg.admin.enabled = True
    if not cfg.admin.token and os.environ.get(ADMIN_TOKEN_ENV):
        cfg.admin.token = os.environ[ADMIN_TOKEN_ENV]  # keeps the secret off `ps`


# ---------------------------------------------------------------------------- core settings
def broker_settings(cfg: Config) -> BrokerSettings:
    """The core's BrokerSettings for this config: the one mapping (schema ``settings=``)."""
    settings = BrokerSettings()
    for _name, obj in sections(cfg):
        for f in dataclasses.fields(obj):
            target = f.metadata.get("settings")
            if target is not None:
                setattr(settings, target, getattr(obj, f.name))
    settings.max_packet_size = min(settings.max_packet_size or MAX_PACKET_SIZE, MAX_PACKET_SIZE)
    if "limits.receive_maximum" not in cfg.present:
        # As mosquitto: max_inflight_messages is also the Receive Maximum told to v5 clients.
        settings.receive_maximum = settings.max_inflight or 65535
    if cfg.listener:
        settings.host, settings.port = cfg.listener[0].address, cfg.listener[0].port
    else:
        settings.host, settings.port = LOCAL_ONLY[0], cfg.local_port
    return settings


__all__ = [
    "from_dict",
    "load_toml",
    "load_mosquitto",
    "load_file",
    "apply_flags",
    "resolve_paths",
    "broker_settings",
    "FLAG_KEYS",
    "LOCAL_ONLY",
]
