"""Interop with paho-mqtt (2.x), a real client, over a loopback socket.

A one-connection server thread (``ScriptedServer``) frames what a paho client sends with
its own tiny framer (independent of the codec under test), records each packet's raw
bytes, and answers with bytes our ``encode`` writes. Then:

* paho's CONNECT, SUBSCRIBE, PUBLISH (QoS 0/1/2), PUBACK/PUBREC/PUBREL/PUBCOMP,
  UNSUBSCRIBE, PINGREQ and DISCONNECT, in MQTT 3.1, 3.1.1 and 5.0, decode in our
  ``Decoder`` (server side) to the expected packets;
* our CONNACK, SUBACK, UNSUBACK, PUBLISH, PUBACK/PUBREC/PUBREL/PUBCOMP, PINGRESP and
  DISCONNECT are accepted by paho, whose callbacks see the values we encoded.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties as PahoProperties
from paho.mqtt.reasoncodes import ReasonCode as PahoReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from mqttfast.codec.packets import (
    Connack,
    Connect,
    Disconnect,
    Pingreq,
    Pingresp,
    Properties,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Subscription,
    Unsuback,
    Unsubscribe,
    Will,
)

pytestmark = pytest.mark.timeout(60)

WAIT_S = 10.0
PAHO_PROTOCOL = {3: mqtt.MQTTv31, 4: mqtt.MQTTv311, 5: mqtt.MQTTv5}


# --------------------------------------------------------------------------- loopback server


def frame(buf: bytearray) -> tuple[int, bytes, bytes] | None:
    """Cut one packet off ``buf``: (first byte, body, raw bytes), or None if incomplete."""
    if len(buf) < 2:
        return None
    length, mult, i = 0, 1, 1
    while True:
        if i >= len(buf):
            return None
        b = buf[i]
        length += (b & 0x7F) * mult
        mult *= 128
        i += 1
        if not b & 0x80:
            break
        if i > 4:
            raise ValueError("bad remaining length from the client")
    if len(buf) < i + length:
        return None
    raw = bytes(buf[: i + length])
    del buf[: i + length]
    return raw[0], raw[i:], raw


def packet_id_of(first: int, body: bytes) -> int:
    if first >> 4 == 3:  # PUBLISH: after the topic
        tlen = int.from_bytes(body[:2], "big")
        return int.from_bytes(body[2 + tlen : 4 + tlen], "big")
    return int.from_bytes(body[:2], "big")


Responder = Callable[[int, bytes], list[bytes]]


class ScriptedServer:
    """Accepts one client on 127.0.0.1, records its packets and answers through ``responder``."""

    def __init__(self, responder: Responder) -> None:
        self.responder = responder
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(WAIT_S)
        self.port = self.listener.getsockname()[1]
        self.raw: list[bytes] = []
        self.cond = threading.Condition()
        self.conn: socket.socket | None = None
        self.closed_by_client = False
        self.error: BaseException | None = None
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            conn, _ = self.listener.accept()
            conn.settimeout(0.1)
            self.conn = conn
            buf = bytearray()
            deadline = time.monotonic() + 40
            while not self.stop_flag.is_set() and time.monotonic() < deadline:
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                except (ConnectionResetError, BrokenPipeError):
                    # The client closed while our last answer was in flight (e.g. a PINGRESP
                    # crossing its DISCONNECT): a close, not a failure.
                    data = b""
                if not data:
                    with self.cond:
                        self.closed_by_client = True
                        self.cond.notify_all()
                    return
                buf += data
                while (pkt := frame(buf)) is not None:
                    first, body, raw = pkt
                    replies = self.responder(first, body)
                    with self.cond:
                        self.raw.append(raw)
                        self.cond.notify_all()
                    try:
                        for r in replies:
                            conn.sendall(r)
                    except (ConnectionResetError, BrokenPipeError):
                        pass  # the client is gone; recv reports the close next
        except BaseException as exc:  # reported by the test thread
            self.error = exc
            with self.cond:
                self.cond.notify_all()

    def send(self, data: bytes) -> None:
        assert self.conn is not None
        self.conn.sendall(data)

    def wait_for(self, predicate: Callable[[], bool], what: str) -> None:
        with self.cond:
            ok = self.cond.wait_for(lambda: predicate() or self.error is not None, WAIT_S)
        if self.error is not None:
            raise AssertionError(f"server thread failed: {self.error!r}")
        assert ok, f"timed out waiting for {what}"

    def wait_packets(self, n: int) -> None:
        self.wait_for(lambda: len(self.raw) >= n, f"{n} client packets (have {len(self.raw)})")

    def close(self) -> None:
        self.stop_flag.set()
        self.thread.join(WAIT_S)
        if self.conn is not None:
            self.conn.close()
        self.listener.close()


def standard_responder(
    impl: Any,
    version: int,
    connack: Any,
    suback_codes: list[int],
    unsuback_codes: list[int],
    puback: Callable[[int], Any] | None = None,
) -> Responder:
    """Answers a client the way a broker would, with bytes from our encoder."""

    def respond(first: int, body: bytes) -> list[bytes]:
        ptype, qos = first >> 4, (first >> 1) & 3
        if ptype == 1:
            return [impl.encode(connack, version)]
        if ptype == 8:
            return [
                impl.encode(
                    Suback(
                        packet_id_of(first, body),
                        suback_codes,
                        Properties(reason_string="granted") if version == 5 else None,
                    ),
                    version,
                )
            ]
        if ptype == 10:
            return [
                impl.encode(
                    Unsuback(packet_id_of(first, body), unsuback_codes if version == 5 else []),
                    version,
                )
            ]
        if ptype == 3 and qos == 1:
            pid = packet_id_of(first, body)
            return [impl.encode(puback(pid) if puback else Puback(pid), version)]
        if ptype == 3 and qos == 2:
            return [impl.encode(Pubrec(packet_id_of(first, body)), version)]
        if ptype == 6:
            return [impl.encode(Pubcomp(packet_id_of(first, body)), version)]
        if ptype == 5:  # the client's PUBREC for our QoS 2 PUBLISH
            return [impl.encode(Pubrel(packet_id_of(first, body)), version)]
        if ptype == 12:
            return [impl.encode(Pingresp(), version)]
        return []

    return respond


# --------------------------------------------------------------------------- paho side


class PahoRecorder:
    """A paho client whose callbacks are recorded; every wait is bounded."""

    def __init__(self, version: int, client_id: str, clean: bool) -> None:
        kwargs: dict[str, Any] = {"client_id": client_id, "protocol": PAHO_PROTOCOL[version]}
        if version != 5:
            kwargs["clean_session"] = clean
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kwargs)
        self.client.reconnect_delay_set(60, 120)  # never reconnect during a test
        self.events: dict[str, list[Any]] = {}
        self.cond = threading.Condition()
        c = self.client
        c.on_connect = lambda cl, ud, flags, rc, props: self._add("connect", (flags, rc, props))
        c.on_subscribe = lambda cl, ud, mid, rcs, props: self._add("subscribe", (mid, rcs, props))
        c.on_unsubscribe = lambda cl, ud, mid, rcs, props: self._add(
            "unsubscribe", (mid, rcs, props)
        )
        c.on_publish = lambda cl, ud, mid, rc, props: self._add("publish", (mid, rc, props))
        c.on_message = lambda cl, ud, msg: self._add("message", msg)
        c.on_disconnect = lambda cl, ud, flags, rc, props: self._add(
            "disconnect", (flags, rc, props)
        )

    def _add(self, kind: str, value: Any) -> None:
        with self.cond:
            self.events.setdefault(kind, []).append(value)
            self.cond.notify_all()

    def wait(self, kind: str, n: int = 1) -> list[Any]:
        with self.cond:
            ok = self.cond.wait_for(lambda: len(self.events.get(kind, [])) >= n, WAIT_S)
        assert ok, f"paho never reported {n} {kind} event(s); got {self.events}"
        return self.events[kind]

    def stop(self) -> None:
        self.client.loop_stop()


def decode_client_stream(impl: Any, raw: list[bytes]) -> list[Any]:
    """Decode what the client sent with a server-side decoder (first packet CONNECT)."""
    dec = impl.Decoder()
    out = []
    for chunk in raw:
        out += dec.feed(chunk)
    return out


def paho_props(ptype: int, **values: Any) -> PahoProperties:
    p = PahoProperties(ptype)
    for k, v in values.items():
        setattr(p, k, v)
    return p


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("version", [3, 4, 5])
def test_paho_session_both_directions(impl: Any, version: int) -> None:
    """A whole client session: paho's packets decode to what paho was asked to send, and paho's
    callbacks see what our CONNACK/SUBACK/PUBACK/PUBLISH/PUBREL/UNSUBACK carried."""
    v5 = version == 5
    clean = version == 3  # 3.1.1/5.0 resume a session, so session present is legal [MQTT-3.2.2-2]
    connack_props = (
        Properties(
            assigned_client_identifier="given-id",
            server_keep_alive=25,
            receive_maximum=50,
            topic_alias_maximum=4,
            user_property=[("srv", "mqttfast")],
        )
        if v5
        else None
    )
    connack = Connack(not clean, 0, connack_props)
    suback_codes = [1, 0x80] if version != 3 else [1, 2]
    unsuback_codes = [0, 0x11]

    def puback(pid: int) -> Puback:
        return Puback(pid, 0x10, Properties(reason_string="no subscribers")) if v5 else Puback(pid)

    server = ScriptedServer(
        standard_responder(impl, version, connack, suback_codes, unsuback_codes, puback)
    )
    rec = PahoRecorder(version, f"paho-{version}", clean)
    c = rec.client
    try:
        c.username_pw_set("user-\u00fc", "p\u00e4ss")
        will_props = (
            paho_props(PacketTypes.WILLMESSAGE, WillDelayInterval=10, ContentType="text/plain")
            if v5
            else None
        )
        c.will_set("will/topic", b"gone", qos=1, retain=True, properties=will_props)
        connect_props = (
            paho_props(
                PacketTypes.CONNECT,
                SessionExpiryInterval=300,
                ReceiveMaximum=20,
                UserProperty=[("k", "v")],
            )
            if v5
            else None
        )
        c.connect(
            "127.0.0.1",
            server.port,
            keepalive=30,
            clean_start=False if v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
            properties=connect_props,
        )
        c.loop_start()
        flags, rc, props = rec.wait("connect")[0]
        assert rc == 0 and not rc.is_failure
        assert flags.session_present == (not clean)
        if v5:
            assert props.AssignedClientIdentifier == "given-id"
            assert props.ServerKeepAlive == 25
            assert props.ReceiveMaximum == 50
            assert props.TopicAliasMaximum == 4
            assert props.UserProperty == [("srv", "mqttfast")]

        # SUBSCRIBE -> our SUBACK
        if v5:
            sub_props = paho_props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=77)
            _, sub_mid = c.subscribe(
                [
                    (
                        "a/+",
                        SubscribeOptions(
                            qos=1, noLocal=True, retainAsPublished=True, retainHandling=1
                        ),
                    ),
                    ("b/#", SubscribeOptions(qos=2)),
                ],
                properties=sub_props,
            )
        else:
            _, sub_mid = c.subscribe([("a/+", 1), ("b/#", 2)])
        mid, rcs, sprops = rec.wait("subscribe")[0]
        assert mid == sub_mid
        assert [r.value for r in rcs] == suback_codes
        if v5:
            assert sprops.ReasonString == "granted"

        # PUBLISH QoS 0/1/2 -> our PUBACK / PUBREC, PUBCOMP
        pub_props = (
            paho_props(
                PacketTypes.PUBLISH,
                ContentType="application/json",
                MessageExpiryInterval=9,
                UserProperty=[("x", "1"), ("x", "2")],
                CorrelationData=b"\x00\x01",
                ResponseTopic="reply/to",
            )
            if v5
            else None
        )
        infos = [
            c.publish(
                f"t/{q}", f"payload {q}".encode(), qos=q, retain=(q == 1), properties=pub_props
            )
            for q in (0, 1, 2)
        ]
        published = rec.wait("publish", 3)
        by_mid = {m: (r, p) for m, r, p in published}
        assert set(by_mid) == {i.mid for i in infos}
        rc1, props1 = by_mid[infos[1].mid]
        if v5:  # our PUBACK carried reason 0x10 and a reason string
            assert rc1.value == 0x10 and props1.ReasonString == "no subscribers"
        assert by_mid[infos[2].mid][0] == 0
        server.wait_packets(6)  # CONNECT SUBSCRIBE PUBLISH*3 PUBREL

        # our PUBLISH QoS 0/1/2 -> paho on_message, PUBACK / PUBREC, (our PUBREL) PUBCOMP
        out_props = (
            Properties(
                content_type="c/t",
                user_property=[("u", "1")],
                subscription_identifier=[77],
                payload_format_indicator=1,
            )
            if v5
            else None
        )
        ours = [
            Publish("a/x", b"zero", 0, False, False, 0, out_props),
            Publish("b/y/z", b"\x00one", 1, True, False, 501, out_props),
            Publish("b/\u00e9", b"two" * 1000, 2, False, True, 502, out_props),
        ]
        for p in ours:
            server.send(impl.encode(p, version))
        msgs = rec.wait("message", 3)
        assert [(m.topic, m.payload, m.qos, m.retain) for m in msgs] == [
            (p.topic, p.payload, p.qos, p.retain) for p in ours
        ]
        assert msgs[2].dup is True
        if v5:
            for m in msgs:
                assert m.properties.ContentType == "c/t"
                assert m.properties.UserProperty == [("u", "1")]
                assert m.properties.SubscriptionIdentifier == [77]
                assert m.properties.PayloadFormatIndicator == 1
        server.wait_packets(9)  # + PUBACK, PUBREC, PUBCOMP

        # UNSUBSCRIBE -> our UNSUBACK
        _, unsub_mid = c.unsubscribe(["a/+", "b/#"])
        mid, rcs, _ = rec.wait("unsubscribe")[0]
        assert mid == unsub_mid
        if v5:
            assert [r.value for r in rcs] == unsuback_codes

        # DISCONNECT
        if v5:
            c.disconnect(
                reasoncode=PahoReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message"),
                properties=paho_props(
                    PacketTypes.DISCONNECT, SessionExpiryInterval=0, ReasonString="done"
                ),
            )
        else:
            c.disconnect()
        server.wait_for(lambda: server.closed_by_client, "the client to close")
    finally:
        rec.stop()
        server.close()

    got = decode_client_stream(impl, server.raw)
    will = Will(
        "will/topic",
        b"gone",
        1,
        True,
        Properties(will_delay_interval=10, content_type="text/plain") if v5 else None,
    )
    expected_connect = Connect(
        f"paho-{version}",
        version,
        clean,
        30,
        "user-\u00fc",
        "p\u00e4ss".encode(),
        will,
        Properties(session_expiry_interval=300, receive_maximum=20, user_property=[("k", "v")])
        if v5
        else None,
    )
    if v5:
        subscribe = Subscribe(
            sub_mid,
            [Subscription("a/+", 1, True, True, 1), Subscription("b/#", 2)],
            Properties(subscription_identifier=[77]),
        )
        pub_p = Properties(
            content_type="application/json",
            message_expiry_interval=9,
            user_property=[("x", "1"), ("x", "2")],
            correlation_data=b"\x00\x01",
            response_topic="reply/to",
        )
        disconnect = Disconnect(0x04, Properties(session_expiry_interval=0, reason_string="done"))
    else:
        subscribe = Subscribe(sub_mid, [Subscription("a/+", 1), Subscription("b/#", 2)])
        pub_p = None
        disconnect = Disconnect()
    expected = [
        expected_connect,
        subscribe,
        Publish("t/0", b"payload 0", 0, False, False, 0, pub_p),
        Publish("t/1", b"payload 1", 1, True, False, infos[1].mid, pub_p),
        Publish("t/2", b"payload 2", 2, False, False, infos[2].mid, pub_p),
        Pubrel(infos[2].mid),
        Puback(501),
        Pubrec(502),
        Pubcomp(502),
        Unsubscribe(unsub_mid, ["a/+", "b/#"]),
        disconnect,
    ]
    assert got == expected


@pytest.mark.parametrize("version", [4, 5])
def test_paho_pingreq_and_our_pingresp(impl: Any, version: int) -> None:
    """paho's PINGREQ decodes; our PINGRESP satisfies paho's keep-alive check, so paho stays
    connected for several keep-alive periods (it drops the link when no PINGRESP comes)."""
    server = ScriptedServer(standard_responder(impl, version, Connack(False, 0), [], []))
    rec = PahoRecorder(version, "pinger", True)
    try:
        rec.client.connect("127.0.0.1", server.port, keepalive=2)
        rec.client.loop_start()
        rec.wait("connect")
        server.wait_for(lambda: sum(r[0] == 0xC0 for r in server.raw) >= 2, "two PINGREQs")
        assert "disconnect" not in rec.events
        assert rec.client.is_connected()
        rec.client.disconnect()
        server.wait_for(lambda: server.closed_by_client, "the client to close")
    finally:
        rec.stop()
        server.close()
    got = decode_client_stream(impl, server.raw)
    assert isinstance(got[0], Connect) and got[0].keep_alive == 2
    assert got[-1] == Disconnect()
    assert all(p == Pingreq() for p in got[1:-1]) and len(got) >= 4


@pytest.mark.parametrize(
    "version,code,paho_value", [(4, 5, 0x87), (4, 4, 0x86), (5, 0x87, 0x87), (5, 0x9C, 0x9C)]
)
def test_paho_sees_our_refusing_connack(
    impl: Any, version: int, code: int, paho_value: int
) -> None:
    """A refusing CONNACK (3.1.1 return code / MQTT 5 reason code) reaches paho's on_connect.
    paho maps 3.1.1 return codes onto MQTT 5 reason codes (5 -> 0x87, 4 -> 0x86)."""
    props = (
        Properties(reason_string="go away", server_reference="other:1883") if version == 5 else None
    )
    server = ScriptedServer(standard_responder(impl, version, Connack(False, code, props), [], []))
    rec = PahoRecorder(version, "refused", True)
    try:
        rec.client.connect("127.0.0.1", server.port, keepalive=30)
        rec.client.loop_start()
        _, rc, pprops = rec.wait("connect")[0]
        assert rc.is_failure and rc.value == paho_value
        if version == 5:
            assert pprops.ReasonString == "go away"
            assert pprops.ServerReference == "other:1883"
    finally:
        rec.stop()
        server.close()


def test_paho_sees_our_server_disconnect(impl: Any) -> None:
    """An MQTT 5 server DISCONNECT with a reason code and reason string reaches on_disconnect (3.14)."""
    server = ScriptedServer(standard_responder(impl, 5, Connack(False, 0), [], []))
    rec = PahoRecorder(5, "kicked", True)
    try:
        rec.client.connect("127.0.0.1", server.port, keepalive=30)
        rec.client.loop_start()
        rec.wait("connect")
        server.wait_packets(1)
        server.send(
            impl.encode(
                Disconnect(
                    0x8B, Properties(reason_string="shutting down", server_reference="s2:1883")
                ),
                5,
            )
        )
        _, rc, props = rec.wait("disconnect")[0]
        assert rc.value == 0x8B
        assert props.ReasonString == "shutting down"
        assert props.ServerReference == "s2:1883"
    finally:
        rec.stop()
        server.close()


@pytest.mark.parametrize("version", [4, 5])
def test_paho_accepts_our_publish_to_subscriber_variants(impl: Any, version: int) -> None:
    """Our fan-out encodings (encode_publish and publish_parts with a patched packet id) are
    accepted by paho like encode(Publish)."""
    server = ScriptedServer(standard_responder(impl, version, Connack(False, 0), [1], []))
    rec = PahoRecorder(version, "fanout", True)
    try:
        rec.client.connect("127.0.0.1", server.port, keepalive=30)
        rec.client.loop_start()
        rec.wait("connect")
        props = Properties(user_property=[("k", "v")]) if version == 5 else None
        server.send(impl.encode_publish("f/1", b"one", 1, False, False, 7, props, version))
        head, tail = impl.publish_parts("f/2", b"two" * 100, 1, True, False, props, version)
        server.send(head + (8).to_bytes(2, "big") + tail)
        head0, tail0 = impl.publish_parts("f/3", b"", 0, False, False, props, version)
        assert tail0 == b""
        server.send(head0)
        msgs = rec.wait("message", 3)
        assert [(m.topic, m.payload, m.qos, m.retain, m.mid) for m in msgs] == [
            ("f/1", b"one", 1, False, 7),
            ("f/2", b"two" * 100, 1, True, 8),
            ("f/3", b"", 0, False, 0),
        ]
        server.wait_packets(3)  # CONNECT, PUBACK 7, PUBACK 8
    finally:
        rec.stop()
        server.close()
    assert decode_client_stream(impl, server.raw)[1:] == [Puback(7), Puback(8)]
