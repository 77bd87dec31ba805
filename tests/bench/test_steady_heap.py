"""``mqttfast bench`` workers keep freed read buffers in the heap (worker.steady_heap).

Behaviour, not speed: a process that allocates and frees read-sized buffers (256 KiB, the
event loop's largest read) while keeping message-sized ones takes no new page faults
once it has warmed up. Without the setting glibc returned the heap top to the kernel and
faulted it back in on every such read (~36 faults per read here), which cost the 16 KiB
fan-in subscriber half of its CPU. Each case runs in a fresh interpreter: malloc
settings are per process.
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
from mqttfast.app.bench.worker import steady_heap
if sys.argv[1] == "1" and not steady_heap():
    print("unsupported")
    raise SystemExit(0)
def reads(n):
    kept = []
    for _ in range(n):
        a = bytes(262144)  # two full reads, freed
        b = bytes(262144)
        kept.append(bytes(16400))  # a message, kept for a while
        del a, b
        if len(kept) > 8:
            kept.pop(0)
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
