"""Interop of real MQTT 5 clients (paho-mqtt v5, mosquitto_pub/sub/rr -V 5,
MQTT.js protocolVersion 5) with a real broker subprocess (issue 4).

``MQTTFAST_TEST_BROKER=mosquitto`` runs the same tests against Debian's
mosquitto; ``mosquitto_deviation`` tests follow the spec where it does not.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.fixtures import apply_collection_rules, broker, raw, register_markers  # noqa: F401


def pytest_configure(config: pytest.Config) -> None:
    register_markers(config)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    apply_collection_rules(items, config, Path(__file__).parent)
