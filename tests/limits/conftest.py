"""End-to-end tests of the broker's limits (issue 6): a real broker subprocess
configured through a TOML file, raw clients, counters read from /metrics and $SYS.

Every test also checks that a bystander pair of clients keeps exchanging messages
while the limit is hit.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.broker import BrokerProcess, free_port, port_accepts
from tests.helpers.fixtures import DEFAULT_TIMEOUT, apply_collection_rules, register_markers
from tests.helpers.rawclient import RawClient


def pytest_configure(config: pytest.Config) -> None:
    register_markers(config)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    apply_collection_rules(items, config, Path(__file__).parent)
    # The limits are set through mqttfast's config file: not a mosquitto test suite.
    root = Path(__file__).parent.resolve()
    for item in items:
        if Path(str(item.fspath)).resolve().is_relative_to(root):
            item.add_marker(pytest.mark.mqttfast_only("limits set in an mqttfast config file"))


class LimitsBroker(BrokerProcess):
    """A broker started with ``--config`` (a ``[limits]`` table and optional extra TOML),
    /metrics on a free port and $SYS every 0.5 s."""

    def __init__(self, limits: dict[str, Any], extra_toml: str = "") -> None:
        self.metrics_port = free_port()
        super().__init__()
        lines = ["[limits]"] + [f"{k} = {v!r}".replace("'", '"') for k, v in limits.items()]
        self.config_path = Path(self._tmpdir.name) / "limits.toml"
        self.config_path.write_text("\n".join(lines) + "\n" + extra_toml)
        self.extra_args = [
            "--config",
            str(self.config_path),
            "--persistence",
            "off",
            "--sys-interval",
            "0.5",
            "--metrics-port",
            str(self.metrics_port),
        ]

    def start(self, timeout: float = 15.0) -> LimitsBroker:
        super().start(timeout)
        deadline = time.monotonic() + timeout
        while not port_accepts(self.metrics_port):
            assert self.running(), self.log_text()
            assert time.monotonic() < deadline, "metrics port not open"
            time.sleep(0.02)
        return self

    def metric(self, name: str, **labels: str) -> float:
        """One sample of /metrics (0 when absent)."""
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
        ) as resp:
            body = resp.read().decode()
        for fam in text_string_to_metric_families(body):
            for s in fam.samples:
                if s.name in (name, name + "_total") and all(
                    s.labels.get(k) == v for k, v in labels.items()
                ):
                    return s.value
        return 0.0

    def wait_metric(self, name: str, at_least: float, timeout: float = 5.0, **labels: str) -> float:
        deadline = time.monotonic() + timeout
        while True:
            value = self.metric(name, **labels)
            if value >= at_least or time.monotonic() > deadline:
                return value
            time.sleep(0.05)


@pytest.fixture
def limits_broker() -> Iterator[Callable[..., LimitsBroker]]:
    """Factory: ``limits_broker({"max_inflight": 3})`` starts a configured broker;
    at teardown each must still run with no traceback in its log."""
    started: list[LimitsBroker] = []

    def make(limits: dict[str, Any], extra_toml: str = "") -> LimitsBroker:
        b = LimitsBroker(limits, extra_toml)
        started.append(b)
        return b.start()

    yield make
    for b in started:
        try:
            alive = b.running()
            log = b.log_text()
        finally:
            try:
                b.stop()
            except TimeoutError:
                pass
            b.cleanup()
        assert alive, f"the broker died during the test; log tail:\n{log[-3000:]}"
        assert "Traceback (most recent call last)" not in log, log[-5000:]


@pytest.fixture
def clients() -> Iterator[Callable[..., RawClient]]:
    """Factory of RawClients (closed at teardown): ``clients(port, "id", version=5)``."""
    made: list[RawClient] = []

    def make(port: int, client_id: str | None = None, version: int = 4, **kw: Any) -> RawClient:
        c = RawClient(port, version=version)
        made.append(c)
        if client_id is not None:
            c.connect(client_id, **kw)
        return c

    yield make
    for c in made:
        c.close()


class Bystanders:
    """A subscriber and a publisher unrelated to the limit under test."""

    def __init__(self, make: Callable[..., RawClient], port: int, version: int = 4) -> None:
        self.sub = make(port, "bystander-sub", version=version)
        self.sub.subscribe(("bystander/t", 1))
        self.pub = make(port, "bystander-pub", version=version)
        self.n = 0

    def exchange(self, timeout: float = 1.0) -> float:
        """One QoS 1 message through the broker; returns the round-trip seconds."""
        self.n += 1
        t0 = time.monotonic()
        self.pub.publish("bystander/t", f"m{self.n}".encode(), qos=1, timeout=timeout)
        msg = self.sub.recv_publish(timeout=timeout)
        assert msg.payload == f"m{self.n}".encode()
        return time.monotonic() - t0


@pytest.fixture
def bystanders(clients: Callable[..., RawClient]) -> Callable[..., Bystanders]:
    return lambda port, version=4: Bystanders(clients, port, version)


__all__ = ["DEFAULT_TIMEOUT"]
