"""Interop with real MQTT 3.1/3.1.1 clients: paho-mqtt, mosquitto_pub/sub, MQTT.js.

Each test gets a fresh broker (mqttfast, or mosquitto with
MQTTFAST_TEST_BROKER=mosquitto). A missing client program fails the test; it
never skips.
"""

from pathlib import Path

import pytest

from tests.helpers.fixtures import apply_collection_rules, broker, raw, register_markers  # noqa: F401


def pytest_configure(config: pytest.Config) -> None:
    register_markers(config)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    apply_collection_rules(items, config, Path(__file__).parent)
    for item in items:
        if Path(str(item.fspath)).resolve().is_relative_to(Path(__file__).parent.resolve()):
            item.add_marker(pytest.mark.interop)
