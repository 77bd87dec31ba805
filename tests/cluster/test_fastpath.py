"""The inline receive path (fastpath.Inbound) cuts the node's MSG/HMSG frames out of
the NATS byte stream and gives every other unit to nats-py's own parser: checked on
random protocol streams split at random points, against nats-py's real parser."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from nats.aio.client import Client as NATS

from mqttfast.cluster.fastpath import Inbound, encode_headers
from mqttfast.core.message import Message

MINE = 7  # sid of an interest subscription
OTHER = 9  # e.g. a JetStream or control subscription

topics = st.lists(st.sampled_from(["a", "b/c", "x.y", "", "é"]), min_size=1, max_size=3).map(
    lambda levels: "/".join(levels) or "t"
)
frames = st.one_of(
    st.tuples(st.just("data"), topics, st.binary(max_size=40), st.sampled_from([0, 1, 2])),
    st.tuples(st.just("other"), st.just("ctl.x"), st.binary(max_size=40), st.just(0)),
    st.tuples(st.just("ping"), st.just(""), st.just(b""), st.just(0)),
    st.tuples(st.just("ok"), st.just(""), st.just(b""), st.just(0)),
)


def wire(kind: str, topic: str, payload: bytes, qos: int) -> bytes:
    if kind == "ping":
        return b"PING\r\n"
    if kind == "ok":
        return b"+OK\r\n"
    from mqttfast.cluster.subjects import topic_to_subject

    subject = topic_to_subject(topic, "p").encode() if kind == "data" else topic.encode()
    sid = MINE if kind == "data" else OTHER
    if qos:
        hdr = encode_headers({"Mqtt-Qos": str(qos), "Mqtt-Origin": '"c1"'})
        n = len(hdr)
        return b"HMSG %s %d %d %d\r\n%s%s\r\n" % (subject, sid, n, n + len(payload), hdr, payload)
    return b"MSG %s %d %d\r\n%s\r\n" % (subject, sid, len(payload), payload)


@settings(max_examples=150, deadline=None)
@given(st.lists(frames, max_size=25), st.lists(st.integers(0, 2000), max_size=8))
def test_frames_split_anywhere_reach_the_right_place(frames_: list, cuts: list[int]) -> None:
    nc = NATS()
    got: list[Message] = []
    inbound = Inbound("p", lambda msg, now: got.append(msg), lambda: 100.0)
    inbound.sids.add(MINE)
    others: list[tuple[Any, ...]] = []
    pings: list[int] = []

    async def process_msg(sid: int, subject: bytes, reply: bytes, data: bytes, hdr: Any) -> None:
        others.append((sid, subject, data))

    async def process_ping() -> None:
        pings.append(1)

    nc._process_msg = process_msg  # observation points of nats-py's own parser
    nc._process_ping = process_ping
    inbound.install(nc)
    stream = b"".join(wire(*f) for f in frames_)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})

    async def feed() -> None:
        for a, b in itertools.pairwise(points):
            await nc._ps.parse(stream[a:b])

    asyncio.run(feed())
    want = [f for f in frames_ if f[0] == "data"]
    assert [(m.topic, m.payload, m.qos) for m in got] == [(t, p, q) for _, t, p, q in want]
    assert all(m.origin == ("c1" if m.qos else None) for m in got)
    assert [(s, d) for s, _, d in others] == [(OTHER, f[2]) for f in frames_ if f[0] == "other"]
    assert len(pings) == sum(1 for f in frames_ if f[0] == "ping")
    assert inbound.rest == b"" and not nc._ps.buf


def test_a_reset_forgets_a_half_received_frame() -> None:
    nc = NATS()
    got: list[Message] = []
    inbound = Inbound("p", lambda msg, now: got.append(msg), lambda: 0.0)
    inbound.sids.add(MINE)
    inbound.install(nc)
    frame = wire("data", "a/b", b"payload", 0)
    asyncio.run(nc._ps.parse(frame[:10]))
    assert inbound.rest
    nc._ps.reset()  # what nats-py does on reconnect
    asyncio.run(nc._ps.parse(frame))
    assert [(m.topic, m.payload) for m in got] == [("a/b", b"payload")]


def test_a_cached_line_follows_the_current_sids() -> None:
    """A MSG line seen before (cached per line) is still checked against the current
    interest sids: after an unsubscribe its frames go to nats-py's own parser."""
    nc = NATS()
    got: list[Message] = []
    others: list[bytes] = []
    inbound = Inbound("p", lambda msg, now: got.append(msg), lambda: 0.0)
    inbound.sids.add(MINE)

    async def process_msg(sid: int, subject: bytes, reply: bytes, data: bytes, hdr: Any) -> None:
        others.append(data)

    nc._process_msg = process_msg
    inbound.install(nc)
    frame = wire("data", "a/b", b"same", 0)
    asyncio.run(nc._ps.parse(frame + frame))
    inbound.sids.discard(MINE)
    asyncio.run(nc._ps.parse(frame))
    assert [m.payload for m in got] == [b"same", b"same"] and others == [b"same"]


def test_a_small_read_from_nats_reaches_the_clients_within_the_read() -> None:
    """With the transport's flusher (Inbound.flusher), what the messages of a small read
    from NATS write to a client is handed to its socket before the read's parse returns
    (not one loop turn later); a large read's output leaves in the turn's flush."""
    import socket

    from mqttfast.core.broker import BrokerCore
    from mqttfast.transport.tcp import BatchedSink, Flusher, MQTTProtocol

    async def body() -> None:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        near, _ = await loop.connect_accepted_socket(asyncio.Protocol, a)
        far, _ = await loop.connect_accepted_socket(asyncio.Protocol, b)
        flusher = Flusher(loop)
        sink = BatchedSink(near, flusher, MQTTProtocol(BrokerCore(), flusher))  # type: ignore[arg-type]
        handed: list[bytes] = []
        orig_write = near.write

        def spy_write(chunk: bytes) -> None:
            handed.append(bytes(chunk))
            orig_write(chunk)

        def spy_writelines(parts: Any) -> None:
            handed.append(b"".join(parts))
            orig_write(b"".join(parts))

        near.write = spy_write  # type: ignore[method-assign]
        near.writelines = spy_writelines  # type: ignore[method-assign]
        nc = NATS()
        inbound = Inbound("p", lambda msg, now: sink.write(msg.payload), lambda: 0.0)
        inbound.sids.add(MINE)
        inbound.flusher = flusher
        inbound.install(nc)
        await nc._ps.parse(wire("data", "a/b", b"one", 0))
        assert handed == [b"one"]
        big = b"".join(wire("data", "a/b", b"x" * 100, 0) for _ in range(60))
        await nc._ps.parse(big)
        assert handed == [b"one"] and flusher.scheduled
        await asyncio.sleep(0)
        assert handed == [b"one", b"x" * 6000]
        near.close()
        far.close()

    asyncio.run(body())


@settings(max_examples=150, deadline=None)
@given(
    st.lists(frames, max_size=25),
    st.lists(st.integers(0, 2000), max_size=8),
    st.lists(st.booleans(), min_size=10, max_size=10),
    st.integers(1, 64),
    st.integers(0, 2000),
)
def test_reads_taken_in_the_socket_callback_reach_the_right_place(
    frames_: list, cuts: list[int], drains: list[bool], chunk: int, pre: int
) -> None:
    """Inbound.take_reads: the socket's reads are cut in data_received; the interest
    frames are delivered there, every other unit reaches nats-py's parser through its
    StreamReader, whole and in order, whenever its read loop runs (and in small pieces),
    from a stream split anywhere; the switch waits for a unit boundary."""
    from mqttfast.cluster.fastpath import _InlineReads

    nc = NATS()
    got: list[Message] = []
    inbound = Inbound("p", lambda msg, now: got.append(msg), lambda: 100.0)
    inbound.sids.add(MINE)
    others: list[Any] = []
    pings: list[int] = []

    async def process_msg(sid: int, subject: bytes, reply: bytes, data: bytes, hdr: Any) -> None:
        others.append((sid, subject, data))

    async def process_ping() -> None:
        pings.append(1)

    nc._process_msg = process_msg
    nc._process_ping = process_ping
    inbound.install(nc)
    stream = b"".join(wire(*f) for f in frames_)
    pre %= len(stream) + 1  # what nats-py's reader got before the switch
    points = sorted({pre + c % (len(stream) - pre + 1) for c in cuts} | {pre, len(stream)})

    async def feed() -> None:
        reader = asyncio.StreamReader()
        proto = asyncio.StreamReaderProtocol(reader)
        proto.data_received(stream[:pre])
        reads = _InlineReads(inbound, proto, reader, nc._ps)

        async def read_loop() -> None:  # nats-py's, in pieces of ``chunk`` bytes
            while reader._buffer:  # type: ignore[attr-defined]
                await nc._ps.parse(await reader.read(chunk))

        for i, (a, b) in enumerate(itertools.pairwise(points)):
            reads.data_received(stream[a:b])
            if drains[i % len(drains)]:
                await read_loop()
        await read_loop()

    asyncio.run(feed())
    want = [f for f in frames_ if f[0] == "data"]
    assert [(m.topic, m.payload, m.qos) for m in got] == [(t, p, q) for _, t, p, q in want]
    assert [(s, d) for s, _, d in others] == [(OTHER, f[2]) for f in frames_ if f[0] == "other"]
    assert len(pings) == sum(1 for f in frames_ if f[0] == "ping")
    assert inbound.rest == b"" and inbound.inline_rest == b"" and not nc._ps.buf
