"""The broker and ``mqttfast bench`` workers keep freed read buffers in the heap
(mqttfast/app/heap.py).

Behaviour, not speed: a process that allocates and frees read-sized buffers (256 KiB, the
event loop's largest read) while keeping message-sized ones takes no new page faults
once it has warmed up. Without the setting glibc returned the heap top to the kernel
and faulted it back in on every round of such reads (~36 faults per round here), which
cost the 16 KiB fan-in subscriber half of its CPU and the broker ~9 %. Each case runs
in a fresh interpreter: malloc settings are per process.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers.broker import REPO_ROOT

pytestmark = pytest.mark.timeout(60)

CHURN = """
import resource, sys
from mqttfast.app.heap import MiB, steady_heap
if sys.argv[1] == "1" and not steady_heap(trim=8 * MiB):
    print("unsupported")
    raise SystemExit(0)
def reads(n):
    kept = []
    for _ in range(n):
        kept.append(bytes(16400))  # a message, kept for a while
        if len(kept) > 8:
            kept.pop(0)
        reads = [bytes(262144) for _ in range(3)]  # full reads, then freed
        del reads
reads(50)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
reads(500)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(steady: bool) -> str:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    out = subprocess.run(
        [sys.executable, "-c", CHURN, "1" if steady else "0"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_read_buffers_do_not_fault_the_heap_in_again() -> None:
    faults = _faults(True)
    if faults == "unsupported":
        pytest.skip("no glibc mallopt here")
    assert int(faults) < 100, f"{faults} page faults for 500 reads"


def test_without_it_this_process_would_fault_per_read() -> None:
    """The case above is not vacuous: the default thresholds do fault here (glibc)."""
    if _faults(True) == "unsupported":
        pytest.skip("no glibc mallopt here")
    assert int(_faults(False)) > 1000
