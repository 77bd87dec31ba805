"""Fuzz findings and the seed corpus, replayed in the test suite (issue 9, Fuzzing).

Every input a fuzz run flagged is kept in fuzz/regressions/ (raw fuzz input, layout in
fuzz/harness.py) and replayed here through both checks: the single-twin contract
(decode returns packets or raises MQTTError only; packets round-trip through encode;
chunking does not matter) for each twin, and the differential check (the Cython and
pure-Python twins agree). The seed corpus (fuzz/corpus/codec) is replayed the same
way, and a small coverage-less mutation run (hypothesis) over it keeps the targets
exercised without atheris.

Findings so far (see docs/robustness.md):
  * harness-connect-v3-on-v4-client-decoder: not a codec bug; the first harness
    re-encoded a CONNECT with the decoder's version instead of the CONNECT's own
    protocol level. Kept so the harness stays right.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mqttfast._impl import NO_EXTENSIONS

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"
sys.path.insert(0, str(FUZZ))

import harness  # noqa: E402  (fuzz/harness.py)

from mqttfast.codec import _codec_py  # noqa: E402

REGRESSIONS = sorted((FUZZ / "regressions").iterdir())
SEEDS = sorted((FUZZ / "corpus" / "codec").iterdir())

pytestmark = pytest.mark.timeout(120)


def _cython():  # type: ignore[no-untyped-def]
    if NO_EXTENSIONS:
        pytest.skip("MQTTFAST_NO_EXTENSIONS=1: no Cython twin to compare")
    from mqttfast.codec import _codec  # a missing build fails here, visibly

    return _codec


def _twin(name: str):  # type: ignore[no-untyped-def]
    return _cython() if name == "cython" else _codec_py


@pytest.mark.parametrize("path", REGRESSIONS, ids=lambda p: p.name)
@pytest.mark.parametrize("twin", ["cython", "python"])
def test_regression_input_single_twin(path: Path, twin: str) -> None:
    harness.check_one(_twin(twin), path.read_bytes())


@pytest.mark.parametrize("path", REGRESSIONS, ids=lambda p: p.name)
def test_regression_input_twins_agree(path: Path) -> None:
    harness.check_differential(_cython(), _codec_py, path.read_bytes())


@pytest.mark.parametrize("twin", ["cython", "python"])
def test_seed_corpus_single_twin(twin: str) -> None:
    assert len(SEEDS) >= 100, "fuzz/corpus/codec is incomplete (python3 fuzz/make_corpus.py)"
    codec = _twin(twin)
    for path in SEEDS:
        harness.check_one(codec, path.read_bytes())


def test_seed_corpus_twins_agree() -> None:
    cy = _cython()
    for path in SEEDS:
        harness.check_differential(cy, _codec_py, path.read_bytes())


def test_seed_corpus_covers_every_packet_type() -> None:
    """The corpus has every packet type of every protocol version it exists in."""
    names = {p.name for p in SEEDS}
    for v in (3, 4, 5):
        for kind in (
            "connect",
            "connack",
            "publish",
            "puback",
            "pubrec",
            "pubrel",
            "pubcomp",
            "subscribe",
            "suback",
            "unsubscribe",
            "unsuback",
            "pingreq",
            "pingresp",
            "disconnect",
        ):
            assert any(n.startswith(f"client_v{v}_{kind}") for n in names), (v, kind)
    assert any(n.startswith("client_v5_auth") for n in names)


@st.composite
def mutated_seed(draw: st.DrawFn) -> bytes:
    data = bytearray(SEEDS[draw(st.integers(0, len(SEEDS) - 1))].read_bytes())
    for _ in range(draw(st.integers(1, 5))):
        op = draw(st.integers(0, 3))
        i = draw(st.integers(0, len(data)))
        if op == 0 and i < len(data):
            data[i] = draw(st.integers(0, 255))
        elif op == 1:
            del data[i : i + draw(st.integers(1, 8))]
        elif op == 2:
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        else:
            data[i:i] = data[i : i + draw(st.integers(1, 16))]
    return bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(mutated_seed())
def test_mutated_seeds_twins_agree(data: bytes) -> None:
    """Coverage-less fuzzing fallback: mutated seeds, both checks."""
    cy = None if NO_EXTENSIONS else _cython()
    harness.check_one(_codec_py, data)
    if cy is not None:
        harness.check_one(cy, data)
        harness.check_differential(cy, _codec_py, data)
