"""A websockets listener answers MQTT on any request path, as mosquitto does (issue 18
item 2): MQTT.js (Node) connecting to ``ws://host:port`` with no path works, so does
paho on an arbitrary path; a TOML ``path`` restricts the listener to that one path."""

from __future__ import annotations

import shutil
import subprocess
import time

import paho.mqtt.client as mqtt
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from mqttfast.codec import Decoder, encode
from mqttfast.codec.packets import Connect
from tests.helpers.broker import REPO_ROOT
from tests.listeners.support import free_port

pytestmark = pytest.mark.timeout(90)

NODE_CLIENT = """
const mqtt = require(process.argv[2]);
const c = mqtt.connect(process.argv[3], {clientId: "mqttjs-any-path", protocolVersion: 4,
                                          reconnectPeriod: 0, connectTimeout: 5000});
const fail = (e) => { console.log("ERROR " + e); process.exit(1); };
// unref: the bound ends a hung client, but does not keep a finished one alive 10 s.
setTimeout(() => fail("timeout"), 10000).unref();
c.on("error", fail);
// A refused WebSocket upgrade (404) ends in "close" without an "error" event.
let connected = false;
c.on("close", () => { if (!connected) fail("closed before CONNACK"); });
c.on("connect", () => {
  connected = true;
  c.subscribe("js/t", {qos: 1}, () => c.publish("js/t", "round", {qos: 1}));
});
c.on("message", (topic, msg) => { console.log("GOT " + topic + " " + msg); c.end(); });
"""


def _mqtt_js(url: str, tmp_path) -> str:
    node = shutil.which("node")
    assert node, "node is needed for the MQTT.js tests"
    module = REPO_ROOT / "node_modules" / "mqtt"
    assert module.exists(), "run `npm ci --no-audit --no-fund` in the repository root"
    script = tmp_path / "client.js"
    script.write_text(NODE_CLIENT)
    r = subprocess.run(
        [node, str(script), str(module), url], capture_output=True, text=True, timeout=30
    )
    return r.stdout + r.stderr


def _ws_connack(port: int, path: str) -> int:
    with ws_connect(f"ws://127.0.0.1:{port}{path}", subprotocols=["mqtt"], open_timeout=5) as ws:
        ws.send(encode(Connect(client_id="raw", protocol_version=4), 4))
        return Decoder(4).feed(ws.recv(timeout=5))[0].reason_code


def test_mqtt_js_without_a_path_and_any_path_from_mosquitto_conf(start_broker, tmp_path) -> None:
    port = free_port()
    start_broker(
        f"listener {port} 127.0.0.1\nprotocol websockets\nallow_anonymous true\n",
        mosquitto=True,
        wait=[port],
    )
    out = _mqtt_js(f"ws://127.0.0.1:{port}", tmp_path)
    assert "GOT js/t round" in out, out
    for path in ("/", "/mqtt", "/some/other/path?x=1"):
        assert _ws_connack(port, path) == 0, path
    got: list[bytes] = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, "paho-any", transport="websockets")
    c.ws_set_options(path="/not/mqtt")
    c.on_message = lambda _c, _u, m: got.append(m.payload)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        c.subscribe("p/t", qos=1)
        c.publish("p/t", b"via-paho", qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        c.disconnect()  # first: it wakes paho's thread (loop_stop() first waits ~1 s)
        c.loop_stop()
    assert got == [b"via-paho"]


def test_toml_path_restricts(start_broker, tmp_path) -> None:
    port = free_port()
    start_broker(
        f'[[listener]]\nport = {port}\naddress = "127.0.0.1"\nprotocol = "websockets"\n'
        'path = "/mqtt"\n[persistence]\nmode = "off"\n',
        wait=[port],
    )
    assert _ws_connack(port, "/mqtt") == 0
    assert _ws_connack(port, "/mqtt?client=1") == 0  # the query string is not compared
    for path in ("/", "/other", "/mqtt/x"):
        with pytest.raises(InvalidStatus) as info:
            _ws_connack(port, path)
        assert info.value.response.status_code == 404
    out = _mqtt_js(f"ws://127.0.0.1:{port}/mqtt", tmp_path)
    assert "GOT js/t round" in out, out
    out = _mqtt_js(f"ws://127.0.0.1:{port}", tmp_path)  # MQTT.js asks for "/": refused here
    assert "ERROR" in out and "GOT" not in out, out
