"""The C kernels on their own (csrc/), built with AddressSanitizer and
UndefinedBehaviorSanitizer: spec vectors, a reference matcher and random
MQTT-ish inputs in exact-size heap buffers (csrc/test_kernels.c)."""

from __future__ import annotations

import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

CSRC = Path(__file__).resolve().parents[2] / "csrc"
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]


def _compiler() -> str | None:
    configured = (sysconfig.get_config_var("CC") or "").split()
    for cc in [*configured[:1], "cc", "gcc", "clang"]:
        if cc and shutil.which(cc):
            return cc
    return None


@pytest.mark.skipif(not (CSRC / "test_kernels.c").exists(), reason="needs the source tree (csrc/)")
@pytest.mark.skipif(_compiler() is None, reason="no C compiler on PATH")
@pytest.mark.timeout(120)
def test_c_kernels_self_test_under_sanitizers(tmp_path):
    """[MQTT-1.5.5-1], [MQTT-1.5.4-1..2], [MQTT-4.7.1-2..3], [MQTT-4.7.2-1]
    checked in C, with any out-of-bounds read or UB aborting the run."""
    cc = _compiler()
    exe = tmp_path / "test_kernels"
    sources = [str(CSRC / "test_kernels.c"), str(CSRC / "mqttfast_kernels.c")]
    base = [
        cc,
        "-std=c99",
        "-O1",
        "-g",
        "-Wall",
        "-Wextra",
        "-Werror",
        f"-I{CSRC}",
        *sources,
        "-o",
        str(exe),
    ]
    build = subprocess.run(
        [*base[:1], *SANITIZE, *base[1:]], capture_output=True, text=True, timeout=60
    )
    if build.returncode != 0 and "sanitize" in (build.stderr + build.stdout):
        # A toolchain without sanitizer runtimes (e.g. musl): still run the checks.
        build = subprocess.run(base, capture_output=True, text=True, timeout=60)
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe), "300000"], capture_output=True, text=True, timeout=90)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "all checks passed" in run.stdout
