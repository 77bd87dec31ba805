"""The paho interop suite written for one broker (tests/interop/test_paho.py), run
unchanged through a round-robin haproxy over three cluster nodes: consecutive
connections of a test land on different nodes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.interop.test_paho import *  # noqa: F403  (the suite, unchanged)
from tests.interop.test_paho import paho  # noqa: F401

from .haproxy import Haproxy


@pytest.fixture
def broker(three_nodes, cluster) -> Iterator[Haproxy]:
    front = Haproxy([n.port for n in three_nodes]).start()
    try:
        yield front
        for node in three_nodes:
            assert node.running()
    finally:
        front.stop()
