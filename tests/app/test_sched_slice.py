"""On request (MQTTFAST_SCHED_SLICE_US), the broker's event-loop thread asks Linux for a
short time slice (cli.short_sched_slice, issue 17): woken by a client's write it preempts
the client instead of waiting for it to sleep. Off by default (it cost saturated
throughput cells 5-20 % in one run). Checked on a real broker process through
/proc/<pid>/sched."""

from __future__ import annotations

import platform
import re
import sys
from pathlib import Path

import pytest

from mqttfast.app.cli import SCHED_SLICE_ENV
from tests.helpers.broker import BrokerProcess, mosquitto_mode

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(mosquitto_mode(), reason="mqttfast's own scheduling"),
]


def _kernel_has_custom_slices() -> bool:
    """Linux >= 6.12 (EEVDF custom slices) shows se.slice in /proc/<pid>/sched."""
    if not sys.platform.startswith("linux") or platform.machine() not in ("x86_64", "aarch64"):
        return False
    m = re.match(r"(\d+)\.(\d+)", platform.release())
    if m is None or (int(m[1]), int(m[2])) < (6, 12):
        return False
    try:
        return "se.slice" in Path("/proc/self/sched").read_text()
    except OSError:
        return False


def _slice_ns(pid: int) -> int:
    text = Path(f"/proc/{pid}/sched").read_text()
    m = re.search(r"se\.slice\s*:\s*(\d+)", text)
    assert m is not None, text[:400]
    return int(m[1])


needs_slices = pytest.mark.skipif(
    not _kernel_has_custom_slices(), reason="needs Linux >= 6.12 with /proc/<pid>/sched"
)


@needs_slices
def test_environment_asks_for_the_short_slice() -> None:
    broker = BrokerProcess(env={SCHED_SLICE_ENV: "300"}).start()
    try:
        assert broker.proc is not None
        assert _slice_ns(broker.proc.pid) == 300 * 1000
    finally:
        broker.stop()


@needs_slices
def test_default_keeps_the_kernels_slice() -> None:
    broker = BrokerProcess().start()
    try:
        assert broker.proc is not None
        assert _slice_ns(broker.proc.pid) != 300 * 1000  # the kernel's default
    finally:
        broker.stop()
