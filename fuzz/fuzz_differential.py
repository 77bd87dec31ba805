"""atheris target: the Cython and pure-Python codec twins must agree on every input
(harness.check_differential: same packets, or the same error class and reason code
after the same packets; the same bytes out of encode).

    python3 fuzz/fuzz_differential.py -max_total_time=300 -max_len=4096 \
        fuzz/work/diff fuzz/corpus/codec
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import atheris

HERE = Path(__file__).resolve().parent
# MQTTFAST_FUZZ_ROOT: a tree to import mqttfast from instead of this checkout, e.g. the
# sanitizer-instrumented copy built by fuzz/build_native.sh (fuzz/run.sh sets it).
sys.path.insert(0, os.environ.get("MQTTFAST_FUZZ_ROOT") or str(HERE.parent))
sys.path.insert(0, str(HERE))

with atheris.instrument_imports(include=["mqttfast"]):
    import harness

    from mqttfast.codec import _codec as cy  # the compiled twin (build_ext --inplace first)
    from mqttfast.codec import _codec_py as py


print(f"fuzz_differential: {cy.__file__} vs {py.__file__}", file=sys.stderr)


def test_one_input(data: bytes) -> None:
    harness.check_differential(cy, py, data)


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
