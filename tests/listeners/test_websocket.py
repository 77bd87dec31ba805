"""MQTT over WebSocket (MQTT 5.0 / 3.1.1 section 6): paho-mqtt's websocket transport,
a raw client from the ``websockets`` library (several packets per frame, one packet
across frames, text frames, path and subprotocol checks) and secure WebSocket."""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
import pytest
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import connect as ws_connect

from mqttfast.codec import Decoder, encode
from mqttfast.codec.packets import Connack, Connect, Publish, Suback, Subscribe, Subscription

from .support import free_port

pytestmark = pytest.mark.timeout(60)

BASE = '[persistence]\nmode = "off"\n'


def ws_listener(port: int, path: str | None = None, tls: dict | None = None) -> str:
    text = f'[[listener]]\nport = {port}\naddress = "127.0.0.1"\nprotocol = "websockets"\n'
    if path:
        text += f'path = "{path}"\n'
    if tls:
        text += f'certfile = "{tls["server_cert"]}"\nkeyfile = "{tls["server_key"]}"\n'
    return text


def paho_roundtrip(
    port: int,
    protocol: int,
    path: str = "/mqtt",
    tls_ca: str | None = None,
    host: str = "127.0.0.1",
) -> list[bytes]:
    got: list[bytes] = []
    done = threading.Event()
    c = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"ws-{protocol}",
        transport="websockets",
        protocol=protocol,
    )
    c.ws_set_options(path=path)
    if tls_ca:
        c.tls_set(ca_certs=tls_ca)

    def on_message(cl, ud, msg) -> None:
        got.append(msg.payload)
        if len(got) == 3:
            done.set()

    def on_subscribe(cl, ud, mid, rcs, props) -> None:
        for i in range(3):
            cl.publish("ws/t", b"m%d" % i, qos=i % 3)

    c.on_message = on_message
    c.on_connect = lambda cl, ud, fl, rc, pr: cl.subscribe("ws/#", 2)
    c.on_subscribe = on_subscribe
    c.connect(host, port, keepalive=30)
    c.loop_start()
    try:
        assert done.wait(10), f"got only {got}"
    finally:
        c.disconnect()
        c.loop_stop()
    return sorted(got)


@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5])
def test_paho_websocket_transport(start_broker, protocol) -> None:
    """paho-mqtt over ws://127.0.0.1:<port>/mqtt: QoS 0, 1 and 2 round trips."""
    port = free_port()
    start_broker(ws_listener(port) + BASE, wait=[port])
    assert paho_roundtrip(port, protocol) == [b"m0", b"m1", b"m2"]


def test_configured_path(start_broker) -> None:
    """A listener with path = "/broker/ws" serves there and answers 404 on /mqtt."""
    port = free_port()
    start_broker(ws_listener(port, path="/broker/ws") + BASE, wait=[port])
    assert paho_roundtrip(port, mqtt.MQTTv311, path="/broker/ws") == [b"m0", b"m1", b"m2"]
    with pytest.raises(InvalidStatus) as info:
        ws_connect(f"ws://127.0.0.1:{port}/mqtt", subprotocols=["mqtt"], open_timeout=5)
    assert info.value.response.status_code == 404


def test_secure_websocket(start_broker, pki) -> None:
    """wss://: the same listener kind over TLS."""
    port = free_port()
    start_broker(ws_listener(port, tls=pki) + BASE, wait=[port])
    assert paho_roundtrip(port, mqtt.MQTTv5, tls_ca=pki["ca"], host="localhost") == [
        b"m0",
        b"m1",
        b"m2",
    ]


def _recv_packets(ws, dec: Decoder, count: int) -> list:
    out: list = []
    while len(out) < count:
        data = ws.recv(timeout=5)
        assert isinstance(data, bytes), "MQTT must come back in binary frames [MQTT-6.0.0-1]"
        out += dec.feed(data)
    return out


def test_several_packets_in_one_frame(start_broker) -> None:
    """[MQTT-6.0.0-2] CONNECT + SUBSCRIBE + PUBLISH in ONE binary frame are all processed;
    the server selects the "mqtt" subprotocol [MQTT-6.0.0-4]."""
    port = free_port()
    start_broker(ws_listener(port) + BASE, wait=[port])
    frame = (
        encode(Connect(client_id="one-frame", protocol_version=4), 4)
        + encode(Subscribe(1, [Subscription("f/t", 0)]), 4)
        + encode(Publish("f/t", b"hello", 0), 4)
    )
    with ws_connect(f"ws://127.0.0.1:{port}/mqtt", subprotocols=["mqtt"], open_timeout=5) as ws:
        assert ws.subprotocol == "mqtt"
        ws.send(frame)
        pkts = _recv_packets(ws, Decoder(protocol_version=4), 3)
    assert isinstance(pkts[0], Connack) and pkts[0].reason_code == 0
    assert isinstance(pkts[1], Suback)
    assert isinstance(pkts[2], Publish) and pkts[2].payload == b"hello"


def test_one_packet_across_frames(start_broker) -> None:
    """[MQTT-6.0.0-2] a CONNECT split over three frames (and a PUBLISH split over a
    fragmented message) is reassembled."""
    port = free_port()
    start_broker(ws_listener(port) + BASE, wait=[port])
    connect = encode(Connect(client_id="split", protocol_version=5), 5)
    sub = encode(Subscribe(1, [Subscription("s/t", 0)]), 5)
    pub = encode(Publish("s/t", b"x" * 3000, 0), 5)
    with ws_connect(f"ws://127.0.0.1:{port}/mqtt", subprotocols=["mqtt"], open_timeout=5) as ws:
        ws.send(connect[:3])
        ws.send(connect[3:7])
        ws.send(connect[7:])
        dec = Decoder(protocol_version=5)
        assert isinstance(_recv_packets(ws, dec, 1)[0], Connack)
        ws.send(sub)
        assert isinstance(_recv_packets(ws, dec, 1)[0], Suback)
        ws.send([pub[:10], pub[10:1000], pub[1000:]])  # one message, three frames
        got = _recv_packets(ws, dec, 1)[0]
    assert got.payload == b"x" * 3000


def test_text_frame_closes_connection(start_broker) -> None:
    """[MQTT-6.0.0-1] a text frame is not MQTT: the server closes the connection."""
    port = free_port()
    b = start_broker(ws_listener(port) + BASE, wait=[port])
    with ws_connect(f"ws://127.0.0.1:{port}/mqtt", subprotocols=["mqtt"], open_timeout=5) as ws:
        ws.send(encode(Connect(client_id="txt", protocol_version=4), 4))
        assert isinstance(Decoder(4).feed(ws.recv(timeout=5))[0], Connack)
        ws.send("not mqtt")
        with pytest.raises(ConnectionClosed):
            for _ in range(5):
                ws.recv(timeout=5)
    assert b.running()


def test_subprotocol_required(start_broker) -> None:
    """A client offering no MQTT subprotocol is refused (HTTP 400) [MQTT-6.0.0-3]; the
    legacy "mqttv3.1" is accepted for MQTT 3.1 clients."""
    port = free_port()
    start_broker(ws_listener(port) + BASE, wait=[port])
    with pytest.raises(InvalidHandshake):
        ws_connect(f"ws://127.0.0.1:{port}/mqtt", open_timeout=5)
    with ws_connect(f"ws://127.0.0.1:{port}/mqtt", subprotocols=["mqttv3.1"], open_timeout=5) as ws:
        assert ws.subprotocol == "mqttv3.1"
        ws.send(encode(Connect(client_id="v31", protocol_version=3), 3))
        assert Decoder(3).feed(ws.recv(timeout=5))[0].reason_code == 0


def test_ping_and_close_handshake(start_broker) -> None:
    """WebSocket PING is answered (by the websockets protocol) without disturbing MQTT;
    a client close frame ends the MQTT connection (its will is published)."""
    from mqttfast.codec.packets import Will
    from tests.helpers.rawclient import RawClient

    port, tcp = free_port(), free_port()
    start_broker(
        ws_listener(port) + f'[[listener]]\nport = {tcp}\naddress = "127.0.0.1"\n' + BASE,
        wait=[port, tcp],
    )
    with RawClient(tcp) as watcher:
        watcher.connect("watcher")
        watcher.subscribe("will/#")
        with ws_connect(f"ws://127.0.0.1:{port}/mqtt", subprotocols=["mqtt"], open_timeout=5) as ws:
            ws.send(
                encode(
                    Connect(
                        client_id="pinger",
                        protocol_version=4,
                        will=Will("will/pinger", b"gone", 0, False),
                    ),
                    4,
                )
            )
            assert isinstance(Decoder(4).feed(ws.recv(timeout=5))[0], Connack)
            assert ws.ping().wait(5), "no pong"
        # Closing the WebSocket without DISCONNECT: the will goes out.
        assert watcher.recv_publish(timeout=5).payload == b"gone"
