"""paho-mqtt clients for the cluster tests: connect to a given node, collect messages."""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


class Client:
    def __init__(
        self,
        port: int,
        client_id: str | None = None,
        v5: bool = False,
        clean: bool = True,
        session_expiry: int | None = None,
        will: tuple | None = None,
        will_props: Properties | None = None,
        connect: bool = True,
    ) -> None:
        self.port = port
        self.v5 = v5
        self.client_id = client_id or f"c-{uuid.uuid4().hex[:10]}"
        proto = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
        kwargs: dict[str, Any] = {"client_id": self.client_id, "protocol": proto}
        if not v5:
            kwargs["clean_session"] = clean
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kwargs)
        self.messages: queue.Queue = queue.Queue()
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.disconnect_rc: Any = None
        self.session_present: bool | None = None
        self.clean = clean
        self.session_expiry = session_expiry
        self.probes: queue.Queue = queue.Queue()
        self.c.on_message = lambda c, u, m: (
            self.probes if m.topic.startswith("probe/") else self.messages
        ).put(m)
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        if will is not None:
            self.c.will_set(*will, properties=will_props)
        if connect:
            self.connect()

    def _on_connect(self, c: Any, u: Any, flags: Any, rc: Any, props: Any = None) -> None:
        self.session_present = bool(flags.session_present)
        self.connected.set()

    def _on_disconnect(self, c: Any, u: Any, flags: Any, rc: Any, props: Any = None) -> None:
        self.disconnect_rc = rc
        self.disconnected.set()

    def connect(self, port: int | None = None) -> Client:
        if port is not None:
            self.port = port
        self.connected.clear()
        self.disconnected.clear()
        if self.v5:
            props = None
            if self.session_expiry is not None:
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = self.session_expiry
            self.c.connect("127.0.0.1", self.port, 30, clean_start=self.clean, properties=props)
        else:
            self.c.connect("127.0.0.1", self.port, 30)
        self.c.loop_start()
        assert self.connected.wait(10), f"no CONNACK from port {self.port}"
        return self

    def subscribe(self, *filters: Any, qos: int = 1, props: Properties | None = None) -> None:
        done = threading.Event()
        self.c.on_subscribe = lambda *a: done.set()
        topics = [(f, qos) if isinstance(f, str) else f for f in filters]
        if self.v5:
            self.c.subscribe(topics, properties=props)
        else:
            self.c.subscribe(topics)
        assert done.wait(10), "no SUBACK"

    def publish(
        self,
        topic: str,
        payload: Any,
        qos: int = 0,
        retain: bool = False,
        props: Properties | None = None,
    ) -> None:
        info = self.c.publish(topic, payload, qos, retain, properties=props)
        if qos:
            info.wait_for_publish(10)
            assert info.is_published()

    def get(self, timeout: float = 5.0) -> Any:
        return self.messages.get(timeout=timeout)

    def collect(self, n: int, timeout: float = 10.0) -> list[Any]:
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                out.append(self.messages.get(timeout=left))
            except queue.Empty:
                break
        return out

    def quiet(self, seconds: float = 0.5) -> list[Any]:
        """Whatever else arrives within ``seconds`` (expected: nothing)."""
        time.sleep(seconds)
        out = []
        while not self.messages.empty():
            out.append(self.messages.get_nowait())
        return out

    def close(self) -> None:
        try:
            self.c.disconnect()
        finally:
            try:
                self.c.loop_stop()
            except AttributeError:
                # paho's network thread ended (and cleared ``_thread``) between
                # loop_stop's check and its join: stopped either way.
                pass


def stop_loop(c: mqtt.Client) -> None:
    """``c.loop_stop()`` without its wait: paho's network thread notices the stop only
    when its select wakes (up to 1 s on an idle connection), so it is woken through
    paho's own wake-up socket pair, as paho does when it has a packet to send. Nothing
    is sent: the connection is left as it is (a test that kills a node or drops it)."""
    c._thread_terminate = True
    sockpair = c._sockpairW
    if sockpair is not None:
        try:
            sockpair.send(b"0")
        except OSError:
            pass  # the thread is gone already
    c.loop_stop()


def count_until(
    sub: Client, want: set[int], timeout: float = 30.0, settle: float = 1.0
) -> Counter[int]:
    """What ``sub`` receives: until every number of ``want`` is there (bounded by
    ``timeout``), then whatever else arrives within ``settle`` s (a late duplicate
    shows up there). Polling, not a fixed wait: the messages are all there within
    a second or two of the last acknowledgement."""
    got: Counter[int] = Counter()
    deadline = time.monotonic() + timeout
    while not want <= got.keys() and time.monotonic() < deadline:
        got.update(int(m.payload) for m in sub.collect(len(want), timeout=0.2))
    got.update(int(m.payload) for m in sub.quiet(settle))
    return got


def assert_arrived(
    name: str,
    got: Counter[int],
    acked: set[int],
    total: int,
    exactly_once: bool,
    diagnose: Callable[[], None] | None = None,
) -> None:
    """Every acknowledged number is in ``got`` (and, with QoS 2 end to end, once
    [MQTT-4.3.3]). The counts are printed either way (the failure tests' record);
    ``diagnose`` runs before a failing assertion (what the nodes said)."""
    lost = acked - set(got)
    dups = sorted(k for k, v in got.items() if v > 1)
    print(
        f"{name}: sent={total} acked={len(acked)} received={len(got)} "
        f"dups={sum(got[k] - 1 for k in dups)} lost_acked={len(lost)}"
    )
    if diagnose is not None and (lost or (exactly_once and dups)):
        diagnose()
    assert not lost, sorted(lost)[:20]
    if exactly_once:
        assert not dups, dups[:20]


def sync(sub: Client, pub: Client, timeout: float = 10.0) -> None:
    """Wait until ``sub``'s node's interest is known on ``pub``'s node: a probe topic
    subscribed after the others arrives only when the earlier NATS SUBs are active."""
    probe = f"probe/{uuid.uuid4().hex}"
    sub.subscribe(probe, qos=0)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pub.publish(probe, b"p")
        try:
            while sub.probes.get(timeout=0.2).topic != probe:
                pass
            return
        except queue.Empty:
            continue
    raise TimeoutError("cluster interest not established")
