"""Fixtures for the MQTT 5.0 raw-packet conformance tests (issue 4).

Every test gets a fresh broker (``broker`` from tests/helpers/fixtures.py,
flags via ``@pytest.mark.broker_args``) and connects MQTT 5 clients with
``v5(...)``. With ``MQTTFAST_TEST_BROKER=mosquitto`` the same tests run against
Debian's mosquitto; tests marked ``mosquitto_deviation`` follow the spec where
mosquitto 2.0 does not and are deselected there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mqttfast.codec.packets import Properties, Will
from tests.helpers.fixtures import apply_collection_rules, broker, raw, register_markers  # noqa: F401
from tests.helpers.rawclient import RawClient


def pytest_configure(config: pytest.Config) -> None:
    register_markers(config)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    apply_collection_rules(items, config, Path(__file__).parent)


@pytest.fixture
def v5(broker) -> Iterator[Callable[..., RawClient]]:
    """Factory of connected clients: ``c = v5("id", session_expiry=60)``.

    The CONNACK is kept as ``c.connack``; ``expect_rc=None`` skips the check.
    ``version=4`` gives a 3.1.1 client for the mixed-version tests.
    """
    clients: list[RawClient] = []

    def make(
        client_id: str = "",
        *,
        clean_start: bool = True,
        keep_alive: int = 60,
        properties: Properties | None = None,
        will: Will | None = None,
        session_expiry: int | None = None,
        version: int = 5,
        expect_rc: int | None = 0,
    ) -> RawClient:
        if session_expiry is not None:
            properties = properties or Properties()
            properties.session_expiry_interval = session_expiry
        c = RawClient(broker.port, version=version)
        clients.append(c)
        c.connack = c.connect(
            client_id,
            clean_start=clean_start,
            keep_alive=keep_alive,
            will=will,
            properties=properties,
            expect_rc=expect_rc,
        )
        return c

    yield make
    for c in clients:
        c.close()


@pytest.fixture
def tcp(broker) -> Iterator[Callable[[], RawClient]]:
    """Factory of unconnected MQTT 5 RawClients (for hand-built CONNECTs)."""
    clients: list[RawClient] = []

    def make() -> RawClient:
        c = RawClient(broker.port, version=5)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()
