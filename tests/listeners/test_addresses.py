"""Several listeners at once (TCP, IPv6, unix socket, WebSocket) on one broker: a
message crosses from each kind to every other."""

from __future__ import annotations

import pytest
from websockets.sync.client import connect as ws_connect

from mqttfast.codec import Decoder, encode
from mqttfast.codec.packets import Connect, Publish, Subscribe, Subscription
from tests.helpers.rawclient import RawClient

from .support import free_port, has_ipv6_loopback, unix_raw

pytestmark = pytest.mark.timeout(60)


def test_ipv6_loopback_listener(start_broker) -> None:
    """address = "::1": clients connect over IPv6; the peer is logged as [::1]:port."""
    if not has_ipv6_loopback():
        pytest.skip("this machine has no IPv6 loopback")
    port = free_port()
    b = start_broker(
        f'[[listener]]\nport = {port}\naddress = "::1"\n[persistence]\nmode = "off"\n',
        wait=[("::1", port)],
        args=["--log-level", "debug"],
    )
    with RawClient(port, host="::1") as c:
        c.connect("v6")
        c.subscribe("six/#")
        c.publish("six/a", b"over ipv6")
        assert c.recv_publish().payload == b"over ipv6"
    b.wait_for_log("[::1]:")


def test_unix_socket_listener(start_broker, tmp_path) -> None:
    path = str(tmp_path / "mqtt.sock")
    start_broker(f'[[listener]]\nunix_path = "{path}"\n[persistence]\nmode = "off"\n', wait=[path])
    with unix_raw(path) as c:
        c.connect("ux")
        c.subscribe("ux/#", qos=1)
        c.publish("ux/a", b"local", qos=1)
        assert c.recv_publish().payload == b"local"


def test_all_listener_kinds_at_once(start_broker, tmp_path) -> None:
    """TCP, unix socket and WebSocket listeners of one broker share sessions and topics."""
    tcp, ws_port = free_port(), free_port()
    path = str(tmp_path / "m.sock")
    text = (
        f'[[listener]]\nport = {tcp}\naddress = "127.0.0.1"\n'
        f'[[listener]]\nunix_path = "{path}"\n'
        f'[[listener]]\nport = {ws_port}\naddress = "127.0.0.1"\nprotocol = "websockets"\n'
        '[persistence]\nmode = "off"\n'
    )
    start_broker(text, wait=[tcp, ws_port, path])
    with (
        RawClient(tcp) as t,
        unix_raw(path) as u,
        ws_connect(f"ws://127.0.0.1:{ws_port}/mqtt", subprotocols=["mqtt"], open_timeout=5) as w,
    ):
        t.connect("t")
        u.connect("u")
        dec = Decoder(4)
        w.send(
            encode(Connect(client_id="w", protocol_version=4), 4)
            + encode(Subscribe(1, [Subscription("all/#", 0)]), 4)
        )
        pkts: list = []
        while len(pkts) < 2:
            pkts += dec.feed(w.recv(timeout=5))
        t.subscribe("all/#")
        u.subscribe("all/#")
        u.publish("all/from-unix", b"u")
        t.publish("all/from-tcp", b"t")
        w.send(encode(Publish("all/from-ws", b"w", 0), 4))
        got_t = sorted(p.payload for p in t.recv_publishes(3))
        got_u = sorted(p.payload for p in u.recv_publishes(3))
        got_w: list = []
        while len(got_w) < 3:
            got_w += [p.payload for p in dec.feed(w.recv(timeout=5))]
    assert got_t == got_u == sorted(got_w) == [b"t", b"u", b"w"]
