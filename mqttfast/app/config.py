"""The configuration file (TOML, ``mqttfast --config FILE``) and how it is applied.

One :class:`Config` holds every setting: ``[[listener]]`` tables, ``[limits]``,
``[sessions]``, ``[mqtt]``, ``[persistence]``, ``[auth]``, ``[sys]``,
``[logging]``, ``[metrics]``, ``[admin]``. The reference with every key and its
default is docs/configuration.md; ``tests/config/test_reference.py`` checks the
two agree.

Validation collects every problem (unknown keys included) as
``"<key path>: <message>"`` (``listener[1].port: expected integer``;
array indexes start at 0) and raises :class:`ConfigError` with all of them.
``mqttfast check-config FILE`` prints them and exits 2.

Precedence: built-in defaults < the file < command-line flags. Keys that have
a flag become that flag's default (so a flag given on the command line wins);
``--host``/``--port`` given explicitly replace the address/port of the first
listener.

A mosquitto.conf (``--mosquitto-config``) is translated by
:mod:`mqttfast.app.mosquitto_conf` into the same tables and validated the
same way.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mqttfast.codec.constants import MAX_PACKET_SIZE, SESSION_EXPIRY_NEVER
from mqttfast.transport.listeners import ListenerConfig

log = logging.getLogger("mqttfast")

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("text", "json")
PERSISTENCE_MODES = ("strict", "relaxed", "off")
U32 = 4294967295


class ConfigError(Exception):
    """Every problem found in a configuration, one ``"key.path: message"`` each."""

    def __init__(self, errors: list[str], source: str = "", partial: Config | None = None) -> None:
        self.errors = errors
        self.source = source
        self.partial = partial  # what could be read, for further checks
        super().__init__("; ".join(errors))


def spec(
    default: Any = None,
    *,
    doc: str = "",
    settings: str | None = None,
    flag: str | None = None,
    lo: float | None = None,
    hi: float | None = None,
    choices: Sequence[str] | None = None,
    factory: Callable[[], Any] | None = None,
) -> Any:
    """A config key: its default, documentation, where it goes (a BrokerSettings
    field and/or the argparse dest of its command-line flag) and its bounds."""
    meta = {
        "doc": doc,
        "settings": settings,
        "flag": flag,
        "lo": lo,
        "hi": hi,
        "choices": tuple(choices) if choices else None,
    }
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


# ---------------------------------------------------------------------------- sections
@dataclass
class LimitsConfig:
    max_connections: int = spec(
        0,
        lo=0,
        settings="max_connections",
        doc="open connections over all listeners; 0 = unlimited",
    )
    max_packet_size: int = spec(
        0,
        lo=0,
        hi=MAX_PACKET_SIZE,
        flag="max_packet_size",
        doc="largest packet accepted from clients, bytes; 0 = protocol maximum",
    )
    max_inflight: int = spec(
        20,
        lo=0,
        hi=65535,
        flag="max_inflight",
        doc="outgoing QoS 1/2 messages in flight per client; 0 = 65535",
    )
    max_queued_messages: int = spec(
        1000,
        lo=0,
        flag="max_queued_messages",
        doc="QoS 1/2 messages queued per session; 0 = unlimited",
    )
    max_queued_bytes: int = spec(
        0, lo=0, settings="max_queued_bytes", doc="payload bytes queued per session; 0 = unlimited"
    )
    receive_maximum: int = spec(
        65535,
        lo=1,
        hi=65535,
        settings="receive_maximum",
        doc="incoming unacknowledged QoS 1/2 per v5 client (CONNACK)",
    )
    topic_alias_maximum: int = spec(
        10,
        lo=0,
        hi=65535,
        settings="topic_alias_maximum",
        doc="topic aliases a v5 client may use toward the broker",
    )
    connect_timeout: float = spec(
        10.0, lo=0, flag="connect_timeout", doc="seconds from accept to a complete CONNECT"
    )
    max_keepalive: int = spec(
        65535,
        lo=0,
        hi=65535,
        settings="max_keepalive",
        doc="largest keep alive granted to v5 clients (Server Keep Alive)",
    )
    output_high_water: int = spec(
        1024 * 1024,
        lo=1,
        settings="output_high_water",
        doc="bytes buffered toward a client above which its publishers pause",
    )
    output_hard_limit: int = spec(
        8 * 1024 * 1024,
        lo=1,
        settings="output_hard_limit",
        doc="bytes buffered toward a client above which QoS 0 is dropped",
    )
    max_publisher_pause: float = spec(
        1.0,
        lo=0,
        settings="max_publisher_pause",
        doc="seconds a slow subscriber may keep publishers paused; then it is treated as stuck",
    )
    max_topic_levels: int = spec(
        0,
        lo=0,
        settings="max_topic_levels",
        doc="levels in a topic or filter; 0 = unlimited (v5 0x90/0x8F)",
    )
    max_subscriptions_per_client: int = spec(
        0,
        lo=0,
        settings="max_subscriptions_per_client",
        doc="subscriptions per client; 0 = unlimited (extra ones: 0x97)",
    )
    max_topic_length: int = spec(
        0,
        lo=0,
        hi=65535,
        settings="max_topic_length",
        doc="bytes in a topic or filter; 0 = 65535 (v5 0x90/0x8F, 3.x connection closed)",
    )
    max_publish_rate: float = spec(
        0.0,
        lo=0,
        settings="max_publish_rate",
        doc="PUBLISH per second per client; 0 = unlimited "
        "(over it: reading from the client pauses)",
    )
    max_retained_messages: int = spec(
        1_000_000, lo=0, flag="max_retained_messages", doc="retained messages kept; 0 = unlimited"
    )
    max_retained_bytes: int = spec(
        1024**3,
        lo=0,
        flag="max_retained_bytes",
        doc="payload bytes of retained messages kept; 0 = unlimited",
    )
    match_cache_size: int = spec(
        4096, lo=0, settings="match_cache_size", doc="topics whose subscriber list is cached"
    )


@dataclass
class SessionsConfig:
    max_session_expiry: int = spec(
        SESSION_EXPIRY_NEVER,
        lo=0,
        hi=U32,
        settings="max_session_expiry",
        doc="cap on the Session Expiry Interval v5 clients ask for, s",
    )
    persistent_session_expiry: int = spec(
        SESSION_EXPIRY_NEVER,
        lo=0,
        hi=U32,
        settings="persistent_session_expiry",
        doc="expiry of MQTT 3.x clean_session=0 sessions, s (4294967295 = never)",
    )


@dataclass
class MqttConfig:
    maximum_qos: int = spec(2, lo=0, hi=2, settings="maximum_qos", doc="highest QoS granted")
    retain_available: bool = spec(
        True, settings="retain_available", doc="retained messages allowed"
    )
    wildcard_subscription_available: bool = spec(
        True, settings="wildcard_subscription_available", doc="'+' and '#' in subscriptions allowed"
    )
    subscription_identifier_available: bool = spec(
        True,
        settings="subscription_identifier_available",
        doc="v5 subscription identifiers allowed",
    )
    shared_subscription_available: bool = spec(
        True,
        settings="shared_subscription_available",
        doc="$share/<group>/... subscriptions allowed",
    )
    allow_zero_length_client_id: bool = spec(
        True, settings="allow_zero_length_client_id", doc="empty client ids get an assigned id"
    )
    client_id_prefix: str = spec(
        "auto-", settings="client_id_prefix", doc="prefix of assigned client identifiers"
    )
    keepalive_factor: float = spec(
        1.5,
        lo=1,
        settings="keepalive_factor",
        doc="a client silent for factor x keep alive is disconnected",
    )
    server_keep_alive: int | None = spec(
        None,
        lo=0,
        hi=65535,
        settings="server_keep_alive",
        doc="force this keep alive on v5 clients (unset = theirs)",
    )
    outgoing_topic_aliases: bool = spec(
        True,
        settings="outgoing_topic_aliases",
        doc="use topic aliases toward v5 clients that allow them",
    )
    response_information: str | None = spec(
        None, settings="response_information", doc="Response Information for v5 clients that ask"
    )
    server_reference: str | None = spec(
        None, settings="server_reference", doc="redirect every client there (0x9C)"
    )
    server_moved: bool = spec(
        False,
        settings="server_moved",
        doc="with server_reference: 0x9D Server moved instead of 0x9C",
    )


@dataclass
class PersistenceConfig:
    mode: str = spec(
        "strict",
        choices=PERSISTENCE_MODES,
        flag="persistence",
        doc="strict: acknowledged once stored; relaxed: stored every interval; off",
    )
    data_dir: str = spec("mqttfast-data", flag="data_dir", doc="directory of the database")
    interval: float = spec(
        1.0, lo=0, settings="persistence_interval", doc="relaxed mode: seconds between commits"
    )


@dataclass
class PluginConfig:
    # "class" is a Python keyword: the TOML key "class" maps to this field.
    class_: str = spec("", doc="'package.module:Class' (or package.module.Class), an AuthPlugin")
    options: dict = spec(factory=dict, doc="table handed to the plug-in's constructor")


@dataclass
class RateLimitConfig:
    burst: int = spec(5, lo=0, doc="failed logins per source before back-off starts")
    base_delay: float = spec(1.0, lo=0.001, doc="first block, seconds (doubles per failure)")
    max_delay: float = spec(300.0, lo=0.001, doc="longest block, seconds")


@dataclass
class AuthConfig:
    allow_anonymous: bool | None = spec(None, doc="unset: true unless password_file is set")
    password_file: str | None = spec(None, doc="mosquitto_passwd / mqttfast passwd format")
    acl_file: str | None = spec(None, doc="mosquitto ACL file format")
    plugin: list = spec(factory=list, doc="[[auth.plugin]] tables, asked in order")
    rate_limit: RateLimitConfig = spec(factory=RateLimitConfig, doc="failed-login back-off")


@dataclass
class SysConfig:
    interval: float = spec(
        10.0, lo=0, flag="sys_interval", doc="seconds between $SYS updates; 0 = off"
    )


@dataclass
class LoggingConfig:
    level: str = spec("info", choices=LOG_LEVELS, flag="log_level", doc="reloaded on SIGHUP")
    format: str = spec(
        "text",
        choices=LOG_FORMATS,
        flag="log_format",
        doc="text (human-readable) or json (one object per line)",
    )


@dataclass
class ServerConfig:
    """Process model (mqttfast.app.supervisor, docs/workers.md)."""

    workers: int = spec(
        1, lo=0, flag="workers", doc="broker processes on the same ports; 0 = one per core"
    )
    reuse_port: bool = spec(
        False, flag="reuse_port", doc="bind listeners with SO_REUSEPORT (set for workers)"
    )


@dataclass
class MetricsConfig:
    """Prometheus endpoint (filled in by the metrics work)."""

    enabled: bool = spec(False, doc="serve /metrics")
    address: str = spec("127.0.0.1", doc="bind address")
    port: int = spec(9883, lo=0, hi=65535, doc="HTTP port")


@dataclass
class AdminConfig:
    """Admin HTTP API and dashboard (filled in by the admin work)."""

    enabled: bool = spec(False, doc="serve the admin API")
    address: str = spec("127.0.0.1", doc="bind address (loopback by default)")
    port: int = spec(18083, lo=0, hi=65535, doc="HTTP port")
    token: str | None = spec(None, doc="bearer token required by every request")


LISTENER_DOCS = {
    "port": "TCP port (0 = any free port)",
    "address": "bind address; IPv6 allowed ('::1', '::')",
    "protocol": "mqtt or websockets",
    "unix_path": "serve on this unix socket instead of TCP",
    "name": "label used in logs",
    "certfile": "server certificate chain (PEM): enables TLS",
    "keyfile": "server private key (PEM); default: in certfile",
    "cafile": "CA bundle to verify client certificates",
    "require_certificate": "refuse clients without a valid certificate",
    "tls_version": "minimum TLS version: TLSv1.2 or TLSv1.3",
    "ciphers": "OpenSSL cipher list for TLS <= 1.2",
    "use_identity_as_username": "the certificate identity is the username (no password check)",
    "identity_source": "cn (subject common name) or san (first DNS/email/URI SAN)",
    "path": "WebSocket path",
    "max_connections": "open connections on this listener; 0 = unlimited",
}
LISTENER_CHECKS: dict[str, dict[str, Any]] = {
    "port": {"lo": 0, "hi": 65535},
    "protocol": {"choices": ("mqtt", "websockets")},
    "tls_version": {"choices": ("TLSv1.2", "TLSv1.3")},
    "identity_source": {"choices": ("cn", "san")},
    "max_connections": {"lo": 0},
}

SECTIONS: dict[str, type] = {
    "server": ServerConfig,
    "limits": LimitsConfig,
    "sessions": SessionsConfig,
    "mqtt": MqttConfig,
    "persistence": PersistenceConfig,
    "auth": AuthConfig,
    "sys": SysConfig,
    "logging": LoggingConfig,
    "metrics": MetricsConfig,
    "admin": AdminConfig,
}


@dataclass
class Config:
    listener: list[ListenerConfig] = field(default_factory=list)
    server: ServerConfig = field(default_factory=ServerConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    sessions: SessionsConfig = field(default_factory=SessionsConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    persistence: PersistenceConfig = field(default_factory=PersistenceConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    sys: SysConfig = field(default_factory=SysConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    # [[plugin]] / [[bridge]] tables, validated by their owners (mqttfast.plugins.runtime,
    # mqttfast.app.bridge): lists of PluginSpec / BridgeConfig.
    plugin: list = field(default_factory=list)
    bridge: list = field(default_factory=list)
    # [cluster] (issue 15): a mqttfast.cluster.ClusterConfig, or None (no cluster).
    cluster: Any = None
    # Key paths present in the file ("limits.max_inflight"), for precedence.
    present: set[str] = field(default_factory=set)
    source: str = ""


# ---------------------------------------------------------------------------- validation
def _toml_key(name: str) -> str:
    return name.rstrip("_")


def _type_of(annotation: Any) -> tuple[type, bool]:
    """(base type, optional) of a field annotation string like 'int | None'."""
    text = str(annotation).replace(" ", "")
    optional = text.endswith("|None")
    base = text.removesuffix("|None")
    return {"int": int, "float": float, "bool": bool, "str": str, "dict": dict, "list": list}.get(
        base, object
    ), optional


_TYPE_NAMES = {
    int: "integer",
    float: "number",
    bool: "boolean",
    str: "string",
    dict: "table",
    list: "array",
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
    fields = {_toml_key(f.name): f for f in dataclasses.fields(obj)}
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


def from_dict(data: dict[str, Any], source: str = "") -> Config:
    """Validate a parsed TOML document (or translated mosquitto.conf) into a Config."""
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
        elif key in ("plugin", "bridge"):
            if key == "plugin":
                from mqttfast.plugins.runtime import parse_plugin_tables as parse_tables
            else:
                from mqttfast.app.bridge import parse_bridge_tables as parse_tables
            getattr(cfg, key).extend(parse_tables(value, errors))
        elif key == "cluster":
            cfg.cluster = cluster_table(value, errors)
        elif key in SECTIONS:
            _fill(getattr(cfg, key), value, key, errors, present, _meta_checks)
        else:
            errors.append(f"{key}: unknown key")
    _check_listeners(cfg, errors)
    _check_auth(cfg, errors)
    if errors:
        raise ConfigError(errors, source, cfg)
    return cfg


def cluster_table(value: Any, errors: list[str]) -> Any:
    """[cluster] -> mqttfast.cluster.ClusterConfig (issue 15; imported only when present)."""
    if not isinstance(value, dict):
        errors.append(f"cluster: expected a table, got {_describe(value)}")
        return None
    from mqttfast.cluster.config import ClusterConfig

    names = {f.name for f in dataclasses.fields(ClusterConfig)} - {"data_dir"}
    kwargs: dict[str, Any] = {}
    for k, v in value.items():
        if k not in names:
            errors.append(f"cluster.{k}: unknown key")
        elif k == "servers" and isinstance(v, str):
            kwargs[k] = [s.strip() for s in v.split(",") if s.strip()]
        elif k == "servers" and not (isinstance(v, list) and all(isinstance(s, str) for s in v)):
            errors.append(f"cluster.servers: expected a list of nats:// URLs, got {_describe(v)}")
        elif k == "replicas" and (not isinstance(v, int) or isinstance(v, bool)):
            errors.append(f"cluster.replicas: expected an integer, got {_describe(v)}")
        elif k not in ("servers", "replicas") and not isinstance(v, str):
            errors.append(f"cluster.{k}: expected a string, got {_describe(v)}")
        else:
            kwargs[k] = v
    cc = ClusterConfig(**kwargs)
    try:
        cc.validate(require_servers=False)  # --cluster may give them
    except ValueError as err:
        errors.append(str(err))
    return cc


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
    for i, plugin in enumerate(cfg.auth.plugin):
        p = f"auth.plugin[{i}]"
        pc = PluginConfig()
        if not isinstance(plugin, dict):
            errors.append(f"{p}: expected table, got {_describe(plugin)}")
            continue
        _fill(pc, plugin, p, errors, cfg.present, _meta_checks)
        if not pc.class_:
            errors.append(f"{p}.class: required ('package.module:Class')")
        cfg.auth.plugin[i] = pc
    rl = cfg.auth.rate_limit
    if rl.max_delay < rl.base_delay:
        errors.append("auth.rate_limit.max_delay: must be >= auth.rate_limit.base_delay")


def load_toml(path: str) -> Config:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as err:
        raise ConfigError([f"{path}: cannot read: {err.strerror or err}"], path) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError([f"{path}: TOML syntax error: {err}"], path) from None
    return from_dict(data, path)


def load_mosquitto(path: str, warn: Callable[[str], None] | None = None) -> Config:
    from .mosquitto_conf import translate

    data = translate(path, warn or (lambda msg: log.warning("%s", msg)))
    return from_dict(data, path)


# ---------------------------------------------------------------------------- deep checks
def build_ssl_context(lc: ListenerConfig):  # type: ignore[no-untyped-def]
    from mqttfast.app.security.tls import build_server_context

    return build_server_context(
        lc.certfile,
        lc.keyfile,
        lc.cafile,  # type: ignore[arg-type]
        require_certificate=lc.require_certificate,
        min_version=lc.tls_version,
        ciphers=lc.ciphers,
    )


def deep_check(cfg: Config) -> list[str]:
    """Load what the config points at (certificates, password/ACL files, plug-ins)."""
    errors: list[str] = []
    for i, lc in enumerate(cfg.listener):
        if lc.certfile is not None:
            try:
                build_ssl_context(lc)
            except (OSError, ValueError) as err:  # ssl.SSLError is an OSError
                errors.append(f"listener[{i}].certfile: cannot set up TLS: {err}")
    try:
        build_authenticator(cfg)
    except ConfigError as err:
        errors.extend(err.errors)
    if cfg.plugin:  # [[plugin]]: import and construct each (mqttfast.plugins.runtime)
        from mqttfast.plugins.runtime import load_specs

        try:
            load_specs(cfg.plugin)
        except ValueError as err:
            errors.append(str(err))
    try:  # the metrics/admin endpoints' own start-up checks (admin token, ...)
        from mqttfast.app.admin import check_ops, ops_options
    except ImportError:
        return errors
    errors.extend(check_ops(ops_options(cfg, None)))
    return errors


# ---------------------------------------------------------------------------- applying
def build_authenticator(cfg: Config):  # type: ignore[no-untyped-def]
    from mqttfast.app.security.auth import Authenticator, load_plugin
    from mqttfast.app.security.ratelimit import LoginRateLimiter

    a = cfg.auth
    errors: list[str] = []
    plugins = []
    for i, pc in enumerate(a.plugin):
        try:
            plugins.append(load_plugin(pc.class_, pc.options))
        except Exception as err:
            errors.append(f"auth.plugin[{i}].class: {err}")
    try:
        rl = LoginRateLimiter(
            burst=a.rate_limit.burst,
            base_delay=a.rate_limit.base_delay,
            max_delay=a.rate_limit.max_delay,
        )
    except ValueError as err:
        errors.append(f"auth.rate_limit: {err}")
        rl = None
    for key in ("password_file", "acl_file"):
        path = getattr(a, key)
        if path is None:
            continue
        try:
            if key == "password_file":
                from mqttfast.app.security.passwords import PasswordFile

                PasswordFile.load(path)
            else:
                from mqttfast.app.security.acl import AclFile

                AclFile.load(path)
        except (OSError, ValueError) as err:
            errors.append(f"auth.{key}: {getattr(err, 'strerror', None) or err}")
    if errors:
        raise ConfigError(errors, cfg.source)
    auth = Authenticator(
        password_file=a.password_file,
        acl_file=a.acl_file,
        allow_anonymous=a.allow_anonymous,
        plugins=plugins,
        rate_limiter=rl,
    )
    return auth


def make_hooks(auth):  # type: ignore[no-untyped-def]
    """SecurityHooks whose plain authentication runs off the event loop (deferred CONNACK)."""
    from mqttfast.app.security.hooks import SecurityHooks
    from mqttfast.codec.constants import ReasonCode

    class LoopSecurityHooks(SecurityHooks):
        def begin_authenticate(self, client, username, password, done):  # type: ignore[no-untyped-def]
            a = self.auth
            if not a.plugins and (username is None or a.passwords is None):
                return self.authenticate(client, username, password)  # nothing to hash
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return self.authenticate(client, username, password)
            task = loop.create_task(
                a.authenticate_async(
                    client.client_id, username, password, getattr(client, "peer", None)
                )
            )

            def finished(t: asyncio.Task) -> None:
                if t.cancelled():
                    return
                exc = t.exception()
                if exc is not None:
                    log.error("authentication failed with %r; refusing", exc)
                    done(ReasonCode.UNSPECIFIED_ERROR)
                else:
                    done(int(t.result()))

            task.add_done_callback(finished)
            return None

    if auth.acl is None and not auth.plugins:
        # Nothing can deny a delivery: keep the per-delivery check off the hot path
        # (the broker only calls authorise_receive when a hooks class overrides it).
        from mqttfast.core.hooks import Hooks

        class NoReadCheckHooks(LoopSecurityHooks):
            authorise_receive = Hooks.authorise_receive

        return NoReadCheckHooks(auth)
    return LoopSecurityHooks(auth)


def broker_settings(cfg: Config, args: argparse.Namespace | None = None):  # type: ignore[no-untyped-def]
    """BrokerSettings for this config. With ``args`` (already parsed with the file's
    values as flag defaults, see :func:`parse_args`), flag-backed keys come from args."""
    from mqttfast.core.settings import BrokerSettings

    if args is not None:
        from mqttfast.app.cli import settings_from_args

        settings = settings_from_args(args)
    else:
        settings = BrokerSettings()
    for section, obj in _sections(cfg):
        for f in dataclasses.fields(obj):
            target = f.metadata.get("settings")
            flag = f.metadata.get("flag")
            value = getattr(obj, f.name)
            if target is not None and f"{section}.{_toml_key(f.name)}" in cfg.present:
                setattr(settings, target, value)
            elif (
                flag is not None
                and args is None
                and f"{section}.{_toml_key(f.name)}" in cfg.present
            ):
                _apply_flag_value(settings, flag, value)
    if cfg.listener:
        settings.host, settings.port = cfg.listener[0].address, cfg.listener[0].port
    return settings


def _apply_flag_value(settings: Any, flag: str, value: Any) -> None:
    """Without argparse: what settings_from_args would do with a flag's value."""
    if flag == "max_packet_size":
        settings.max_packet_size = min(value or MAX_PACKET_SIZE, MAX_PACKET_SIZE)
    elif flag in ("log_level", "log_format"):
        return
    elif hasattr(settings, flag):
        setattr(settings, flag, value)


def _sections(cfg: Config) -> list[tuple[str, Any]]:
    return [(name, getattr(cfg, name)) for name in SECTIONS]


def flag_defaults(cfg: Config) -> dict[str, Any]:
    """argparse dest -> value, for every flag-backed key present in the file."""
    out: dict[str, Any] = {}
    for section, obj in _sections(cfg):
        for f in dataclasses.fields(obj):
            flag = f.metadata.get("flag")
            if flag and f"{section}.{_toml_key(f.name)}" in cfg.present:
                out[flag] = getattr(obj, f.name)
    return out


def explicit_dests(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set[str]:
    """The argparse dests given on this command line (not defaulted)."""
    probe = argparse.ArgumentParser(add_help=False)
    for action in parser._actions:
        if not action.option_strings or action.dest in ("help", "version"):
            continue
        kwargs: dict[str, Any] = {"dest": action.dest, "default": argparse.SUPPRESS}
        if action.nargs is not None and not isinstance(action, argparse._StoreConstAction):
            kwargs["nargs"] = action.nargs
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            kwargs["action"] = (
                "store_true" if isinstance(action, argparse._StoreTrueAction) else "store_false"
            )
        probe.add_argument(*action.option_strings, **kwargs)
    ns, _ = probe.parse_known_args(list(argv))
    return set(vars(ns))


def parse_args(
    parser: argparse.ArgumentParser, argv: Sequence[str]
) -> tuple[argparse.Namespace, Runtime]:
    """Parse the command line with ``--config``/``--mosquitto-config`` applied
    underneath it. Config errors: every error on stderr, exit code 2."""
    args = parser.parse_args(argv)
    path = getattr(args, "config", None)
    mpath = getattr(args, "mosquitto_config", None)
    if path and mpath:
        parser.error("--config and --mosquitto-config are exclusive")
    cfg = Config()
    warnings: list[str] = []
    if path or mpath:
        try:
            cfg = load_toml(path) if path else load_mosquitto(mpath, warnings.append)
        except ConfigError as err:
            for line in err.errors:
                print(f"mqttfast: config error: {line}", file=sys.stderr)
            raise SystemExit(2) from None
        parser.set_defaults(**flag_defaults(cfg))
        args = parser.parse_args(argv)
    explicit = explicit_dests(parser, argv)
    if not cfg.listener:
        cfg.listener.append(ListenerConfig(port=args.port, address=args.host))
    else:
        first = cfg.listener[0]
        if "host" in explicit:
            first.address = args.host
        if "port" in explicit:
            first.port = args.port
    runtime = Runtime(cfg, explicit, path or mpath, bool(mpath))
    runtime.warnings = warnings  # logged once logging is set up (setup_security)
    return args, runtime


# ---------------------------------------------------------------------------- runtime
class Runtime:
    """What ``serve`` needs beyond BrokerSettings: listeners, security hooks, reload."""

    def __init__(
        self,
        cfg: Config,
        explicit: set[str] = frozenset(),  # type: ignore[assignment]
        path: str | None = None,
        mosquitto: bool = False,
    ) -> None:
        self.cfg = cfg
        self.explicit = explicit
        self.path = path
        self.mosquitto = mosquitto
        self.authenticator: Any = None
        self.hooks: Any = None
        self.listeners: list[Any] = []
        self.warnings: list[str] = []
        self.worker_link: Any = None  # mqttfast.app.worker_link.WorkerLink in a worker

    @classmethod
    def for_settings(cls, settings: Any) -> Runtime:
        """One plain listener at settings.host:settings.port, default security."""
        rt = cls(Config(listener=[ListenerConfig(port=settings.port, address=settings.host)]))
        rt.setup_security()
        return rt

    def setup_security(self) -> None:
        """Build the Authenticator + hooks (raises ConfigError)."""
        for line in self.warnings:
            log.warning("%s", line)
        self.warnings = []
        a = self.cfg.auth
        if not (a.password_file or a.acl_file or a.plugin) and a.allow_anonymous is not False:
            return  # everyone may do everything: the core's allow-all Hooks, no per-packet cost
        self.authenticator = build_authenticator(self.cfg)
        self.hooks = make_hooks(self.authenticator)

    async def start_listeners(self, server: Any) -> list[Any]:
        """Open every listener; raises OSError/ValueError with the listener named."""
        from mqttfast.app.security.tls import identity_from_peercert

        for i, lc in enumerate(self.cfg.listener):
            ctx = None
            identity = None
            if lc.certfile is not None:
                try:
                    ctx = build_ssl_context(lc)
                except (OSError, ValueError) as err:
                    raise ValueError(f"listener[{i}] ({lc.label()}): TLS: {err}") from None
                if lc.use_identity_as_username:
                    source = lc.identity_source

                    def identity(transport: Any, source: str = source) -> str | None:
                        return identity_from_peercert(transport.get_extra_info("peercert"), source)

            try:
                listener = await server.start_listener(lc, ctx, identity)
            except OSError as err:
                raise OSError(
                    err.errno, f"listener[{i}] ({lc.label()}): {err.strerror or err}"
                ) from None
            self.listeners.append(listener)
            where = lc.label()
            if not lc.unix_path and lc.port == 0:
                addr = listener.addresses()
                where += f" (port {addr[0][1]})" if addr else ""
            log.info("listening on %s", where)
        return self.listeners

    def reload(self) -> None:
        """SIGHUP: password and ACL files, plug-ins, and the log level from the file."""
        log.info("SIGHUP: reloading")
        if self.authenticator is not None:
            self.authenticator.reload()
        if self.path and "log_level" not in self.explicit:
            try:
                cfg = (
                    load_mosquitto(self.path, lambda w: None)
                    if self.mosquitto
                    else load_toml(self.path)
                )
            except ConfigError as err:
                log.error("config reload failed, keeping the log level: %s", err)
                return
            if "logging.level" in cfg.present:
                logging.getLogger().setLevel(getattr(logging, cfg.logging.level.upper()))
                log.info("log level %s", cfg.logging.level)


# ---------------------------------------------------------------------------- reference
def _fmt_default(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, float) and value.is_integer():
        return str(value)
    if isinstance(value, (list, dict)):
        return "[]" if isinstance(value, list) else "{}"
    return str(value)


def reference_rows() -> list[tuple[str, str, str, str]]:
    """(key path, type, default, description) of every key: docs/configuration.md's tables."""
    rows: list[tuple[str, str, str, str]] = []
    for f in dataclasses.fields(ListenerConfig):
        typ = str(f.type).replace(" | None", "")
        rows.append(
            (f"listener[].{f.name}", typ, _fmt_default(f.default), LISTENER_DOCS.get(f.name, ""))
        )

    def walk(prefix: str, obj: Any) -> None:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            key = f"{prefix}.{_toml_key(f.name)}"
            if dataclasses.is_dataclass(value):
                walk(key, value)
                continue
            typ = str(f.type).replace(" | None", "")
            rows.append((key, typ, _fmt_default(value), f.metadata.get("doc", "")))

    for name, cls in SECTIONS.items():
        walk(name, cls())
    walk("auth.plugin[]", PluginConfig())
    return rows


# ---------------------------------------------------------------------------- check-config
def check_config_main(argv: Sequence[str]) -> int:
    """``mqttfast check-config [--mosquitto] FILE``: every error, exit 2; else "ok", 0."""
    p = argparse.ArgumentParser(
        prog="mqttfast check-config", description="Validate a configuration file."
    )
    p.add_argument("--mosquitto", action="store_true", help="FILE is a mosquitto.conf")
    p.add_argument("file")
    try:
        ns = p.parse_args(list(argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    warnings: list[str] = []
    try:
        cfg = load_mosquitto(ns.file, warnings.append) if ns.mosquitto else load_toml(ns.file)
        errors = deep_check(cfg)
    except ConfigError as err:
        errors = list(err.errors)
        if err.partial is not None:
            errors += [e for e in deep_check(err.partial) if e not in errors]
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    if errors:
        for line in errors:
            print(line)
        print(f"{ns.file}: {len(errors)} error{'s' if len(errors) != 1 else ''}")
        return 2
    print("ok")
    return 0


__all__ = [
    "Config",
    "ConfigError",
    "from_dict",
    "load_toml",
    "load_mosquitto",
    "parse_args",
    "broker_settings",
    "flag_defaults",
    "Runtime",
    "check_config_main",
    "deep_check",
    "SECTIONS",
    "LISTENER_DOCS",
]
