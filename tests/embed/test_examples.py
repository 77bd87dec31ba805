"""The examples/embed_*.py programs run to completion and print what they promise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EXPECT = {
    "embed_basic.py": ["ALERT sensors/attic/temperature: 33.0", "stopped"],
    "embed_plugin.py": ['"topic": "a/b"', '"payload": "hello"', "raw left (network"],
    "embed_bridge.py": ["central got edge-1/telemetry/pump b'on'", "edge got cmd/pump b'off'"],
}


@pytest.mark.timeout(40)
@pytest.mark.parametrize("name", sorted(EXPECT))
def test_example_runs(name):
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    for needle in EXPECT[name]:
        assert needle in out.stdout, out.stdout
    assert "Traceback" not in out.stderr


def test_every_example_is_tested():
    assert sorted(p.name for p in EXAMPLES.glob("embed_*.py")) == sorted(EXPECT)
