"""The ``mqttfast`` command.

``mqttfast [options]`` serves MQTT (default 0.0.0.0:1883). Subcommands are
dispatched by the first argument (``mqttfast passwd ...``); more (``bench``,
``check-config``) plug into ``SUBCOMMANDS``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

from mqttfast import __version__

# name -> "module:function" taking argv and returning an exit code (imported lazily).
SUBCOMMANDS: dict[str, str] = {
    "passwd": "mqttfast.app.security.passwd_cli:main",
    "check-config": "mqttfast.app.config:check_config_main",
    "bench": "mqttfast.app.bench:main",
}

log = logging.getLogger("mqttfast")

SHUTDOWN_TIMEOUT = 5.0  # seconds for server.stop() on SIGTERM/SIGINT


class OneLineParser(argparse.ArgumentParser):
    """Bad flags: one line on stderr, exit code 2 (argparse prints usage too)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"port out of range: {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="mqttfast", description="A fast MQTT 3.1/3.1.1/5.0 broker.")
    p.add_argument("--version", action="version", version=f"mqttfast {__version__}")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    p.add_argument("--port", type=_port, default=1883, help="TCP port (default 1883)")
    p.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error", "critical"],
        type=str.lower,
        help="logging level (default info)",
    )
    p.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        type=str.lower,
        help="log lines as text (default) or JSON objects",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="TOML configuration file (docs/configuration.md); flags override it",
    )
    p.add_argument(
        "--mosquitto-config",
        metavar="FILE",
        help="read a mosquitto.conf (common subset) instead of --config",
    )
    p.add_argument(
        "--sys-interval",
        type=_seconds,
        default=10.0,
        help="seconds between $SYS updates; 0 disables (default 10)",
    )
    p.add_argument(
        "--connect-timeout",
        type=_seconds,
        default=10.0,
        help="seconds a new connection has to send CONNECT (default 10)",
    )
    p.add_argument(
        "--max-inflight",
        type=_positive_int,
        default=20,
        help="outgoing QoS 1/2 messages in flight per client; 0 = 65535 (default 20)",
    )
    p.add_argument(
        "--max-queued-messages",
        type=_positive_int,
        default=1000,
        help="QoS 1/2 messages queued per session; 0 = unlimited (default 1000); "
        "at the limit new messages are dropped and counted",
    )
    p.add_argument(
        "--max-packet-size",
        type=_positive_int,
        default=0,
        help="largest packet accepted from clients in bytes; 0 = protocol maximum",
    )
    p.add_argument(
        "--persistence",
        default="strict",
        type=str.lower,
        choices=["strict", "on", "relaxed", "off"],
        help="durable state: strict (= on, default: acknowledged only once stored), "
        "relaxed (stored every second), off (memory only)",
    )
    p.add_argument(
        "--data-dir",
        default="mqttfast-data",
        help="directory of the persistence database (default ./mqttfast-data)",
    )
    p.add_argument(
        "--max-retained-messages",
        type=_positive_int,
        default=1_000_000,
        help="retained messages kept; 0 = unlimited (default 1000000); at the limit "
        "retained messages for new topics are not stored, and counted",
    )
    p.add_argument(
        "--max-retained-bytes",
        type=_positive_int,
        default=1024**3,
        help="payload bytes of retained messages kept; 0 = unlimited (default 1 GiB)",
    )
    # Operations endpoints (mqttfast/app/admin, docs/operations.md); a port turns one on.
    p.add_argument(
        "--metrics-port",
        type=_port,
        default=None,
        help="serve Prometheus /metrics on this port (default off; [metrics] address)",
    )
    p.add_argument(
        "--admin-port",
        type=_port,
        default=None,
        help="serve the admin API and dashboard on this port (default off)",
    )
    p.add_argument(
        "--admin-token",
        default=None,
        help="bearer token of the admin API (or env MQTTFAST_ADMIN_TOKEN)",
    )
    # -- workers and cluster (i16-workers wiring; re-homed by the config schema) --------
    p.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="broker processes accepting on the same ports, joined over NATS; "
        "0 = one per core (default 1; docs/workers.md)",
    )
    p.add_argument(
        "--reuse-port",
        action="store_true",
        help="bind listeners with SO_REUSEPORT (Linux; set by --workers for its workers)",
    )
    p.add_argument("--worker-index", type=_positive_int, default=None, help=argparse.SUPPRESS)
    # Cluster (issue 15, docs/cluster.md): flags over the [cluster] table.
    p.add_argument("--cluster", metavar="URL[,URL...]", default=None, help="NATS servers")
    p.add_argument("--node-id", default=None, help="cluster node id (default: kept in data dir)")
    p.add_argument("--cluster-prefix", default=None, help="NATS subject prefix (default mqtt)")
    return p


def cluster_config(runtime, args, settings):  # type: ignore[no-untyped-def]
    """The ClusterConfig from [cluster] and the --cluster flags, or None (no import)."""
    cc = getattr(runtime.cfg, "cluster", None)
    if cc is None and not args.cluster:
        return None
    from mqttfast.cluster import ClusterConfig

    if cc is None:
        cc = ClusterConfig()
    if args.cluster:
        cc.servers = [u.strip() for u in args.cluster.split(",") if u.strip()]
    if args.node_id:
        cc.node_id = args.node_id
    if args.cluster_prefix is not None:
        cc.subject_prefix = args.cluster_prefix
    cc.data_dir = settings.data_dir
    cc.validate()
    return cc


def settings_from_args(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from mqttfast.codec.constants import MAX_PACKET_SIZE
    from mqttfast.core.settings import BrokerSettings

    max_packet = args.max_packet_size or MAX_PACKET_SIZE
    return BrokerSettings(
        host=args.host,
        port=args.port,
        sys_interval=args.sys_interval,
        connect_timeout=args.connect_timeout,
        max_inflight=args.max_inflight,
        max_queued_messages=args.max_queued_messages,
        max_packet_size=min(max_packet, MAX_PACKET_SIZE),
        # As mosquitto: max_inflight_messages is also the Receive Maximum told to v5 clients.
        receive_maximum=args.max_inflight or 65535,
        persistence="strict" if args.persistence == "on" else args.persistence,
        data_dir=args.data_dir,
        max_retained_messages=args.max_retained_messages,
        max_retained_bytes=args.max_retained_bytes,
    )


async def serve(settings, runtime=None) -> int:  # type: ignore[no-untyped-def]
    from mqttfast.app.persistence import PersistenceError, open_storage
    from mqttfast.codec import IMPLEMENTATION
    from mqttfast.core.broker import Broker
    from mqttfast.transport.server import MQTTServer

    # Signal handlers first: a SIGTERM during start-up (storage recovery, plug-in
    # loading, binding) must end in the same clean shutdown and exit code 0, not kill
    # the process with -15. stop.wait() below returns at once if it already came.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # e.g. Windows
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))
    try:
        storage = open_storage(
            settings.persistence, settings.data_dir, settings.persistence_interval
        )
        if runtime is None:  # listeners and security from settings alone
            from mqttfast.app.config import Runtime

            runtime = Runtime.for_settings(settings)
        broker = Broker(settings, hooks=runtime.hooks, storage=storage)
        backplane = None
        if getattr(runtime, "cluster", None) is not None:
            from mqttfast.cluster import Backplane

            backplane = Backplane(runtime.cluster)
            backplane.attach(broker)
            broker.cluster = backplane  # status() for $SYS / metrics / admin
        restored = storage.recover(broker)  # before accepting connections
    except PersistenceError as err:
        print(f"mqttfast: error: {err}", file=sys.stderr)
        return 2
    if storage.durable:
        log.info(
            "persistence %s in %s: restored %s",
            settings.persistence,
            settings.data_dir,
            ", ".join(f"{v} {k}" for k, v in restored.items()),
        )
    from mqttfast.plugins.runtime import Extensions

    try:  # [[plugin]] hooks are in place before the first client; [[bridge]]s start below
        extensions = Extensions.prepare(runtime.cfg, broker)
    except ValueError as err:
        print(f"mqttfast: config error: {err}", file=sys.stderr)
        storage.close()
        return 2
    if backplane is not None:
        await backplane.start()
    server = MQTTServer(broker)
    link = getattr(runtime, "worker_link", None)
    if link is not None:  # a --workers worker: $SYS figures are the group's totals
        await link.start(broker)
    try:
        await runtime.start_listeners(server)  # every [[listener]] (config.py)
    except (OSError, ValueError) as err:
        log.error("cannot listen: %s", getattr(err, "strerror", None) or err)
        await server.stop()
        storage.close()
        return 1
    # One line, "mqttfast <version> listening on HOST:PORT (codec: cython|python)";
    # several listeners are listed comma-separated (plain TCP as HOST:PORT).
    log.info(
        "mqttfast %s listening on %s (codec: %s)",
        __version__,
        ", ".join(_where(lst) for lst in runtime.listeners) or "nothing",
        IMPLEMENTATION,
    )
    from mqttfast.app.admin import start_ops

    try:  # /metrics and the admin API, when enabled
        ops = await start_ops(broker, getattr(runtime, "ops", None), IMPLEMENTATION)
    except OSError as err:
        log.error("cannot serve metrics/admin: %s", err.strerror or err)
        await server.stop()
        storage.close()
        return 1
    await extensions.start()  # plug-ins' start(), bridges connect out
    tune_gc()
    try:  # SIGHUP: reload password/ACL files and the log level, connections stay
        loop.add_signal_handler(signal.SIGHUP, runtime.reload)
    except (AttributeError, NotImplementedError, RuntimeError):
        pass
    await stop.wait()
    log.info("shutting down")
    await ops.stop()
    try:  # bounded: v5 clients get DISCONNECT 0x8B, wills go out, output is flushed
        await asyncio.wait_for(
            extensions.stop(server), SHUTDOWN_TIMEOUT
        )  # bridges, server, plug-ins
    except TimeoutError:
        log.warning("shutdown took over %.0f s; exiting anyway", SHUTDOWN_TIMEOUT)
    if backplane is not None:
        await backplane.stop()
    storage.close()
    log.info("stopped")
    return 0


def _where(listener) -> str:  # type: ignore[no-untyped-def]
    cfg = listener.cfg
    if cfg.protocol == "mqtt" and not cfg.tls and not cfg.unix_path and not cfg.name:
        addrs = listener.addresses()
        port = addrs[0][1] if addrs else cfg.port
        return f"{cfg.address}:{port}"
    return cfg.label()


def tune_gc() -> None:
    """Move start-up objects out of the collector's sight and collect young objects less
    often: with the default thresholds the collector's pauses dominate the p99 latency
    (4 ms -> 0.2 ms at 2,000 msg/s). The broker creates few reference cycles."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 1000)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        module, _, func = SUBCOMMANDS[argv[0]].partition(":")
        return int(getattr(importlib.import_module(module), func)(argv[1:]) or 0)
    from mqttfast.app import config

    args, runtime = config.parse_args(build_parser(), argv)  # --config under the flags
    if args.workers != 1:  # a supervisor and N worker processes (docs/workers.md)
        from mqttfast.app.supervisor import main as supervise

        return supervise(argv, (args, runtime))
    if args.reuse_port:
        from mqttfast.transport import listeners

        listeners.reuse_port = True
    from mqttfast.app.admin import check_ops, ops_options
    from mqttfast.app.logging_setup import configure_logging

    configure_logging(args.log_level, args.log_format)
    runtime.ops = ops_options(runtime.cfg, args, runtime.explicit)
    for line in check_ops(runtime.ops):
        print(f"mqttfast: error: {line}", file=sys.stderr)
        return 2
    settings = config.broker_settings(runtime.cfg, args)
    try:
        runtime.cluster = cluster_config(runtime, args, settings)
    except ValueError as err:
        print(f"mqttfast: config error: {err}", file=sys.stderr)
        return 2
    if args.worker_index is not None:  # started by mqttfast.app.supervisor (--workers)
        from mqttfast.app.local_nats import cluster_credentials
        from mqttfast.app.worker_link import from_env

        runtime.worker_link = from_env()
        cluster_credentials(runtime.cluster)  # the supervisor's own nats-server's
        # The supervisor serves the public ones; a worker's are for it alone.
        runtime.ops.metrics_host = runtime.ops.admin_host = "127.0.0.1"
    try:
        runtime.setup_security()
    except config.ConfigError as err:
        for line in err.errors:
            print(f"mqttfast: config error: {line}", file=sys.stderr)
        return 2
    from mqttfast.transport.server import new_event_loop

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        try:
            return runner.run(serve(settings, runtime))
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    sys.exit(main())
