"""TEMPORARY local copy of the shared ``impl`` fixture (tests/conftest.py owns it).

Delete this file once tests/conftest.py provides ``impl``.
"""

from __future__ import annotations

import importlib
import types

import pytest

from mqttfast._impl import NO_EXTENSIONS

_MODULES = {
    "cython": ("_primitives", "_matcher", "_codec"),
    "python": ("_primitives_py", "_matcher_py", "_codec_py"),
}


def _namespace(flavour: str) -> types.SimpleNamespace:
    names: dict[str, object] = {"flavour": flavour}
    for mod_name in _MODULES[flavour]:
        try:
            mod = importlib.import_module(f"mqttfast.codec.{mod_name}")
        except ImportError:
            if mod_name.startswith("_matcher"):
                continue  # not written yet
            raise
        names.update({k: getattr(mod, k) for k in getattr(mod, "__all__", dir(mod))
                      if not k.startswith("_")})
    return types.SimpleNamespace(**names)


@pytest.fixture(params=["python"] if NO_EXTENSIONS else ["cython", "python"])
def impl(request: pytest.FixtureRequest) -> types.SimpleNamespace:
    # The cython param fails (never skips) when the extension did not build.
    return _namespace(request.param)
