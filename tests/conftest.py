"""Shared fixtures for the whole suite. Keep it small: areas put their own
fixtures in their subdirectory's conftest.py.

``impl`` gives a test both implementation twins, one per parameter:
"cython" (the compiled modules) and "python" (the pure twins). When the
compiled modules are missing and MQTTFAST_NO_EXTENSIONS is not set, the
"cython" parameter FAILS: a build that silently fell back to pure Python must
be visible. With MQTTFAST_NO_EXTENSIONS=1 only the "python" parameter exists.
"""

from __future__ import annotations

import importlib
import importlib.util
import types
from pathlib import Path

import pytest

from mqttfast._impl import NO_EXTENSIONS

# Twin modules of mqttfast.codec, per flavour.
TWINS = {
    "cython": ("_primitives", "_matcher", "_codec"),
    "python": ("_primitives_py", "_matcher_py", "_codec_py"),
}
IMPL_PARAMS = ["python"] if NO_EXTENSIONS else ["cython", "python"]


def _source_exists(module: str) -> bool:
    """Whether the twin has been written (a .pyx or .py in mqttfast/codec/)."""
    import mqttfast

    codec_dir = Path(mqttfast.__file__).parent / "codec"
    return any((codec_dir / f"{module}{ext}").exists() for ext in (".pyx", ".py"))


def load_impl(flavour: str) -> types.SimpleNamespace:
    """Namespace merging the public names of one flavour's twin modules."""
    names: dict[str, object] = {"flavour": flavour, "name": flavour}
    for module in TWINS[flavour]:
        qualified = f"mqttfast.codec.{module}"
        if importlib.util.find_spec(qualified) is None:
            if not _source_exists(module):
                continue  # that twin is not written yet
            pytest.fail(
                f"{qualified} is not built although MQTTFAST_NO_EXTENSIONS is not set; "
                "run `python3 setup.py build_ext --inplace` (or set MQTTFAST_NO_EXTENSIONS=1)",
                pytrace=False,
            )
        try:
            mod = importlib.import_module(qualified)
        except ImportError as exc:
            pytest.fail(f"{qualified} failed to import: {exc!r}", pytrace=False)
        public = getattr(mod, "__all__", None) or [n for n in dir(mod) if not n.startswith("_")]
        names.update({n: getattr(mod, n) for n in public})
    return types.SimpleNamespace(**names)


# Session scope: the namespace is immutable in practice, and Hypothesis tests
# may use it without the function-scoped-fixture health check.
@pytest.fixture(scope="session", params=IMPL_PARAMS)
def impl(request: pytest.FixtureRequest) -> types.SimpleNamespace:
    """The "cython" or "python" twins of mqttfast.codec, as one namespace."""
    return load_impl(request.param)
