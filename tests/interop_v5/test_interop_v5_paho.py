"""paho-mqtt 2.x as an MQTT 5 client (protocol=MQTTv5, CallbackAPIVersion.VERSION2):
properties, subscription options, identifiers, sessions, wills, shared
subscriptions and reason codes, end to end through the broker."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

TIMEOUT = 3.0


def _props(packet_type: int, **values: Any) -> Properties:
    p = Properties(packet_type)
    for name, value in values.items():
        setattr(p, name, value)
    return p


class Paho:
    """A paho v5 client on a background loop thread, with its callbacks in queues."""

    def __init__(
        self,
        port: int,
        client_id: str = "",
        *,
        clean_start: bool = True,
        session_expiry: int | None = None,
        will: tuple | None = None,
        connect_props: dict | None = None,
    ) -> None:
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.messages: queue.Queue = queue.Queue()
        self.subacks: queue.Queue = queue.Queue()
        self.pubacks: queue.Queue = queue.Queue()
        self.connected = threading.Event()
        self.connack: tuple | None = None
        c = self.client
        c.on_connect = self._on_connect
        c.on_message = lambda client, userdata, msg: self.messages.put(msg)
        c.on_subscribe = lambda client, userdata, mid, codes, props: self.subacks.put(
            (mid, [rc.value for rc in codes])
        )
        c.on_publish = lambda client, userdata, mid, rc, props: self.pubacks.put((mid, rc.value))
        if will is not None:
            topic, payload, qos, will_props = will
            c.will_set(topic, payload, qos, properties=will_props)
        props = _props(PacketTypes.CONNECT, **(connect_props or {}))
        if session_expiry is not None:
            props.SessionExpiryInterval = session_expiry
        c.connect("127.0.0.1", port, keepalive=30, clean_start=clean_start, properties=props)
        c.loop_start()
        assert self.connected.wait(TIMEOUT), "no CONNACK"
        _flags, rc, _cprops = self.connack
        assert rc == 0, f"CONNACK {rc}"

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connack = (flags, reason_code.value, properties)
        self.connected.set()

    def subscribe(
        self, topic: str, options: SubscribeOptions | int = 1, sub_id: int | None = None
    ) -> list[int]:
        if isinstance(options, int):
            options = SubscribeOptions(qos=options)
        props = _props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=sub_id) if sub_id else None
        rc, mid = self.client.subscribe(topic, options=options, properties=props)
        assert rc == mqtt.MQTT_ERR_SUCCESS
        got_mid, codes = self.subacks.get(timeout=TIMEOUT)
        assert got_mid == mid
        return codes

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        props: Properties | None = None,
    ) -> int | None:
        """Publish and wait for the flow to finish; the PUBACK/PUBREC reason code for QoS > 0."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        info.wait_for_publish(TIMEOUT)
        assert info.is_published()
        if qos == 0:
            return None
        mid, rc = self.pubacks.get(timeout=TIMEOUT)
        assert mid == info.mid
        return rc

    def message(self, timeout: float = TIMEOUT) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=timeout)

    def no_message(self, timeout: float = 0.5) -> None:
        try:
            msg = self.messages.get(timeout=timeout)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected message on {msg.topic}: {msg.payload!r}")

    def disconnect(self, props: Properties | None = None) -> None:
        self.client.disconnect(properties=props)
        self.client.loop_stop()

    def drop(self) -> None:
        """Close the socket without DISCONNECT (an ungraceful end)."""
        self.client.loop_stop()
        sock = self.client.socket()
        if sock is not None:
            sock.close()


@pytest.fixture
def paho(broker):
    made: list[Paho] = []

    def make(client_id: str = "", **kw: Any) -> Paho:
        p = Paho(broker.port, client_id, **kw)
        made.append(p)
        return p

    yield make
    for p in made:
        # DISCONNECT first: it wakes paho's network thread, which then ends at once;
        # loop_stop() first waits out the thread's 1 s select (1 s per client).
        try:
            p.client.disconnect()
        except Exception:
            pass
        p.client.loop_stop()


def test_paho_publish_properties_forwarded(paho):
    """[MQTT-3.3.2-4] [MQTT-3.3.2-15] [MQTT-3.3.2-16] [MQTT-3.3.2-17]
    [MQTT-3.3.2-18] [MQTT-3.3.2-20] [MQTT-3.3.2-6]: a paho subscriber sees the
    paho publisher's properties unchanged, user properties in order."""
    sub = paho("paho-prop-sub")
    sub.subscribe("paho/prop", 1)
    pub = paho("paho-prop-pub")
    user = [("z", "1"), ("a", "2"), ("z", "3")]
    props = _props(
        PacketTypes.PUBLISH,
        PayloadFormatIndicator=1,
        ContentType="text/plain",
        ResponseTopic="paho/reply",
        CorrelationData=b"\x00corr",
        MessageExpiryInterval=60,
        UserProperty=user,
    )
    pub.publish("paho/prop", "héllo".encode(), qos=1, props=props)
    msg = sub.message()
    p = msg.properties
    assert msg.payload == "héllo".encode() and msg.qos == 1
    assert p.PayloadFormatIndicator == 1
    assert p.ContentType == "text/plain"
    assert p.ResponseTopic == "paho/reply"
    assert p.CorrelationData == b"\x00corr"
    assert p.UserProperty == user
    assert p.MessageExpiryInterval in (59, 60)


def test_paho_request_response(paho):
    """4.10: request/response between two paho clients through Response Topic
    and Correlation Data."""
    requester = paho("paho-rr-req")
    responder = paho("paho-rr-resp")
    requester.subscribe("paho/rr/reply", 1)
    responder.subscribe("paho/rr/service", 1)
    requester.publish(
        "paho/rr/service",
        b"2+2",
        props=_props(PacketTypes.PUBLISH, ResponseTopic="paho/rr/reply", CorrelationData=b"req-1"),
    )
    req = responder.message()
    responder.publish(
        req.properties.ResponseTopic,
        b"4",
        props=_props(PacketTypes.PUBLISH, CorrelationData=req.properties.CorrelationData),
    )
    reply = requester.message()
    assert reply.payload == b"4" and reply.properties.CorrelationData == b"req-1"


def test_paho_no_local(paho):
    """[MQTT-3.8.3-3]: with noLocal the publishing paho client does not get its
    own message back; another subscriber does."""
    me = paho("paho-nl")
    other = paho("paho-nl-other")
    assert me.subscribe("paho/nl", SubscribeOptions(qos=1, noLocal=True)) == [1]
    other.subscribe("paho/nl", 1)
    me.publish("paho/nl", b"mine")
    assert other.message().payload == b"mine"
    me.no_message()


def test_paho_retain_as_published_and_retain_handling(paho):
    """[MQTT-3.3.1-13] [MQTT-3.3.1-11]: retainAsPublished keeps RETAIN 1 on a
    live retained message; retainHandling 2 sends no stored retained message."""
    pub = paho("paho-rap-pub")
    pub.publish("paho/rap/old", b"stored", retain=True)
    sub = paho("paho-rap-sub")
    sub.subscribe("paho/rap/#", SubscribeOptions(qos=1, retainAsPublished=True, retainHandling=2))
    sub.no_message()
    pub.publish("paho/rap/new", b"live", retain=True)
    msg = sub.message()
    assert (msg.topic, msg.payload, msg.retain) == ("paho/rap/new", b"live", True)


def test_paho_subscription_identifiers(paho):
    """[MQTT-3.3.4-3] [MQTT-3.3.4-4] [MQTT-3.3.4-5]: paho sees the Subscription
    Identifier of each matching subscription."""
    sub = paho("paho-sid")
    sub.subscribe("paho/sid/+", 1, sub_id=3)
    sub.subscribe("paho/sid/#", 1, sub_id=4)
    paho("paho-sid-pub").publish("paho/sid/x", b"m")
    ids = sorted(sub.message().properties.SubscriptionIdentifier)
    if ids != [3, 4]:  # a server may send one copy per subscription [MQTT-3.3.4-5]
        ids = sorted(ids + sub.message().properties.SubscriptionIdentifier)
    assert ids == [3, 4]


def test_paho_session_expiry_resume(paho):
    """[MQTT-3.1.2-25] [MQTT-3.2.2-3]: a paho session with Session Expiry 60 is
    resumed (session present) and gets the QoS 1 message queued meanwhile."""
    a = paho("paho-sess", clean_start=False, session_expiry=60)
    a.subscribe("paho/sess", 1)
    a.disconnect()
    paho("paho-sess-pub").publish("paho/sess", b"while away")
    b = paho("paho-sess", clean_start=False, session_expiry=60)
    assert b.connack[0].session_present is True
    assert b.message().payload == b"while away"


def test_paho_assigned_client_identifier(paho):
    """[MQTT-3.2.2-16]: paho connecting with an empty client id gets an
    Assigned Client Identifier."""
    c = paho("")
    assert getattr(c.connack[2], "AssignedClientIdentifier", None)


def test_paho_puback_reason_no_subscribers(paho):
    """3.4.2.1: PUBACK reason code 0x10 reaches paho's on_publish."""
    c = paho("paho-rc")
    assert c.publish("paho/nobody", b"x", qos=1) == 0x10


def test_paho_will_delay_and_properties(paho):
    """[MQTT-3.1.2-8] 3.1.3.2: a paho will with Will Delay 1 s and properties is
    published after the delay with its properties."""
    watch = paho("paho-will-watch")
    watch.subscribe("paho/will", 1)
    will_props = _props(
        PacketTypes.WILLMESSAGE,
        WillDelayInterval=1,
        ContentType="text/plain",
        UserProperty=[("why", "dropped")],
    )
    c = paho("paho-will", session_expiry=60, will=("paho/will", b"gone", 1, will_props))
    c.drop()
    start = time.monotonic()
    msg = watch.message(timeout=3.0)
    assert time.monotonic() - start >= 0.8
    assert msg.payload == b"gone"
    assert msg.properties.ContentType == "text/plain"
    assert msg.properties.UserProperty == [("why", "dropped")]


def test_paho_shared_subscription(paho):
    """4.8.2: two paho members of one share group get each message once between them."""
    a = paho("paho-sh-a")
    b = paho("paho-sh-b")
    a.subscribe("$share/grp/paho/sh", 1)
    b.subscribe("$share/grp/paho/sh", 1)
    pub = paho("paho-sh-pub")
    for i in range(8):
        pub.publish("paho/sh", b"%d" % i)
    got = []
    for member in (a, b):
        while True:
            try:
                got.append(member.message(timeout=0.8).payload)
            except queue.Empty:
                break
    assert sorted(got) == [b"%d" % i for i in range(8)]


def test_paho_topic_alias(paho):
    """[MQTT-3.3.2-12]: paho sets Topic Alias 1 with a topic, then publishes
    with an empty topic and alias 1; the subscriber gets the full topic."""
    sub = paho("paho-ta-sub")
    sub.subscribe("paho/ta", 1)
    pub = paho("paho-ta-pub")
    pub.publish("paho/ta", b"1", props=_props(PacketTypes.PUBLISH, TopicAlias=1))
    pub.publish("", b"2", props=_props(PacketTypes.PUBLISH, TopicAlias=1))
    assert [(m.topic, m.payload) for m in (sub.message(), sub.message())] == [
        ("paho/ta", b"1"),
        ("paho/ta", b"2"),
    ]


def test_paho_receive_maximum_and_many_messages(paho):
    """[MQTT-3.3.4-9]: a paho subscriber with Receive Maximum 2 still gets 30
    QoS 1 messages, in order, as it acknowledges them."""
    sub = paho("paho-rm", connect_props={"ReceiveMaximum": 2})
    sub.subscribe("paho/rm", 1)
    pub = paho("paho-rm-pub")
    for i in range(30):
        pub.publish("paho/rm", b"%d" % i)
    assert [sub.message().payload for _ in range(30)] == [b"%d" % i for i in range(30)]


def test_paho_v311_and_v5_clients_exchange_messages(broker, paho):
    """Issue 4: a paho 3.1.1 client and a paho 5.0 client on one broker exchange
    messages both ways; the 3.1.1 side gets the payload without properties."""
    v5_client = paho("paho-mix-v5")
    v5_client.subscribe("paho/mix/to5", 1)
    old = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id="paho-mix-311", protocol=mqtt.MQTTv311
    )
    got: queue.Queue = queue.Queue()
    subscribed = threading.Event()
    old.on_message = lambda client, userdata, msg: got.put(msg)
    old.on_subscribe = lambda client, userdata, mid, codes, props: subscribed.set()
    old.connect("127.0.0.1", broker.port, keepalive=30)
    old.loop_start()
    try:
        old.subscribe("paho/mix/to311", qos=1)
        assert subscribed.wait(TIMEOUT)
        v5_client.publish(
            "paho/mix/to311",
            b"from v5",
            props=_props(PacketTypes.PUBLISH, UserProperty=[("k", "v")], ContentType="text/plain"),
        )
        msg = got.get(timeout=TIMEOUT)
        assert (msg.topic, msg.payload, msg.qos) == ("paho/mix/to311", b"from v5", 1)
        info = old.publish("paho/mix/to5", b"from 3.1.1", qos=1)
        info.wait_for_publish(TIMEOUT)
        msg5 = v5_client.message()
        assert (msg5.topic, msg5.payload) == ("paho/mix/to5", b"from 3.1.1")
    finally:
        old.loop_stop()
        old.disconnect()
