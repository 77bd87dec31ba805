"""Migration from mosquitto: real mqttfast processes run from mosquitto.conf files, real
mosquitto processes as bridge peers, real clients (issue 18)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.fixtures import apply_collection_rules, register_markers
from tests.listeners.support import pki, start_broker  # noqa: F401


def pytest_configure(config: pytest.Config) -> None:
    register_markers(config)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    apply_collection_rules(items, config, Path(__file__).parent)
    for item in items:
        if Path(str(item.fspath)).resolve().is_relative_to(Path(__file__).parent.resolve()):
            item.add_marker(pytest.mark.mqttfast_only("mqttfast run from a mosquitto.conf"))
