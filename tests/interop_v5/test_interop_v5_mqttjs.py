"""MQTT.js (npm "mqtt") with protocolVersion 5 against the broker: the node
side is js/v5_scenarios.js; the other side is MQTT.js again or a raw MQTT 5
client. ``mqtt`` must be resolvable from js/ (the repository's package.json, or
``npm install --no-save --prefix tests/interop_v5/js mqtt``)."""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from mqttfast.codec.packets import Properties
from tests.helpers.rawclient import RawClient

SCRIPT = Path(__file__).parent / "js" / "v5_scenarios.js"


class Node:
    """One run of a scenario; JSON lines from its stdout arrive in ``events``."""

    def __init__(self, port: int, scenario: str) -> None:
        node = shutil.which("node")
        assert node, "node (Node.js 20) is required for the MQTT.js interop tests"
        self.proc = subprocess.Popen(
            [node, str(SCRIPT), str(port), scenario],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=SCRIPT.parent,
        )
        self.events: queue.Queue = queue.Queue()
        self.seen: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                self.events.put(json.loads(line))
            except ValueError:
                self.events.put({"event": "noise", "line": line.decode(errors="replace")})
        self.events.put({"event": "eof"})

    def wait_for(self, name: str, timeout: float = 8.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            try:
                ev = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"no {name!r} from node within {timeout}s; saw {self.seen}"
                ) from None
            self.seen.append(ev)
            if ev["event"] == name:
                return ev
            if ev["event"] in ("error", "timeout", "eof"):
                raise AssertionError(
                    f"node scenario failed: {ev}; stderr: {self.stderr()}; saw {self.seen}"
                )

    def finish(self, timeout: float = 10.0) -> list[dict]:
        """Wait for 'done' and the exit; return every event seen."""
        self.wait_for("done", timeout)
        assert self.proc.wait(5) == 0
        return self.seen

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        return self.proc.stderr.read().decode(errors="replace")[-2000:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def send_line(self, text: str = "go") -> None:
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()


@pytest.fixture
def node(broker):
    runs: list[Node] = []

    def run(scenario: str) -> Node:
        runs.append(Node(broker.port, scenario))
        return runs[-1]

    yield run
    for r in runs:
        r.kill()


def _messages(events: list[dict]) -> list[dict]:
    return [e for e in events if e["event"] == "message"]


def _raw(broker, client_id: str) -> RawClient:
    c = RawClient(broker.port, version=5)
    c.connect(client_id)
    return c


def test_mqttjs_properties_and_subscription_identifier(node):
    """[MQTT-3.3.2-4] [MQTT-3.3.2-15] [MQTT-3.3.2-16] [MQTT-3.3.2-17]
    [MQTT-3.3.2-20] [MQTT-3.3.4-3]: MQTT.js to MQTT.js, properties unchanged and
    the subscriber's Subscription Identifier attached."""
    events = node("properties").finish()
    msgs = _messages(events)
    assert len(msgs) == 1, events
    m = msgs[0]
    p = m["properties"]
    assert (m["topic"], m["payload"], m["qos"]) == ("js/prop", "héllo", 1)
    assert p.get("payloadFormatIndicator") is True
    assert p.get("contentType") == "text/plain"
    assert p.get("responseTopic") == "js/reply"
    assert p.get("correlationData") == "000102ff"
    assert p.get("messageExpiryInterval") in (59, 60)
    assert p.get("userProperties") == {"a": "1", "b": ["2", "3"]}
    assert p.get("subscriptionIdentifier") in (9, [9])


def test_mqttjs_receives_raw_v5_properties(broker, node):
    """[MQTT-3.3.2-17] [MQTT-3.3.2-18]: user properties (with a repeated key) a
    raw client sets arrive at MQTT.js in order."""
    js = node("receive")
    js.wait_for("ready")
    _raw(broker, "js-recv-pub").publish(
        "js/recv",
        b"from python",
        qos=1,
        properties=Properties(
            user_property=[("k", "1"), ("x", "y"), ("k", "2")], content_type="text/x"
        ),
    )
    msgs = _messages(js.finish())
    assert len(msgs) == 1
    assert msgs[0]["payload"] == "from python"
    assert msgs[0]["properties"].get("userProperties") == {"k": ["1", "2"], "x": "y"}
    assert msgs[0]["properties"].get("contentType") == "text/x"


def test_mqttjs_subscription_options(node):
    """[MQTT-3.8.3-3] [MQTT-3.3.1-11] [MQTT-3.3.1-13]: with nl, rap and rh 2,
    MQTT.js gets neither its own message nor the stored retained one, and the
    live retained publication keeps RETAIN 1."""
    msgs = _messages(node("options").finish())
    assert [(m["topic"], m["payload"], m["retain"]) for m in msgs] == [
        ("js/opt/live", "live", True)
    ]


def test_mqttjs_request_response(broker, node):
    """4.10: MQTT.js requests with Response Topic and Correlation Data; a raw
    responder answers; MQTT.js receives the reply with the correlation data."""
    responder = _raw(broker, "js-rr-responder")
    responder.subscribe(("js/rr/service", 1))
    js = node("request")
    req = responder.recv_publish(5.0)
    assert req.properties.response_topic == "js/rr/reply"
    assert req.properties.correlation_data == b"corr-7"
    responder.publish(
        "js/rr/reply",
        b"answer",
        qos=1,
        properties=Properties(correlation_data=req.properties.correlation_data),
    )
    msgs = _messages(js.finish())
    assert [(m["payload"], m["properties"].get("correlationData")) for m in msgs] == [
        ("answer", b"corr-7".hex())
    ]


def test_mqttjs_topic_aliases_both_ways(broker, node):
    """[MQTT-3.3.2-12] [MQTT-3.3.2-11]: MQTT.js assigns aliases within the
    server's Topic Alias Maximum (the server resolves them), and the server's
    aliases toward MQTT.js stay within its maximum 3; all 4 messages arrive
    on js/alias/t."""
    events = node("alias").finish()
    connack = next(e for e in events if e["event"] == "connack")
    assert connack["topicAliasMaximum"] and connack["topicAliasMaximum"] >= 1
    msgs = _messages(events)
    assert [(m["topic"], m["payload"]) for m in msgs] == [("js/alias/t", f"m{i}") for i in range(4)]
    for m in msgs:
        alias = m["properties"].get("topicAlias")
        assert alias is None or 1 <= alias <= 3


def test_mqttjs_session_expiry(broker, node):
    """[MQTT-3.1.2-25] [MQTT-3.2.2-3]: MQTT.js with clean false and Session
    Expiry 60 resumes its session (sessionPresent) and gets the QoS 1 message
    published while it was away."""
    js = node("session")
    assert js.wait_for("connack")["sessionPresent"] is False
    js.wait_for("ready")
    _raw(broker, "js-sess-pub").publish("js/sess", b"queued", qos=1)
    js.send_line()
    assert js.wait_for("connack")["sessionPresent"] is True
    msgs = _messages(js.finish())
    assert [m["payload"] for m in msgs] == ["queued"]


def test_mqttjs_assigned_client_identifier(node):
    """[MQTT-3.2.2-16]: MQTT.js with an empty client id gets an Assigned Client
    Identifier."""
    events = node("assigned").finish()
    connack = next(e for e in events if e["event"] == "connack")
    assert connack["properties"].get("assignedClientIdentifier")


def test_mqttjs_will_delay_and_properties(broker, node):
    """[MQTT-3.1.2-8] 3.1.3.2.2: an MQTT.js will with Will Delay 1 s, cut off
    without DISCONNECT, is published after the delay with its properties."""
    watch = _raw(broker, "js-will-watch")
    watch.subscribe(("js/will", 1))
    js = node("will")
    js.wait_for("ready")
    assert js.proc.wait(5) == 0
    start = time.monotonic()
    pub = watch.recv_publish(3.0)
    assert time.monotonic() - start >= 0.5
    assert pub.payload == b"js gone"
    assert pub.properties.content_type == "text/plain"
    assert pub.properties.user_property == [("from", "mqtt.js")]


def test_mqttjs_shared_subscription(broker, node):
    """4.8.2: two MQTT.js members of one share group receive each of 6
    messages exactly once between them."""
    js = node("shared")
    js.wait_for("ready")
    pub = _raw(broker, "js-sh-pub")
    for i in range(6):
        pub.publish("js/sh", b"%d" % i, qos=1)
    msgs = _messages(js.finish())
    assert sorted(m["payload"] for m in msgs) == [str(i) for i in range(6)]


@pytest.mark.mosquitto_deviation(
    "mosquitto 2.0.11 closes the taken-over connection without DISCONNECT 0x8E"
)
def test_mqttjs_sees_session_taken_over(node):
    """[MQTT-3.1.4-3]: MQTT.js, taken over by a second connection with its
    client id, receives the server's DISCONNECT with reason code 0x8E."""
    events = node("takeover").finish()
    assert next(e for e in events if e["event"] == "disconnect")["reasonCode"] == 0x8E
