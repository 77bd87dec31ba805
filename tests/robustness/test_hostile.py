"""Hostile network peers against a real broker subprocess (issue 9).

Every test runs while a well-behaved publisher/subscriber pair (support.GoodClient)
keeps exchanging QoS 1 messages: it must see every message, in order, with no
round trip over the stall limit. The bar: no input from a peer crashes the broker,
raises an unhandled exception (no traceback in its debug log), makes it unresponsive
to others, or grows its memory without a configured bound.

Limits of the broker under test (small, so the bounds are reached in seconds):
connect timeout 1 s, max in-flight 10, max queued 100, output high water 256 KiB,
output hard limit 1 MiB, publishers paused at most 0.5 s by a slow subscriber.
"""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mqttfast.codec import Decoder, encode
from mqttfast.codec.packets import (
    Connack,
    Connect,
    Disconnect,
    Pingreq,
    Pingresp,
    Publish,
    Subscribe,
    Subscription,
)
from tests.helpers.broker import BrokerProcess, mosquitto_mode
from tests.helpers.rawclient import ConnectionClosed, NoPacket, RawClient

from .support import GoodClient, RssSampler, raise_nofile, rss_kib, sys_value, wait_sys

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(mosquitto_mode(), reason="limits are set through mqttfast's config file"),
]

CONFIG = """
[limits]
output_high_water = 262144
output_hard_limit = 1048576
max_publisher_pause = 0.5
"""
HARD_LIMIT_MIB = 1


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    conf = tmp_path_factory.mktemp("hostile") / "broker.toml"
    conf.write_text(CONFIG)
    b = BrokerProcess(
        [
            "--config",
            str(conf),
            "--persistence",
            "off",
            "--sys-interval",
            "1",
            "--connect-timeout",
            "1",
            "--max-inflight",
            "10",
            "--max-queued-messages",
            "100",
        ]
    )
    with b:
        yield b


@pytest.fixture
def good(broker: BrokerProcess, request: pytest.FixtureRequest) -> Iterator[GoodClient]:
    """The well-behaved QoS 1 pair, checked after the test; and a clean broker log."""
    g = GoodClient(broker.port, request.node.name[:40])
    g.start()
    log_start = len(broker.log_text())
    yield g
    g.check()
    assert broker.running(), f"broker died; log tail:\n{broker.log_text()[-3000:]}"
    log = broker.log_text()[log_start:]
    for bad in ("Traceback", "internal error", "decoder failure", "tick failed"):
        assert bad not in log, f"{bad!r} in the broker log:\n{log[log.find(bad) - 500 :][:3000]}"


def connected(port: int, version: int = 4, client_id: str = "", keep_alive: int = 60) -> RawClient:
    c = RawClient(port, version)
    c.connect(client_id, keep_alive=keep_alive)
    return c


def closed_or_refused(c: RawClient, timeout: float = 3.0) -> None:
    """The server answers with nothing but a refusing CONNACK or a DISCONNECT with an
    error code, then closes the connection."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            pkt = c.recv_packet(max(0.01, deadline - time.monotonic()))
        except ConnectionClosed:
            return
        except NoPacket:
            raise AssertionError(f"connection still open after {timeout} s") from None
        if isinstance(pkt, Connack):
            assert pkt.reason_code != 0, "a malformed CONNECT was accepted"
        elif isinstance(pkt, Disconnect):
            assert pkt.reason_code >= 0x80, pkt
        else:
            raise AssertionError(f"the server answered an invalid packet with {pkt!r}")


def _connect_bytes(body_after_name: bytes, name: bytes = b"MQTT", first: int = 0x10) -> bytes:
    body = struct.pack("!H", len(name)) + name + body_after_name
    return bytes([first, len(body)]) + body


# Name -> raw bytes sent as the first packet of a connection.
BAD_CONNECTS = {
    "first_packet_pingreq_MQTT-3.1.0-1": b"\xc0\x00",
    "first_packet_publish_MQTT-3.1.0-1": b"\x30\x03\x00\x01a",
    "bad_protocol_name_MQTT-3.1.2-1": _connect_bytes(b"\x04\x02\x00\x3c\x00\x01c", b"MQTX"),
    "protocol_level_6_MQTT-3.1.2-2": _connect_bytes(b"\x06\x02\x00\x3c\x00\x01c"),
    "reserved_connect_flag_MQTT-3.1.2-3": _connect_bytes(b"\x04\x03\x00\x3c\x00\x01c"),
    "will_qos_without_will_MQTT-3.1.2-13": _connect_bytes(b"\x04\x0a\x00\x3c\x00\x01c"),
    "will_qos_3_MQTT-3.1.2-14": _connect_bytes(b"\x04\x1e\x00\x3c\x00\x01c\x00\x01t\x00\x00"),
    "password_without_username_MQTT-3.1.2-22": _connect_bytes(
        b"\x04\x42\x00\x3c\x00\x01c\x00\x01p"
    ),
    "client_id_bad_utf8_MQTT-1.5.4-1": _connect_bytes(b"\x04\x02\x00\x3c\x00\x02\xc3\x28"),
    "client_id_nul_MQTT-1.5.4-2": _connect_bytes(b"\x04\x02\x00\x3c\x00\x02a\x00"),
    "connect_flags_in_fixed_header_MQTT-2.1.3-1": _connect_bytes(
        b"\x04\x02\x00\x3c\x00\x01c", first=0x11
    ),
    "connect_truncated_body": b"\x10\x04\x00\x04MQ",
    "v5_bad_property_in_connect": _connect_bytes(b"\x05\x02\x00\x3c\x02\x23\x00\x00\x01c"),
    "v5_properties_overrun": _connect_bytes(b"\x05\x02\x00\x3c\x7f\x00\x01c"),
    "remaining_length_5_bytes": b"\x10\xff\xff\xff\xff\x01",
    "reserved_type_0": b"\x00\x00",
    "garbage": bytes(range(256)),
}

# Name -> (protocol version, raw bytes sent after a successful CONNECT).
BAD_AFTER_CONNECT = {
    "reserved_type_0_v4": (4, b"\x00\x00"),
    "puback_flags_MQTT-2.1.3-1": (4, b"\x41\x02\x00\x01"),
    "pubrel_flags_MQTT-3.6.1-1": (4, b"\x60\x02\x00\x01"),
    "subscribe_flags_MQTT-3.8.1-1": (4, b"\x80\x06\x00\x01\x00\x01a\x00"),
    "unsubscribe_flags_MQTT-3.10.1-1": (4, b"\xa0\x05\x00\x01\x00\x01a"),
    "pingreq_flags": (4, b"\xc1\x00"),
    "disconnect_flags_MQTT-3.14.1-1": (4, b"\xe1\x00"),
    "publish_qos3_MQTT-3.3.1-4": (4, b"\x36\x05\x00\x01a\x00\x01"),
    "publish_dup_qos0_MQTT-3.3.1-2": (4, b"\x38\x03\x00\x01a"),
    "publish_wildcard_topic_MQTT-3.3.2-2": (4, b"\x30\x05\x00\x03a/#"),
    "publish_topic_bad_utf8_MQTT-1.5.4-1": (4, b"\x30\x04\x00\x02\xc3\x28"),
    "publish_topic_nul_MQTT-4.7.3-2": (4, b"\x30\x05\x00\x03a\x00b"),
    "publish_empty_topic_MQTT-4.7.3-1": (4, b"\x30\x02\x00\x00"),
    "publish_topic_overrun": (4, b"\x30\x02\x00\x09"),
    "publish_packet_id_0_MQTT-2.2.1-3": (4, b"\x32\x05\x00\x01a\x00\x00"),
    "remaining_length_5_bytes_v4": (4, b"\x30\xff\xff\xff\xff\x01"),
    "remaining_length_non_minimal_MQTT-1.5.5-1": (4, b"\xc0\x80\x00"),
    "subscribe_no_filters_MQTT-3.8.3-3": (4, b"\x82\x02\x00\x01"),
    "subscribe_qos3_MQTT-3-8.3-4": (4, b"\x82\x06\x00\x01\x00\x01a\x03"),
    "subscribe_reserved_option_bits_v4": (4, b"\x82\x06\x00\x01\x00\x01a\x04"),
    "unsubscribe_no_filters_MQTT-3.10.3-2": (4, b"\xa2\x02\x00\x01"),
    "second_connect_MQTT-3.1.0-2": (4, encode(Connect("again"), 4)),
    "connack_to_server": (4, b"\x20\x02\x00\x00"),
    "suback_to_server": (4, b"\x90\x03\x00\x01\x00"),
    "unsuback_to_server": (4, b"\xb0\x02\x00\x01"),
    "pingresp_to_server": (4, b"\xd0\x00"),
    "auth_before_v5": (4, b"\xf0\x00"),
    "pingreq_with_body": (4, b"\xc0\x01\x00"),
    "puback_short": (4, b"\x40\x01\x00"),
    "garbage_v4": (4, b"\xde\xad\xbe\xef" * 16),
    "v5_duplicate_property_MQTT-2.2.2-2": (5, b"\x30\x0a\x00\x01a\x06\x23\x00\x01\x23\x00\x01"),
    "v5_property_not_allowed_in_publish": (5, b"\x30\x09\x00\x01a\x05\x11\x00\x00\x00\x01"),
    "v5_topic_alias_0_MQTT-3.3.2-8": (5, b"\x30\x07\x00\x01a\x03\x23\x00\x00"),
    "v5_unknown_topic_alias": (5, b"\x30\x06\x00\x00\x03\x23\x00\x05"),
    "v5_topic_alias_over_maximum_MQTT-3.3.2-9": (5, b"\x30\x07\x00\x01a\x03\x23\xff\xff"),
    "v5_properties_overrun": (5, b"\x30\x04\x00\x01a\x7f"),
    "v5_puback_bad_reason_code": (5, b"\x40\x03\x00\x01\x01"),
    "v5_disconnect_bad_reason_code": (5, b"\xe0\x01\x03"),
    "v5_subscription_options_reserved_MQTT-3.8.3-5": (5, b"\x82\x07\x00\x01\x00\x00\x01a\xc0"),
    "v5_retain_handling_3": (5, b"\x82\x07\x00\x01\x00\x00\x01a\x30"),
    "v5_subscription_identifier_0": (5, b"\x82\x09\x00\x01\x02\x0b\x00\x00\x01a\x00"),
    "v5_auth_without_method": (5, b"\xf0\x02\x18\x00"),
}


def test_malformed_packets_of_every_kind(broker: BrokerProcess, good: GoodClient) -> None:
    """Each malformed or forbidden packet closes its own connection (v5: with an error
    reason code [MQTT-4.13.1-1]) and is never answered with anything else; the broker
    and the well-behaved client go on. Connections are opened in parallel."""
    clients: list[tuple[str, RawClient]] = []
    for name, data in BAD_CONNECTS.items():
        c = RawClient(broker.port, 5 if name.startswith("v5") else 4)
        c.send(data)
        clients.append((name, c))
    for name, (version, data) in BAD_AFTER_CONNECT.items():
        c = connected(broker.port, version)
        c.send(data)
        clients.append((name, c))
    failures = []
    for name, c in clients:
        try:
            closed_or_refused(c, timeout=5.0)
        except AssertionError as err:
            failures.append(f"{name}: {err}")
        finally:
            c.close()
    assert not failures, "\n".join(failures)


def _mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        op = rng.randrange(4)
        if op == 0 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op == 1 and b:
            del b[rng.randrange(len(b)) :][: rng.randint(1, 8)]
        elif op == 2:
            i = rng.randrange(len(b) + 1)
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif b:
            i = rng.randrange(len(b))
            b[i:i] = b[i : i + rng.randint(1, 16)]
    return bytes(b)


def test_mutated_corpus_streams(broker: BrokerProcess, good: GoodClient) -> None:
    """300 randomly mutated valid sessions (the fuzz seed corpus: CONNECT followed by
    every client packet) on parallel connections: whatever each one does to its own
    connection, the broker survives with a clean log and answers everyone else."""
    corpus = Path(__file__).resolve().parents[2] / "fuzz" / "corpus" / "codec"
    seeds = [p.read_bytes()[2:] for p in sorted(corpus.glob("server_*"))]
    assert len(seeds) > 20, "fuzz/corpus/codec is missing (python3 fuzz/make_corpus.py)"
    rng = random.Random(9)
    socks = []
    for _ in range(300):
        s = socket.create_connection(("127.0.0.1", broker.port), timeout=5)
        try:
            s.sendall(_mutate(rng, rng.choice(seeds)) + b"\xc0\x00")
        except OSError:
            pass
        socks.append(s)
    time.sleep(1.5)
    for s in socks:
        s.close()
    with connected(broker.port) as c:
        assert c.is_open(2.0)


def test_connect_never_sent(broker: BrokerProcess, good: GoodClient) -> None:
    """TCP connections that never send CONNECT (or half a CONNECT) are closed after the
    connect timeout (1 s here; mosquitto's and our default is 10 s)."""
    silent = [socket.create_connection(("127.0.0.1", broker.port), timeout=6) for _ in range(30)]
    half = [socket.create_connection(("127.0.0.1", broker.port), timeout=6) for _ in range(10)]
    for s in half:
        s.sendall(encode(Connect("half"), 4)[:7])
    t0 = time.monotonic()
    for s in silent + half:
        try:
            assert s.recv(100) == b"", "the server sent something before CONNECT"
        except ConnectionResetError:
            pass
        s.close()
    assert time.monotonic() - t0 < 5.0


def test_half_sent_packet_then_silence(broker: BrokerProcess, good: GoodClient) -> None:
    """A client that sends half a PUBLISH and goes silent is closed by the keep-alive
    timer (1.5 x keep alive [MQTT-3.1.2-24]); the partial packet is never delivered."""
    with connected(broker.port) as watcher:
        watcher.subscribe("half/#")
        c = connected(broker.port, keep_alive=1)
        full = encode(Publish("half/t", b"x" * 100, 1, packet_id=1), 4)
        c.send(full[: len(full) // 2])
        t0 = time.monotonic()
        closed_or_refused(c, timeout=5.0)
        assert time.monotonic() - t0 < 4.5
        c.close()
        watcher.expect_no_packet(0.3)


@pytest.mark.parametrize("version", [4, 5])
def test_remaining_length_256mb(broker: BrokerProcess, good: GoodClient, version: int) -> None:
    """A fixed header announcing 268,435,455 bytes (the largest remaining length, legal
    when no maximum packet size is configured) followed by 64 KiB and silence: nothing
    is allocated up front (RSS grows by what arrived, not 256 MB) and the keep-alive
    timer closes the connection (v5: DISCONNECT 0x8D) [MQTT-3.1.2-24]. As the first
    packet of a connection, the connect timeout closes it."""
    before = rss_kib(broker.pid)
    pre = RawClient(broker.port, version)
    pre.send(b"\x10\xff\xff\xff\x7f" + b"\x00" * 64)
    c = connected(broker.port, version, keep_alive=1)
    c.send(b"\x30\xff\xff\xff\x7f" + b"\x00\x01a" + b"\x00" * 65536)
    t0 = time.monotonic()
    time.sleep(0.3)
    assert rss_kib(broker.pid) - before < 16 * 1024, "memory allocated for the announced size"
    try:
        reason = c.expect_closed(5.0)
    finally:
        c.close()
    assert time.monotonic() - t0 < 5.0
    if version == 5:
        assert reason == 0x8D
    closed_or_refused(pre)
    pre.close()
    assert rss_kib(broker.pid) - before < 16 * 1024


def test_remaining_length_over_configured_maximum() -> None:
    """With --max-packet-size the same header is refused as soon as it is complete,
    before any body is read: v5 DISCONNECT 0x95 Packet too large [MQTT-3.1.2-24 / 3.2.2.3.6]."""
    with BrokerProcess(["--persistence", "off", "--max-packet-size", "1048576"]) as b:
        with connected(b.port, 5) as c:
            c.send(b"\x30\xff\xff\xff\x7f")
            assert c.expect_closed(3.0) == 0x95
        with connected(b.port, 4) as c:
            c.send(b"\x30\x80\x80\x80\x01")  # 2 MiB
            assert c.expect_closed(3.0) is None
        with connected(b.port, 5) as c:
            assert c.is_open(2.0)


def test_10000_subscribe_filters(broker: BrokerProcess, good: GoodClient) -> None:
    """One SUBSCRIBE with 10,000 filters gets one SUBACK with 10,000 codes
    [MQTT-3.8.4-5]; 10,000 pipelined SUBSCRIBE packets get 10,000 SUBACKs in order;
    routing still works and disconnecting removes them all."""
    base = int(sys_value(broker.port, "subscriptions/count"))
    a = connected(broker.port, client_id="many-a")
    subs = [Subscription(f"many/{i}/+", 1) for i in range(10_000)]
    a.send_packet(Subscribe(1, subs))
    suback = a.recv_packet(15.0)
    assert suback.packet_id == 1 and suback.reason_codes == [1] * 10_000
    b = connected(broker.port, client_id="many-b")
    b.send(
        b"".join(encode(Subscribe(i + 1, [Subscription(f"pipe/{i}", 0)]), 4) for i in range(10_000))
    )
    ids = [b.recv_packet(15.0).packet_id for _ in range(10_000)]
    assert ids == list(range(1, 10_001))
    with connected(broker.port) as p:
        p.publish("many/4242/x", b"hit", qos=1, timeout=5)
        p.publish("pipe/9999", b"hit2", qos=0)
    pub = a.recv_publish(5.0)
    assert (pub.topic, pub.payload) == ("many/4242/x", b"hit")
    assert b.recv_publish(5.0).payload == b"hit2"
    a.expect_no_packet(0.2)
    # +-1: the $SYS reader's own subscription is counted or not, by the publish timing.
    assert (
        int(wait_sys(broker.port, "subscriptions/count", lambda v: int(v) >= base + 19_999))
        >= base + 19_999
    )
    a.disconnect()
    b.disconnect()
    assert (
        int(wait_sys(broker.port, "subscriptions/count", lambda v: int(v) <= base + 1)) <= base + 1
    )


def test_deeply_nested_topics(broker: BrokerProcess, good: GoodClient) -> None:
    """Topics and filters of 32,000 levels (64,000 bytes; the limit is the 65,535-byte
    string [MQTT-4.7.3-3], not the depth): subscribing, publishing and matching work,
    with '+' per level and with '#'."""
    deep = "/".join(["d"] * 32_000)
    plus = "/".join(["+"] * 32_000)
    with connected(broker.port, client_id="deep-sub") as s:
        assert s.subscribe((deep, 1), (plus, 1), ("d/d/#", 1), timeout=10).reason_codes == [1, 1, 1]
        with connected(broker.port) as p:
            p.publish(deep, b"deep", qos=1, timeout=10)
            p.publish(deep + "/x", b"deeper", qos=1, timeout=10)
        got = s.recv_publishes(2, timeout=10)
        time.sleep(0.5)
        while s.pending or not _quiet(s):
            got.append(s.recv_publish(2))
        payloads = sorted(m.payload for m in got)
        # 'deep' matches all three filters: one copy (3.3.4 allows one per subscription,
        # but then three); 'deeper' only matches the '#' filter.
        assert payloads in ([b"deep", b"deeper"], [b"deep"] * 3 + [b"deeper"]), payloads
        assert {len(m.topic) for m in got} == {len(deep), len(deep) + 2}
        assert s.is_open(2.0)


def _quiet(c: RawClient) -> bool:
    try:
        c.expect_no_packet(0.3)
        return True
    except AssertionError:
        return False


def _flood_bytes(topic: str, count: int, size: int) -> bytes:
    return b"".join(
        encode(Publish(topic, i.to_bytes(4, "big") + b"f" * (size - 4)), 4) for i in range(count)
    )


def _send_all(port: int, data: bytes, done: list) -> None:
    with RawClient(port) as c:
        c.connect("flooder-" + str(threading.get_ident()))
        c.sock.settimeout(30)
        c.sock.sendall(data)
        done.append(c.is_open(10.0))


def test_subscriber_that_never_reads(broker: BrokerProcess, good: GoodClient) -> None:
    """A subscriber that never reads: its output buffer stops at the hard limit (QoS 0
    beyond it is dropped and counted), the broker's RSS stays bounded while 60 MB go
    to it, and the publisher is not held longer than max_publisher_pause."""
    dropped0 = int(sys_value(broker.port, "publish/messages/dropped"))
    sleeper = RawClient(broker.port)
    sleeper.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sleeper.connect("sleeper")
    sleeper.subscribe("hose/#")
    before = rss_kib(broker.pid)
    sampler = RssSampler(broker.pid)
    sampler.start()
    done: list = []
    t0 = time.monotonic()
    _send_all(broker.port, _flood_bytes("hose/x", 60_000, 1000), done)
    elapsed = time.monotonic() - t0
    peak = sampler.stop()
    assert done == [True], "the flooding publisher was disconnected or stuck"
    growth_mib = (peak - before) / 1024
    print(
        f"never-reading subscriber: 60 MB sent in {elapsed:.1f} s, broker RSS +{growth_mib:.1f} MiB"
    )
    assert growth_mib < HARD_LIMIT_MIB + 24, f"broker RSS grew {growth_mib:.1f} MiB"
    dropped = int(
        wait_sys(broker.port, "publish/messages/dropped", lambda v: int(v) > dropped0 + 40_000)
    )
    assert dropped > dropped0 + 40_000, "drops not counted"
    sleeper.close()


def test_qos0_flood_faster_than_subscribers_read(broker: BrokerProcess, good: GoodClient) -> None:
    """Two publishers flood QoS 0 at loopback speed toward three subscribers that read
    slowly: memory stays bounded, the overflow is dropped and counted, and what each
    subscriber does get is in publish order (no reordering, no corruption)."""
    dropped0 = int(sys_value(broker.port, "publish/messages/dropped"))
    stop = threading.Event()
    seen: dict[int, list[int]] = {}

    def slow_reader(k: int) -> None:
        c = RawClient(broker.port)
        c.connect(f"slow-{k}")
        c.subscribe("flood/#")
        order = seen.setdefault(k, [])
        dec = Decoder(4)
        c.sock.settimeout(0.2)
        while not stop.is_set():
            try:
                data = c.sock.recv(8192)
            except TimeoutError:
                continue
            if not data:
                break
            for p in dec.feed(data):
                order.append(int.from_bytes(p.payload[:4], "big") + (p.topic == "flood/b") * 10**7)
            time.sleep(0.01)  # ~800 KB/s at most: slower than the flood
        c.close()

    readers = [threading.Thread(target=slow_reader, args=(k,), daemon=True) for k in range(3)]
    for r in readers:
        r.start()
    time.sleep(0.5)
    before = rss_kib(broker.pid)
    sampler = RssSampler(broker.pid)
    sampler.start()
    done: list = []
    pubs = [
        threading.Thread(
            target=_send_all, args=(broker.port, _flood_bytes(f"flood/{t}", 20_000, 1000), done)
        )
        for t in "ab"
    ]
    for p in pubs:
        p.start()
    for p in pubs:
        p.join(40)
    peak = sampler.stop()
    stop.set()
    for r in readers:
        r.join(5)
    assert done == [True, True]
    growth_mib = (peak - before) / 1024
    print(
        f"QoS 0 flood: broker RSS +{growth_mib:.1f} MiB; received per slow subscriber: "
        f"{[len(v) for v in seen.values()]}"
    )
    assert growth_mib < 3 * HARD_LIMIT_MIB + 24
    for k, order in seen.items():
        assert order, f"slow subscriber {k} got nothing"
        for topic_base in (0, 10**7):
            mine = [x for x in order if (x >= 10**7) == bool(topic_base)]
            assert mine == sorted(set(mine)), f"subscriber {k}: reordered or duplicated"
    dropped = int(wait_sys(broker.port, "publish/messages/dropped", lambda v: int(v) > dropped0))
    assert dropped > dropped0


def test_client_that_never_acknowledges(broker: BrokerProcess, good: GoodClient) -> None:
    """A subscriber that never sends PUBACK/PUBREC: it gets exactly max in-flight (10)
    PUBLISHes [MQTT-4.9.0-*], the next 100 wait in its queue, the rest are dropped and
    counted; on reconnect the 10 come again with DUP [MQTT-4.4.0-1] and then the 100,
    in publish order."""
    dropped0 = int(sys_value(broker.port, "publish/messages/dropped"))
    q1 = connected(broker.port, client_id="noack-1")
    q1.send_packet(Disconnect())  # close cleanly to make the session persistent
    q1.close()
    q1 = RawClient(broker.port)
    q1.connect("noack-1", clean_start=False)
    q1.subscribe(("noack/#", 1))
    q2 = connected(broker.port, client_id="noack-2")
    q2.subscribe(("noack/#", 2))
    with connected(broker.port) as p:
        for i in range(300):
            p.publish("noack/t", str(i).encode(), qos=1, timeout=5)
    for c in (q1, q2):
        first = c.recv_publishes(10, timeout=5, ack=False)
        assert [int(m.payload) for m in first] == list(range(10))
        c.expect_no_packet(0.5)
    dropped = int(
        wait_sys(broker.port, "publish/messages/dropped", lambda v: int(v) >= dropped0 + 2 * 190)
    )
    assert dropped >= dropped0 + 2 * 190
    q1.close()
    q2.close()
    again = RawClient(broker.port)
    assert again.connect("noack-1", clean_start=False).session_present
    got = again.recv_publishes(110, timeout=10)
    assert [int(m.payload) for m in got] == list(range(110))
    assert all(m.dup for m in got[:10]) and not any(m.dup for m in got[10:])
    again.expect_no_packet(0.3)
    again.disconnect()
    with connected(broker.port, client_id="noack-1"):  # clean start: drop the session
        pass


def test_connect_disconnect_churn(broker: BrokerProcess, good: GoodClient) -> None:
    """600 connections that come and go every way a client can: DISCONNECT, abrupt
    close, close before CONNACK, TCP only, reset (SO_LINGER 0). The connection count
    returns to where it was, memory does not grow."""
    connected0 = int(sys_value(broker.port, "clients/connected"))
    before = rss_kib(broker.pid)
    errors: list[BaseException] = []

    def churn(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for i in range(200):
                mode = rng.randrange(5)
                s = socket.create_connection(("127.0.0.1", broker.port), timeout=5)
                if mode == 4:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                if mode != 3:
                    s.sendall(encode(Connect(f"churn-{seed}-{i % 7}", 4 + (i & 1)), 4 + (i & 1)))
                if mode in (0, 1, 4):
                    assert s.recv(64)[:1] == b"\x20"
                if mode == 0:
                    s.sendall(b"\xe0\x00")
                s.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)
    assert not errors, errors
    # +1: the $SYS reader itself is counted or not, by the publish timing.
    now = int(wait_sys(broker.port, "clients/connected", lambda v: int(v) <= connected0 + 1))
    assert now <= connected0 + 1
    growth_mib = (rss_kib(broker.pid) - before) / 1024
    print(f"churn: broker RSS +{growth_mib:.1f} MiB after 600 connections")
    assert growth_mib < 8


def test_same_client_id_takeover_storm(broker: BrokerProcess, good: GoodClient) -> None:
    """1,000 connections with one client id, v3.1.1 and v5 mixed, all connecting at
    once: each takes the session over from the previous one [MQTT-3.1.4-3]; in the end
    exactly one is still open and it works."""
    raise_nofile(4096)
    socks = []
    for i in range(1000):
        s = socket.create_connection(("127.0.0.1", broker.port), timeout=10)
        v = 5 if i % 2 else 4
        s.sendall(encode(Connect("twin", v, clean_start=bool(i % 3)), v))
        s.setblocking(False)
        socks.append((s, v))
    deadline = time.monotonic() + 15
    open_ = list(socks)
    while time.monotonic() < deadline:
        still = []
        for s, v in open_:
            try:
                while True:
                    data = s.recv(65536)
                    if not data:
                        break
            except BlockingIOError:
                still.append((s, v))
                continue
            except ConnectionResetError:
                pass
        open_ = still
        if len(open_) <= 1:
            break
        time.sleep(0.1)
    for s, v in socks:
        if (s, v) not in open_:
            s.close()
    assert len(open_) == 1, f"{len(open_)} connections with the same client id are still open"
    s, v = open_[0]
    s.setblocking(True)
    s.settimeout(3)
    s.sendall(encode(Pingreq(), v))
    dec = Decoder(v)
    pkts: list = []
    while not any(isinstance(p, Pingresp) for p in pkts):
        data = s.recv(4096)
        assert data, "the last connection was closed"
        pkts += dec.feed(data)
    s.sendall(encode(Disconnect(), v))
    s.close()


def test_qos2_publisher_that_never_releases(broker: BrokerProcess, good: GoodClient) -> None:
    """A publisher that sends QoS 2 PUBLISHes and never PUBREL: v3.1.1 holds one packet
    id per message (bounded by the 65,535 ids), each message is forwarded exactly once
    even when re-sent with DUP [MQTT-4.3.3-10]; a v5 client going past the Receive
    Maximum (10 here) is disconnected with 0x93 [MQTT-3.3.4-9]."""
    before = rss_kib(broker.pid)
    with connected(broker.port, client_id="q2-watch") as watch:
        watch.subscribe(("q2/#", 0))
        c = connected(broker.port, client_id="q2-holder")
        c.send(
            b"".join(
                encode(Publish("q2/t", str(i).encode(), 2, packet_id=i), 4) for i in range(1, 5001)
            )
        )
        recs = [c.recv_packet(10.0) for _ in range(5000)]
        assert [r.packet_id for r in recs] == list(range(1, 5001))
        c.send(
            b"".join(
                encode(Publish("q2/t", b"again", 2, dup=True, packet_id=i), 4)
                for i in range(1, 101)
            )
        )
        assert [c.recv_packet(5.0).packet_id for _ in range(100)] == list(range(1, 101))
        got = [int(p.payload) for p in watch.recv_publishes(5000, timeout=15)]
        assert got == list(range(1, 5001))
        watch.expect_no_packet(0.3)  # the DUP re-sends were not forwarded again
        assert c.is_open(2.0)
        c.close()
    assert rss_kib(broker.pid) - before < 16 * 1024
    v5 = connected(broker.port, 5, client_id="q2-v5")
    v5.send(b"".join(encode(Publish("q2/v5", b"x", 2, packet_id=i), 5) for i in range(1, 12)))
    recs = [v5.recv_packet(5.0) for _ in range(10)]
    assert all(type(r).__name__ == "Pubrec" for r in recs)
    assert v5.expect_closed(3.0) == 0x93
    v5.close()
