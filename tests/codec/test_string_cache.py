"""Decoded strings are right whatever the Cython twin's cache of recent strings holds.

The Cython twin hands back a cached str for a short ASCII string it decoded before (and
then skips its UTF-8 check: those bytes passed it already). These tests run on both twins
and aim at what a wrong cache would get wrong: colliding entries, strings that share a
prefix or differ only in length, non-ASCII and longer strings (never cached), and invalid
bytes right after valid ones that look alike.
"""

from __future__ import annotations

from typing import Any

import pytest

from mqttfast.codec.errors import MalformedPacket
from mqttfast.codec.packets import Properties, Publish, Subscribe, Subscription


def roundtrip(impl: Any, packets: list[Any], version: int) -> list[Any]:
    data = b"".join(impl.encode(p, version) for p in packets)
    return impl.Decoder(version).feed(data)  # type: ignore[no-any-return]


@pytest.mark.parametrize("version", [4, 5])
def test_many_topics_twice_read_back(impl: Any, version: int) -> None:
    """Far more distinct topics than cache entries (collisions and evictions), each twice,
    with lengths around the 8-byte words the hash reads and the cache's 64-byte limit."""
    topics = [f"t/{i}" for i in range(3000)]
    topics += ["x" * n for n in range(1, 80)]
    topics += ["a/b/c/" + "y" * n for n in range(0, 70)]
    packets = [Publish(t, t.encode(), 0) for t in topics]
    for _ in range(2):
        got = roundtrip(impl, packets, version)
        assert [p.topic for p in got] == topics
        assert all(type(p.topic) is str for p in got)


def test_prefixes_and_extensions_are_different_strings(impl: Any) -> None:
    topics = ["abcdefgh", "abcdefg", "abcdefghi", "abcdefgh", "abcdefgX", "abcdefgh/"]
    got = roundtrip(impl, [Publish(t, b"", 0) for t in topics], 4)
    assert [p.topic for p in got] == topics


def test_non_ascii_strings(impl: Any) -> None:
    topics = ["caf\u00e9", "cafe", "\u00e9t\u00e9/\u4e2d", "caf\u00e9", "\U0001f600/x"]
    props = Properties(content_type="t\u00ebxt", user_property=[("k\u00e9", "v"), ("k", "v")])
    packets = [Publish(t, b"", 1, packet_id=1, properties=props) for t in topics]
    for _ in range(2):
        got = roundtrip(impl, packets, 5)
        assert [p.topic for p in got] == topics
        assert all(p.properties == props for p in got)


def test_property_strings_repeat_and_vary(impl: Any) -> None:
    packets = [
        Publish(
            "a/b",
            b"",
            1,
            packet_id=i + 1,
            properties=Properties(
                content_type="application/json" if i % 2 else "text/plain",
                response_topic=f"reply/{i % 7}",
                user_property=[("trace", f"id-{i}"), ("trace", "same"), (f"k{i % 3}", "")],
            ),
        )
        for i in range(1200)
    ]
    got = roundtrip(impl, packets, 5)
    assert got == packets


@pytest.mark.parametrize(
    "bad, error",
    [
        (b"ab\xffd", "ill-formed"),  # same length as the cached "abcd", one byte differs
        (b"ab\x00d", r"U\+0000"),
        (b"abc\xc3", "ill-formed"),  # truncated two-byte sequence
        (b"\xed\xa0\x80d", "ill-formed"),  # a surrogate
    ],
)
def test_invalid_after_a_cached_lookalike_is_refused(impl: Any, bad: bytes, error: str) -> None:
    dec = impl.Decoder(4)
    (ok,) = dec.feed(impl.encode(Publish("abcd", b"", 0), 4))
    assert ok.topic == "abcd"
    body = len(bad).to_bytes(2, "big") + bad
    with pytest.raises(MalformedPacket, match=error):
        impl.Decoder(4).feed(bytes([0x30, len(body)]) + body)


def test_subscription_filters(impl: Any) -> None:
    subs = [Subscription(f"s/{i}/#", i % 3) for i in range(600)]
    packets = [Subscribe(i + 1, [subs[i], subs[-1 - i]]) for i in range(600)]
    for version in (4, 5):
        assert roundtrip(impl, packets, version) == packets


@pytest.mark.parametrize("bad", [b"\x00", b"\x80", b"\xc3", b"\xff", b"\xed\xa0\x80"])
@pytest.mark.parametrize("where", [0, 3, 7, 8, 15, 16, 23])
def test_bad_byte_anywhere_in_a_property_string_is_refused(
    impl: Any, bad: bytes, where: int
) -> None:
    """The word-at-a-time ASCII check of property strings lets no bad byte through, on
    either side of an 8-byte word boundary (content type of 24 bytes, one replaced)."""
    good = b"application/octet-stre!"
    value = good[:where] + bad + good[where + len(bad) :]
    props = b"\x03" + len(value).to_bytes(2, "big") + value
    body = b"\x00\x03a/b" + b"\x00\x01" + bytes([len(props)]) + props + b"payload"
    packet = bytes([0x32, len(body)]) + body
    with pytest.raises(MalformedPacket):
        impl.Decoder(5).feed(packet)
    ok = b"\x03" + len(good).to_bytes(2, "big") + good
    body = b"\x00\x03a/b" + b"\x00\x01" + bytes([len(ok)]) + ok + b"payload"
    (pkt,) = impl.Decoder(5).feed(bytes([0x32, len(body)]) + body)
    assert pkt.properties.content_type == good.decode()
