"""A SIGTERM during start-up ends in a clean shutdown (exit 0), not death by signal.

Regression test for mqttfast/app/cli.py ``serve()``: the SIGINT/SIGTERM handlers
used to be installed only once the listeners were up, so a SIGTERM while storage
was opening or plug-ins were loading killed the broker with -15. A plug-in whose
constructor is slow makes that window wide and deterministic: the plug-in writes a
marker file when it is being built (inside ``serve()``, before any listener), the
test sends SIGTERM right then.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers.broker import REPO_ROOT, free_port

PLUGIN = """
import os, time
from mqttfast.plugins.base import Plugin

class SlowPlugin(Plugin):
    def __init__(self, options=None):
        super().__init__(options)
        open(os.environ["SLOWPLUG_MARKER"], "w").close()
        time.sleep(1.0)   # start-up still in progress when the SIGTERM arrives
"""


def test_sigterm_during_startup_exits_cleanly(tmp_path: Path) -> None:
    (tmp_path / "slowplug_mod.py").write_text(PLUGIN)
    conf = tmp_path / "broker.toml"
    conf.write_text('[[plugin]]\nclass = "slowplug_mod:SlowPlugin"\n')
    marker = tmp_path / "building"
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(REPO_ROOT), str(tmp_path)]),
        SLOWPLUG_MARKER=str(marker),
        PYTHONUNBUFFERED="1",
    )
    log = open(tmp_path / "broker.log", "wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mqttfast",
            "--host",
            "127.0.0.1",
            "--port",
            str(free_port()),
            "--persistence",
            "off",
            "--config",
            str(conf),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=tmp_path,
    )
    log.close()
    try:
        deadline = time.monotonic() + 20
        while not marker.exists():
            assert proc.poll() is None, (tmp_path / "broker.log").read_text()
            assert time.monotonic() < deadline, "the plug-in was never built"
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    text = (tmp_path / "broker.log").read_text()
    assert rc == 0, f"exit code {rc} (-15 = killed by SIGTERM); log:\n{text}"
    assert "Traceback" not in text, text
