"""A real browser (headless Chromium, Debian's ``chromium``) running MQTT.js over the
WebSocket listener: it receives a retained message published by a Python client and
publishes one that a TCP client receives (issue 6)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers.broker import REPO_ROOT
from tests.helpers.rawclient import RawClient

from .support import free_port

pytestmark = pytest.mark.timeout(90)

PAGE = """<!doctype html><html><body><pre id="out">starting</pre>
<script src="mqtt.min.js"></script>
<script>
const out = document.getElementById("out");
const log = (s) => { out.textContent += "\\n" + s; };
const c = mqtt.connect("ws://127.0.0.1:PORT/mqtt", {clientId: "browser", protocolVersion: 4});
c.on("connect", () => {
  log("CONN" + "ECTED");
  c.subscribe("browser/in", {qos: 1}, () => c.publish("browser/out", "from-browser", {qos: 1}));
});
c.on("message", (topic, msg) => {
  log("MESSAGE " + topic + " " + msg.toString());
  c.publish("browser/out", "echo:" + msg.toString(), {qos: 1});
});
c.on("error", (e) => log("ERROR " + e));
</script></body></html>
"""


def _mqtt_js() -> Path:
    for base in (REPO_ROOT, REPO_ROOT / "tests" / "interop_v5" / "js"):
        path = base / "node_modules" / "mqtt" / "dist" / "mqtt.min.js"
        if path.exists():
            return path
    raise AssertionError("MQTT.js browser bundle missing: run `npm install` in the repository root")


def test_mqtt_js_in_headless_chromium(start_broker, tmp_path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is needed (apt-get install -y chromium)"
    tcp, ws = free_port(), free_port()
    start_broker(
        f'[[listener]]\nport = {tcp}\naddress = "127.0.0.1"\n'
        f'[[listener]]\nport = {ws}\naddress = "127.0.0.1"\nprotocol = "websockets"\n'
        '[persistence]\nmode = "off"\n',
        wait=[tcp, ws],
    )
    shutil.copy(_mqtt_js(), tmp_path / "mqtt.min.js")
    page = tmp_path / "page.html"
    page.write_text(PAGE.replace("PORT", str(ws)))
    with RawClient(tcp) as py:
        py.connect("python")
        py.subscribe("browser/out", qos=1)
        py.publish("browser/in", b"from-python", qos=1, retain=True)
        # Chromium keeps the page open (remote debugging on) until we have seen its
        # messages; what the browser did is observed through the broker.
        browser = subprocess.Popen(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                f"--user-data-dir={tmp_path / 'profile'}",
                "--remote-debugging-port=0",
                page.as_uri(),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            got = sorted(m.payload for m in py.recv_publishes(2, timeout=30))
        finally:
            browser.kill()
            browser.wait(10)
    # The browser published over WebSocket, and received (then echoed) the retained message.
    assert got == [b"echo:from-python", b"from-browser"]
