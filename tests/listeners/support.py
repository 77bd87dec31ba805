"""A real mqttfast process started from a TOML (or mosquitto.conf) file, and small
clients for every listener kind: TCP/TLS/unix sockets carrying the test RawClient."""

from __future__ import annotations

import socket
import ssl
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import trustme

from mqttfast.codec import Decoder
from tests.helpers.broker import BrokerProcess, free_port
from tests.helpers.rawclient import RawClient

START_TIMEOUT = 20.0

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


class ConfigBroker(BrokerProcess):
    """``python3 -m mqttfast --config FILE`` (or ``--mosquitto-config``) in ``workdir``:
    a :class:`tests.helpers.broker.BrokerProcess` with a config file.

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
        super().__init__(args, config=text, mosquitto=mosquitto, workdir=workdir, wait=wait)
        assert self.config_file is not None
        self.path = self.config_file
        self.args = self.extra_args
        self.wait = self.wait_targets

    def start(self, timeout: float = START_TIMEOUT) -> ConfigBroker:
        super().start(timeout)
        return self

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM; the log must hold no traceback."""
        try:
            code = super().stop(timeout)
        except TimeoutError:
            raise AssertionError("mqttfast ignored SIGTERM") from None
        self.assert_no_traceback()
        return code


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
