"""Debian's mosquitto_pub / mosquitto_sub / mosquitto_rr speaking MQTT 5 (-V 5)
against the broker, checked from a raw MQTT 5 client on the other side."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time

import pytest

from mqttfast.codec.packets import Properties
from tests.helpers.rawclient import RawClient

TOOL_TIMEOUT = 10


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} not found: install Debian's mosquitto-clients"
    return path


def _run(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, timeout=TOOL_TIMEOUT, **kw)


def _v5(broker, client_id: str, **props) -> RawClient:
    c = RawClient(broker.port, version=5)
    c.connect(client_id, properties=Properties(**props) if props else None)
    return c


class Sub:
    """mosquitto_sub -V 5 in the background; started() waits for its SUBACK."""

    def __init__(self, broker, *args: str) -> None:
        # stdbuf: line-buffered stdout, so the SUBACK debug line is seen at once.
        self.proc = subprocess.Popen(
            [
                _tool("stdbuf"),
                "-oL",
                _tool("mosquitto_sub"),
                "-V",
                "5",
                "-h",
                "127.0.0.1",
                "-p",
                str(broker.port),
                "-d",
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.lines: list[bytes] = []
        self._suback = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        assert self._suback.wait(5), f"mosquitto_sub got no SUBACK: {self.lines!r}"

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.startswith(b"Client ") and b"received SUBACK" in line:
                self._suback.set()
            self.lines.append(line.rstrip(b"\n"))

    def output(self, timeout: float = 5.0) -> list[bytes]:
        """Wait for exit (-C count reached) and return the non-debug lines."""
        try:
            self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)
        return [
            ln
            for ln in self.lines
            if not (ln.startswith(b"Client ") or ln.startswith(b"Subscribed (mid"))
        ]


@pytest.fixture
def mosq_sub(broker):
    """Factory of background mosquitto_sub -V 5 processes, killed at teardown."""
    made: list[Sub] = []

    def make(*args: str) -> Sub:
        made.append(Sub(broker, *args))
        return made[-1]

    yield make
    for sub in made:
        if sub.proc.poll() is None:
            sub.proc.kill()
            sub.proc.wait(5)


def test_mosquitto_pub_v5_properties_reach_v5_subscriber(broker):
    """[MQTT-3.3.2-4] [MQTT-3.3.2-15] [MQTT-3.3.2-16] [MQTT-3.3.2-17]
    [MQTT-3.3.2-18] [MQTT-3.3.2-20]: properties given to mosquitto_pub -V 5 -D
    publish ... arrive unchanged at a raw MQTT 5 subscriber."""
    sub = _v5(broker, "mp-sub")
    sub.subscribe(("mp/t", 1))
    r = _run(
        [
            _tool("mosquitto_pub"),
            "-V",
            "5",
            "-h",
            "127.0.0.1",
            "-p",
            str(broker.port),
            "-q",
            "1",
            "-t",
            "mp/t",
            "-m",
            "hello v5",
            "-D",
            "publish",
            "content-type",
            "text/plain",
            "-D",
            "publish",
            "response-topic",
            "mp/reply",
            "-D",
            "publish",
            "correlation-data",
            "c-42",
            "-D",
            "publish",
            "payload-format-indicator",
            "1",
            "-D",
            "publish",
            "message-expiry-interval",
            "60",
            "-D",
            "publish",
            "user-property",
            "k",
            "v1",
            "-D",
            "publish",
            "user-property",
            "k",
            "v2",
        ]
    )
    assert r.returncode == 0, r.stderr
    pub = sub.recv_publish(3.0)
    p = pub.properties
    assert pub.payload == b"hello v5"
    assert (p.content_type, p.response_topic, p.correlation_data) == (
        "text/plain",
        "mp/reply",
        b"c-42",
    )
    assert p.payload_format_indicator == 1
    assert p.message_expiry_interval in (59, 60)
    assert p.user_property == [("k", "v1"), ("k", "v2")]


def test_mosquitto_sub_v5_prints_forwarded_properties(broker, mosq_sub):
    """[MQTT-3.3.2-15] [MQTT-3.3.2-16] [MQTT-3.3.2-17] [MQTT-3.3.2-20]:
    mosquitto_sub -V 5 -F shows the properties a raw v5 publisher set."""
    sub = mosq_sub("-t", "ms/t", "-q", "1", "-C", "1", "-F", "%t|%p|%C|%R|%D|%F|%P")
    pub = _v5(broker, "ms-pub")
    pub.publish(
        "ms/t",
        b"payload",
        qos=1,
        properties=Properties(
            content_type="application/x",
            response_topic="ms/resp",
            correlation_data=b"cd",
            payload_format_indicator=1,
            user_property=[("a", "b")],
        ),
    )
    assert sub.output() == [b"ms/t|payload|application/x|ms/resp|cd|1|a:b"]


def test_mosquitto_rr_request_response(broker):
    """4.10: mosquitto_rr -V 5 sends a request with -e response topic and
    correlation data; a raw v5 responder answers on that topic and mosquitto_rr
    prints the reply."""
    responder = _v5(broker, "rr-responder")
    responder.subscribe(("rr/service", 1))
    proc = subprocess.Popen(
        [
            _tool("mosquitto_rr"),
            "-V",
            "5",
            "-h",
            "127.0.0.1",
            "-p",
            str(broker.port),
            "-t",
            "rr/service",
            "-e",
            "rr/reply/1",
            "-m",
            "what time",
            "-W",
            "5",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        req = responder.recv_publish(5.0)
        assert req.payload == b"what time"
        assert req.properties.response_topic == "rr/reply/1"
        responder.publish(
            req.properties.response_topic,
            b"noon",
            qos=1,
            properties=Properties(correlation_data=req.properties.correlation_data),
        )
        out, err = proc.communicate(timeout=TOOL_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 0, err
    assert out.strip() == b"noon"


def test_mosquitto_sub_v5_session_expiry(broker):
    """[MQTT-3.1.2-25] [MQTT-3.2.2-3]: mosquitto_sub -V 5 -c -x 60 creates a
    session (-E exits after SUBACK); a QoS 1 message published meanwhile is
    delivered when it reconnects."""
    base = [
        _tool("mosquitto_sub"),
        "-V",
        "5",
        "-h",
        "127.0.0.1",
        "-p",
        str(broker.port),
        "-i",
        "ms-session",
        "-c",
        "-x",
        "60",
        "-q",
        "1",
        "-t",
        "msx/t",
    ]
    r = _run(base + ["-E"])
    assert r.returncode == 0, r.stderr
    _v5(broker, "msx-pub").publish("msx/t", b"queued", qos=1)
    r = _run(base + ["-C", "1", "-W", "5"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == b"queued"


def test_mosquitto_sub_v5_retain_as_published(broker, mosq_sub):
    """[MQTT-3.3.1-13]: mosquitto_sub --retain-as-published shows RETAIN 1 on a
    live retained publication (%r)."""
    sub = mosq_sub("-t", "mrap/t", "-q", "1", "-C", "1", "--retain-as-published", "-F", "%r|%p")
    _v5(broker, "mrap-pub").publish("mrap/t", b"live", qos=1, retain=True)
    assert sub.output() == [b"1|live"]


def test_mosquitto_pub_v5_topic_alias(broker):
    """[MQTT-3.3.2-12]: mosquitto_pub -V 5 -D publish topic-alias 1 (topic and
    alias together) is accepted and delivered with the full topic."""
    sub = _v5(broker, "mta-sub")
    sub.subscribe(("mta/t", 0))
    r = _run(
        [
            _tool("mosquitto_pub"),
            "-V",
            "5",
            "-h",
            "127.0.0.1",
            "-p",
            str(broker.port),
            "-t",
            "mta/t",
            "-m",
            "aliased",
            "-D",
            "publish",
            "topic-alias",
            "1",
        ]
    )
    assert r.returncode == 0, r.stderr
    pub = sub.recv_publish(3.0)
    assert (pub.topic, pub.payload) == ("mta/t", b"aliased")


def test_mosquitto_sub_v5_will_with_delay(broker, mosq_sub):
    """[MQTT-3.1.2-8] 3.1.3.2.2: mosquitto_sub -V 5 with a will and
    -D will will-delay-interval 1, killed (no DISCONNECT): the will arrives
    after about a second, with its user property."""
    watch = _v5(broker, "mw-watch")
    watch.subscribe(("mw/will", 1))
    sub = mosq_sub(
        "-i",
        "mw-client",
        "-x",
        "60",
        "-t",
        "mw/none",
        "--will-topic",
        "mw/will",
        "--will-payload",
        "bye",
        "--will-qos",
        "1",
        "-D",
        "will",
        "will-delay-interval",
        "1",
        "-D",
        "will",
        "user-property",
        "src",
        "mosquitto_sub",
    )
    sub.proc.kill()  # SIGKILL: the socket closes without DISCONNECT
    sub.proc.wait(5)
    start = time.monotonic()
    pub = watch.recv_publish(3.0)
    assert time.monotonic() - start >= 0.7
    assert pub.payload == b"bye"
    assert pub.properties.user_property == [("src", "mosquitto_sub")]
