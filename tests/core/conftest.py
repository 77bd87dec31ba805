"""Harness for core unit tests: a BrokerCore with a FakeClock, fake sinks, packet objects.

No sockets: a :class:`FakeClient` hands packet objects to the core connection
and decodes what the core wrote to its sink with a client-side Decoder of the
twin under test (the ``impl`` fixture). The core's codec entry points are
pointed at the same twin for the duration of the test.
"""

from __future__ import annotations

from typing import Any

import pytest

import mqttfast.codec as codec
from mqttfast.codec.packets import (
    Connack,
    Connect,
    Disconnect,
    Properties,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Subscription,
    Unsubscribe,
    Will,
)
from mqttfast.core import connection as core_connection
from mqttfast.core import handle_subscribe as core_handle_subscribe
from mqttfast.core import outbound as core_outbound
from mqttfast.core import subscriptions as core_subscriptions
from mqttfast.core.broker import BrokerCore, FakeClock
from mqttfast.core.settings import BrokerSettings

__all__ = [
    "FakeClient",
    "FakeSink",
    "Connect",
    "Connack",
    "Publish",
    "Puback",
    "Pubrec",
    "Pubrel",
    "Pubcomp",
    "Subscribe",
    "Subscription",
    "Suback",
    "Unsubscribe",
    "Disconnect",
    "Properties",
    "Will",
]


class FakeSink:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.closed = False
        self.paused = False
        self.buffer_size = 0  # what get_write_buffer_size reports (tests set it)

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.chunks.append(bytes(data))

    def writelines(self, parts: Any) -> None:
        assert not self.closed, "write after close"
        self.chunks.append(b"".join(parts))

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def get_write_buffer_size(self) -> int:
        return self.buffer_size


class FakeClient:
    """One connection to the core, speaking MQTT ``version`` with packet objects."""

    def __init__(self, broker: BrokerCore, impl: Any, version: int = 4) -> None:
        self.broker = broker
        self.version = version
        self.sink = FakeSink()
        self.conn = broker.connection_made(self.sink, f"fake-{id(self):x}")
        self.decoder = impl.Decoder(protocol_version=version)
        self._pid = 0
        self.backlog: list[Any] = []  # packets that arrived with CONNACK

    def send(self, *pkts: Any) -> None:
        self.conn.packets_received(list(pkts))

    def received(self) -> list[Any]:
        """Packets written since the last call, decoded as the client would."""
        data = b"".join(self.sink.chunks)
        self.sink.chunks.clear()
        out, self.backlog = self.backlog, []
        return out + (self.decoder.feed(data) if data else [])

    def next_pid(self) -> int:
        self._pid += 1
        return self._pid

    @property
    def closed(self) -> bool:
        return self.sink.closed

    def connect(
        self,
        client_id: str = "",
        clean: bool = True,
        keep_alive: int = 0,
        will: Will | None = None,
        properties: Properties | None = None,
        username: str | None = None,
        password: bytes | None = None,
    ) -> Connack:
        self.send(
            Connect(
                client_id=client_id,
                protocol_version=self.version,
                clean_start=clean,
                keep_alive=keep_alive,
                username=username,
                password=password,
                will=will,
                properties=properties,
            )
        )
        pkts = self.received()
        assert pkts and isinstance(pkts[0], Connack), pkts
        self.backlog = pkts[1:]
        return pkts[0]

    def subscribe(self, *subs: Any, properties: Properties | None = None) -> Suback:
        subscriptions = [
            s
            if isinstance(s, Subscription)
            else (Subscription(s[0], s[1]) if isinstance(s, tuple) else Subscription(s, 0))
            for s in subs
        ]
        self.send(Subscribe(self.next_pid(), subscriptions, properties))
        pkts = self.received()
        assert isinstance(pkts[0], Suback), pkts
        self.after_suback = pkts[1:]
        return pkts[0]

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        retain: bool = False,
        properties: Properties | None = None,
        packet_id: int | None = None,
    ) -> list[Any]:
        pid = 0 if qos == 0 else (packet_id or self.next_pid())
        self.send(Publish(topic, payload, qos, retain, False, pid, properties))
        return self.received()

    def publishes(self) -> list[Publish]:
        pkts = self.received()
        assert all(isinstance(p, Publish) for p in pkts), pkts
        return pkts

    def ack_all(self, pkts: list[Any]) -> list[Any]:
        """Acknowledge received QoS 1/2 PUBLISHes (completing QoS 2 with PUBREL handling)."""
        for p in pkts:
            if isinstance(p, Publish) and p.qos == 1:
                self.send(Puback(p.packet_id))
            elif isinstance(p, Publish) and p.qos == 2:
                self.send(Pubrec(p.packet_id))
        more = self.received()
        for p in more:
            if isinstance(p, Pubrel):
                self.send(Pubcomp(p.packet_id))
        return more


@pytest.fixture
def core_impl(impl: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Point the core at the twin under test (a twin not written yet: the active one)."""
    for name, module, attr in (
        ("encode", core_connection, "encode"),
        ("publish_parts", core_outbound, "publish_parts"),
        ("TopicTree", core_subscriptions, "TopicTree"),
        ("validate_topic_filter", core_handle_subscribe, "validate_topic_filter"),
    ):
        monkeypatch.setattr(module, attr, getattr(impl, name, getattr(codec, name)))
    if not hasattr(impl, "Decoder"):
        impl.Decoder = codec.Decoder  # type: ignore[attr-defined]
    return impl


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
def make_broker(core_impl: Any, clock: FakeClock):  # type: ignore[no-untyped-def]
    def make(**settings: Any) -> BrokerCore:
        settings.setdefault("sys_interval", 0)
        return BrokerCore(BrokerSettings(**settings), clock=clock)

    return make


@pytest.fixture
def broker(make_broker) -> BrokerCore:  # type: ignore[no-untyped-def]
    return make_broker()


@pytest.fixture
def client(broker: BrokerCore, core_impl: Any):  # type: ignore[no-untyped-def]
    """Factory: client(version=4) -> FakeClient on the shared broker."""

    def make(version: int = 4, b: BrokerCore | None = None) -> FakeClient:
        return FakeClient(b or broker, core_impl, version)

    return make
