"""SecurityHooks wired into the real mqttfast broker (core + asyncio transport) on 127.0.0.1,
exercised by real paho-mqtt clients: bad credentials refused, ACL applied to PUBLISH and
SUBSCRIBE, other clients undisturbed."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.reasoncodes import ReasonCode as PahoReasonCode

from mqttfast.app.security.auth import Authenticator
from mqttfast.app.security.hooks import SecurityHooks, strip_share
from mqttfast.app.security.passwords import PasswordFile
from mqttfast.core.rate_limit import LoginRateLimiter

pytestmark = pytest.mark.timeout(60)

WAIT = 10.0


class InProcessBroker:
    """The real BrokerCore + MQTTServer on an event loop in a background thread."""

    def __init__(self, hooks: SecurityHooks) -> None:
        from mqttfast.core.broker import BrokerCore
        from mqttfast.transport.server import MQTTServer

        self.loop = asyncio.new_event_loop()
        self.server = MQTTServer(BrokerCore(hooks=hooks))
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        fut = asyncio.run_coroutine_threadsafe(self.server.start("127.0.0.1", 0), self.loop)
        self.port = fut.result(WAIT)[0][1]

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(WAIT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)
        self.loop.close()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[tuple[InProcessBroker, Authenticator]]:
    pw = tmp_path / "pw"
    pf = PasswordFile()
    pf.set("alice", "secret", iterations=1000)
    pf.set("bob", "hunter2", iterations=1000)
    pf.save(pw)
    acl = tmp_path / "acl"
    acl.write_text(
        "user alice\ntopic readwrite a/#\ntopic deny a/secret\n"
        "user bob\ntopic read a/#\ntopic write b/out\n"
    )
    auth = Authenticator(
        password_file=pw, acl_file=acl, rate_limiter=LoginRateLimiter(burst=2, base_delay=60)
    )
    b = InProcessBroker(SecurityHooks(auth))
    try:
        yield b, auth
    finally:
        b.close()


def connect(
    port: int,
    client_id: str,
    username: str | None,
    password: str | None,
    protocol: int = mqtt.MQTTv311,
) -> tuple[mqtt.Client, object]:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
    if username is not None:
        c.username_pw_set(username, password)
    result: dict[str, object] = {}
    done = threading.Event()

    def on_connect(client, userdata, flags, reason_code, properties) -> None:
        result["rc"] = reason_code
        done.set()

    c.on_connect = on_connect
    c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()
    assert done.wait(WAIT), "no CONNACK"
    return c, result["rc"]


def stop(c: mqtt.Client) -> None:
    c.disconnect()
    c.loop_stop()


def test_bad_credentials_refused_with_right_connack(broker) -> None:
    b, _ = broker
    c, rc = connect(b.port, "x1", "alice", "wrong")
    stop(c)
    assert rc == PahoReasonCode(mqtt.CONNACK >> 4, identifier=0x86)  # 3.1.1 code 4
    c, rc = connect(b.port, "x2", None, None)
    stop(c)
    assert rc.is_failure and rc.value == 0x87  # 3.1.1 code 5
    c, rc = connect(b.port, "x3", "alice", "wrong", protocol=mqtt.MQTTv5)
    stop(c)
    assert rc.value == 0x86


def test_rate_limit_does_not_disturb_connected_clients(broker) -> None:
    b, auth = broker
    good, rc = connect(b.port, "good", "bob", "hunter2")
    assert not rc.is_failure
    got = threading.Event()
    good.on_message = lambda *a: got.set()
    sub_done = threading.Event()
    good.on_subscribe = lambda *a: sub_done.set()
    good.subscribe("a/#", 1)
    assert sub_done.wait(WAIT)
    for i in range(4):
        c, _ = connect(b.port, f"guess{i}", "alice", f"guess{i}", protocol=mqtt.MQTTv5)
        stop(c)
    c, rc = connect(b.port, "late", "alice", "secret", protocol=mqtt.MQTTv5)
    stop(c)
    assert rc.value == 0x9F  # connection rate exceeded: this source is blocked
    assert auth.auth_rate_limited >= 1
    # The connected client keeps working.
    good.publish("b/out", b"still here", qos=1).wait_for_publish(WAIT)
    assert good.is_connected()
    stop(good)


def test_acl_applied_to_publish_and_subscribe(broker) -> None:
    b, _ = broker
    alice, rc = connect(b.port, "alice-1", "alice", "secret", protocol=mqtt.MQTTv5)
    assert not rc.is_failure
    bob, rc = connect(b.port, "bob-1", "bob", "hunter2", protocol=mqtt.MQTTv5)
    assert not rc.is_failure

    granted: list = []
    sub_done = threading.Event()

    def on_subscribe(client, userdata, mid, reason_codes, properties) -> None:
        granted.extend(reason_codes)
        sub_done.set()

    received: list[str] = []
    sentinel = threading.Event()

    def on_message(client, userdata, msg) -> None:
        if msg.topic == "a/end":
            sentinel.set()
        else:
            received.append(msg.topic)

    bob.on_subscribe = on_subscribe
    bob.on_message = on_message
    bob.subscribe([("a/#", 1), ("b/#", 1), ("$share/g/c/#", 1)])
    assert sub_done.wait(WAIT)
    assert [rc.value for rc in granted] == [1, 0x87, 0x87]

    # alice: a/x allowed, a/secret denied (v5 PUBACK 0x87, dropped), z/other not granted.
    acks: dict[int, int] = {}
    acked = threading.Event()

    def on_publish(client, userdata, mid, reason_code, properties) -> None:
        acks[mid] = reason_code.value
        if len(acks) == 4:
            acked.set()

    alice.on_publish = on_publish
    mids = [alice.publish(t, b"m", qos=1).mid for t in ("a/x", "a/secret", "z/other", "a/end")]
    assert acked.wait(WAIT)
    assert sentinel.wait(WAIT)
    assert received == ["a/x"]
    assert acks[mids[1]] == 0x87 and acks[mids[2]] == 0x87
    assert acks[mids[0]] in (0x00, 0x10) and acks[mids[3]] in (0x00, 0x10)
    stop(alice)
    stop(bob)


def test_strip_share() -> None:
    assert strip_share("$share/g/a/b") == "a/b"
    assert strip_share("$share/g/#") == "#"
    assert strip_share("$SYS/x") == "$SYS/x"
    assert strip_share("a/b") == "a/b"


def test_reload_applies_new_rules_without_dropping_connections(broker, tmp_path: Path) -> None:
    b, auth = broker
    bob, rc = connect(b.port, "bob-2", "bob", "hunter2", protocol=mqtt.MQTTv5)
    assert not rc.is_failure
    acks: list[int] = []
    acked = threading.Event()

    def on_publish(client, userdata, mid, reason_code, properties) -> None:
        acks.append(reason_code.value)
        acked.set()

    bob.on_publish = on_publish

    def publish(topic: str) -> int:
        acked.clear()
        bob.publish(topic, b"m", qos=1)
        assert acked.wait(WAIT)
        return acks[-1]

    assert publish("c/new") == 0x87
    (tmp_path / "acl").write_text("user bob\ntopic write c/#\n")
    pf = PasswordFile.load(tmp_path / "pw")
    pf.set("carol", "new", iterations=1000)
    pf.save(tmp_path / "pw")
    assert auth.reload()
    assert publish("c/new") in (0x00, 0x10)
    assert publish("b/out") == 0x87
    assert bob.is_connected()
    carol, rc = connect(b.port, "carol-1", "carol", "new")
    assert not rc.is_failure
    stop(carol)
    stop(bob)
