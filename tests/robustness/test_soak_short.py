"""A short version of scripts/soak.py (issue 9, Soak): ~20 s of mixed load, then no
memory growth beyond a bound after the warm-up, and no sessions, subscriptions or
retained messages left behind (leaks in sessions, subscriptions, retained messages,
topic aliases and expiry timers show up in one or the other).

Load: 3 session workers at a fixed 80 client cycles/s each (plus the persistent pool and
a fan-out publisher), so the working set is the same in the warm-up and after it
whatever the machine's load. RSS is sampled right after a forced full collection in the
broker (scripts/soak.py LAUNCHER), so garbage waiting for the broker's rarely-run cyclic
collector does not count. Bound: 4 MiB after a 5 s warm-up over ~3,500 client cycles,
so a leak of ~1 KiB per cycle (a session, a connection, a subscription) fails it.
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

BOUND_MIB = 4
SOAK = Path(__file__).resolve().parents[2] / "scripts" / "soak.py"


def _soak():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("soak", SOAK)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["soak"] = mod  # dataclasses look the module up while the class is built
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def test_short_soak_no_growth_after_warmup() -> None:
    report = _soak().run(
        duration=20, interval=2, workers=3, persistence="off", max_growth_mib=BOUND_MIB, rate=80
    )
    assert not report["errors"], report["errors"]
    assert report["cycles"] > 1000, f"only {report['cycles']} client cycles: load too light"
    for k, v in report["counts"].items():
        assert v <= report["expected_counts"][k], (k, report["counts"], report["expected_counts"])
    assert report["growth_mib"] <= BOUND_MIB, (
        f"RSS grew {report['growth_mib']:.1f} MiB after warm-up"
    )
    assert report["exit_code"] == 0
    assert report["ok"]
