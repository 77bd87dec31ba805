"""atheris target: one codec twin against its contract (harness.check_one).

    python3 fuzz/fuzz_codec.py [--twin cython|python] [libFuzzer flags] [corpus dirs]
    e.g. python3 fuzz/fuzz_codec.py --twin python -max_total_time=300 -max_len=4096 \
             fuzz/work/codec fuzz/corpus/codec

Coverage guidance comes from the pure-Python modules (instrumented by atheris);
for the Cython twin atheris sees only the Python parts it calls, so the pure twin
is the one to fuzz for coverage and fuzz_differential.py carries the Cython twin
along on the same inputs.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import atheris

HERE = Path(__file__).resolve().parent
# MQTTFAST_FUZZ_ROOT: a tree to import mqttfast from instead of this checkout, e.g. the
# sanitizer-instrumented copy built by fuzz/build_native.sh (fuzz/run.sh sets it).
sys.path.insert(0, os.environ.get("MQTTFAST_FUZZ_ROOT") or str(HERE.parent))
sys.path.insert(0, str(HERE))

twin = "python"
if "--twin" in sys.argv:
    i = sys.argv.index("--twin")
    twin = sys.argv[i + 1]
    del sys.argv[i : i + 2]

with atheris.instrument_imports(include=["mqttfast"]):
    codec = importlib.import_module(
        "mqttfast.codec._codec" if twin == "cython" else "mqttfast.codec._codec_py"
    )
    import harness


def test_one_input(data: bytes) -> None:
    harness.check_one(codec, data)


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
