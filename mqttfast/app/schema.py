"""The configuration schema: every key of the TOML file, its type, default, bounds,
documentation, the command-line flag that overrides it and the core setting it feeds.

Plain declarations only. Reading a file, a mosquitto.conf or the command line into a
:class:`Config` is :mod:`mqttfast.app.loader`; turning a Config into a running broker
is :mod:`mqttfast.app.assembly`; ``mqttfast check-config`` is
:mod:`mqttfast.app.check_config`. docs/configuration.md's key tables are
:func:`reference_rows` (``tests/config/test_reference.py`` checks they agree).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mqttfast.codec.constants import MAX_PACKET_SIZE, SESSION_EXPIRY_NEVER
from mqttfast.transport.listeners import ListenerConfig

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
    path: bool = False,
    lo: float | None = None,
    hi: float | None = None,
    choices: Sequence[str] | None = None,
    factory: Callable[[], Any] | None = None,
) -> Any:
    """A config key: its default, documentation, where it goes (a BrokerSettings
    field and/or the argparse dest of its command-line flag), its bounds, and whether
    it names a file (``path``: relative values resolve against the config file's
    directory, and file errors name the key)."""
    meta = {
        "path": path,
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
        settings="max_packet_size",
        doc="largest packet accepted from clients, bytes; 0 = protocol maximum",
    )
    max_inflight: int = spec(
        20,
        lo=0,
        hi=65535,
        flag="max_inflight",
        settings="max_inflight",
        doc="outgoing QoS 1/2 messages in flight per client; 0 = 65535",
    )
    max_queued_messages: int = spec(
        1000,
        lo=0,
        flag="max_queued_messages",
        settings="max_queued_messages",
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
        doc="incoming unacknowledged QoS 1/2 per v5 client (CONNACK); "
        "unset: max_inflight (as mosquitto)",
    )
    topic_alias_maximum: int = spec(
        10,
        lo=0,
        hi=65535,
        settings="topic_alias_maximum",
        doc="topic aliases a v5 client may use toward the broker",
    )
    connect_timeout: float = spec(
        10.0,
        lo=0,
        flag="connect_timeout",
        settings="connect_timeout",
        doc="seconds from accept to a complete CONNECT",
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
        1_000_000,
        lo=0,
        flag="max_retained_messages",
        settings="max_retained_messages",
        doc="retained messages kept; 0 = unlimited",
    )
    max_retained_bytes: int = spec(
        1024**3,
        lo=0,
        flag="max_retained_bytes",
        settings="max_retained_bytes",
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
    allow_control_characters: bool = spec(
        False,
        settings="allow_control_characters",
        doc="accept U+0001-U+001F and U+007F-U+009F in topics, filters, client ids, user names, response topics",
    )
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
        settings="persistence",
        doc="strict: acknowledged once stored; relaxed: stored every interval; off",
    )
    data_dir: str = spec(
        "mqttfast-data",
        flag="data_dir",
        settings="data_dir",
        path=True,
        doc="directory of the database (relative: to the config file's directory)",
    )
    interval: float = spec(
        1.0, lo=0, settings="persistence_interval", doc="relaxed mode: seconds between commits"
    )
    on_error: str = spec(
        "stop",
        choices=("stop", "degrade"),
        doc="a failed commit (disk error): stop (exit 1), or degrade (serve on, not storing)",
    )


@dataclass
class PluginTable:
    """One ``[[plugin]]`` table (also the deprecated ``[[auth.plugin]]``)."""

    # "class" is a Python keyword: the TOML key "class" maps to this field.
    class_: str = spec("", doc="'package.module:Class' (or package.module.Class), a Plugin")
    entry_point: str = spec("", doc="or: a name in the 'mqttfast.plugins' entry-point group")
    options: dict = spec(factory=dict, doc="table handed to the plug-in's constructor")


PluginConfig = PluginTable  # the name of the [[auth.plugin]] table before issue 13


@dataclass
class RateLimitConfig:
    burst: int = spec(5, lo=0, doc="failed logins per source before back-off starts")
    base_delay: float = spec(1.0, lo=0.001, doc="first block, seconds (doubles per failure)")
    max_delay: float = spec(300.0, lo=0.001, doc="longest block, seconds")


@dataclass
class AuthConfig:
    allow_anonymous: bool | None = spec(
        None,
        flag="allow_anonymous",
        doc="unset: true while every listener is loopback-only and no password file or "
        "auth plug-in is set, else false; true on a non-loopback listener logs a WARNING",
    )
    password_file: str | None = spec(
        None, path=True, flag="password_file", doc="mosquitto_passwd / mqttfast passwd format"
    )
    acl_file: str | None = spec(None, path=True, doc="mosquitto ACL file format")
    plugin: list = spec(
        factory=list, doc="deprecated: [[auth.plugin]] tables are [[plugin]] tables"
    )
    rate_limit: RateLimitConfig = spec(factory=RateLimitConfig, doc="failed-login back-off")


@dataclass
class SysConfig:
    interval: float = spec(
        10.0,
        lo=0,
        flag="sys_interval",
        settings="sys_interval",
        doc="seconds between $SYS updates; 0 = off",
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
    destinations: list[str] = spec(
        factory=lambda: ["stderr"],
        doc='where lines go: "stderr", "stdout", "syslog", "file:PATH" (mosquitto log_dest)',
    )
    timestamp: bool = spec(True, doc="text lines start with a timestamp")
    timestamp_format: str | None = spec(
        None, doc="strftime format of the timestamp (unset: ISO 8601 with milliseconds)"
    )
    connection_messages: bool = spec(True, doc="log client connections and disconnections")
    syslog_facility: str = spec("daemon", doc="syslog facility: daemon, user or local0..local7")
    syslog_address: str = spec("/dev/log", doc="syslog socket (a path) or host:port (UDP)")
    aggregate_interval: float = spec(
        1.0,
        lo=0,
        doc="seconds over which repeated events of one kind (connect timeouts, refused "
        "connections, malformed packets) make one line with a count; 0 = every event",
    )


@dataclass
class ProcessConfig:
    pid_file: str | None = spec(None, path=True, doc="write the process id here (removed at exit)")
    user: str | None = spec(
        None, doc="started as root: become this user before any file is opened or created"
    )


@dataclass
class MetricsConfig:
    """Prometheus endpoint (filled in by the metrics work)."""

    enabled: bool = spec(False, doc="serve /metrics (--metrics-port N turns it on)")
    address: str = spec("127.0.0.1", doc="bind address")
    port: int = spec(9883, lo=0, hi=65535, flag="metrics_port", doc="HTTP port")


@dataclass
class AdminConfig:
    """Admin HTTP API and dashboard (filled in by the admin work)."""

    enabled: bool = spec(False, doc="serve the admin API (--admin-port N turns it on)")
    address: str = spec("127.0.0.1", doc="bind address (loopback by default)")
    port: int = spec(18083, lo=0, hi=65535, flag="admin_port", doc="HTTP port")
    token: str | None = spec(
        None,
        flag="admin_token",
        doc="bearer token required by every request (or env MQTTFAST_ADMIN_TOKEN)",
    )


@dataclass
class ServerConfig:
    """The broker process (see mqttfast.app.supervisor for workers != 1)."""

    workers: int = spec(
        1, lo=0, flag="workers", doc="broker processes sharing the listeners; 0 = one per core"
    )
    reuse_port: bool = spec(
        False, flag="reuse_port", doc="bind listeners with SO_REUSEPORT (set for workers)"
    )


@dataclass
class ClusterConfigTable:
    """[cluster]: the NATS backplane (mqttfast.cluster.ClusterConfig; data_dir is
    persistence.data_dir). No servers: no cluster, and mqttfast.cluster is never imported."""

    servers: list[str] = spec(
        factory=list, flag="cluster", doc="NATS URLs (nats://host:4222); empty = no cluster"
    )
    node_id: str | None = spec(
        None, flag="node_id", doc="unset: a stable id kept in <data_dir>/node-id"
    )
    subject_prefix: str = spec(
        "mqtt", flag="cluster_prefix", doc="several MQTT namespaces can share one NATS"
    )
    credentials: str | None = spec(None, path=True, doc="NATS .creds file")
    user: str | None = spec(None, doc="NATS user")
    password: str | None = spec(None, doc="NATS password")
    token: str | None = spec(None, doc="NATS token")
    tls_ca: str | None = spec(None, path=True, doc="CA bundle of the NATS servers")
    tls_cert: str | None = spec(None, path=True, doc="client certificate toward NATS")
    tls_key: str | None = spec(None, path=True, doc="client key toward NATS")
    replicas: int = spec(1, lo=1, hi=5, doc="JetStream replicas of the streams and KV buckets")
    ack_after_nats: bool = spec(
        True,
        doc="PUBACK/PUBREC once nats-server has a message other nodes want; "
        "false: at once (a node killed -9 may lose what it acknowledged)",
    )
    journal_max_age: float = spec(
        3600.0,
        lo=1.0,
        doc="seconds the JetStream journal keeps QoS 1/2 messages that persistent "
        "sessions may receive (replayed when a dead node's session is adopted)",
    )


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
    "path": 'WebSocket request path served; "/" = any path (as mosquitto)',
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
    "limits": LimitsConfig,
    "sessions": SessionsConfig,
    "mqtt": MqttConfig,
    "persistence": PersistenceConfig,
    "auth": AuthConfig,
    "sys": SysConfig,
    "logging": LoggingConfig,
    "metrics": MetricsConfig,
    "admin": AdminConfig,
    "server": ServerConfig,
    "cluster": ClusterConfigTable,
    "process": ProcessConfig,
}
# Listener keys that name files (relative: to the config file's directory).
LISTENER_PATHS = ("certfile", "keyfile", "cafile", "unix_path")


@dataclass
class Config:
    listener: list[ListenerConfig] = field(default_factory=list)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    sessions: SessionsConfig = field(default_factory=SessionsConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    persistence: PersistenceConfig = field(default_factory=PersistenceConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    sys: SysConfig = field(default_factory=SysConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    cluster: ClusterConfigTable = field(default_factory=ClusterConfigTable)
    process: ProcessConfig = field(default_factory=ProcessConfig)
    # [[plugin]] tables (PluginTable) and [[bridge]] tables (mqttfast.app.bridge.BridgeConfig,
    # validated by that module).
    plugin: list[PluginTable] = field(default_factory=list)
    bridge: list = field(default_factory=list)
    # Not TOML keys: where the command line or the embedding program put things.
    # No listener anywhere: "local only" on 127.0.0.1 and ::1 at this port.
    local_port: int = 1883
    worker_index: int | None = None  # --worker-index (set by the supervisor)
    # Key paths given by the file or a flag ("limits.max_inflight"), for precedence.
    present: set[str] = field(default_factory=set)
    flags: set[str] = field(default_factory=set)  # those of them given by a flag
    source: str = ""  # the file it came from ("" = built in code)
    mosquitto: bool = False  # source is a mosquitto.conf


def toml_key(name: str) -> str:
    """The TOML key of a dataclass field (``class_`` -> ``class``)."""
    return name.rstrip("_")


def sections(cfg: Config) -> list[tuple[str, Any]]:
    """(name, section object) of every [section] table."""
    return [(name, getattr(cfg, name)) for name in SECTIONS]


def _fmt_default(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, float) and value.is_integer():
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_fmt_default(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{}"
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
            key = f"{prefix}.{toml_key(f.name)}"
            if dataclasses.is_dataclass(value):
                walk(key, value)
                continue
            typ = str(f.type).replace(" | None", "")
            rows.append((key, typ, _fmt_default(value), f.metadata.get("doc", "")))

    for name, cls in SECTIONS.items():
        walk(name, cls())
    walk("plugin[]", PluginTable())
    return rows


def reference_line(row: tuple[str, str, str, str]) -> str:
    """One row of docs/configuration.md's key tables."""
    key, typ, default, doc = row
    return f"| `{key}` | {typ} | `{default}` | {doc} |"


def reference_table(prefix: str) -> str:
    """The key table of every key starting with ``prefix`` ("limits.", "listener[].")."""
    head = "| key | type | default | meaning |\n|---|---|---|---|\n"
    rows = [reference_line(r) for r in reference_rows() if r[0].startswith(prefix)]
    return head + "\n".join(rows) + "\n"


__all__ = [
    "Config",
    "ConfigError",
    "ListenerConfig",
    "PluginTable",
    "SECTIONS",
    "LISTENER_DOCS",
    "LISTENER_CHECKS",
    "LISTENER_PATHS",
    "reference_rows",
    "reference_line",
    "reference_table",
    "sections",
    "toml_key",
]
