"""mosquitto.conf -> the tables of mqttfast's TOML config (``--mosquitto-config FILE``).

The common subset is translated; every other directive is reported once
through ``warn`` and otherwise ignored, so a mosquitto user can switch by
changing one command. The result is validated by :func:`mqttfast.app.config.from_dict`
like a TOML file (so errors name the TOML key path; syntax errors name the line).

Directive                     -> key
``listener PORT [ADDR|PATH]`` -> a new ``[[listener]]`` (port 0 + a path: unix socket)
``port N`` / ``bind_address`` -> the default listener (mosquitto 1.x style)
``protocol mqtt|websockets``  -> ``listener.protocol``
``cafile certfile keyfile require_certificate use_identity_as_username tls_version ciphers``
                              -> the current listener's TLS keys
``max_connections N``         -> ``listener.max_connections`` (-1 -> 0 = unlimited)
``allow_anonymous password_file acl_file`` -> ``[auth]``
``persistence true|false``    -> ``persistence.mode`` strict | off
``persistence_location DIR``  -> ``persistence.data_dir``
``max_queued_messages max_queued_bytes max_inflight_messages max_keepalive`` -> ``[limits]``
``message_size_limit N``      -> ``limits.max_packet_size = N + 65542`` (room for the
                                 fixed header, a topic and a packet id around N bytes)
``max_packet_size N``         -> ``limits.max_packet_size``
``sys_interval N``            -> ``sys.interval``
``allow_zero_length_clientid auto_id_prefix retain_available max_qos`` -> ``[mqtt]``

Directives that mosquitto keys on the "current" listener apply, before any
``listener`` line, to the default listener (created with port 1883 when
something needs it and no ``port`` line gave another).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# Directives with a value of this kind; the rest are handled one by one below.
_LISTENER_KEYS = {
    "cafile": ("cafile", str),
    "certfile": ("certfile", str),
    "keyfile": ("keyfile", str),
    "require_certificate": ("require_certificate", bool),
    "use_identity_as_username": ("use_identity_as_username", bool),
    "tls_version": ("tls_version", str),
    "ciphers": ("ciphers", str),
    "protocol": ("protocol", str),
    "http_path": ("path", str),
}
_SECTION_KEYS = {
    "allow_anonymous": ("auth", "allow_anonymous", bool),
    "password_file": ("auth", "password_file", str),
    "acl_file": ("auth", "acl_file", str),
    "persistence_location": ("persistence", "data_dir", str),
    "max_queued_messages": ("limits", "max_queued_messages", int),
    "max_queued_bytes": ("limits", "max_queued_bytes", int),
    "max_inflight_messages": ("limits", "max_inflight", int),
    "max_keepalive": ("limits", "max_keepalive", int),
    "max_packet_size": ("limits", "max_packet_size", int),
    "sys_interval": ("sys", "interval", int),
    "allow_zero_length_clientid": ("mqtt", "allow_zero_length_client_id", bool),
    "auto_id_prefix": ("mqtt", "client_id_prefix", str),
    "retain_available": ("mqtt", "retain_available", bool),
    "max_qos": ("mqtt", "maximum_qos", int),
}
# Accepted without effect: mqttfast does this anyway, or it only concerns mosquitto's own files.
_SILENT = {"log_timestamp", "log_timestamp_format", "connection_messages", "pid_file", "user"}


class MosquittoConfError(ValueError):
    pass


def _value(kind: type, raw: str, where: str) -> Any:
    if kind is str:
        return raw
    if kind is bool:
        low = raw.lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        raise MosquittoConfError(f"{where}: expected true or false, got {raw!r}")
    try:
        return int(raw)
    except ValueError:
        raise MosquittoConfError(f"{where}: expected an integer, got {raw!r}") from None


def translate(path: str, warn: Callable[[str], None]) -> dict[str, Any]:
    """Read ``path`` and return the equivalent TOML tables. Raises ConfigError."""
    from .schema import ConfigError

    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError as err:
        raise ConfigError([f"{path}: cannot read: {err.strerror or err}"], path) from None
    out: dict[str, Any] = {}
    listeners: list[dict[str, Any]] = []
    default: dict[str, Any] = {}  # the default listener (port/bind_address/...)
    current: dict[str, Any] | None = None
    warned: set[str] = set()
    errors: list[str] = []

    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        directive, _, rest = text.partition(" ")
        directive = directive.strip()
        arg = rest.strip()
        where = f"{path}:{number}: {directive}"
        try:
            if directive == "listener":
                parts = arg.split()
                if not parts:
                    raise MosquittoConfError(f"{where}: needs a port")
                current = {"port": _value(int, parts[0], where)}
                if len(parts) > 1:
                    if current["port"] == 0 and parts[1].startswith("/"):
                        current["unix_path"] = parts[1]
                        current.pop("port")
                    else:
                        current["address"] = parts[1]
                listeners.append(current)
            elif directive == "port":
                default["port"] = _value(int, arg, where)
            elif directive == "bind_address":
                default["address"] = arg
            elif directive == "max_connections":
                n = _value(int, arg, where)
                (current if current is not None else default)["max_connections"] = max(n, 0)
            elif directive in _LISTENER_KEYS:
                key, kind = _LISTENER_KEYS[directive]
                (current if current is not None else default)[key] = _value(kind, arg, where)
            elif directive == "persistence":
                on = _value(bool, arg, where)
                out.setdefault("persistence", {})["mode"] = "strict" if on else "off"
            elif directive == "message_size_limit":
                n = _value(int, arg, where)
                if n:
                    out.setdefault("limits", {})["max_packet_size"] = min(n + 65542, 268435455)
            elif directive in _SECTION_KEYS:
                section, key, kind = _SECTION_KEYS[directive]
                out.setdefault(section, {})[key] = _value(kind, arg, where)
            elif directive in _SILENT:
                pass
            elif directive not in warned:
                warned.add(directive)
                warn(
                    f"{path}:{number}: mosquitto directive {directive!r} is not supported; ignored"
                )
        except MosquittoConfError as err:
            errors.append(str(err))
    if errors:
        raise ConfigError(errors, path)
    explicit_listeners = bool(listeners)
    if default or not listeners:
        if not explicit_listeners and "port" not in default and "address" not in default:
            default["address"] = "127.0.0.1"  # mosquitto 2 "local only" mode
        default.setdefault("port", 1883)
        listeners.insert(0, default)
    if explicit_listeners and "allow_anonymous" not in out.get("auth", {}):
        # mosquitto 2.0: allow_anonymous defaults to false once a listener is configured.
        out.setdefault("auth", {})["allow_anonymous"] = False
    if listeners:
        out["listener"] = listeners
    if "persistence" not in out:
        # mosquitto's default is no persistence.
        out["persistence"] = {"mode": "off"}
    return out


__all__ = ["translate", "MosquittoConfError"]
