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
from typing import Any

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


# Files whose tests take seconds each (the soak; real clusters and their 6 s dead-node
# detection; pip builds; crash and restart cycles; supervisors with workers), roughly
# longest first (measured with --durations). They are collected first and handed out one
# test at a time (pytest_configure below), so each goes to whichever worker is free:
# none of them starts near the end of the run while the other workers have nothing left.
# (An xdist group goes out first of all, as one unit: tests/cluster.)
LONG_FIRST = (
    "tests/bench/test_compare_brokers.py",
    "tests/robustness/test_soak_short.py",
    "tests/robustness/test_sigterm.py",
    "tests/test_build.py",
    "tests/cluster/test_outage_reconcile.py",
    "tests/cluster/test_session_failover.py",
    "tests/cluster/test_journal.py",
    "tests/cluster/test_sessions.py",
    "tests/cluster/test_failure.py",
    "tests/cluster/test_interest.py",
    "tests/cluster/",
    "tests/persistence/test_crash.py",
    "tests/persistence/test_restart.py",
    "tests/bench/test_bench_cli.py",
    "tests/persistence/",
    "tests/workers/",
    "tests/robustness/test_scale.py",
    "tests/ops/test_dashboard.py",
)


def _long_rank(item: pytest.Item) -> int:
    for rank, prefix in enumerate(LONG_FIRST):
        if item.nodeid.startswith(prefix):
            return rank
    return len(LONG_FIRST)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The files of LONG_FIRST first, in that order; a stable sort, so the tests of a
    file keep their order and the rest of the suite keeps its collection order."""
    items.sort(key=_long_rank)


def pytest_configure(config: pytest.Config) -> None:
    """With pytest-xdist, distribute with ``loadgroup`` where ``load`` was asked for (or
    implied by -n): like ``load``, but the tests of one ``xdist_group`` go to one worker
    (tests/cluster: one cluster at a time, see its conftest; test_compare_brokers: its
    17 s module fixture once), and the other tests are handed out one at a time in
    collection order (LONG_FIRST first). Plain ``load`` first gives each worker a
    consecutive chunk: all the long tests to the first worker."""
    if not config.pluginmanager.hasplugin("xdist"):
        return
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        # A worker marks the node ids of xdist_group tests (what the controller groups
        # by) only when its own command line says --dist loadgroup: told here instead.
        config.option.loadgroup = bool(workerinput.get("mqttfast_loadgroup"))
    elif config.getoption("dist", "no") == "load":
        config.option.dist = "loadgroup"


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller: tell each worker whether the run distributes by group."""
    node.workerinput["mqttfast_loadgroup"] = node.config.getoption("dist") == "loadgroup"
