"""The ``mqttfast`` command with [[plugin]] and [[bridge]] tables in its TOML file."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import paho.mqtt.client as mqtt
import pytest

from tests.bridge.test_bridge import Mosquitto
from tests.helpers.broker import free_port, port_accepts

pytestmark = pytest.mark.timeout(60)


def wait(cond, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def client(port, cid, got=None):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid)
    if got is not None:
        c.on_message = lambda cl, u, m: got.append((m.topic, m.payload))
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def test_cli_runs_plugins_and_bridges_from_config(tmp_path):
    import asyncio

    mosq = Mosquitto(tmp_path)
    asyncio.run(mosq.start())
    port = free_port()
    log_path = tmp_path / "m.jsonl"
    conf = tmp_path / "mqttfast.toml"
    conf.write_text(f"""
[[listener]]
address = "127.0.0.1"
port = {port}

[sys]
interval = 0

[persistence]
mode = "off"

[[plugin]]
class = "mqttfast.plugins.message_logger:MessageLogger"
options = {{ path = "{log_path}", topics = ["up/#"], flush_interval = 0.1 }}

[[bridge]]
name = "m"
address = "127.0.0.1"
port = {mosq.port}
protocol_version = 4
reconnect_min = 0.1

[[bridge.topic]]
pattern = "up/#"
direction = "out"
qos = 1
remote_prefix = "cli/"
""")
    check = subprocess.run(
        [sys.executable, "-m", "mqttfast", "check-config", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert check.returncode == 0 and "ok" in check.stdout, check.stdout + check.stderr
    proc = subprocess.Popen(
        [sys.executable, "-m", "mqttfast", "--config", str(conf)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait(lambda: port_accepts(port), what="mqttfast listening")
        got: list = []
        sub = client(mosq.port, "far", got)
        sub.subscribe("cli/#", 1)
        time.sleep(0.5)  # subscription in place, bridge connected
        pub = client(port, "near")
        pub.publish("up/pump", b"on", qos=1).wait_for_publish(5)
        wait(lambda: got, what="bridged message at mosquitto")
        assert got == [("cli/up/pump", b"on")]
        for c in (sub, pub):
            c.disconnect()
            c.loop_stop()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
        assert proc.returncode == 0, out
        assert "Traceback" not in out
        assert "plug-ins: MessageLogger" in out and "bridge m connected" in out
        rows = [json.loads(line) for line in log_path.read_text().splitlines()]
        assert [(r["topic"], r["payload"], r["client_id"]) for r in rows] == [
            ("up/pump", "on", "near")
        ]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        mosq.stop()


def test_cli_bad_plugin_is_a_config_error(tmp_path):
    conf = tmp_path / "bad.toml"
    conf.write_text(
        '[persistence]\nmode = "off"\n[[listener]]\naddress = "127.0.0.1"\n'
        'port = 0\n[[plugin]]\nclass = "no.such.module:Plugin"\n'
    )
    out = subprocess.run(
        [sys.executable, "-m", "mqttfast", "--config", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2
    assert "no.such.module" in out.stderr and "Traceback" not in out.stderr
    out = subprocess.run(
        [sys.executable, "-m", "mqttfast", "check-config", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2 and "plugin[0]: plug-in 'no.such.module:Plugin'" in out.stdout
    bad = tmp_path / "bad2.toml"
    bad.write_text('[[plugin]]\nclas = "x"\n[[bridge]]\nname = "b"\n')
    out = subprocess.run(
        [sys.executable, "-m", "mqttfast", "check-config", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2
    assert "plugin[0].clas: unknown key" in out.stdout
    assert "bridge[0].topic: at least one" in out.stdout
