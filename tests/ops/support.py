"""Helpers of the operations tests: a broker with /metrics and the admin API on
free loopback ports, bounded HTTP calls, Prometheus text parsing."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.broker import BrokerProcess, free_port, port_accepts

TOKEN = "test-token-5f2c"
HTTP_TIMEOUT = 5.0


class OpsBroker(BrokerProcess):
    """A BrokerProcess with metrics and admin ports; ``log_level=None`` leaves
    --log-level off the command line (so a config file's level applies)."""

    def __init__(
        self,
        extra_args: Sequence[str] = (),
        metrics: bool = True,
        admin: bool = True,
        token: str = TOKEN,
        log_level: str | None = "debug",
        **kw: Any,
    ) -> None:
        self.metrics_port = free_port() if metrics else None
        self.admin_port = free_port() if admin else None
        self.token = token
        self.log_level = log_level
        args = ["--persistence", "off", *extra_args]
        if metrics:
            args += ["--metrics-port", str(self.metrics_port)]
        if admin:
            args += ["--admin-port", str(self.admin_port), "--admin-token", token]
        super().__init__(args, **kw)

    def command(self) -> list[str]:
        cmd = super().command()
        i = cmd.index("--log-level")
        if self.log_level is None:
            del cmd[i : i + 2]
        else:
            cmd[i + 1] = self.log_level
        return cmd

    def start(self, timeout: float = 15.0) -> OpsBroker:
        super().start(timeout)
        deadline = time.monotonic() + timeout
        for port in (self.metrics_port, self.admin_port):
            while port is not None and not port_accepts(port):
                assert self.running(), f"broker exited:\n{self.log_text()}"
                assert time.monotonic() < deadline, f"port {port} not open:\n{self.log_text()}"
                time.sleep(0.02)
        return self

    # -- HTTP -------------------------------------------------------------
    def admin_url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.admin_port}{path}"

    def api(self, method: str, path: str, token: str | None = "default") -> tuple[int, Any]:
        """(status, decoded JSON body) of an admin API call."""
        headers = {}
        tok = self.token if token == "default" else token
        if tok is not None:
            headers["Authorization"] = f"Bearer {tok}"
        status, body, _ = http(method, self.admin_url(path), headers)
        return status, (json.loads(body) if body else None)

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of /metrics: (name, sorted labels) -> value."""
        status, body, headers = http("GET", f"http://127.0.0.1:{self.metrics_port}/metrics")
        assert status == 200, body
        assert headers.get("Content-Type", "").startswith("text/plain")
        out = {}
        for fam in text_string_to_metric_families(body.decode()):
            for s in fam.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def assert_clean_log(self) -> None:
        self.assert_no_traceback()


def http(
    method: str, url: str, headers: dict[str, str] | None = None, body: bytes | None = None
) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read(), dict(err.headers)


def sample(metrics: dict, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    assert key in metrics, f"{name}{labels} not in /metrics: {sorted(k[0] for k in metrics)}"
    return metrics[key]


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


@dataclass
class _Factory:
    made: list[OpsBroker]

    def __call__(self, *args: Any, **kw: Any) -> OpsBroker:
        b = OpsBroker(*args, **kw)
        self.made.append(b)
        return b.start()


@pytest.fixture
def ops_broker() -> Iterator[_Factory]:
    """``ops_broker(extra_args, metrics=True, admin=True)`` -> a started OpsBroker;
    each is stopped at teardown and its log must hold no traceback."""
    factory = _Factory([])
    yield factory
    for b in factory.made:
        try:
            if b.kind == "mqttfast":
                b.assert_clean_log()
        finally:
            try:
                b.stop()
            except TimeoutError:
                pass
            b.cleanup()
