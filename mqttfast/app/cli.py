"""The ``mqttfast`` command: flags and subcommands.

``mqttfast [options]`` serves MQTT: the flags and ``--config``/``--mosquitto-config``
become one Config (mqttfast.app.loader), which mqttfast.app.assembly turns into a
running broker; with no listener configured it listens on 127.0.0.1 and ::1 only.
Subcommands are dispatched by the first argument (``mqttfast passwd ...``, see
``SUBCOMMANDS``).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import faulthandler
import importlib
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from mqttfast import __version__
from mqttfast.plugins.loader import PluginError

from .admin import check_ops
from .assembly import Assembly, StartError
from .heap import MiB, steady_heap
from .loader import apply_flags, load_file
from .logging_setup import configure_logging, flush_aggregated
from .schema import Config, ConfigError

# name -> ("module:function" taking argv and returning an exit code, imported lazily;
# the one line of ``mqttfast --help``).
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "check-config": (
        "mqttfast.app.check_config:main",
        "validate a TOML file or (--mosquitto) a mosquitto.conf",
    ),
    "passwd": (
        "mqttfast.app.security.passwd_cli:main",
        "create or edit a password file (mosquitto_passwd compatible)",
    ),
    "bench": ("mqttfast.app.bench:main", "load-test an MQTT broker (throughput and latency)"),
}

log = logging.getLogger("mqttfast")

SHUTDOWN_TIMEOUT = 5.0  # seconds for server.stop() on SIGTERM/SIGINT
# After the bounded stop, asyncio.run still cancels leftover tasks and the interpreter
# still finalises; a hang there (a library task that ignores cancellation) would keep a
# process alive that its supervisor or init system believes gone. Past this many seconds
# after the stop request, faulthandler's own thread (no GIL needed) prints where every
# thread is and _exit()s.
HARD_EXIT_AFTER = SHUTDOWN_TIMEOUT + 10.0


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


class _VersionAction(argparse.Action):
    """``--version``: the version and which codec runs (cython or python)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kw: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and codec, exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> NoReturn:
        from mqttfast.codec import IMPLEMENTATION

        print(f"mqttfast {__version__} (codec: {IMPLEMENTATION})")
        parser.exit(0)


def _subcommand_help() -> str:
    width = max(len(name) for name in SUBCOMMANDS)
    lines = [f"  {name:<{width}}  {text}" for name, (_, text) in SUBCOMMANDS.items()]
    return (
        "subcommands (mqttfast SUBCOMMAND --help for theirs):\n"
        + "\n".join(lines)
        + "\n\nWithout --host or a [[listener]] the broker listens on 127.0.0.1 and ::1 only."
    )


def build_parser() -> argparse.ArgumentParser:
    """The broker's flags. Every flag defaults to None ("not given"): the loader
    (mqttfast.app.loader.apply_flags) puts the given ones over the config file, and
    the defaults shown here are the schema's."""
    p = OneLineParser(
        prog="mqttfast",
        usage="mqttfast [SUBCOMMAND] [options]",
        description="A fast MQTT 3.1/3.1.1/5.0 broker.",
        epilog=_subcommand_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action=_VersionAction)
    p.add_argument(
        "--host",
        help="address to listen on (default: 127.0.0.1 and ::1 only; 0.0.0.0 = all IPv4)",
    )
    p.add_argument("--port", type=_port, help="TCP port (default 1883)")
    p.add_argument(
        "--allow-anonymous",
        action="store_true",
        default=None,
        help="accept clients without credentials on a non-loopback listener "
        "(auth.allow_anonymous = true)",
    )
    p.add_argument(
        "--password-file",
        metavar="FILE",
        help="password file of the users clients log in as (mosquitto_passwd format)",
    )
    p.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error", "critical"],
        type=str.lower,
        help="logging level (default info)",
    )
    p.add_argument(
        "--log-format",
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
        help="read a mosquitto.conf instead of --config",
    )
    p.add_argument(
        "--sys-interval",
        type=_seconds,
        help="seconds between $SYS updates; 0 disables (default 10)",
    )
    p.add_argument(
        "--connect-timeout",
        type=_seconds,
        help="seconds a new connection has to send CONNECT (default 10)",
    )
    p.add_argument(
        "--max-inflight",
        type=_positive_int,
        help="outgoing QoS 1/2 messages in flight per client; 0 = 65535 (default 20)",
    )
    p.add_argument(
        "--max-queued-messages",
        type=_positive_int,
        help="QoS 1/2 messages queued per session; 0 = unlimited (default 1000); "
        "at the limit new messages are dropped and counted",
    )
    p.add_argument(
        "--max-packet-size",
        type=_positive_int,
        help="largest packet accepted from clients in bytes; 0 = protocol maximum",
    )
    p.add_argument(
        "--persistence",
        type=str.lower,
        choices=["strict", "on", "relaxed", "off"],
        help="durable state: strict (= on, default: acknowledged only once stored), "
        "relaxed (stored every second), off (memory only)",
    )
    p.add_argument(
        "--data-dir",
        help="directory of the persistence database (default ./mqttfast-data)",
    )
    p.add_argument(
        "--max-retained-messages",
        type=_positive_int,
        help="retained messages kept; 0 = unlimited (default 1000000); at the limit "
        "retained messages for new topics are not stored, and counted",
    )
    p.add_argument(
        "--max-retained-bytes",
        type=_positive_int,
        help="payload bytes of retained messages kept; 0 = unlimited (default 1 GiB)",
    )
    # Operations endpoints (mqttfast/app/admin, docs/operations.md); a port turns one on.
    p.add_argument(
        "--metrics-port",
        type=_port,
        help="serve Prometheus /metrics on this port (default off; [metrics] address)",
    )
    p.add_argument(
        "--admin-port",
        type=_port,
        help="serve the admin API and dashboard on this port (default off)",
    )
    p.add_argument(
        "--admin-token",
        help="bearer token of the admin API (or env MQTTFAST_ADMIN_TOKEN)",
    )
    # Several processes, several machines ([server], [cluster]).
    p.add_argument(
        "--workers",
        type=_positive_int,
        help="broker processes sharing the listeners; 0 = one per core (default 1)",
    )
    p.add_argument(
        "--reuse-port",
        action="store_true",
        default=None,
        help="bind listeners with SO_REUSEPORT",
    )
    p.add_argument("--worker-index", type=_positive_int, help=argparse.SUPPRESS)
    p.add_argument(
        "--cluster",
        metavar="URL[,URL...]",
        help="join a cluster over these NATS servers (needs pip install mqttfast[cluster])",
    )
    p.add_argument("--node-id", help="this node's id in the cluster (default: kept in data dir)")
    p.add_argument("--cluster-prefix", help="NATS subject prefix of the cluster (default mqtt)")
    return p


def load_config(args: argparse.Namespace, warnings: list[str] | None = None) -> Config:
    """The Config of this command line: the file (if any), then the flags over it.
    Warnings of the mosquitto.conf translation go to ``warnings`` (logged once the
    logging configuration they may change is in place). Raises ConfigError."""
    if args.config and args.mosquitto_config:
        raise ConfigError(["--config and --mosquitto-config are exclusive"])
    path = args.config or args.mosquitto_config
    warn = warnings.append if warnings is not None else None
    cfg = load_file(path, bool(args.mosquitto_config), warn) if path else Config()
    apply_flags(cfg, vars(args))
    errors = check_ops(cfg)
    if errors:
        raise ConfigError(errors, cfg.source)
    return cfg


async def serve(cfg: Config) -> int:
    """Run the broker of ``cfg`` until SIGTERM/SIGINT; the exit code."""
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
    assembly = Assembly(cfg)
    try:
        await assembly.start()
    except StartError as err:
        if err.exit_code == 2:
            print(f"mqttfast: error: {err}", file=sys.stderr)
        else:
            log.error("%s", err)
        return err.exit_code
    except ConfigError as err:
        for line in err.errors:
            print(f"mqttfast: config error: {_in_file(err.source, line)}", file=sys.stderr)
        return 2
    except PluginError as err:
        print(f"mqttfast: config error: {_in_file(cfg.source, str(err))}", file=sys.stderr)
        return 2
    tune_gc()
    try:  # SIGHUP: reload password/ACL files, plug-ins and the log level; connections stay
        loop.add_signal_handler(signal.SIGHUP, lambda: _reload(assembly))
    except (AttributeError, NotImplementedError, RuntimeError):
        pass
    await stop.wait()
    log.info("shutting down")
    faulthandler.dump_traceback_later(HARD_EXIT_AFTER, exit=True)
    try:  # bounded: v5 clients get DISCONNECT 0x8B, wills go out, output is flushed
        await asyncio.wait_for(assembly.stop(), SHUTDOWN_TIMEOUT)
    except TimeoutError:
        log.warning("shutdown took over %.0f s; exiting anyway", SHUTDOWN_TIMEOUT)
    log.info("stopped")
    return 0


def _reload(assembly: Assembly) -> None:
    assembly.reload()
    cfg = assembly.cfg
    if not cfg.source or "logging.level" in cfg.flags:
        return
    try:
        fresh = load_file(cfg.source, cfg.mosquitto, lambda w: None)
    except ConfigError as err:
        log.error("config reload failed, keeping the log level: %s", err)
        return
    if "logging.level" in fresh.present:
        logging.getLogger().setLevel(getattr(logging, fresh.logging.level.upper()))
        log.info("log level %s", fresh.logging.level)


def _in_file(source: str, line: str) -> str:
    """``FILE: key: message`` unless the message already names the file."""
    return line if not source or line.startswith(source) else f"{source}: {line}"


def tune_gc() -> None:
    """Move start-up objects out of the collector's sight and collect young objects less
    often: with the default thresholds the collector's pauses dominate the p99 latency
    (4 ms -> 0.2 ms at 2,000 msg/s). The broker creates few reference cycles."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 1000)


# Linux >= 6.12 (EEVDF): a SCHED_OTHER thread may ask for a shorter time slice (sched_runtime
# of sched_setattr, 0.1-100 ms; default ~0.75-3 ms). A woken thread with a shorter slice
# preempts the thread that woke it instead of waiting for it to sleep: when a client's
# write wakes the broker on the client's CPU (TCP wakeups prefer the waker's CPU), the
# message no longer waits for the client's loop turn to end (issue 17: latency at low load
# on a shared machine). Same nice level, same share of the CPU. Older kernels ignore it.
SCHED_SLICE_ENV = "MQTTFAST_SCHED_SLICE_US"
# Off by default: in one run the 300 µs slice lowered p50 at 2,000 msg/s but cost the
# saturated cells (QoS 2 pairs 0.90x, 16 KiB fan-in 0.82x): the broker then preempts the
# clients it serves on a 2-core machine. MQTTFAST_SCHED_SLICE_US=300 asks for it.
SCHED_SLICE_US = 0
_SYS_SCHED_SETATTR = {"x86_64": 314, "aarch64": 274, "arm64": 274}


def short_sched_slice(micros: int | None = None) -> bool:
    """Ask the kernel for a ``micros`` time slice for this thread; False if not done."""
    import os
    import platform

    if micros is None:
        try:
            micros = int(os.environ.get(SCHED_SLICE_ENV, SCHED_SLICE_US))
        except ValueError:
            return False
    nr = _SYS_SCHED_SETATTR.get(platform.machine())
    if micros <= 0 or nr is None or not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes  # (preloaded before a privilege drop: process.PRELOAD_MODULES)
        import struct

        libc = ctypes.CDLL(None, use_errno=True)
        nice = os.getpriority(os.PRIO_PROCESS, 0)  # kept: sched_setattr sets it too
        # struct sched_attr, version 0: size, policy (SCHED_OTHER), flags, nice,
        # priority, runtime (the slice, ns), deadline, period.
        attr = ctypes.create_string_buffer(
            struct.pack("IIQiIQQQ", 48, 0, 0, nice, 0, micros * 1000, 0, 0), 48
        )
        return int(libc.syscall(nr, 0, attr, 0)) == 0
    except (ImportError, OSError, AttributeError):
        return False


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        module, _, func = SUBCOMMANDS[argv[0]][0].partition(":")
        return int(getattr(importlib.import_module(module), func)(argv[1:]) or 0)
    args = build_parser().parse_args(argv)
    warnings: list[str] = []
    try:
        cfg = load_config(args, warnings)
    except ConfigError as err:
        for line in err.errors:
            print(f"mqttfast: config error: {_in_file(err.source, line)}", file=sys.stderr)
        return 2
    if cfg.server.workers != 1:  # a supervisor and N worker processes (docs/workers.md)
        from mqttfast.app.supervisor import main as supervise

        return int(supervise(argv, cfg))
    if cfg.worker_index is not None:  # a worker: the supervisor serves the public endpoints
        cfg.metrics.address = cfg.admin.address = "127.0.0.1"
    from .process import ProcessError, start_process

    try:  # become process.user before any file (pid, log, data) is opened or created
        note = start_process(cfg.process.user, cfg.process.pid_file)
        configure_logging(cfg.logging.level, cfg.logging.format, cfg.logging)
    except (ProcessError, ValueError) as err:
        print(f"mqttfast: config error: {err}", file=sys.stderr)
        return 2
    if note:
        log.info("%s", note)
    for line in warnings:
        log.warning("%s", line)
    atexit.register(flush_aggregated)
    from mqttfast.transport.server import new_event_loop

    short_sched_slice()  # the event loop's thread (the executor's threads keep the default)
    # Large reads do not fault the heap in again each time (heap.py). A bound of 8 MiB
    # of free heap kept: idle memory stays what it was unless over 8 MiB was just freed.
    steady_heap(trim=8 * MiB)
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        try:
            return runner.run(serve(cfg))
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    sys.exit(main())
