"""A real mqttfast process started from a TOML (or mosquitto.conf) file, and small
clients for every listener kind: TCP/TLS/unix sockets carrying the test RawClient."""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import trustme

from mqttfast.codec import Decoder
from tests.helpers.broker import REPO_ROOT, free_port, port_accepts
from tests.helpers.rawclient import RawClient

START_TIMEOUT = 20.0
TRACEBACK = re.compile(r"^Traceback \(most recent call last\):", re.MULTILINE)

__all__ = [
    "start_broker",
    "pki",
    "ConfigBroker",
    "free_port",
    "raw_on_socket",
    "tls_raw",
    "unix_raw",
    "has_ipv6_loopback",
]


def has_ipv6_loopback() -> bool:
    """Whether ::1 can be bound on this machine (checked at run time)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class ConfigBroker:
    """``python3 -m mqttfast --config FILE`` (or ``--mosquitto-config``) in ``workdir``.

    ``wait`` lists what must accept connections before start() returns:
    TCP ports on 127.0.0.1, ``("::1", port)`` pairs, or unix socket paths.
    """

    def __init__(
        self,
        workdir: Path,
        text: str,
        args: Sequence[str] = (),
        mosquitto: bool = False,
        wait: Sequence[object] = (),
    ) -> None:
        self.workdir = workdir
        self.path = workdir / ("mosquitto.conf" if mosquitto else "mqttfast.toml")
        self.path.write_text(text)
        self.args = list(args)
        self.mosquitto = mosquitto
        self.wait = list(wait)
        self.log_path = workdir / f"broker-{time.monotonic_ns()}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        flag = "--mosquitto-config" if self.mosquitto else "--config"
        return [sys.executable, "-m", "mqttfast", flag, str(self.path), *self.args]

    def start(self) -> ConfigBroker:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.workdir,
            )
        deadline = time.monotonic() + START_TIMEOUT
        pending = list(self.wait)
        while pending:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"mqttfast exited with {self.proc.returncode}; log:\n{self.log_text()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"listeners {pending} not ready; log:\n{self.log_text()}")
            pending = [w for w in pending if not _accepts(w)]
            if pending:
                time.sleep(0.05)
        return self

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, needle: str, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_text()
            if needle in text:
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not in the log; tail:\n{text[-3000:]}")
            time.sleep(0.05)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError("mqttfast ignored SIGTERM") from None
        assert not TRACEBACK.search(self.log_text()), f"traceback in log:\n{self.log_text()}"
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def _accepts(target: object) -> bool:
    if isinstance(target, int):
        return port_accepts(target)
    if isinstance(target, tuple):
        host, port = target
        return port_accepts(port, host)
    path = str(target)
    if not os.path.exists(path):
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(0.2)
            s.connect(path)
        return True
    except OSError:
        return False


def raw_on_socket(sock: socket.socket, version: int = 4) -> RawClient:
    """A RawClient over an already connected socket (unix, TLS)."""
    c = RawClient.__new__(RawClient)
    c.port = 0
    c.version = version
    c.sock = sock
    c.decoder = Decoder(protocol_version=version)
    c.pending = deque()
    c.closed_by_peer = False
    c._next_id = 0
    sock.settimeout(5.0)
    return c


def unix_raw(path: str, version: int = 4) -> RawClient:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5.0)
    s.connect(path)
    return raw_on_socket(s, version)


def tls_raw(
    port: int,
    ctx: ssl.SSLContext,
    version: int = 4,
    host: str = "127.0.0.1",
    server_hostname: str = "localhost",
) -> RawClient:
    s = socket.create_connection((host, port), timeout=5.0)
    try:
        tls = ctx.wrap_socket(s, server_hostname=server_hostname)
    except BaseException:
        s.close()
        raise
    return raw_on_socket(tls, version)


@pytest.fixture
def start_broker(tmp_path: Path) -> Iterator[Callable[..., ConfigBroker]]:
    """``start_broker(toml_text, wait=[ports...])`` -> a running ConfigBroker, stopped
    (and its log checked for tracebacks) at teardown."""
    started: list[ConfigBroker] = []

    def start(text: str, wait=(), args=(), mosquitto: bool = False) -> ConfigBroker:
        b = ConfigBroker(tmp_path, text, args=args, mosquitto=mosquitto, wait=wait)
        started.append(b)
        return b.start()

    yield start
    for b in started:
        alive = b.running()
        b.stop()
        assert alive or b.proc.returncode is not None


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, str]:
    """A CA, a server certificate for localhost/127.0.0.1/::1, a client certificate
    (CN sensor-9) and a client certificate from another CA, as PEM files."""
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1", "::1")
    client = ca.issue_cert("sensor-9.example", common_name="sensor-9")
    rogue = trustme.CA().issue_cert("rogue.example", common_name="sensor-9")
    files: dict[str, str] = {}
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    files["ca"] = str(tmp_path / "ca.pem")
    for name, leaf in (("server", server), ("client", client), ("rogue", rogue)):
        leaf.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / f"{name}.pem"))
        files[name] = str(tmp_path / f"{name}.pem")
    leaf = server
    leaf.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    with open(tmp_path / "server.crt", "wb") as fh:
        for blob in server.cert_chain_pems:
            fh.write(blob.bytes())
    files["server_cert"] = str(tmp_path / "server.crt")
    files["server_key"] = str(tmp_path / "server.key")
    return files
