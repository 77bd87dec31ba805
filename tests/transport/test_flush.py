"""The transport's write batching (transport/tcp.py): a message that arrives alone is
answered at once (a small read's first write per sink goes straight to the socket);
under load (large reads) and outside reads, writes are flushed once per loop turn; with
durable storage, never before the turn's commit.

Real sockets (a socketpair) and a real event loop; a real core broker behind the
protocol in the end-to-end test.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from mqttfast.cluster.acks import AckGate
from mqttfast.codec import Decoder, encode
from mqttfast.codec.packets import (
    Connack,
    Connect,
    Pingreq,
    Pingresp,
    Puback,
    Publish,
    Suback,
    Subscribe,
    Subscription,
)
from mqttfast.core.broker import BrokerCore
from mqttfast.core.states import ConnState
from mqttfast.transport.tcp import SMALL_READ, BatchedSink, Flusher, MQTTProtocol

pytestmark = pytest.mark.timeout(20)


def run(coro_fn: Any) -> Any:
    """Run an async test body on a fresh event loop (no pytest-asyncio here)."""

    def test() -> None:
        asyncio.run(coro_fn())

    test.__name__ = coro_fn.__name__
    test.__doc__ = coro_fn.__doc__
    return test


class _Peer(asyncio.Protocol):
    """The far end of the socketpair: collects what arrives."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.event = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        self.data += data
        self.event.set()


async def _pair() -> tuple[asyncio.Transport, _Peer, asyncio.Transport]:
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    near, _ = await loop.connect_accepted_socket(asyncio.Protocol, a)
    peer = _Peer()
    far, _ = await loop.connect_accepted_socket(lambda: peer, b)
    return near, peer, far  # type: ignore[return-value]


def _sink(transport: asyncio.Transport, flusher: Flusher) -> BatchedSink:
    proto: Any = MQTTProtocol(BrokerCore(), flusher)
    return BatchedSink(transport, flusher, proto)


@run
async def test_small_read_flushes_before_the_loop_turns() -> None:
    loop = asyncio.get_running_loop()
    near, peer, far = await _pair()
    flusher = Flusher(loop)
    sink = _sink(near, flusher)
    flusher.reading = True
    sink.write(b"hello")
    assert not flusher.scheduled  # inside a read nothing is scheduled yet
    flusher.end_read(small=True)
    # Handed to the transport now (uvloop/asyncio write straight to the socket when its
    # buffer is empty), not one loop turn later.
    assert not sink.buf and not flusher.scheduled and not flusher.dirty
    await asyncio.wait_for(peer.event.wait(), 5)
    assert bytes(peer.data) == b"hello"
    near.close()
    far.close()


@run
async def test_small_read_sends_its_first_write_at_once_and_keeps_order() -> None:
    """During a small read (data_received sets ``direct``) a sink's first write goes to
    the socket before the rest of the read's work; later writes to it in that read are
    held and follow at end_read, in order."""
    loop = asyncio.get_running_loop()
    near, peer, far = await _pair()
    flusher = Flusher(loop)
    sink = _sink(near, flusher)
    handed = _record_writes(near)
    flusher.reading = flusher.direct = True
    sink.write(b"one")
    assert handed == [b"one"]  # not waiting for the end of the read
    sink.write(b"two")
    sink.writelines((b"3", b"4"))
    assert handed == [b"one"] and sink.buf == [b"two", b"3", b"4"]
    flusher.end_read(small=True)
    assert b"".join(handed) == b"onetwo34" and not sink.buf and not flusher.dirty
    assert not flusher.direct and not flusher.scheduled
    # A QoS 1/2 PUBLISH (writelines) as a small read's first write goes out at once too.
    other = _sink(near, flusher)
    flusher.reading = flusher.direct = True
    other.writelines((b"h", b"id", b"t"))
    assert handed[-1] == b"hidt"
    flusher.end_read(small=True)
    while len(peer.data) < len(b"onetwo34hidt"):
        peer.event.clear()
        await asyncio.wait_for(peer.event.wait(), 5)
    assert bytes(peer.data) == b"onetwo34hidt"
    near.close()
    far.close()


@run
async def test_large_read_batches_until_the_next_turn() -> None:
    loop = asyncio.get_running_loop()
    near, peer, far = await _pair()
    flusher = Flusher(loop)
    sink = _sink(near, flusher)
    flusher.reading = True
    sink.write(b"a")
    sink.write(b"b")
    flusher.end_read(small=False)
    assert flusher.scheduled and sink.buf == [b"a", b"b"]  # held for one writelines
    await asyncio.sleep(0)
    assert not sink.buf and not flusher.scheduled
    await asyncio.wait_for(peer.event.wait(), 5)
    assert bytes(peer.data) == b"ab"
    near.close()
    far.close()


@run
async def test_writes_outside_a_read_batch_per_turn() -> None:
    loop = asyncio.get_running_loop()
    near, _peer, far = await _pair()
    flusher = Flusher(loop)
    sink = _sink(near, flusher)
    sink.write(b"x")  # e.g. a timer's PINGRESP-less write, or a drained queue
    assert flusher.scheduled and sink.buf == [b"x"]
    await asyncio.sleep(0)
    assert not sink.buf
    near.close()
    far.close()


@run
async def test_durable_storage_keeps_one_commit_per_turn() -> None:
    """With a commit hook (durable storage) a small read does not flush on its own: what
    the bytes acknowledge is committed once per turn, before any of them leave."""
    loop = asyncio.get_running_loop()
    near, peer, far = await _pair()
    flusher = Flusher(loop)
    commits: list[int] = []
    flusher.commit = lambda: commits.append(len(peer.data))  # nothing sent yet
    sink = _sink(near, flusher)
    flusher.reading = True
    sink.write(b"ack")
    flusher.end_read(small=True)
    assert sink.buf == [b"ack"] and commits == []
    await asyncio.sleep(0)
    assert commits == [0] and not sink.buf  # one commit, before any byte was sent
    near.close()
    far.close()


@run
async def test_a_lone_publish_reaches_the_subscriber_within_its_read() -> None:
    """End to end through the core: the subscriber's PUBLISH is handed to its transport
    before the publisher's data_received returns (no extra loop turn)."""
    loop = asyncio.get_running_loop()
    broker = BrokerCore()
    flusher = Flusher(loop)
    protos = []
    peers = []
    for _ in range(2):
        a, b = socket.socketpair()
        proto = MQTTProtocol(broker, flusher)
        await loop.connect_accepted_socket(lambda proto=proto: proto, a)
        peer = _Peer()
        await loop.connect_accepted_socket(lambda peer=peer: peer, b)
        protos.append(proto)
        peers.append(peer)
    sub, pub = protos
    for i, proto in enumerate(protos):
        proto.data_received(encode(Connect(client_id=f"c{i}", keep_alive=0), 4))
    sub.data_received(encode(Subscribe(1, [Subscription("t/#", 0)]), 4))
    await asyncio.sleep(0.05)
    assert all(p.conn is not None and p.conn.state == ConnState.CONNECTED for p in protos)
    peers[0].data.clear()
    peers[0].event.clear()
    data = encode(Publish("t/1", b"x" * 16, 0), 4)
    assert len(data) <= SMALL_READ
    written_before_return: list[int] = []
    orig = sub.sink.transport.write  # type: ignore[union-attr]

    def spy(chunk: bytes) -> None:
        written_before_return.append(len(chunk))
        orig(chunk)

    sub.sink.transport.write = spy  # type: ignore[union-attr, method-assign]
    try:
        pub.data_received(data)
        assert written_before_return, "the subscriber's PUBLISH waited for another loop turn"
    finally:
        del sub.sink.transport.write  # type: ignore[union-attr]
    await asyncio.wait_for(peers[0].event.wait(), 5)
    pkts = Decoder(4).feed(bytes(peers[0].data))
    assert [type(p) for p in pkts] == [Publish] and pkts[0].payload == b"x" * 16
    assert not any(isinstance(p, (Connack, Suback)) for p in pkts)
    for proto in protos:
        proto.sink.close()  # type: ignore[union-attr]


@run
async def test_several_packets_in_one_small_read_are_answered_in_one_send() -> None:
    """A pipelining client's small read of several packets is not a message that arrived
    alone: its answers to one connection leave together at the end of the read (one
    send), not the first at once and the rest after (two sends: ~2x the write syscalls
    per message in the QoS 2 pairs benchmark). A lone packet still goes out at once."""
    loop = asyncio.get_running_loop()
    broker = BrokerCore()
    flusher = Flusher(loop)
    (pub,), _peers = await _connected(broker, flusher, 1)
    handed = _spy(pub)
    read = b"".join(encode(Publish("t/1", b"z", 1, packet_id=i), 4) for i in (1, 2, 3))
    assert len(read) <= SMALL_READ
    pub.data_received(read)
    assert len(handed) == 1 and not flusher.scheduled  # sent within the read, in one go
    assert [p.packet_id for p in Decoder(4).feed(handed[0])] == [1, 2, 3]
    assert all(isinstance(p, Puback) for p in Decoder(4).feed(handed[0]))
    pub.data_received(encode(Publish("t/1", b"z", 1, packet_id=4), 4))
    assert len(handed) == 2  # alone: at once
    pub.sink.close()  # type: ignore[union-attr]


@run
async def test_durable_storage_holds_a_small_reads_first_write_for_the_commit() -> None:
    """With a commit hook, data_received does not send a small read's output directly:
    the subscriber's PUBLISH leaves after the turn's commit, not inside the read."""
    loop = asyncio.get_running_loop()
    broker = BrokerCore()
    flusher = Flusher(loop)
    commits: list[int] = []
    protos = []
    peers = []
    for _ in range(2):
        a, b = socket.socketpair()
        proto = MQTTProtocol(broker, flusher)
        await loop.connect_accepted_socket(lambda proto=proto: proto, a)
        peer = _Peer()
        await loop.connect_accepted_socket(lambda peer=peer: peer, b)
        protos.append(proto)
        peers.append(peer)
    sub, pub = protos
    for i, proto in enumerate(protos):
        proto.data_received(encode(Connect(client_id=f"c{i}", keep_alive=0), 4))
    sub.data_received(encode(Subscribe(1, [Subscription("t/#", 0)]), 4))
    await asyncio.sleep(0.05)
    flusher.commit = lambda: commits.append(1)
    written: list[int] = []
    orig = sub.sink.transport.write  # type: ignore[union-attr]

    def spy(chunk: bytes) -> None:
        written.append(len(commits))  # how many commits had run when it was sent
        orig(chunk)

    sub.sink.transport.write = spy  # type: ignore[union-attr, method-assign]
    pub.data_received(encode(Publish("t/1", b"y" * 16, 0), 4))
    assert written == [] and not flusher.direct
    await asyncio.sleep(0)
    assert written == [1]  # sent after the commit of its turn
    del sub.sink.transport.write  # type: ignore[union-attr]
    for proto in protos:
        proto.sink.close()  # type: ignore[union-attr]


async def _connected(broker: BrokerCore, flusher: Flusher, n: int) -> tuple[list, list]:
    """``n`` MQTT connections on socketpairs, CONNECTed (3.1.1), their peers' data cleared."""
    loop = asyncio.get_running_loop()
    protos: list[MQTTProtocol] = []
    peers: list[_Peer] = []
    for i in range(n):
        a, b = socket.socketpair()
        proto = MQTTProtocol(broker, flusher)
        await loop.connect_accepted_socket(lambda proto=proto: proto, a)
        peer = _Peer()
        await loop.connect_accepted_socket(lambda peer=peer: peer, b)
        proto.data_received(encode(Connect(client_id=f"g{i}", keep_alive=0), 4))
        protos.append(proto)
        peers.append(peer)
    await asyncio.sleep(0.05)
    assert all(p.conn is not None and p.conn.state == ConnState.CONNECTED for p in protos)
    return protos, peers


def _record_writes(transport: Any) -> list[bytes]:
    """What is handed to ``transport`` (write or writelines), in order; the loop's
    writelines may call write itself, so only the outer call is recorded."""
    handed: list[bytes] = []
    orig_write, orig_writelines = transport.write, transport.writelines
    inside = [False]

    def spy_write(chunk: bytes) -> None:
        if not inside[0]:
            handed.append(bytes(chunk))
        orig_write(chunk)

    def spy_writelines(parts: Any) -> None:
        handed.append(b"".join(parts))
        inside[0] = True
        try:
            orig_writelines(parts)
        finally:
            inside[0] = False

    transport.write = spy_write
    transport.writelines = spy_writelines
    return handed


def _spy(proto: MQTTProtocol) -> list[bytes]:
    """What is handed to the connection's transport, in order."""
    return _record_writes(proto.sink.transport)  # type: ignore[union-attr]


@run
async def test_cluster_ack_gate_holds_only_the_connections_it_waits_for() -> None:
    """Issue 16. A cluster's acknowledgement gate (cluster/acks.py), alone on the flusher,
    holds the output of a connection whose PUBACK waits for nats-server, and nothing else:
    the subscriber of the held publisher's message, and a publisher with no acknowledgement
    waiting, are answered within the read as on a single node (direct write). The held
    connection's later output (a PINGRESP) stays behind its PUBACK [MQTT-4.6.0-2] until the
    batch is confirmed. (Before: every connection lost the direct write with a gate.)"""
    loop = asyncio.get_running_loop()
    broker = BrokerCore()
    flusher = Flusher(loop)
    acks = AckGate()
    acks.bind_output(flusher)  # as ClusterRouter.bind_output does (no storage gate)
    assert flusher.gate == acks.gate
    (sub, held, free), peers = await _connected(broker, flusher, 3)
    sub.data_received(encode(Subscribe(1, [Subscription("t/#", 0)]), 4))
    await asyncio.sleep(0.05)
    for peer in peers:
        peer.data.clear()
    to_sub, to_held, to_free = _spy(sub), _spy(held), _spy(free)

    # A QoS 1 message another node wants: the router holds its publisher's acknowledgement
    # for the batch being filled (ClusterRouter.publish -> AckGate.hold), then the core
    # writes the PUBACK.
    acks.hold(held.conn)
    held.data_received(encode(Publish("t/1", b"a", 1, packet_id=5), 4))
    assert len(to_sub) == 1, "the subscriber's PUBLISH waited although nothing of it is held"
    assert to_held == [] and len(acks.waiting) == 1  # the PUBACK waits for the PONG
    held.data_received(encode(Pingreq(), 4))
    assert to_held == []  # behind the held PUBACK, never before it

    # A publisher with nothing waiting: its PUBACK leaves within its read, no gate call.
    free.data_received(encode(Publish("t/2", b"b", 1, packet_id=6), 4))
    assert len(to_free) == 1 and len(to_sub) == 2 and len(acks.waiting) == 2

    acks.take_batch()
    acks.confirm(0)  # nats-server's PONG for the batch
    assert not acks.waiting and held.conn not in acks.need
    while len(peers[1].data) < 6 or len(peers[2].data) < 4:
        await asyncio.sleep(0.01)
    got = Decoder(4).feed(bytes(peers[1].data))
    assert [type(p) for p in got] == [Puback, Pingresp] and got[0].packet_id == 5
    got = Decoder(4).feed(bytes(peers[2].data))
    assert [type(p) for p in got] == [Puback] and got[0].packet_id == 6
    got = Decoder(4).feed(bytes(peers[0].data))
    assert [p.payload for p in got] == [b"a", b"b"]

    # Released: the connection is written directly again.
    held.data_received(encode(Pingreq(), 4))
    assert to_held[-1] == encode(Pingresp(), 4)
    # A held connection that closed before its acknowledgement was flushed is not kept.
    gone = object()
    acks.hold(gone)
    acks.take_batch()
    acks.confirm(1)
    assert gone not in acks.need
    for proto in (sub, held, free):
        proto.sink.close()  # type: ignore[union-attr]
