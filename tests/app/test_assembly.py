"""One assembly (mqttfast.app.assembly) behind both entry points: the same config file
gives the same broker run as ``mqttfast --config FILE`` and as ``mqttfast.Broker(FILE)``:
metrics, admin API, persistence, plug-ins and bridges (issue 13)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.broker import REPO_ROOT, BrokerProcess, free_port

from .support import EmbeddedBroker, Paho, http_get, wait_until

pytestmark = pytest.mark.timeout(90)

TOKEN = "parity-token"


def config_text(port: int, metrics: int, admin: int, remote: int, log: Path) -> str:
    # A relative data_dir on purpose: it resolves against the file's directory (issue 18).
    # Plug-in options are the plug-in's own business, handed over as written.
    return f"""
[[listener]]
address = "127.0.0.1"
port = {port}

[sys]
interval = 0

[persistence]
mode = "strict"
data_dir = "data"

[metrics]
enabled = true
port = {metrics}

[admin]
enabled = true
port = {admin}
token = "{TOKEN}"

[[plugin]]
class = "mqttfast.plugins.message_logger:MessageLogger"
options = {{ path = "{log}", topics = ["up/#"], flush_interval = 0.1 }}

[[bridge]]
name = "parity"
address = "127.0.0.1"
port = {remote}
protocol_version = 4
reconnect_min = 0.1

[[bridge.topic]]
pattern = "up/#"
direction = "out"
qos = 1
remote_prefix = "edge/"
"""


class ProcessRunner:
    def __init__(self, conf: Path, port: int) -> None:
        self.conf, self.port, self.proc = conf, port, None

    def start(self) -> None:
        self.proc = BrokerProcess(
            config=self.conf.read_text(), workdir=self.conf.parent, wait=[self.port]
        )
        self.proc.config_file = self.conf
        self.proc.start()

    def stop(self) -> None:
        assert self.proc is not None
        assert self.proc.stop() == 0
        self.proc.assert_no_traceback()


class EmbeddedRunner:
    def __init__(self, conf: Path, port: int) -> None:
        self.conf, self.port, self.broker = conf, port, None

    def start(self) -> None:
        self.broker = EmbeddedBroker(self.conf).start()

    def stop(self) -> None:
        assert self.broker is not None
        self.broker.stop()


@pytest.mark.parametrize("how", ["process", "embedded"])
def test_same_config_same_broker(tmp_path: Path, how: str) -> None:
    """Metrics, admin API, the message-logger plug-in, a bridge and strict persistence
    (a retained message survives a restart) all work from one config file, whichever
    entry point reads it; relative paths land next to the file."""
    remote = BrokerProcess().start()
    confdir = tmp_path / "conf"
    confdir.mkdir()
    port, metrics, admin = free_port(), free_port(), free_port()
    conf = confdir / "mqttfast.toml"
    conf.write_text(config_text(port, metrics, admin, remote.port, confdir / "messages.jsonl"))
    runner = (ProcessRunner if how == "process" else EmbeddedRunner)(conf, port)
    cwd = os.getcwd()
    os.chdir(tmp_path)  # not the config's directory: relative paths must not use it
    clients: list[Paho] = []
    try:
        runner.start()
        far = Paho(remote.port, "far")
        clients.append(far)
        far.subscribe("edge/up/#")
        pub = Paho(port, "pub")
        clients.append(pub)
        pub.publish("up/1", b"hello", qos=1, retain=True)
        wait_until(lambda: far.got, what="the bridged message")  # [[bridge]]
        assert far.got[0].topic == "edge/up/1" and far.got[0].payload == b"hello"
        status, body = http_get(f"http://127.0.0.1:{metrics}/metrics")  # [metrics]
        assert status == 200 and "mqttfast_" in body
        status, body = http_get(f"http://127.0.0.1:{admin}/api/stats", TOKEN)  # [admin]
        assert status == 200 and json.loads(body)
        assert http_get(f"http://127.0.0.1:{admin}/api/stats")[0] == 401
        log = confdir / "messages.jsonl"  # [[plugin]]
        wait_until(lambda: log.exists() and "up/1" in log.read_text(), what="plug-in output")
        for c in clients:
            c.close()
        clients.clear()
        runner.stop()
        assert (confdir / "data" / "mqttfast.db").exists()  # relative data_dir
        runner.start()  # [persistence]: the retained message is back
        sub = Paho(port, "sub")
        clients.append(sub)
        sub.subscribe("up/#")
        wait_until(lambda: sub.got, what="the retained message after a restart")
        assert sub.got[0].payload == b"hello" and sub.got[0].retain
    finally:
        os.chdir(cwd)
        for c in clients:
            c.close()
        try:
            runner.stop()
        except Exception:
            pass
        remote.stop()
        remote.cleanup()


def test_embedded_broker_without_cluster_never_imports_it(tmp_path: Path) -> None:
    """No [cluster]: nothing of mqttfast.cluster (nor nats) is imported (CONTRACTS.md)."""
    code = (
        "import asyncio, sys, mqttfast\n"
        "async def main():\n"
        "    async with mqttfast.Broker(port=0):\n"
        "        pass\n"
        "asyncio.run(main())\n"
        "bad = [m for m in sys.modules if m.startswith(('mqttfast.cluster', 'nats'))]\n"
        "assert not bad, bad\n"
        "print('clean')\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert r.returncode == 0 and "clean" in r.stdout, r.stderr


def test_cluster_without_nats_is_one_line_naming_the_extra(tmp_path: Path) -> None:
    """--cluster with nats-py missing: exit 2 and one line naming pip install
    mqttfast[cluster], no traceback (nats is hidden by a module that fails to import)."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "nats.py").write_text("raise ImportError('No module named nats (test)')\n")
    r = subprocess.run(
        [sys.executable, "-m", "mqttfast", "--persistence", "off", "--port", str(free_port())]
        + ["--cluster", "nats://127.0.0.1:4222"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": f"{shadow}{os.pathsep}{REPO_ROOT}"},
    )
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if "error" in ln]
    assert len(lines) == 1 and "pip install mqttfast[cluster]" in lines[0], r.stderr
    assert "Traceback" not in r.stderr
