"""Codec microbenchmarks: Cython twin, pure-Python twin and the PyPI ``mqtt5``
package (a Rust/PyO3 MQTT 5 codec) side by side on the same packets.

Run (pytest-benchmark, groups per operation):
    python3 setup.py build_ext --inplace -q
    python3 -m pytest benchmarks/bench_codec.py -q -p no:cacheprovider \
        -o python_files='bench_*.py' --benchmark-columns=min,median,ops --benchmark-sort=name

Or print per-packet medians and the ratios directly (ROUNDS rounds of BATCH packets per
cell and run, median of RUNS runs; defaults 200 and 5):
    python3 benchmarks/bench_codec.py [ROUNDS [RUNS]]

Each benchmarked call handles a batch of BATCH packets (decode: one ``feed`` of a
stream of BATCH packets; encode: BATCH ``encode`` calls), so divide by BATCH for
one packet. ``mqtt5`` speaks only MQTT 5, so it appears in the 5.0 groups only;
its decoder is driven the way its API allows (``read(memoryview)`` returns one
packet and its length, in a loop).

"decode 64-byte PUBLISH" only decodes (every field stays reachable: the Cython twin
keeps an MQTT 5 PUBLISH's validated property bytes and builds its Properties on first
read, ``mqtt5`` converts its Rust fields to Python values in its getters); "decode ...,
read all" also reads every field, properties included, for all three.

The "64-byte PUBLISH" is a QoS 1 PUBLISH with a 64-byte payload on topic
``bench/topic/0001``; the 5.0 variant carries message expiry, content type and
one user property. Every packet of a batch is the same, so the Cython twin's cache of
recent short strings always hits (topic, content type, user property name and value:
no str built); with more distinct strings than its 512 entries a miss costs it ~9 ns
per string more than without the cache (sensors/NNNN/temperature, 1,000 topics).
"""

from __future__ import annotations

import importlib
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mqttfast.codec.packets import (
    Connect,
    Pingreq,
    Properties,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Subscribe,
    Subscription,
)

BATCH = 1000
TOPIC = "bench/topic/0001"
PAYLOAD = bytes(range(64))
PROPS = Properties(
    message_expiry_interval=60,
    content_type="application/octet-stream",
    user_property=[("trace", "abc123")],
)
FLAVOURS = {"cython": "mqttfast.codec._codec", "python": "mqttfast.codec._codec_py"}


def publish(version: int) -> Publish:
    return Publish(TOPIC, PAYLOAD, 1, False, False, 4242, PROPS if version == 5 else None)


def mixed_stream(codec: Any, version: int) -> bytes:
    """A realistic inbound mix: mostly PUBLISH of every QoS, their acks, pings."""
    props = PROPS if version == 5 else None
    cycle = [
        Publish(TOPIC, PAYLOAD),
        Publish("bench/other", PAYLOAD[:16], 1, packet_id=1, properties=props),
        Publish(TOPIC, PAYLOAD * 4, 2, retain=True, packet_id=2),
        Puback(3),
        Pubrec(4),
        Pubrel(5),
        Pubcomp(6),
        Publish("a/b/c/d", b"", 0),
        Pingreq(),
        Subscribe(7, [Subscription("bench/#", 1)]),
    ]
    return b"".join(codec.encode(p, version) for p in cycle) * (BATCH // len(cycle))


def load(flavour: str) -> Any:
    try:
        return importlib.import_module(FLAVOURS[flavour])
    except ImportError as exc:  # a benchmark of a missing build is meaningless
        pytest.fail(
            f"{flavour} twin not importable ({exc}); "
            "build with python3 setup.py build_ext --inplace"
        )


def mqtt5_packet() -> Any:
    import mqtt5

    return mqtt5.PublishPacket(
        TOPIC,
        PAYLOAD,
        qos=mqtt5.QoS.AT_LEAST_ONCE,
        packet_id=4242,
        message_expiry_interval=60,
        content_type="application/octet-stream",
        user_properties=[("trace", "abc123")],
    )


def mqtt5_decode_all(data: bytes) -> list[Any]:
    import mqtt5

    view = memoryview(data)
    out, pos, n = [], 0, len(data)
    read = mqtt5.read
    while pos < n:
        packet, used = read(view[pos:])
        out.append(packet)
        pos += used
    return out


# ---------------------------------------------------------------- the operations
# Each returns a zero-argument callable doing BATCH packets.


def op_decode_publish(impl: str, version: int) -> Callable[[], Any]:
    if impl == "mqtt5":
        data = mqtt5_packet().write() * BATCH
        return lambda: mqtt5_decode_all(data)
    codec = load(impl)
    data = codec.encode(publish(version), version) * BATCH
    Decoder = codec.Decoder
    return lambda: Decoder(version).feed(data)


def op_decode_publish_read_all(impl: str, version: int) -> Callable[[], Any]:
    """Decode, then read every field the packet carries, properties included. The Cython
    twin builds MQTT 5 properties on first read (issue 17), ``mqtt5`` builds its Python
    values in its getters: this cell charges both for that work, which a broker that
    inspects each PUBLISH's properties pays."""
    if impl == "mqtt5":
        data = mqtt5_packet().write() * BATCH

        def run5() -> int:
            n = 0
            for p in mqtt5_decode_all(data):
                fields = (p.topic, p.payload, p.qos, p.retain, p.duplicate, p.packet_id)
                n += (
                    len(fields)
                    + len(p.user_properties)
                    + p.message_expiry_interval
                    + len(p.content_type)
                )
            return n

        return run5
    codec = load(impl)
    data = codec.encode(publish(version), version) * BATCH
    Decoder = codec.Decoder

    def run() -> int:
        n = 0
        for p in Decoder(version).feed(data):
            fields = (p.topic, p.payload, p.qos, p.retain, p.dup, p.packet_id)
            n += len(fields)
            props = p.properties
            if props is not None:
                n += len(props.user_property) + props.message_expiry_interval
                n += len(props.content_type)
        return n

    return run


def op_decode_publish_many_topics(impl: str, version: int) -> Callable[[], Any]:
    """As "decode 64-byte PUBLISH", but each packet of the batch has its own topic
    (``bench/topic/0000`` to ``0999``): more distinct strings than the Cython twin's string
    cache holds, so it misses on every topic (the worst case for that cache)."""
    topics = [f"bench/topic/{i:04d}" for i in range(BATCH)]
    if impl == "mqtt5":
        import mqtt5

        data = b"".join(
            mqtt5.PublishPacket(
                t,
                PAYLOAD,
                qos=mqtt5.QoS.AT_LEAST_ONCE,
                packet_id=4242,
                message_expiry_interval=60,
                content_type="application/octet-stream",
                user_properties=[("trace", "abc123")],
            ).write()
            for t in topics
        )
        return lambda: mqtt5_decode_all(data)
    codec = load(impl)
    props = PROPS if version == 5 else None
    data = b"".join(
        codec.encode(Publish(t, PAYLOAD, 1, False, False, 4242, props), version) for t in topics
    )
    Decoder = codec.Decoder
    return lambda: Decoder(version).feed(data)


def op_encode_publish(impl: str, version: int) -> Callable[[], Any]:
    if impl == "mqtt5":
        packet5 = mqtt5_packet()
        write = packet5.write
        return lambda: [write() for _ in range(BATCH)]
    codec = load(impl)
    packet = publish(version)
    encode = codec.encode
    return lambda: [encode(packet, version) for _ in range(BATCH)]


def op_encode_publish_fanout(impl: str, version: int) -> Callable[[], Any]:
    """The broker's fan-out path: one publish_parts per message; each subscriber then
    gets ``[head, packet_id, tail]`` written with writelines (no codec work per subscriber)."""
    codec = load(impl)
    props = PROPS if version == 5 else None
    parts = codec.publish_parts
    return lambda: [parts(TOPIC, PAYLOAD, 1, False, False, props, version) for _ in range(BATCH)]


def op_frame_mixed_stream(impl: str, version: int) -> Callable[[], Any]:
    """Socket-sized reads (64 KiB) of a mixed stream through one server decoder."""
    codec = load(impl)
    connect = codec.encode(Connect("bench", version), version)
    data = mixed_stream(codec, version)
    chunks = [data[i : i + 65536] for i in range(0, len(data), 65536)]

    def run() -> int:
        dec = codec.Decoder()
        count = len(dec.feed(connect))
        for chunk in chunks:
            count += len(dec.feed(chunk))
        return count

    return run


OPERATIONS = {
    "decode 64-byte PUBLISH": op_decode_publish,
    "decode 64-byte PUBLISH, read all": op_decode_publish_read_all,
    "decode 64-byte PUBLISH, 1,000 topics": op_decode_publish_many_topics,
    "encode 64-byte PUBLISH": op_encode_publish,
    "publish_parts (fan-out encode)": op_encode_publish_fanout,
    "frame mixed stream": op_frame_mixed_stream,
}
CELLS = [
    (op, version, impl)
    for op in OPERATIONS
    for version in (4, 5)
    for impl in ("cython", "python", "mqtt5")
    if impl != "mqtt5"
    or (version == 5 and op.startswith(("decode 64-byte PUBLISH", "encode 64-byte PUBLISH")))
]


@pytest.mark.benchmark
@pytest.mark.parametrize(
    "op,version,impl", CELLS, ids=[f"{o}-v{v}-{i}".replace(" ", "_") for o, v, i in CELLS]
)
def test_codec(benchmark: Any, op: str, version: int, impl: str) -> None:
    fn = OPERATIONS[op](impl, version)
    fn()  # warm up, and prove it works before timing it
    benchmark.group = f"{op} MQTT {'5.0' if version == 5 else '3.1.1'} x{BATCH}"
    benchmark.extra_info["impl"] = impl
    benchmark(fn)


def test_decoders_agree_on_the_benchmark_input() -> None:
    """The benchmark compares like with like: all three decode the same packet."""
    for impl in ("cython", "python"):
        codec = load(impl)
        (pkt,) = codec.Decoder(5).feed(codec.encode(publish(5), 5))
        assert pkt == publish(5)
    (pkt5,) = mqtt5_decode_all(mqtt5_packet().write())
    assert (pkt5.topic, pkt5.payload, pkt5.packet_id) == (TOPIC, PAYLOAD, 4242)
    ours = load("python").encode(publish(5), 5)
    assert len(mqtt5_packet().write()) == len(ours)


# ---------------------------------------------------------------- script mode


def medians_ns_per_packet(fns: dict[str, Callable[[], Any]], rounds: int) -> dict[str, float]:
    """Median ns per packet of each implementation's callable over ``rounds`` rounds. The
    implementations take turns round by round (in a rotating order), so a burst of load
    from elsewhere on the machine falls on all of them alike, not on whichever ran then."""
    for fn in fns.values():
        fn()  # warm up
    names = list(fns)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start = time.perf_counter()
            fns[name]()
            samples[name].append((time.perf_counter() - start) / BATCH * 1e9)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    print(
        f"median ns per packet: each run takes the median of {rounds} rounds of {BATCH} "
        "packets (Cython and mqtt5 take turns round by round); the table shows "
        f"the median of {runs} runs, the ratios are the medians of the runs' ratios"
    )
    rows = [(op, v) for op in OPERATIONS for v in (4, 5)]
    samples: dict[tuple[str, int], list[dict[str, float]]] = {row: [] for row in rows}
    for _ in range(runs):
        for op, version in rows:
            fns = {
                impl: OPERATIONS[op](impl, version)
                for o, v, impl in CELLS
                if o == op and v == version
            }
            # The pure twin takes its turns alone: ~40x slower, its rounds would sweep the
            # CPU caches between the two compiled implementations' rounds.
            result = medians_ns_per_packet({"python": fns.pop("python")}, rounds)
            result.update(medians_ns_per_packet(fns, rounds))
            samples[(op, version)].append(result)
    print(
        f"{'operation':36} {'MQTT':5} {'cython':>8} {'python':>8} {'mqtt5':>8} "
        f"{'py/cy':>6} {'mqtt5/cy':>8}"
    )
    for op, version in rows:
        runs_ = samples[(op, version)]
        cy = statistics.median(r["cython"] for r in runs_)
        py = statistics.median(r["python"] for r in runs_)
        py_ratio = statistics.median(r["python"] / r["cython"] for r in runs_)
        m5_abs = m5_ratio = "       -"
        if "mqtt5" in runs_[0]:
            m5_abs = f"{statistics.median(r['mqtt5'] for r in runs_):8.0f}"
            m5_ratio = f"{statistics.median(r['mqtt5'] / r['cython'] for r in runs_):8.2f}"
        label = "5.0" if version == 5 else "3.1.1"
        print(f"{op:36} {label:5} {cy:8.0f} {py:8.0f} {m5_abs} {py_ratio:6.1f} {m5_ratio}")


if __name__ == "__main__":
    main()
