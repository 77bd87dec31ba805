"""Pytest fixtures and collection rules for suites that run a real broker.

A conftest uses them with ``from tests.helpers.fixtures import *`` and
``apply_collection_rules(items, config, Path(__file__).parent)`` in its own
``pytest_collection_modifyitems`` (so the rules touch only its directory).

Markers:
  ``broker_args(*flags)``    extra command-line flags for the ``broker`` fixture.
  ``mqttfast_only(reason)``  needs mqttfast itself (CLI, its flags, its logs);
                             deselected when MQTTFAST_TEST_BROKER=mosquitto.
  ``mosquitto_deviation(reason)``  the spec says X, mosquitto 2.0 does Y; the
                             test follows the spec and is deselected in mosquitto mode.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .broker import BrokerProcess, mosquitto_mode
from .rawclient import RawClient

__all__ = [
    "broker",
    "raw",
    "run",
    "register_markers",
    "apply_collection_rules",
    "DEFAULT_TIMEOUT",
]

# Per-test bound (pytest-timeout) for tests that do not set their own.
DEFAULT_TIMEOUT = 60

MARKERS = (
    "broker_args(*flags): extra mqttfast command-line flags for the broker fixture",
    "mqttfast_only(reason): needs mqttfast itself; deselected with MQTTFAST_TEST_BROKER=mosquitto",
    "mosquitto_deviation(reason): follows the spec where mosquitto deviates; "
    "deselected with MQTTFAST_TEST_BROKER=mosquitto",
)

# A Python traceback in the broker's log is a bug whatever the test checked.
_TRACEBACK = re.compile(r"^Traceback \(most recent call last\):", re.MULTILINE)


def register_markers(config: pytest.Config) -> None:
    for line in MARKERS:
        config.addinivalue_line("markers", line)


def apply_collection_rules(items: list[pytest.Item], config: pytest.Config, root: Path) -> None:
    """Bound every test under ``root`` in time; in mosquitto mode deselect the
    tests that are marked as mqttfast-only or as spec-over-mosquitto."""
    mine = [it for it in items if Path(str(it.fspath)).resolve().is_relative_to(root.resolve())]
    for item in mine:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(DEFAULT_TIMEOUT))
    if not mosquitto_mode():
        return
    drop = [
        it
        for it in mine
        if it.get_closest_marker("mqttfast_only") or it.get_closest_marker("mosquitto_deviation")
    ]
    if drop:
        dropped = set(map(id, drop))
        items[:] = [it for it in items if id(it) not in dropped]
        config.hook.pytest_deselected(items=drop)


@pytest.fixture
def broker(request: pytest.FixtureRequest) -> Iterator[BrokerProcess]:
    """A fresh broker per test on its own free port (fresh state: no retained
    messages or sessions leak between tests).

    At teardown the broker must still be running and its log must hold no
    Python traceback: a crash or an unhandled exception fails the test.
    """
    marker = request.node.get_closest_marker("broker_args")
    args = list(marker.args) if marker else []
    proc = BrokerProcess(args)
    proc.start()
    try:
        yield proc
        assert proc.running(), (
            f"the broker died during the test (exit {proc.proc.returncode}); "
            f"log tail:\n{proc.log_text()[-3000:]}"
        )
        if proc.kind == "mqttfast":
            log = proc.log_text()
            assert not _TRACEBACK.search(log), f"traceback in the broker log:\n{log[-5000:]}"
    finally:
        try:
            proc.stop()
        except TimeoutError:
            pass  # stop() killed it; SIGTERM handling is checked in test_14_cli
        proc.cleanup()


@pytest.fixture
def raw(broker: BrokerProcess) -> Iterator[Callable[..., RawClient]]:
    """Factory of RawClients for the ``broker`` fixture: ``raw()`` (TCP only),
    ``raw(client_id="sub")`` (also CONNECTed), ``raw(version=3)``. All are
    closed at teardown."""
    from .rawclient import RawClient

    clients: list[RawClient] = []

    def make(version: int = 4, client_id: str | None = None, **connect_kwargs) -> RawClient:
        """A new connection; with ``client_id`` also CONNECTed (CONNACK 0 asserted
        unless ``expect_rc`` says otherwise)."""
        c = RawClient(broker.port, version=version)
        clients.append(c)
        if client_id is not None:
            c.connect(client_id, **connect_kwargs)
        return c

    yield make
    for c in clients:
        c.close()


@pytest.fixture
def run() -> Callable[..., object]:
    """``run(coro_fn, *args)``: run a coroutine in a fresh event loop (an embedded broker,
    asyncio clients); afterwards no task may be left running."""

    def runner(coro_fn: Callable[..., object], *args: object, **kw: object) -> object:
        async def wrapper() -> object:
            result = await coro_fn(*args, **kw)  # type: ignore[misc]
            await asyncio.sleep(0)
            left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            assert not left, f"tasks left running after the broker stopped: {left}"
            return result

        return asyncio.run(wrapper())

    return runner
