"""Interop with paho-mqtt 2.x (MQTT 3.1.1 and 3.1, CallbackAPIVersion.VERSION2)."""

from __future__ import annotations

import os
import queue
import sys
import textwrap
import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ._proc import LineProcess


class Paho:
    """A paho client on its network thread, with bounded waits for what tests need."""

    def __init__(
        self,
        port: int,
        client_id: str,
        clean_session: bool = True,
        protocol: int = mqtt.MQTTv311,
        will: tuple | None = None,
    ) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            protocol=protocol,
        )
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.connack: tuple[bool, int] | None = None
        self.granted: list[int] = []
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, msg: self.messages.put(msg)
        self.client.on_subscribe = self._on_subscribe
        if will:
            self.client.will_set(*will)
        self.port = port

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connack = (bool(flags.session_present), int(reason_code.value))
        self.connected.set()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self.granted = [int(rc.value) for rc in reason_codes]
        self.subscribed.set()

    def start(self) -> Paho:
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        assert self.connected.wait(5), "paho did not connect"
        assert self.connack[1] == 0, self.connack
        return self

    def subscribe(self, topic: str, qos: int) -> list[int]:
        self.subscribed.clear()
        result, _mid = self.client.subscribe(topic, qos)
        assert result == mqtt.MQTT_ERR_SUCCESS
        assert self.subscribed.wait(5), "no SUBACK"
        return self.granted

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(timeout=5)
        assert info.is_published(), f"paho publish of {topic} (QoS {qos}) not completed"

    def get(self, timeout: float = 5.0) -> mqtt.MQTTMessage:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"paho received nothing within {timeout}s") from None

    def nothing(self, timeout: float = 0.5) -> None:
        try:
            msg = self.messages.get(timeout=timeout)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected message {msg.topic} {msg.payload!r}")

    def stop(self) -> None:
        if self.client.is_connected():
            self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def paho(broker):
    clients: list[Paho] = []

    def make(client_id: str, **kw) -> Paho:
        c = Paho(broker.port, client_id, **kw).start()
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.stop()


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_paho_pubsub(paho, qos) -> None:
    """paho publisher -> paho subscriber at QoS n: every message, in order, at QoS n."""
    sub = paho("paho-sub")
    assert sub.subscribe("paho/t", qos) == [qos]
    pub = paho("paho-pub")
    for i in range(20):
        pub.publish("paho/t", f"{i}".encode(), qos=qos)
    got = [sub.get() for _ in range(20)]
    assert [int(m.payload) for m in got] == list(range(20))
    assert {m.qos for m in got} == {qos}
    sub.nothing()


def test_paho_wildcards_and_downgrade(paho) -> None:
    """'+' / '#' filters and QoS downgrade ([MQTT-3.8.4-6]) seen by paho."""
    sub = paho("paho-sub")
    sub.subscribe("paho/+/x", 1)
    pub = paho("paho-pub")
    pub.publish("paho/a/x", b"q2", qos=2)
    m = sub.get()
    assert (m.topic, m.qos) == ("paho/a/x", 1)


def test_paho_retained(paho) -> None:
    """Retained message stored and sent to a later paho subscriber with retain set;
    an empty retained payload deletes it."""
    pub = paho("paho-pub")
    pub.publish("paho/ret", b"kept", qos=1, retain=True)
    sub = paho("paho-sub")
    sub.subscribe("paho/ret", 1)
    m = sub.get()
    assert (m.payload, m.retain, m.qos) == (b"kept", True, 1)
    pub.publish("paho/ret", b"", qos=1, retain=True)
    assert sub.get().payload == b""
    late = paho("paho-late")
    late.subscribe("paho/ret", 1)
    late.nothing(0.6)


def test_paho_persistent_session(broker, paho) -> None:
    """clean_session=False: paho's subscription survives a disconnect; QoS 1/2 messages
    published meanwhile are delivered on reconnect with session_present set."""
    first = paho("paho-ps", clean_session=False)
    first.subscribe("paho/ps", 2)
    first.stop()
    pub = paho("paho-pub")
    pub.publish("paho/ps", b"one", qos=1)
    pub.publish("paho/ps", b"two", qos=2)
    again = Paho(broker.port, "paho-ps", clean_session=False).start()
    try:
        assert again.connack[0] is True
        assert [again.get().payload, again.get().payload] == [b"one", b"two"]
    finally:
        again.stop()


WILL_SCRIPT = textwrap.dedent("""
    import sys, time
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="paho-dying")
    c.will_set("paho/will", b"paho-gone", qos=1, retain=True)
    c.connect("127.0.0.1", int(sys.argv[1]), keepalive=30)
    c.loop_start()
    for _ in range(100):
        if c.is_connected():
            break
        time.sleep(0.05)
    print("connected" if c.is_connected() else "failed", flush=True)
    time.sleep(60)
""")


def test_paho_will_on_process_kill(broker, paho) -> None:
    """[MQTT-3.1.2-8] a paho process with a will is killed -9: the will (QoS 1, retain)
    is published, and retained for later subscribers ([MQTT-3.1.2-17])."""
    watcher = paho("paho-watch")
    watcher.subscribe("paho/will", 1)
    with LineProcess([sys.executable, "-c", WILL_SCRIPT, str(broker.port)]) as dying:
        assert dying.readline(timeout=10) == "connected"
        dying.kill()
    m = watcher.get()
    assert (m.payload, m.qos) == (b"paho-gone", 1)
    late = paho("paho-late")
    late.subscribe("paho/will", 1)
    m = late.get()
    assert (m.payload, m.retain) == (b"paho-gone", True)


def test_paho_no_will_on_clean_disconnect(paho) -> None:
    """[MQTT-3.14.4-3] paho disconnect() discards the will."""
    watcher = paho("paho-watch")
    watcher.subscribe("paho/w2", 1)
    polite = paho("paho-polite", will=("paho/w2", b"nope", 1, False))
    polite.stop()
    watcher.nothing(1.0)


def test_paho_mqtt31(paho) -> None:
    """paho with protocol=MQTTv31 (MQIsdp) exchanges messages with a 3.1.1 paho."""
    old = paho("paho31", protocol=mqtt.MQTTv31)
    new = paho("paho311")
    old.subscribe("paho/v", 1)
    new.publish("paho/v", b"x", qos=1)
    assert old.get().payload == b"x"


def test_paho_large_payload(paho) -> None:
    """A 256 KiB payload through paho arrives intact."""
    payload = os.urandom(256 * 1024)
    sub = paho("paho-sub")
    sub.subscribe("paho/big", 1)
    paho("paho-pub").publish("paho/big", payload, qos=1)
    assert sub.get(timeout=10).payload == payload


def test_paho_many_clients(paho) -> None:
    """10 paho subscribers each receive a burst from one publisher."""
    subs = [paho(f"paho-s{i}") for i in range(10)]
    for s in subs:
        s.subscribe("paho/burst", 1)
    pub = paho("paho-pub")
    for i in range(10):
        pub.publish("paho/burst", str(i).encode(), qos=1)
    for s in subs:
        assert [int(s.get().payload) for _ in range(10)] == list(range(10))
