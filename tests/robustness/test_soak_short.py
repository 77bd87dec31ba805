"""A short version of scripts/soak.py (issue 9, Soak): ~20 s of mixed load, then no
memory growth beyond a bound after the warm-up, and no sessions, subscriptions or
retained messages left behind (leaks in sessions, subscriptions, retained messages,
topic aliases and expiry timers show up in one or the other).

Bound: 8 MiB of RSS growth after a 5 s warm-up, over some thousands of client cycles:
a leak of a few hundred bytes per cycle (one session or subscription object) fails it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from tests.helpers.broker import mosquitto_mode

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(mosquitto_mode(), reason="measures the mqttfast process"),
]

SOAK = Path(__file__).resolve().parents[2] / "scripts" / "soak.py"


def _soak():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("soak", SOAK)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["soak"] = mod  # dataclasses look the module up while the class is built
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def test_short_soak_no_growth_after_warmup() -> None:
    report = _soak().run(duration=20, interval=2, workers=3, persistence="off",
                         max_growth_mib=8)
    assert not report["errors"], report["errors"]
    assert report["cycles"] > 300, f"only {report['cycles']} client cycles: load too light"
    for k, v in report["counts"].items():
        assert v <= report["expected_counts"][k], (k, report["counts"], report["expected_counts"])
    assert report["growth_mib"] <= 8, f"RSS grew {report['growth_mib']:.1f} MiB after warm-up"
    assert report["exit_code"] == 0
    assert report["ok"]
