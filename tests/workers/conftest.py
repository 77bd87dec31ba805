from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .group import Group, alive, descendants_of


@pytest.fixture
def make_group(tmp_path: Path) -> Iterator[Callable[..., Group]]:
    """Start ``mqttfast --workers N`` groups; whatever is left is stopped (and, if it
    does not stop, killed with every descendant) at the end of the test."""
    groups: list[Group] = []

    def make(workers: int = 2, extra: list[str] | None = None) -> Group:
        g = Group(tmp_path / f"g{len(groups)}", workers, extra)
        g.tmp.mkdir()
        groups.append(g)
        return g.start()

    yield make
    for g in groups:
        if g.proc is None:
            continue
        leftovers = descendants_of(g.proc.pid) if g.proc.poll() is None else []
        try:
            g.stop()
        finally:
            for pid in leftovers:
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
