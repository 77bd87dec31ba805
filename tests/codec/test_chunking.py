"""The streaming decoder gives the same packets however the stream is cut.

Whole stream, byte by byte, every two-chunk split point, with a trailing
partial packet, and with bytes / bytearray / memoryview chunks.
"""

from __future__ import annotations

from typing import Any

import pytest

from mqttfast.codec.packets import (
    Connect,
    Disconnect,
    Pingreq,
    Properties,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Subscribe,
    Subscription,
    Unsubscribe,
    Will,
)


def client_stream(version: int) -> list[Any]:
    """Everything a client may send, CONNECT first, as a server decoder sees it."""
    v5 = version == 5
    props = Properties(user_property=[("k", "v")], message_expiry_interval=9) if v5 else None
    return [
        Connect(
            "client-1",
            version,
            False,
            30,
            "user",
            b"secret",
            Will(
                "will/topic", b"gone", 1, False, Properties(will_delay_interval=3) if v5 else None
            ),
            Properties(session_expiry_interval=60) if v5 else None,
        ),
        Publish("a/b", b"x" * 64),
        Publish("a/b/c", b"\x00" * 200, 1, False, False, 1, props),
        Publish("t", b"", 2, True, True, 2),
        Puback(3, 0x10 if v5 else 0),
        Pubrec(4),
        Pubrel(5),
        Pubcomp(6),
        Subscribe(7, [Subscription("a/#", 1), Subscription("+/b", 2)]),
        Unsubscribe(8, ["a/#"]),
        Pingreq(),
        Publish("long", bytes(range(256)) * 2, 1, packet_id=9),
        Disconnect(),
    ]


def encode_all(impl: Any, packets: list[Any], version: int) -> bytes:
    return b"".join(impl.encode(p, version) for p in packets)


VERSIONS = [3, 4, 5]


@pytest.mark.parametrize("version", VERSIONS)
def test_whole_stream_in_one_feed(impl: Any, version: int) -> None:
    packets = client_stream(version)
    dec = impl.Decoder()
    assert dec.feed(encode_all(impl, packets, version)) == packets
    assert dec.protocol_version == version


@pytest.mark.parametrize("version", VERSIONS)
def test_byte_by_byte(impl: Any, version: int) -> None:
    packets = client_stream(version)
    data = encode_all(impl, packets, version)
    dec = impl.Decoder()
    out: list[Any] = []
    for i in range(len(data)):
        out += dec.feed(data[i : i + 1])
    assert out == packets


@pytest.mark.parametrize("version", [4, 5])
def test_every_split_point(impl: Any, version: int) -> None:
    packets = client_stream(version)[:11]  # keep it quadratic-cheap
    data = encode_all(impl, packets, version)
    for cut in range(len(data) + 1):
        dec = impl.Decoder()
        first = dec.feed(data[:cut])
        assert first + dec.feed(data[cut:]) == packets, cut
        # The first call returns exactly the packets wholly inside the cut.
        assert len(first) == sum(1 for end in _ends(impl, packets, version) if end <= cut)


def _ends(impl: Any, packets: list[Any], version: int) -> list[int]:
    ends, total = [], 0
    for p in packets:
        total += len(impl.encode(p, version))
        ends.append(total)
    return ends


@pytest.mark.parametrize("version", [4, 5])
def test_trailing_partial_packet_is_kept(impl: Any, version: int) -> None:
    packets = client_stream(version)
    data = encode_all(impl, packets, version)
    tail = impl.encode(Publish("partial", b"p" * 300, 1, packet_id=77), version)
    for keep in (1, 2, 3, 10, len(tail) - 1):
        dec = impl.Decoder()
        assert dec.feed(data + tail[:keep]) == packets
        assert dec.feed(b"") == []
        assert dec.feed(tail[keep:]) == [Publish("partial", b"p" * 300, 1, packet_id=77)]
        assert dec.feed(b"") == []


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_any_bytes_like_chunk(impl: Any, kind: type) -> None:
    packets = client_stream(5)
    data = encode_all(impl, packets, 5)
    dec = impl.Decoder()
    out: list[Any] = []
    for i in range(0, len(data), 7):
        out += dec.feed(kind(data[i : i + 7]))
    assert out == packets


def test_memoryview_slice_of_larger_buffer(impl: Any) -> None:
    """A transport may hand over a view into its own receive buffer."""
    data = encode_all(impl, client_stream(4), 4)
    backing = bytearray(b"\xff" * 5 + data + b"\xff" * 5)
    dec = impl.Decoder()
    assert dec.feed(memoryview(backing)[5 : 5 + len(data)]) == client_stream(4)


def test_caller_may_reuse_its_buffer_after_feed(impl: Any) -> None:
    """Decoded packets and the kept partial input own their bytes."""
    data = impl.encode(Publish("a", b"abcdef", 1, packet_id=1), 4)
    buf = bytearray(data + data[:4])
    dec = impl.Decoder(4)
    (pkt,) = dec.feed(buf)
    buf[:] = b"\x00" * len(buf)
    assert pkt == Publish("a", b"abcdef", 1, packet_id=1)
    assert dec.feed(data[4:]) == [Publish("a", b"abcdef", 1, packet_id=1)]


def test_large_stream_of_publishes(impl: Any) -> None:
    pkt = Publish("bench/topic", b"\x01" * 64, 1, packet_id=1)
    one = impl.encode(pkt, 4)
    data = one * 5000
    dec = impl.Decoder(4)
    out: list[Any] = []
    for i in range(0, len(data), 4096):  # socket-sized reads cutting packets anywhere
        out += dec.feed(data[i : i + 4096])
    assert len(out) == 5000 and all(p == pkt for p in out)


@pytest.mark.parametrize("read", [1000, 4096, 16000, 16400, 65536])
def test_large_payloads_spanning_reads(impl: Any, read: int) -> None:
    """16 KiB payloads cut by reads of several sizes (the body of a packet completed
    piecewise, then the rest of that read parsed on): the same packets, in order, and the
    bytes held back are exactly the incomplete packet's; the caller's chunks are reused."""
    pkts = [Publish(f"big/{i}", bytes([i]) * 16384) for i in range(12)]
    data = encode_all(impl, pkts, 4)
    dec = impl.Decoder(4)
    out: list[Any] = []
    chunk = bytearray(read)
    for i in range(0, len(data), read):
        part = data[i : i + read]
        chunk[: len(part)] = part
        out += dec.feed(memoryview(chunk)[: len(part)])
        chunk[:] = bytes(read)  # later reads land in the same buffer
        done = sum(len(impl.encode(p, 4)) for p in out)
        assert dec.buffered == min(i + read, len(data)) - done
    assert out == pkts


def test_remaining_length_split_across_feeds(impl: Any) -> None:
    """A 3-byte remaining length arriving one byte at a time (2.2.3)."""
    pkt = Publish("t", b"z" * 20000)
    data = impl.encode(pkt, 4)
    assert data[1] & 0x80 and data[2] & 0x80
    dec = impl.Decoder(4)
    assert dec.feed(data[:1]) == []
    assert dec.feed(data[1:2]) == []
    assert dec.feed(data[2:3]) == []
    assert dec.feed(data[3:]) == [pkt]


def test_max_packet_size_is_checked_before_the_body_arrives(impl: Any) -> None:
    """3.1.2.11.4 / [MQTT-3.2.2-15]: a too-large packet fails on its fixed header alone."""
    from mqttfast.codec.errors import PacketTooLarge

    dec = impl.Decoder(4, max_packet_size=1000)
    header = impl.encode(Publish("t", b"x" * 2000), 4)[:3]
    with pytest.raises(PacketTooLarge) as info:
        dec.feed(header)
    assert info.value.reason_code == 0x95


def test_packet_exactly_max_size_is_accepted(impl: Any) -> None:
    data = impl.encode(Publish("t", b"x" * 100), 4)
    assert impl.Decoder(4, max_packet_size=len(data)).feed(data) == [Publish("t", b"x" * 100)]
    from mqttfast.codec.errors import PacketTooLarge

    with pytest.raises(PacketTooLarge):
        impl.Decoder(4, max_packet_size=len(data) - 1).feed(data)


def test_max_packet_size_is_settable(impl: Any) -> None:
    """The broker lowers the limit after CONNECT; the next packet obeys it."""
    from mqttfast.codec.errors import PacketTooLarge

    dec = impl.Decoder()
    dec.feed(impl.encode(Connect("c", 4), 4))
    dec.max_packet_size = 50
    assert dec.max_packet_size == 50
    dec.feed(impl.encode(Publish("t", b"x" * 10), 4))
    with pytest.raises(PacketTooLarge):
        dec.feed(impl.encode(Publish("t", b"x" * 100), 4)[:2])


def test_protocol_version_is_settable(impl: Any) -> None:
    dec = impl.Decoder(4)
    dec.protocol_version = 5
    assert dec.feed(b"\x40\x03\x00\x01\x10") == [Puback(1, 0x10)]
