#!/usr/bin/env python3
"""What the plug-in mechanism costs per message: no plug-ins vs a no-op plug-in.

    python3 benchmarks/bench_plugins.py [--messages 200000] [--subscribers 4] [--runs 5]

In-process and socket-free, so only the broker's own work is timed: one publisher
connection of the core feeds decoded QoS 0 PUBLISH packets (batches of 100, as
the transport does) to ``--subscribers`` subscribers whose sinks discard the bytes.
Cases:

* ``none``        no plug-ins: the core's plain ``Hooks`` (``events`` False);
* ``on_publish``  one plug-in whose synchronous ``on_publish`` returns None;
* ``on_deliver``  one plug-in whose ``on_deliver`` returns True (called per subscriber);
* ``empty``       a plug-in with no message hook (only ``on_connect``): costs
                  as much as ``none`` per message.

Prints messages/s (best of ``--runs``) and each case relative to ``none``.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from mqttfast.codec.packets import Connect, Publish, Subscribe, Subscription
from mqttfast.core.broker import BrokerCore
from mqttfast.core.settings import BrokerSettings
from mqttfast.plugins import Plugin, PluginHooks


class NullSink:
    def write(self, data: bytes) -> None: ...
    def writelines(self, parts: Any) -> None: ...
    def close(self) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def get_write_buffer_size(self) -> int:
        return 0


class NoopPublish(Plugin):
    def on_publish(self, client, message):  # type: ignore[no-untyped-def]
        return None


class NoopDeliver(Plugin):
    def on_deliver(self, client, message):  # type: ignore[no-untyped-def]
        return True


class OnlyConnect(Plugin):
    def on_connect(self, client):  # type: ignore[no-untyped-def]
        return None


CASES: dict[str, Any] = {
    "none": None,
    "on_publish": NoopPublish,
    "on_deliver": NoopDeliver,
    "empty": OnlyConnect,
}


def build(case: str, subscribers: int) -> Any:
    broker = BrokerCore(BrokerSettings(sys_interval=0, persistence="off"))
    plugin = CASES[case]
    if plugin is not None:
        PluginHooks(broker.hooks, [plugin()]).install(broker)
    for i in range(subscribers):
        conn = broker.connection_made(NullSink(), f"sub{i}")
        conn.packets_received(
            [Connect(f"sub{i}", 4, True, 0), Subscribe(1, [Subscription("bench/#", 0)])]
        )
    pub = broker.connection_made(NullSink(), "pub")
    pub.packets_received([Connect("pub", 4, True, 0)])
    return pub


def run_case(case: str, messages: int, subscribers: int) -> float:
    pub = build(case, subscribers)
    batch = [Publish("bench/topic", b"x" * 64, 0) for _ in range(100)]
    rounds = messages // len(batch)
    t0 = time.perf_counter()
    for _ in range(rounds):
        pub.packets_received(batch)
    return rounds * len(batch) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--subscribers", type=int, default=4)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    best: dict[str, float] = {c: 0.0 for c in CASES}
    for _ in range(args.runs):  # interleaved, so drift hits every case alike
        for case in CASES:
            best[case] = max(best[case], run_case(case, args.messages, args.subscribers))
    base = best["none"]
    if args.json:
        print(
            json.dumps(
                {c: {"msg_per_s": round(v), "vs_none": round(v / base, 3)} for c, v in best.items()}
            )
        )
        return
    from mqttfast.codec import IMPLEMENTATION

    print(
        f"codec {IMPLEMENTATION}; {args.subscribers} subscribers, QoS 0, 64-byte payload, "
        f"best of {args.runs}"
    )
    for case, value in best.items():
        print(f"  {case:<11} {value:>12,.0f} msg/s   {value / base:6.3f} x none")


if __name__ == "__main__":
    main()
