"""Microbenchmarks of the codec primitives and the subscription trie, Cython
twin beside the pure-Python twin (pytest-benchmark groups them per operation).

Run:
    python3 setup.py build_ext --inplace -q
    python3 -m pytest benchmarks/bench_primitives.py -q -p no:cacheprovider \
        --benchmark-columns=min,median,ops --benchmark-sort=name

Each benchmarked call does a batch of 100 operations so the per-call overhead
of the harness does not hide the difference; divide by 100 for one operation.
"""

from __future__ import annotations

import importlib
import random

import pytest

FLAVOURS = {
    "cython": ("mqttfast.codec._primitives", "mqttfast.codec._matcher"),
    "python": ("mqttfast.codec._primitives_py", "mqttfast.codec._matcher_py"),
}
BATCH = 100


@pytest.fixture(params=list(FLAVOURS), scope="module")
def flavour(request):
    prim_name, match_name = FLAVOURS[request.param]
    try:
        prim = importlib.import_module(prim_name)
        matcher = importlib.import_module(match_name)
    except ImportError as exc:  # a benchmark of a missing build is meaningless
        pytest.fail(
            f"{request.param} twin not importable ({exc}); build with setup.py build_ext --inplace"
        )
    return request.param, prim, matcher


def _run(benchmark, group, flavour_name, fn):
    benchmark.group = group
    benchmark.extra_info["flavour"] = flavour_name
    benchmark(fn)


def test_varint_decode_4_bytes(benchmark, flavour):
    name, prim, _ = flavour
    decode = prim.decode_varint
    buf = b"\x30" + prim.encode_varint(268_435_455) + b"payload"

    def run():
        for _ in range(BATCH):
            decode(buf, 1)

    _run(benchmark, "varint decode (4-byte value) x100", name, run)


def test_varint_decode_1_byte(benchmark, flavour):
    name, prim, _ = flavour
    decode = prim.decode_varint
    buf = b"\x30\x40" + b"x" * 64

    def run():
        for _ in range(BATCH):
            decode(buf, 1)

    _run(benchmark, "varint decode (1-byte value) x100", name, run)


def test_varint_encode(benchmark, flavour):
    name, prim, _ = flavour
    encode = prim.encode_varint
    values = [64, 300, 20_000, 3_000_000] * (BATCH // 4)

    def run():
        for v in values:
            encode(v)

    _run(benchmark, "varint encode (mixed sizes) x100", name, run)


def test_utf8_decode_ascii_topic(benchmark, flavour):
    name, prim, _ = flavour
    decode = prim.decode_utf8
    data = memoryview(b"\x00\x1csensors/building-7/floor-3/temp"[2:])

    def run():
        for _ in range(BATCH):
            decode(data)

    _run(benchmark, "utf8 decode 28-byte ASCII x100", name, run)


def test_utf8_decode_multilingual(benchmark, flavour):
    name, prim, _ = flavour
    decode = prim.decode_utf8
    data = "capteurs/bâtiment/étage/温度/\U0002a6d4".encode()

    def run():
        for _ in range(BATCH):
            decode(data)

    _run(benchmark, "utf8 decode non-ASCII x100", name, run)


def test_validate_topic_filter(benchmark, flavour):
    name, prim, _ = flavour
    validate = prim.validate_topic_filter
    filt = "sensors/+/floor-3/+/temperature/#"

    def run():
        for _ in range(BATCH):
            validate(filt)

    _run(benchmark, "validate_topic_filter x100", name, run)


def test_validate_topic_name(benchmark, flavour):
    name, prim, _ = flavour
    validate = prim.validate_topic_name
    topic = "sensors/building-7/floor-3/room-12/temperature"

    def run():
        for _ in range(BATCH):
            validate(topic)

    _run(benchmark, "validate_topic_name x100", name, run)


def test_topic_matches_wildcards(benchmark, flavour):
    name, prim, _ = flavour
    matches = prim.topic_matches
    pairs = [
        ("sensors/+/floor-3/+/temperature", "sensors/building-7/floor-3/room-12/temperature"),
        ("sensors/#", "sensors/building-7/floor-3/room-12/temperature"),
        ("+/+/x", "a/b/y"),
        ("#", "$SYS/broker/uptime"),
    ] * (BATCH // 4)

    def run():
        for f, t in pairs:
            matches(f, t)

    _run(benchmark, "topic_matches x100", name, run)


def _mixed_filters(n: int, rng: random.Random) -> list[str]:
    """n distinct filters: ~70% exact, ~20% with '+', ~10% ending in '#',
    over a realistic vocabulary (site/device/measurement)."""
    words = (
        [f"site{i}" for i in range(10)],
        [f"dev{i}" for i in range(60)],
        ["temp", "hum", "co2", "state", "cmd", "cfg"],
    )
    out: set[str] = set()
    while len(out) < n:
        lv = [rng.choice(words[0]), rng.choice(words[1]), rng.choice(words[2])]
        lv += [f"ch{rng.randrange(8)}"] * rng.randrange(2)
        r = rng.random()
        if r < 0.2:
            lv[rng.randrange(len(lv))] = "+"
        elif r < 0.3:
            lv = lv[: rng.randrange(1, len(lv) + 1)] + ["#"]
        out.add("/".join(lv))
    return sorted(out)


@pytest.fixture(scope="module")
def workload():
    rng = random.Random(20240601)
    filters = _mixed_filters(10_000, rng)
    topics = [
        f"site{rng.randrange(10)}/dev{rng.randrange(60)}/{rng.choice(['temp', 'hum', 'co2', 'state'])}"
        + (f"/ch{rng.randrange(8)}" if rng.random() < 0.5 else "")
        for _ in range(BATCH)
    ]
    return filters, topics


def test_topic_tree_match_10k_filters(benchmark, flavour, workload):
    name, _, matcher = flavour
    filters, topics = workload
    tree = matcher.TopicTree()
    for i, f in enumerate(filters):
        tree.insert(f, f"client-{i % 1000}", i % 3)
    match = tree.match
    assert sum(len(match(t)) for t in topics) > 0  # the workload really matches something

    def run():
        for t in topics:
            match(t)

    _run(benchmark, "TopicTree.match, 10k mixed filters x100", name, run)


def test_topic_tree_insert_remove(benchmark, flavour, workload):
    name, _, matcher = flavour
    filters, _ = workload
    tree = matcher.TopicTree()
    for i, f in enumerate(filters):
        tree.insert(f, f"client-{i % 1000}", 1)
    batch = filters[:BATCH]

    def run():
        for f in batch:
            tree.insert(f, "churn", 1)
        for f in batch:
            tree.remove(f, "churn")

    _run(benchmark, "TopicTree insert+remove x100", name, run)
