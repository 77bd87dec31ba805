"""SIGTERM ends the broker process in bounded time, whatever state it is in.

Regression tests for mqttfast/app/cli.py ``serve()``:

* The SIGINT/SIGTERM handlers used to be installed only once the listeners were up, so
  a SIGTERM while storage was opening or plug-ins were loading killed the broker with
  -15. A plug-in whose constructor is slow makes that window wide and deterministic:
  it writes a marker file when it is being built (inside ``serve()``, before any
  listener), the test sends SIGTERM right then.
* A task that ignores cancellation kept the process alive after the bounded stop
  (asyncio.run waits for every cancelled task): a supervisor or init system then sees a
  broker that never ends. The hard exit (``HARD_EXIT_AFTER``) ends it and says where it
  hung.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from mqttfast.app.cli import HARD_EXIT_AFTER
from tests.helpers.broker import REPO_ROOT, BrokerProcess

SLOW_START = """
import os, time
from mqttfast.plugins.base import Plugin

class TestPlugin(Plugin):
    def __init__(self, options=None):
        super().__init__(options)
        open(os.environ["TESTPLUG_MARKER"], "w").close()
        time.sleep(1.0)   # start-up still in progress when the SIGTERM arrives
"""

STUBBORN_TASK = """
import asyncio, os
from mqttfast.plugins.base import Plugin

async def stubborn():
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass   # a badly written library task: cancellation never ends it

class TestPlugin(Plugin):
    def start(self, broker):
        self.task = asyncio.get_running_loop().create_task(stubborn())
        open(os.environ["TESTPLUG_MARKER"], "w").close()
"""


def _sigterm_when_marked(tmp_path: Path, plugin: str, wait: float) -> tuple[int, str]:
    """Start a broker with ``plugin``, SIGTERM it once the plug-in wrote its marker;
    its exit code and log."""
    (tmp_path / "testplug_mod.py").write_text(plugin)
    conf = tmp_path / "broker.toml"
    conf.write_text('[[plugin]]\nclass = "testplug_mod:TestPlugin"\n')
    marker = tmp_path / "marked"
    broker = BrokerProcess(
        ["--persistence", "off", "--config", str(conf)],
        env={
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(tmp_path)]),
            "TESTPLUG_MARKER": str(marker),
        },
        workdir=tmp_path,
    ).spawn()
    assert broker.proc is not None
    try:
        deadline = time.monotonic() + 20
        while not marker.exists():
            assert broker.running(), broker.log_text()
            assert time.monotonic() < deadline, "the plug-in never wrote its marker"
            time.sleep(0.01)
        broker.signal(signal.SIGTERM)
        try:
            rc: int | None = broker.proc.wait(wait)
        except subprocess.TimeoutExpired:
            rc = None
    finally:
        broker.cleanup()  # kills it if still running; the log is in tmp_path
    text = broker.log_text()
    assert rc is not None, f"still running {wait:.0f} s after SIGTERM; log:\n{text}"
    return rc, text


def test_sigterm_during_startup_exits_cleanly(tmp_path: Path) -> None:
    rc, text = _sigterm_when_marked(tmp_path, SLOW_START, 15)
    assert rc == 0, f"exit code {rc} (-15 = killed by SIGTERM); log:\n{text}"
    assert "Traceback" not in text, text


def test_a_task_that_ignores_cancellation_cannot_keep_the_broker_alive(tmp_path: Path) -> None:
    rc, text = _sigterm_when_marked(tmp_path, STUBBORN_TASK, HARD_EXIT_AFTER + 15)
    assert rc == 1, f"exit code {rc}; log:\n{text}"
    # faulthandler's report: where the process hung (here: asyncio.run waiting for
    # the cancelled tasks).
    assert "most recent call first" in text and "_cancel_all_tasks" in text, text
