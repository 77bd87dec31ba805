"""Raw-packet end-to-end tests of MQTT 3.1 / 3.1.1 against a real broker process.

Run against Debian's mosquitto to check the expectations themselves:
``MQTTFAST_TEST_BROKER=mosquitto python3 -m pytest tests/broker -q``
"""

from pathlib import Path

import pytest

from tests.helpers.fixtures import apply_collection_rules, broker, raw, register_markers  # noqa: F401


def pytest_configure(config: pytest.Config) -> None:
    register_markers(config)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    apply_collection_rules(items, config, Path(__file__).parent)
