"""``mqttfast bench`` against a real broker subprocess (mqttfast, or mosquitto with
``MQTTFAST_TEST_BROKER=mosquitto``)."""

from pathlib import Path

import pytest

from tests.helpers.fixtures import apply_collection_rules, broker, register_markers  # noqa: F401


def pytest_configure(config: pytest.Config) -> None:
    register_markers(config)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    apply_collection_rules(items, config, Path(__file__).parent)
