"""mosquitto.conf -> the tables of mqttfast's TOML config (``--mosquitto-config FILE``).

Completely or loudly: every mosquitto 2.0 directive is in :data:`DIRECTIVES` with
what mqttfast does with it (docs/mosquitto.md is the same table, checked by
tests/config/test_mosquitto_conf.py):

* ``mapped``: translated to the TOML key named in the table;
* ``ignored``: harmless here (``autosave_interval``: persistence is transactional);
  reported once per directive through ``warn``, never silently;
* ``refused``: mqttfast cannot do what it asks; an error with file and line.

A directive that is not in the table (a typo such as ``allow_anonymus``) is an
error with file and line, as mosquitto itself refuses unknown options. So is a
mapped directive with a value mqttfast cannot honour (``log_dest topic``).

``include_dir DIR`` reads DIR's ``*.conf`` files in mosquitto's order (a
case-insensitive byte order) from the main file only; as in mosquitto each file
starts with the default listener current and no bridge. ``connection NAME``
starts a bridge: the bridge directives after it (``address``, ``topic``,
``remote_username`` ...) build one ``[[bridge]]`` table.

The result is validated by :func:`mqttfast.app.config.from_dict` like a TOML
document, so range errors name the TOML key.
"""

from __future__ import annotations

import difflib
import os
import socket
from collections.abc import Callable
from typing import Any

MAPPED, IGNORED, REFUSED = "mapped", "ignored", "refused"

# Every directive of mosquitto 2.0 (src/conf.c of 2.0.11) -> (status, TOML key or why).
# ``auth_opt_*`` / ``plugin_opt_*`` stand for every directive with that prefix.
DIRECTIVES: dict[str, tuple[str, str]] = {
    # -- general ---------------------------------------------------------------
    "acl_file": (MAPPED, "auth.acl_file"),
    "allow_anonymous": (MAPPED, "auth.allow_anonymous"),
    "allow_duplicate_messages": (IGNORED, "deprecated in mosquitto 2.0; mqttfast sends one copy"),
    "allow_zero_length_clientid": (MAPPED, "mqtt.allow_zero_length_client_id"),
    "auth_opt_*": (REFUSED, "mosquitto C plug-ins cannot be loaded; use [[auth.plugin]]"),
    "auth_plugin": (REFUSED, "mosquitto C plug-ins cannot be loaded; use [[auth.plugin]]"),
    "auth_plugin_deny_special_chars": (IGNORED, "only concerns C plug-ins, which are refused"),
    "auto_id_prefix": (MAPPED, "mqtt.client_id_prefix"),
    "autosave_interval": (IGNORED, "persistence is transactional (every change is stored)"),
    "autosave_on_changes": (IGNORED, "persistence is transactional (every change is stored)"),
    "check_retain_source": (REFUSED, "not implemented"),
    "clientid_prefixes": (REFUSED, "not implemented; use an auth plug-in"),
    "connection_messages": (MAPPED, "logging.connection_messages"),
    "include_dir": (MAPPED, "read in place: DIR/*.conf in mosquitto's order"),
    "log_dest": (MAPPED, "logging.destinations (stdout, stderr, syslog, file PATH, none)"),
    "log_facility": (MAPPED, "logging.syslog_facility (localN)"),
    "log_timestamp": (MAPPED, "logging.timestamp"),
    "log_timestamp_format": (MAPPED, "logging.timestamp_format"),
    "log_type": (MAPPED, "logging.level (the most verbose type given)"),
    "max_inflight_bytes": (REFUSED, "not implemented; use max_inflight_messages"),
    "max_inflight_messages": (MAPPED, "limits.max_inflight"),
    "max_keepalive": (MAPPED, "limits.max_keepalive"),
    "max_packet_size": (MAPPED, "limits.max_packet_size"),
    "max_queued_bytes": (MAPPED, "limits.max_queued_bytes"),
    "max_queued_messages": (MAPPED, "limits.max_queued_messages"),
    "memory_limit": (REFUSED, "not implemented; use the queue and retained limits"),
    "message_size_limit": (MAPPED, "limits.max_packet_size (N + 65542)"),
    "password_file": (MAPPED, "auth.password_file"),
    "per_listener_settings": (MAPPED, "false only (security settings are global)"),
    "persistence": (MAPPED, "persistence.mode (strict | off)"),
    "persistence_file": (IGNORED, "mqttfast keeps its own database in persistence_location"),
    "persistence_location": (MAPPED, "persistence.data_dir"),
    "persistent_client_expiration": (MAPPED, "sessions.persistent_session_expiry"),
    "pid_file": (MAPPED, "process.pid_file"),
    "plugin": (REFUSED, "mosquitto C plug-ins cannot be loaded; use [[plugin]]"),
    "plugin_opt_*": (REFUSED, "mosquitto C plug-ins cannot be loaded; use [[plugin]]"),
    "queue_qos0_messages": (REFUSED, "not implemented"),
    "retain_available": (MAPPED, "mqtt.retain_available"),
    "retained_persistence": (MAPPED, "persistence.mode (alias of persistence)"),
    "retry_interval": (IGNORED, "removed in mosquitto 2.0 (it ignores it too)"),
    "set_tcp_nodelay": (IGNORED, "mqttfast always sets TCP_NODELAY"),
    "sys_interval": (MAPPED, "sys.interval"),
    "upgrade_outgoing_qos": (REFUSED, "not implemented (the spec forbids upgrading)"),
    "user": (MAPPED, "process.user"),
    # -- listeners ---------------------------------------------------------------
    "bind_address": (MAPPED, "listener[0].address (the default listener)"),
    "bind_interface": (REFUSED, "not implemented; use the interface's address"),
    "cafile": (MAPPED, "listener[].cafile"),
    "capath": (REFUSED, "not implemented; use cafile"),
    "certfile": (MAPPED, "listener[].certfile"),
    "ciphers": (MAPPED, "listener[].ciphers"),
    "ciphers_tls1.3": (REFUSED, "not implemented"),
    "crlfile": (REFUSED, "not implemented"),
    "dhparamfile": (REFUSED, "not implemented (ECDHE only)"),
    "http_dir": (REFUSED, "not implemented"),
    "keyfile": (MAPPED, "listener[].keyfile"),
    "listener": (MAPPED, "[[listener]] port, address (port 0 + path: unix_path)"),
    "max_connections": (MAPPED, "listener[].max_connections (-1 -> 0)"),
    "max_qos": (MAPPED, "mqtt.maximum_qos (all listeners)"),
    "maximum_qos": (MAPPED, "mqtt.maximum_qos (alias of max_qos)"),
    "max_topic_alias": (MAPPED, "limits.topic_alias_maximum (all listeners)"),
    "mount_point": (REFUSED, "not implemented"),
    "port": (MAPPED, "listener[0].port (the default listener)"),
    "protocol": (MAPPED, "listener[].protocol (mqtt | websockets)"),
    "psk_file": (REFUSED, "TLS-PSK not implemented"),
    "psk_hint": (REFUSED, "TLS-PSK not implemented"),
    "require_certificate": (MAPPED, "listener[].require_certificate"),
    "socket_domain": (REFUSED, "not implemented; give the listener an address"),
    "tls_engine": (REFUSED, "not implemented"),
    "tls_engine_kpass_sha1": (REFUSED, "not implemented"),
    "tls_keyform": (REFUSED, "not implemented (PEM keys only)"),
    "tls_version": (MAPPED, "listener[].tls_version (tlsv1.2 | tlsv1.3)"),
    "use_identity_as_username": (MAPPED, "listener[].use_identity_as_username"),
    "use_subject_as_username": (REFUSED, "not implemented; use use_identity_as_username"),
    "use_username_as_clientid": (REFUSED, "not implemented"),
    "websockets_headers_size": (IGNORED, "the websockets library sizes headers itself"),
    "websockets_log_level": (IGNORED, "the websockets library logs only warnings"),
    # -- bridges -----------------------------------------------------------------
    "address": (MAPPED, "bridge[].address, bridge[].port (one address)"),
    "addresses": (MAPPED, "bridge[].address, bridge[].port (one address)"),
    "bridge_alpn": (REFUSED, "not implemented"),
    "bridge_attempt_unsubscribe": (IGNORED, "the bridge keeps its remote subscriptions"),
    "bridge_bind_address": (REFUSED, "not implemented"),
    "bridge_cafile": (MAPPED, "bridge[].cafile (turns TLS on)"),
    "bridge_capath": (REFUSED, "not implemented; use bridge_cafile"),
    "bridge_certfile": (MAPPED, "bridge[].certfile"),
    "bridge_identity": (REFUSED, "TLS-PSK not implemented"),
    "bridge_insecure": (MAPPED, "bridge[].verify_hostname = false (the chain is still verified)"),
    "bridge_keyfile": (MAPPED, "bridge[].keyfile"),
    "bridge_max_packet_size": (REFUSED, "not implemented"),
    "bridge_outgoing_retain": (MAPPED, "true only (the retain flag is carried)"),
    "bridge_protocol_version": (MAPPED, "bridge[].protocol_version (mqttv311 -> 4, mqttv50 -> 5)"),
    "bridge_psk": (REFUSED, "TLS-PSK not implemented"),
    "bridge_require_ocsp": (REFUSED, "not implemented"),
    "bridge_tls_version": (MAPPED, "bridge[].tls_version"),
    "cleansession": (MAPPED, "bridge[].clean_start"),
    "clientid": (MAPPED, "bridge[].client_id (alias of remote_clientid)"),
    "connection": (MAPPED, "a new [[bridge]] with this name"),
    "idle_timeout": (IGNORED, "only used by start_type lazy, which is refused"),
    "keepalive_interval": (MAPPED, "bridge[].keepalive"),
    "local_cleansession": (IGNORED, "the bridge is inside the broker: no local session"),
    "local_clientid": (IGNORED, "the bridge is inside the broker: no local client"),
    "local_password": (IGNORED, "the bridge is inside the broker: no local login"),
    "local_username": (IGNORED, "the bridge is inside the broker: no local login"),
    "notification_topic": (REFUSED, "bridge notifications not implemented"),
    "notifications": (MAPPED, "false only (bridge notifications not implemented)"),
    "notifications_local_only": (REFUSED, "bridge notifications not implemented"),
    "password": (MAPPED, "bridge[].password (alias of remote_password)"),
    "remote_clientid": (MAPPED, "bridge[].client_id"),
    "remote_password": (MAPPED, "bridge[].password"),
    "remote_username": (MAPPED, "bridge[].username"),
    "restart_timeout": (MAPPED, "bridge[].reconnect_min, bridge[].reconnect_max"),
    "round_robin": (MAPPED, "false only (one address)"),
    "start_type": (MAPPED, "automatic only"),
    "threshold": (IGNORED, "only used by start_type lazy, which is refused"),
    "topic": (MAPPED, "[[bridge.topic]] pattern, direction, qos, local_prefix, remote_prefix"),
    "try_private": (MAPPED, "bridge[].try_private"),
    "username": (MAPPED, "bridge[].username (alias of remote_username)"),
}

# Directives that only make sense after ``connection NAME``.
BRIDGE_DIRECTIVES = frozenset(list(DIRECTIVES)[list(DIRECTIVES).index("address") :]) - {
    "connection"
}
_PREFIXES = ("auth_opt_", "plugin_opt_")

_LISTENER_KEYS: dict[str, tuple[str, type]] = {
    "cafile": ("cafile", str),
    "certfile": ("certfile", str),
    "keyfile": ("keyfile", str),
    "require_certificate": ("require_certificate", bool),
    "use_identity_as_username": ("use_identity_as_username", bool),
    "ciphers": ("ciphers", str),
}
_SECTION_KEYS: dict[str, tuple[str, str, type]] = {
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
    "maximum_qos": ("mqtt", "maximum_qos", int),
    "max_topic_alias": ("limits", "topic_alias_maximum", int),
    "pid_file": ("process", "pid_file", str),
    "user": ("process", "user", str),
    "connection_messages": ("logging", "connection_messages", bool),
    "log_timestamp": ("logging", "timestamp", bool),
    "log_timestamp_format": ("logging", "timestamp_format", str),
}
_BRIDGE_KEYS: dict[str, tuple[str, type]] = {
    "remote_username": ("username", str),
    "username": ("username", str),
    "remote_password": ("password", str),
    "password": ("password", str),
    "remote_clientid": ("client_id", str),
    "clientid": ("client_id", str),
    "keepalive_interval": ("keepalive", int),
    "try_private": ("try_private", bool),
    "bridge_cafile": ("cafile", str),
    "bridge_certfile": ("certfile", str),
    "bridge_keyfile": ("keyfile", str),
}
# log_type -> the level that shows it (mosquitto's default types: error..information).
_LOG_TYPES = {
    "debug": "debug",
    "all": "debug",
    "information": "info",
    "notice": "info",
    "warning": "warning",
    "error": "error",
    "none": "critical",
}
_LEVEL_ORDER = ("debug", "info", "warning", "error", "critical")
_DURATION = {"h": 3600, "d": 86400, "w": 7 * 86400, "m": 30 * 86400, "y": 365 * 86400}
_TLS_VERSIONS = {"tlsv1.2": "TLSv1.2", "tlsv1.3": "TLSv1.3"}


class MosquittoConfError(ValueError):
    pass


def directive_status(name: str) -> tuple[str, str] | None:
    """(status, key or why) of a directive, ``auth_opt_x`` included; None if unknown."""
    if name in DIRECTIVES:
        return DIRECTIVES[name]
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            return DIRECTIVES[prefix + "*"]
    return None


def _value(kind: type, raw: str, where: str) -> Any:
    if not raw:
        raise MosquittoConfError(f"{where}: needs a value")
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


def _duration(raw: str, where: str) -> int:
    """mosquitto's ``persistent_client_expiration``: N followed by h, d, w, m or y."""
    unit = _DURATION.get(raw[-1:].lower())
    if unit is None or not raw[:-1].isdigit():
        raise MosquittoConfError(f"{where}: expected a duration like 1d, 2w, 6m, got {raw!r}")
    return int(raw[:-1]) * unit


def _tokens(arg: str) -> list[str]:
    """Space-separated values; ``""`` is an empty value (mosquitto's topic remapping)."""
    return ["" if t == '""' else t for t in arg.split()]


def include_files(directory: str) -> list[str]:
    """DIR's ``*.conf`` files in mosquitto's order: case-insensitive, then by case."""
    names = [n for n in os.listdir(directory) if len(n) > 5 and n.endswith(".conf")]
    names.sort(key=lambda n: [(ord(c.upper()), ord(c)) for c in n])
    return [os.path.join(directory, n) for n in names]


class _Translator:
    def __init__(self, warn: Callable[[str], None]) -> None:
        self.warn = warn
        self.out: dict[str, Any] = {}
        self.listeners: list[dict[str, Any]] = []
        self.default: dict[str, Any] = {}  # mosquitto's default listener (port/bind_address)
        self.bridges: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.reported: set[str] = set()
        self.log_dest: list[str] | None = None
        self.log_levels: list[str] = []
        self.global_once: dict[str, tuple[Any, str]] = {}  # per-listener keys mqttfast has once

    # -- files -------------------------------------------------------------
    def read(self, path: str, main: bool) -> None:
        from .schema import ConfigError

        try:
            with open(path, encoding="utf-8") as fh:
                lines = fh.read().splitlines()
        except (OSError, UnicodeDecodeError) as err:
            msg = getattr(err, "strerror", None) or err
            raise ConfigError([f"{path}: cannot read: {msg}"], path) from None
        current: dict[str, Any] | None = None  # listener; None = the default listener
        bridge: dict[str, Any] | None = None
        for number, line in enumerate(lines, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            directive, _, rest = text.partition(" ")
            arg = rest.strip()
            where = f"{path}:{number}: {directive}"
            try:
                if directive == "include_dir":
                    self._include(arg, where, main)
                elif directive == "listener":
                    current = self._listener(arg, where)
                elif directive == "connection":
                    if not arg:
                        raise MosquittoConfError(f"{where}: needs a name")
                    bridge = self._bridge(arg, where)
                else:
                    self._directive(directive, arg, where, current, bridge, number, path)
            except MosquittoConfError as err:
                self.errors.append(str(err))

    def _include(self, arg: str, where: str, main: bool) -> None:
        if not main:  # as mosquitto: only the main file's include_dir is read
            self._report("include_dir", f"{where}: ignored outside the main file (as mosquitto)")
            return
        if not arg:
            raise MosquittoConfError(f"{where}: needs a directory")
        try:
            files = include_files(arg)
        except OSError as err:
            raise MosquittoConfError(f"{where}: cannot read {arg}: {err.strerror}") from None
        for name in files:
            self.read(name, main=False)

    def _listener(self, arg: str, where: str) -> dict[str, Any]:
        parts = arg.split()
        if not parts:
            raise MosquittoConfError(f"{where}: needs a port")
        current: dict[str, Any] = {"port": _value(int, parts[0], where)}
        if len(parts) > 1:
            if current["port"] == 0 and parts[1].startswith("/"):
                current = {"unix_path": parts[1]}
            else:
                current["address"] = parts[1]
        for existing in self.listeners:  # as mosquitto: the same listener line selects it again
            same = ("unix_path", "port", "address")
            if all(existing.get(k) == current.get(k) for k in same):
                return existing
        self.listeners.append(current)
        return current

    def _bridge(self, name: str, where: str) -> dict[str, Any]:
        if any(b["name"] == name for b in self.bridges):
            raise MosquittoConfError(f"{where}: a bridge named {name!r} exists already")
        # mosquitto's defaults, where mqttfast's differ: MQTT 3.1.1, client id
        # "<hostname>.<name>" (so the remote keeps the same session), restart 5..30 s.
        bridge: dict[str, Any] = {
            "name": name,
            "protocol_version": 4,
            "client_id": f"{socket.gethostname()}.{name}",
            "clean_start": False,
            "reconnect_min": 5.0,
            "reconnect_max": 30.0,
            "topic": [],
            "_where": where,
        }
        self.bridges.append(bridge)
        return bridge

    def _report(self, key: str, message: str) -> None:
        if key not in self.reported:
            self.reported.add(key)
            self.warn(message)

    # -- one directive -----------------------------------------------------
    def _directive(
        self,
        directive: str,
        arg: str,
        where: str,
        current: dict[str, Any] | None,
        bridge: dict[str, Any] | None,
        number: int,
        path: str,
    ) -> None:
        status = directive_status(directive)
        at = f"{path}:{number}"
        if status is None:
            close = difflib.get_close_matches(directive, list(DIRECTIVES), n=1, cutoff=0.8)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise MosquittoConfError(f"{at}: unknown directive {directive!r}{hint}")
        kind, why = status
        if kind == REFUSED:
            raise MosquittoConfError(f"{at}: {directive!r} is not supported by mqttfast: {why}")
        if directive in BRIDGE_DIRECTIVES and bridge is None:
            raise MosquittoConfError(f"{where}: only allowed after 'connection NAME'")
        if kind == IGNORED:
            self._report(directive, f"{at}: mosquitto directive {directive!r} ignored: {why}")
            return
        if bridge is not None and directive in BRIDGE_DIRECTIVES:
            self._bridge_directive(directive, arg, where, bridge)
            return
        target = current if current is not None else self.default
        if directive == "port":
            self.default["port"] = _value(int, arg, where)
        elif directive == "bind_address":
            self.default["address"] = _value(str, arg, where)
        elif directive == "max_connections":
            target["max_connections"] = max(_value(int, arg, where), 0)
        elif directive in _LISTENER_KEYS:
            key, kind_ = _LISTENER_KEYS[directive]
            target[key] = _value(kind_, arg, where)
        elif directive == "protocol":
            if arg not in ("mqtt", "websockets"):
                raise MosquittoConfError(f"{where}: {arg!r} not supported (mqtt or websockets)")
            target["protocol"] = arg
        elif directive == "tls_version":
            if arg.lower() not in _TLS_VERSIONS:
                raise MosquittoConfError(f"{where}: {arg!r} not supported (tlsv1.2 or tlsv1.3)")
            target["tls_version"] = _TLS_VERSIONS[arg.lower()]
        elif directive in ("persistence", "retained_persistence"):
            on = _value(bool, arg, where)
            self._set("persistence", "mode", "strict" if on else "off")
        elif directive == "message_size_limit":
            n = _value(int, arg, where)
            if n:
                self._set("limits", "max_packet_size", min(n + 65542, 268435455))
        elif directive == "persistent_client_expiration":
            self._set("sessions", "persistent_session_expiry", _duration(arg, where))
        elif directive == "per_listener_settings":
            if _value(bool, arg, where):
                raise MosquittoConfError(f"{where}: true is not supported (settings are global)")
        elif directive == "log_dest":
            self._log_dest(arg, where)
        elif directive == "log_type":
            self._log_type(arg, where, f"{path}:{number}")
        elif directive == "log_facility":
            n = _value(int, arg, where)
            if not 0 <= n <= 7:
                raise MosquittoConfError(f"{where}: expected 0..7, got {n}")
            self._set("logging", "syslog_facility", f"local{n}")
        elif directive in _SECTION_KEYS:
            section, key, kind_ = _SECTION_KEYS[directive]
            value = _value(kind_, arg, where)
            if directive in ("max_qos", "maximum_qos", "max_topic_alias"):
                once = "max_qos" if directive == "maximum_qos" else directive
                seen = self.global_once.get(once)
                if seen is not None and seen[0] != value:
                    raise MosquittoConfError(
                        f"{where}: mqttfast applies {directive} to every listener; "
                        f"{seen[1]} gave {seen[0]}"
                    )
                self.global_once[once] = (value, where)
            self._set(section, key, value)
        else:  # pragma: no cover - every mapped directive has a branch
            raise MosquittoConfError(f"{where}: not translated")

    def _set(self, section: str, key: str, value: Any) -> None:
        self.out.setdefault(section, {})[key] = value

    def _log_dest(self, arg: str, where: str) -> None:
        kind, _, rest = arg.partition(" ")
        dests = self.log_dest if self.log_dest is not None else []
        if kind in ("stdout", "stderr", "syslog"):
            dests.append(kind)
        elif kind == "file":
            if not rest.strip():
                raise MosquittoConfError(f"{where}: file needs a path")
            dests.append("file:" + rest.strip())
        elif kind == "none":
            dests = []
        else:
            raise MosquittoConfError(
                f"{where}: {kind!r} not supported (stdout, stderr, syslog, file PATH, none)"
            )
        self.log_dest = dests

    def _log_type(self, arg: str, where: str, at: str) -> None:
        level = _LOG_TYPES.get(arg)
        if level is None:
            if arg in ("subscribe", "unsubscribe", "websockets", "internal"):
                self._report(
                    f"log_type {arg}",
                    f"{at}: log_type {arg}: mqttfast logs these events at debug "
                    "(add log_type debug to see them)",
                )
                return
            raise MosquittoConfError(f"{where}: unknown log type {arg!r}")
        self.log_levels.append(level)

    def _bridge_directive(self, directive: str, arg: str, where: str, b: dict[str, Any]) -> None:
        if directive in ("address", "addresses"):
            parts = arg.split()
            if len(parts) != 1:
                raise MosquittoConfError(f"{where}: mqttfast bridges take one address")
            host, sep, port = parts[0].rpartition(":")
            if sep and port.isdigit() and ":" not in host:
                b["address"], b["port"] = host, int(port)
            else:
                b["address"], b["port"] = parts[0], 1883
        elif directive == "topic":
            b["topic"].append(self._topic(arg, where))
        elif directive in _BRIDGE_KEYS:
            key, kind = _BRIDGE_KEYS[directive]
            b[key] = _value(kind, arg, where)
            if directive == "bridge_cafile":
                b["tls"] = True
        elif directive == "bridge_insecure":
            b["verify_hostname"] = not _value(bool, arg, where)
        elif directive == "bridge_protocol_version":
            versions = {"mqttv311": 4, "mqttv50": 5}
            if arg not in versions:
                raise MosquittoConfError(f"{where}: {arg!r} not supported (mqttv311 or mqttv50)")
            b["protocol_version"] = versions[arg]
        elif directive == "bridge_tls_version":
            if arg.lower() not in _TLS_VERSIONS:
                raise MosquittoConfError(f"{where}: {arg!r} not supported (tlsv1.2 or tlsv1.3)")
            b["tls_version"] = _TLS_VERSIONS[arg.lower()]
        elif directive == "cleansession":
            b["clean_start"] = _value(bool, arg, where)
        elif directive == "restart_timeout":
            parts = arg.split()
            if len(parts) not in (1, 2):
                raise MosquittoConfError(f"{where}: expected 'base cap' or 'constant'")
            nums = [_value(int, p, where) for p in parts]
            b["reconnect_min"], b["reconnect_max"] = float(nums[0]), float(nums[-1])
        elif directive in ("bridge_outgoing_retain", "notifications", "round_robin", "start_type"):
            wanted = {
                "bridge_outgoing_retain": True,
                "notifications": False,
                "round_robin": False,
                "start_type": "automatic",
            }[directive]
            value = arg if isinstance(wanted, str) else _value(bool, arg, where)
            if value != wanted:
                raise MosquittoConfError(
                    f"{where}: {arg} is not supported by mqttfast ({DIRECTIVES[directive][1]})"
                )
        else:  # pragma: no cover
            raise MosquittoConfError(f"{where}: not translated")

    def _topic(self, arg: str, where: str) -> dict[str, Any]:
        parts = _tokens(arg)
        if not parts or len(parts) > 5:
            raise MosquittoConfError(
                f"{where}: expected 'pattern [[[out|in|both] qos] local-prefix remote-prefix]'"
            )
        t: dict[str, Any] = {"pattern": parts[0], "direction": "out", "qos": 0}
        if len(parts) > 1:
            if parts[1].lower() not in ("out", "in", "both"):
                raise MosquittoConfError(f"{where}: direction must be out, in or both")
            t["direction"] = parts[1].lower()
        if len(parts) > 2:
            qos = _value(int, parts[2], where)
            if qos not in (0, 1, 2):
                raise MosquittoConfError(f"{where}: qos must be 0, 1 or 2")
            t["qos"] = qos
        if len(parts) == 4:
            raise MosquittoConfError(f"{where}: a local prefix needs a remote prefix")
        if len(parts) == 5:
            t["local_prefix"], t["remote_prefix"] = parts[3], parts[4]
        if not t["pattern"] and not (t.get("local_prefix") or t.get("remote_prefix")):
            raise MosquittoConfError(f"{where}: an empty pattern needs prefixes")
        return t

    # -- result ------------------------------------------------------------
    def result(self) -> dict[str, Any]:
        out = self.out
        listeners = self.listeners
        explicit_listeners = bool(listeners)
        default = self.default
        if default or not listeners:
            if not explicit_listeners and "port" not in default and "address" not in default:
                default["address"] = "127.0.0.1"  # mosquitto 2 "local only" mode
            default.setdefault("port", 1883)
            listeners.insert(0, default)
        if explicit_listeners and "allow_anonymous" not in out.get("auth", {}):
            # mosquitto 2.0: allow_anonymous defaults to false once a listener is configured.
            out.setdefault("auth", {})["allow_anonymous"] = False
        out["listener"] = listeners
        out.setdefault("persistence", {"mode": "off"})  # mosquitto's default: none
        if self.log_dest is not None:
            out.setdefault("logging", {})["destinations"] = self.log_dest
        if self.log_levels:
            level = min(self.log_levels, key=_LEVEL_ORDER.index)
            out.setdefault("logging", {})["level"] = level
        bridges = []
        for b in self.bridges:
            where = b.pop("_where")
            if "address" not in b:
                self.errors.append(f"{where}: the bridge has no address")
            if not b["topic"]:
                self.errors.append(f"{where}: the bridge has no topic")
            bridges.append(b)
        if bridges:
            out["bridge"] = bridges
        return out


def translate(path: str, warn: Callable[[str], None]) -> dict[str, Any]:
    """Read ``path`` (and its include_dir) and return the equivalent TOML tables.

    Raises ConfigError with every error found, each naming file and line."""
    from .schema import ConfigError

    tr = _Translator(warn)
    tr.read(path, main=True)
    out = tr.result()
    if tr.errors:
        raise ConfigError(tr.errors, path)
    return out


__all__ = [
    "DIRECTIVES",
    "IGNORED",
    "MAPPED",
    "MosquittoConfError",
    "REFUSED",
    "directive_status",
    "include_files",
    "translate",
]
