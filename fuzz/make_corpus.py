"""Write the seed corpora: every packet type in every protocol version it exists in,
encoded by mqttfast.codec.encode, in the fuzz input layout of harness.py; plus seeds
for the C kernel target.

    python3 fuzz/make_corpus.py        # (re)writes fuzz/corpus/codec and fuzz/corpus/kernels
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from harness import make_input  # noqa: E402

from mqttfast.codec import encode  # noqa: E402
from mqttfast.codec.packets import (  # noqa: E402
    Auth,
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


def client_packets(v: int) -> list:
    """What a client sends a server (after its CONNECT)."""
    props = Properties(user_property=[("k", "v")], reason_string="r") if v == 5 else None
    uprops = Properties(user_property=[("k", "v")]) if v == 5 else None
    pub_props = (
        Properties(
            message_expiry_interval=60,
            topic_alias=3,
            content_type="text/plain",
            response_topic="r/t",
            correlation_data=b"c",
            payload_format_indicator=1,
            user_property=[("a", "b")],
        )
        if v == 5
        else None
    )
    sub_props = Properties(subscription_identifier=[7]) if v == 5 else None
    pkts = [
        Publish("a/b", b"hello", 0),
        Publish("a/b/c", b"x" * 40, 1, retain=True, packet_id=1, properties=pub_props),
        Publish("s/\u00e9", b"", 2, dup=True, packet_id=65535),
        Puback(5),
        Pubrec(6),
        Pubrel(7),
        Pubcomp(8),
        Subscribe(
            9,
            [Subscription("a/+", 1), Subscription("#", 2), Subscription("$share/g/x", 0)],
            properties=sub_props,
        ),
        Unsubscribe(10, ["a/+", "#"], properties=uprops),
        Pingreq(),
        Disconnect(0x04 if v == 5 else 0, props),
    ]
    if v == 5:
        pkts += [
            Subscribe(
                11,
                [
                    Subscription(
                        "n/l", 1, no_local=True, retain_as_published=True, retain_handling=2
                    )
                ],
            ),
            Puback(12, 0x10, props),
            Pubrec(13, 0x80),
            Pubrel(14, 0x92),
            Pubcomp(15, 0x92, props),
            Auth(0x18, Properties(authentication_method="SCRAM", authentication_data=b"d")),
        ]
    return pkts


def server_packets(v: int) -> list:
    props = (
        Properties(
            session_expiry_interval=10,
            receive_maximum=5,
            maximum_qos=1,
            retain_available=0,
            maximum_packet_size=1000,
            topic_alias_maximum=4,
            wildcard_subscription_available=1,
            subscription_identifier_available=0,
            shared_subscription_available=1,
            server_keep_alive=30,
            assigned_client_identifier="id",
            response_information="ri",
            server_reference="other",
        )
        if v == 5
        else None
    )
    return [
        Connack(True, 0, props),
        Connack(False, 0x87 if v == 5 else 5),
        Suback(3, [0, 1, 2, 0x80]),
        Unsuback(4, [0, 0x11] if v == 5 else []),
        Pingresp(),
        Publish("t", b"p", 1, packet_id=2),
    ]


def connects(v: int) -> list:
    will_props = Properties(will_delay_interval=5, message_expiry_interval=9) if v == 5 else None
    cprops = (
        Properties(
            session_expiry_interval=30,
            receive_maximum=10,
            topic_alias_maximum=5,
            maximum_packet_size=4096,
            request_problem_information=0,
            request_response_information=1,
            user_property=[("x", "y")],
        )
        if v == 5
        else None
    )
    return [
        Connect("c1", v, True, 60),
        Connect(
            "client-\u00fc",
            v,
            False,
            0,
            username="u",
            password=b"p",
            will=Will("w/t", b"gone", 1, True, will_props),
            properties=cprops,
        ),
    ]


def codec_seeds() -> dict[str, bytes]:
    seeds: dict[str, bytes] = {}
    for v in (3, 4, 5):
        for i, c in enumerate(connects(v)):
            conn = encode(c, v)
            # Server side: CONNECT then everything a client may send, one packet per seed
            # and all at once (once whole, once in 7-byte chunks).
            seeds[f"server_v{v}_connect{i}"] = make_input(conn, None)
            for pkt in client_packets(v):
                name = f"server_v{v}_c{i}_{type(pkt).__name__.lower()}"
                seeds.setdefault(name, make_input(conn + encode(pkt, v), None))
            stream = conn + b"".join(encode(p, v) for p in client_packets(v))
            seeds[f"server_v{v}_c{i}_all"] = make_input(stream, None)
            seeds[f"server_v{v}_c{i}_all_chunked"] = make_input(stream, None, chunk=7)
        # Client side: every packet type alone (connect included, server packets too).
        for pkt in connects(v) + client_packets(v) + server_packets(v):
            name = f"client_v{v}_{type(pkt).__name__.lower()}"
            k = 0
            while f"{name}{k}" in seeds:
                k += 1
            seeds[f"{name}{k}"] = make_input(encode(pkt, v), v)
        seeds[f"client_v{v}_small_max"] = make_input(
            encode(Publish("t", b"y" * 100), v), v, small_max=True
        )
    return seeds


def kernel_seeds() -> dict[str, bytes]:
    """fuzz_kernels.c layout: byte 0 selects the split point, the rest is two strings."""
    raw = [
        b"\x00a/b",
        b"\x04a/+/c\xffa/b/c",
        b"\x01#\xff$SYS/x",
        b"\x80\x80\x01",
        b"\xff\xff\xff\x7f",
        "\x03s/\u00e9/\U0001f600".encode(),
        b"\x02+/+\xff/",
        b"\x05\xed\xa0\x80",
        b"\x06a\x00b",
    ]
    return {hashlib.sha1(r).hexdigest()[:12]: r for r in raw}


def write(dirname: str, seeds: dict[str, bytes]) -> int:
    out = HERE / "corpus" / dirname
    out.mkdir(parents=True, exist_ok=True)
    for name, data in seeds.items():
        (out / name).write_bytes(data)
    return len(seeds)


if __name__ == "__main__":
    n = write("codec", codec_seeds())
    k = write("kernels", kernel_seeds())
    print(f"wrote {n} codec seeds and {k} kernel seeds under {HERE / 'corpus'}")
