"""Durable state (issue 5): real broker processes on real data directories.

Every test here needs mqttfast itself (its flags, its database), so the whole
directory is marked ``mqttfast_only``; each test is bounded in time.
"""

from pathlib import Path

import pytest

from tests.helpers.fixtures import apply_collection_rules, register_markers


def pytest_configure(config: pytest.Config) -> None:
    register_markers(config)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent.resolve()
    for item in items:
        if Path(str(item.fspath)).resolve().is_relative_to(here):
            item.add_marker(pytest.mark.mqttfast_only("persistence is mqttfast's own"))
    apply_collection_rules(items, config, Path(__file__).parent)
