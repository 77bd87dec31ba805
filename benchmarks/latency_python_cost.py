"""The Python cost of one lone QoS 0 PUBLISH inside mqttfast, in process (issue 17).

    python3 benchmarks/latency_python_cost.py [--mode warm|cold] [--stage all|feed|core|route]
                                              [--count 20000]

End-to-end latency on a shared 2-core machine moves by tens of microseconds from run to
run; a change of a microsecond or two in the broker's own work does not show there. This
measures that work alone: a default BrokerCore behind real MQTTProtocol objects on uvloop
with stub transports (no sockets, no syscalls), 4 publisher/subscriber pairs as in the
latency cell (``bench/pair/<i>``, 64-byte payloads), one PUBLISH per data_received call:

  all    MQTTProtocol.data_received, through to the subscriber's transport.write
  feed   Decoder.feed alone
  core   Connection.packets_received (handler, routing, encoding, the sink write)
  route  LocalRouter.publish of a ready Message

``--mode cold`` overwrites 2 MiB and sorts a few thousand strings between messages, as
the load generator and the kernel do between two messages at 2,000 msg/s: the broker
then runs with cold caches, which is where its time goes at low load (~3x the warm
figure). Prints p50/p90 and the lowest mean of 1,000-message batches (the least
disturbed figure: compare trees with that, e.g. PYTHONPATH=TREE for each, alternating).
On a machine shared with other work even that moves by ~50% between runs (a warm figure
of ~3.1 or ~5.3 us for the same tree): a change of a few percent then shows only in
the number of calls per message (run it under cProfile), not in the times.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from typing import Any

import uvloop

from mqttfast.codec import encode
from mqttfast.codec.packets import Connect, Publish, Subscribe, Subscription
from mqttfast.core.broker import BrokerCore
from mqttfast.core.message import Message
from mqttfast.transport.tcp import Flusher, MQTTProtocol


class StubTransport:
    """What MQTTProtocol and BatchedSink use of a transport; writes are counted."""

    def __init__(self) -> None:
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1

    def writelines(self, parts: Any) -> None:
        self.writes += 1

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, key: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if key == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass


def connect(
    broker: BrokerCore, flusher: Flusher, client_id: str, transport: StubTransport
) -> MQTTProtocol:
    proto = MQTTProtocol(broker, flusher)
    proto.connection_made(transport)  # type: ignore[arg-type]
    proto.data_received(encode(Connect(client_id=client_id, keep_alive=60), 4))
    return proto


def bench_pairs(
    qos: int, transport: type[StubTransport] = StubTransport
) -> tuple[BrokerCore, Flusher, list[MQTTProtocol], list[MQTTProtocol]]:
    """A default BrokerCore with 4 publisher/subscriber pairs on ``bench/pair/<i>`` (as
    in the latency cell), subscribed at ``qos``, over stub transports (a running loop:
    the Flusher's)."""
    broker = BrokerCore()
    flusher = Flusher(asyncio.get_running_loop())
    pubs, subs = [], []
    for i in range(4):
        subs.append(connect(broker, flusher, f"s{i}", transport()))
        pubs.append(connect(broker, flusher, f"p{i}", transport()))
        subs[i].data_received(encode(Subscribe(1, [Subscription(f"bench/pair/{i}", qos)]), 4))
    return broker, flusher, pubs, subs


async def measure(mode: str, stage: str, count: int) -> list[int]:
    broker, flusher, pubs, subs = bench_pairs(0)
    await asyncio.sleep(0.01)
    datas = [encode(Publish(f"bench/pair/{i}", bytes(64), 0), 4) for i in range(4)]
    trash = bytearray(2 << 20)
    fills = (bytes(2 << 20), b"x" * (2 << 20))
    junk = [str(i) for i in range(50000)]
    clock = time.perf_counter_ns
    out: list[int] = []
    gc.disable()
    for k in range(count):
        i = k & 3
        if mode == "cold":
            trash[:] = fills[k & 1]
            sorted(junk[k & 7 :: 8])
        proto = pubs[i]
        conn: Any = proto.conn
        data = datas[i]
        if stage == "all":
            t0 = clock()
            proto.data_received(data)
            out.append(clock() - t0)
            continue
        pkts = proto.decoder.feed(data) if stage != "feed" else None
        flusher.reading = flusher.direct = True
        if stage == "feed":
            t0 = clock()
            pkts = proto.decoder.feed(data)
            out.append(clock() - t0)
            conn.packets_received(pkts)
        elif stage == "core":
            t0 = clock()
            conn.packets_received(pkts)
            out.append(clock() - t0)
        else:  # route
            assert pkts is not None
            msg = Message(pkts[0].topic, pkts[0].payload, 0, False, None, None, conn.client_id)
            t0 = clock()
            broker.router.publish(msg, 0.0, conn)
            out.append(clock() - t0)
        flusher.end_read(True)
    gc.enable()
    delivered = [s.sink.transport.writes for s in subs]  # type: ignore[union-attr]
    assert all(n >= count // 4 for n in delivered), f"not delivered: {delivered}"
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mode", choices=("warm", "cold"), default="cold")
    p.add_argument("--stage", choices=("all", "feed", "core", "route"), default="all")
    p.add_argument("--count", type=int, default=20000)
    a = p.parse_args()
    out = uvloop.run(measure(a.mode, a.stage, a.count))
    batches = [sum(out[b : b + 1000]) / 1000 for b in range(0, len(out) - 999, 1000)]
    out.sort()
    print(
        f"{a.stage} {a.mode}: p50 {out[len(out) // 2] / 1000:.2f} us, "
        f"p90 {out[int(len(out) * 0.9)] / 1000:.2f} us, "
        f"lowest batch mean {min(batches) / 1000:.2f} us ({len(out)} messages)"
    )


if __name__ == "__main__":
    main()
