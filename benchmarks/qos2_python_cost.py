"""The Python cost of one QoS 2 exchange inside mqttfast, in process (issue 17).

    python3 benchmarks/qos2_python_cost.py [--count 20000] [--profile]

A default BrokerCore behind real MQTTProtocol objects with stub transports (no sockets),
4 publisher/subscriber pairs at QoS 2: PUBLISH, PUBREC, PUBREL, PUBCOMP from the
publisher and to the subscriber, one packet per data_received call. Prints the time per
exchange (lowest and median of 10 batches; includes this script's own encoding and
decoding of the client side), or with ``--profile`` the cProfile calls per exchange and
the most called functions. End-to-end QoS 2 pairs move by +-10% from run to run on a
shared machine; compare trees with this (PYTHONPATH=TREE for each, alternating).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import time
from typing import Any

import uvloop
from latency_python_cost import StubTransport, bench_pairs

from mqttfast.codec import Decoder, encode
from mqttfast.codec.packets import (
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
)


class Recording(StubTransport):
    """A stub transport that keeps what the broker wrote (the subscriber's side)."""

    def __init__(self) -> None:
        super().__init__()
        self.data: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.data.append(bytes(data))

    def writelines(self, parts: Any) -> None:
        self.writes += 1
        self.data.append(b"".join(parts))


async def measure(count: int, profile: bool) -> None:
    _broker, flusher, pubs, subs = bench_pairs(2, Recording)
    await asyncio.sleep(0.01)
    decoders = [Decoder(4, 1 << 20) for _ in range(4)]
    for s in subs:
        s.sink.transport.data.clear()  # type: ignore[union-attr]

    def exchange(k: int) -> None:
        i = k & 3
        pid = (k >> 2) % 65000 + 1
        pub, sub = pubs[i], subs[i]
        pub.data_received(encode(Publish(f"bench/pair/{i}", bytes(64), 2, packet_id=pid), 4))
        flusher.end_read(True)
        pub.data_received(encode(Pubrel(pid), 4))
        flusher.end_read(True)
        out: list[bytes] = sub.sink.transport.data  # type: ignore[union-attr]
        pkts: list[Any] = []
        for chunk in out:
            pkts += decoders[i].feed(chunk)
        out.clear()
        for p in pkts:
            if isinstance(p, Publish):
                sub.data_received(encode(Pubrec(p.packet_id), 4))
                flusher.end_read(True)
                sub.data_received(encode(Pubcomp(p.packet_id), 4))
                flusher.end_read(True)
        sub.sink.transport.data.clear()  # type: ignore[union-attr]
        pub.sink.transport.data.clear()  # type: ignore[union-attr]

    for k in range(2000):  # warm up
        exchange(k)
    gc.disable()
    if profile:
        prof = cProfile.Profile()
        prof.enable()
        for k in range(count):
            exchange(k)
        prof.disable()
        stats = pstats.Stats(prof)
        print(f"calls per exchange: {stats.total_calls / count:.1f}")  # type: ignore[attr-defined]
        stats.sort_stats("ncalls").print_stats(25)
    else:
        per_batch = max(1, count // 10)
        times = []
        for _ in range(10):
            t0 = time.perf_counter_ns()
            for k in range(per_batch):
                exchange(k)
            times.append((time.perf_counter_ns() - t0) / per_batch / 1000)
        times.sort()
        print(f"us per QoS 2 exchange: lowest {times[0]:.2f}, median {times[5]:.2f}")
    gc.enable()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--count", type=int, default=20000)
    p.add_argument("--profile", action="store_true")
    a = p.parse_args()
    uvloop.run(measure(a.count, a.profile))


if __name__ == "__main__":
    main()
