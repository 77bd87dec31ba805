"""Many concurrent idle connections on one broker process (issue 9, Scale).

N clients (default 2,000 to keep the suite fast; ``MQTTFAST_SCALE_CONNS=20000`` for the
issue's figure) connect with a short keep alive and keep the connections alive with
PINGREQ for two keep-alive periods (a client that stopped would be dropped after 1.5 x
[MQTT-3.1.2-24]); the broker's memory per connection is printed (``-s`` to see it);
then all of them subscribe and each receives one broadcast message.

The client side is one asyncio event loop of small Protocols, so 20,000 connections
cost the test a few hundred MB at most. The open-file limit is raised in the test
process and, through ``preexec_fn``, in the broker subprocess.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import resource
import subprocess
import threading
import time
from typing import Any

import pytest

from mqttfast.codec import Decoder, encode
from mqttfast.codec.packets import (
    Connack,
    Connect,
    Pingreq,
    Pingresp,
    Publish,
    Suback,
    Subscribe,
    Subscription,
)
from tests.helpers.broker import BrokerProcess, mosquitto_mode

from .support import raise_nofile, rss_kib

N = int(os.environ.get("MQTTFAST_SCALE_CONNS", "2000"))
KEEP_ALIVE = 2 if N <= 5000 else 10  # seconds
NOFILE = N + 1024  # the broker's; capped by the hard limit (20,000 in some containers)

pytestmark = [
    pytest.mark.timeout(60 + N // 100),
    pytest.mark.skipif(mosquitto_mode(), reason="measures the mqttfast process"),
]


def _raise_child_nofile() -> None:  # runs in the broker child before exec
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = NOFILE if hard == resource.RLIM_INFINITY else max(soft, min(NOFILE, hard))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


class ScaleBroker(BrokerProcess):
    """BrokerProcess whose child gets a raised RLIMIT_NOFILE."""

    def _spawn(self) -> None:
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._environment(),
                cwd=self._tmpdir.name,
                preexec_fn=_raise_child_nofile,
            )
        finally:
            log.close()


class IdleClient(asyncio.Protocol):
    __slots__ = ("decoder", "transport", "connack", "suback", "pings", "received", "lost")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.decoder = Decoder(4)
        self.transport: Any = None
        self.connack: asyncio.Future = loop.create_future()
        self.suback: asyncio.Future = loop.create_future()
        self.pings = 0
        self.received: list[bytes] = []
        self.lost = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        for p in self.decoder.feed(data):
            if isinstance(p, Connack) and not self.connack.done():
                self.connack.set_result(p.reason_code)
            elif isinstance(p, Suback) and not self.suback.done():
                self.suback.set_result(p.reason_codes)
            elif isinstance(p, Pingresp):
                self.pings += 1
            elif isinstance(p, Publish):
                self.received.append(p.payload)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        for f in (self.connack, self.suback):
            if not f.done():
                f.set_exception(ConnectionError("closed by the broker"))


PER_PROCESS = 9000  # client connections per harness process (fds stay under the hard limit)


async def _client_part(port: int, first: int, count: int, barrier: Any, results: Any) -> None:
    """One harness process: ``count`` clients through the phases, in step with the
    others and the test process through ``barrier``."""
    loop = asyncio.get_running_loop()

    async def sync() -> None:
        await loop.run_in_executor(None, barrier.wait, 120)

    clients: list[IdleClient] = []
    gate = asyncio.Semaphore(100)  # connects in progress (the broker's backlog is 1024)
    ping = encode(Pingreq(), 4)

    async def open_one(i: int) -> None:
        async with gate:
            _, proto = await loop.create_connection(lambda: IdleClient(loop), "127.0.0.1", port)
            proto.transport.write(encode(Connect(f"idle-{i}", 4, True, KEEP_ALIVE), 4))
            assert await asyncio.wait_for(proto.connack, 60) == 0
            clients.append(proto)

    await asyncio.gather(*(open_one(i) for i in range(first, first + count)))
    await sync()  # 1: all connected
    # Keep alive for two periods, pinging at half the period.
    end = time.monotonic() + 2 * KEEP_ALIVE
    while time.monotonic() < end:
        for c in clients:
            c.transport.write(ping)
        await asyncio.sleep(KEEP_ALIVE / 2)
    await asyncio.sleep(0.5)
    lost = sum(c.lost for c in clients)
    unanswered = sum(c.pings == 0 for c in clients)
    await sync()  # 2: idle phase over (the test measures RSS)
    for c in clients:
        c.transport.write(encode(Subscribe(1, [Subscription("bcast/all", 0)]), 4))
    codes = await asyncio.wait_for(
        asyncio.gather(*(c.suback for c in clients), return_exceptions=True), 60 + count / 500
    )
    bad_subacks = sum(rc != [0] for rc in codes)
    await sync()  # 3: all subscribed (the test measures RSS and publishes)
    deadline = time.monotonic() + 30 + count / 1000
    while sum(1 for c in clients if c.received) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    missing = sum(1 for c in clients if c.received != [b"to everyone"])
    results.put(
        {"lost": lost, "unanswered": unanswered, "bad_subacks": bad_subacks, "missing": missing}
    )
    for c in clients:
        c.transport.close()
    await asyncio.sleep(0.1)


def _client_process(port: int, first: int, count: int, barrier: Any, results: Any) -> None:
    raise_nofile(count + 200)
    try:
        asyncio.run(_client_part(port, first, count, barrier, results))
    except BaseException as exc:
        barrier.abort()
        results.put({"error": repr(exc)})


def _publish_broadcast(port: int) -> None:
    from tests.helpers.rawclient import RawClient

    with RawClient(port) as c:
        c.connect("broadcaster")
        c.publish("bcast/all", b"to everyone", qos=0)
        c.ping(10)
        c.disconnect()


def test_many_idle_connections_keep_alive_and_broadcast() -> None:
    """N concurrent idle connections keep alive; memory per connection is reported;
    then all subscribe and every one receives one broadcast QoS 0 message."""
    ctx = multiprocessing.get_context("fork")
    parts = [(first, min(PER_PROCESS, N - first)) for first in range(0, N, PER_PROCESS)]
    barrier = ctx.Barrier(len(parts) + 1)
    results = ctx.Queue()
    with ScaleBroker(["--persistence", "off", "--sys-interval", "0"]) as broker:
        limits = open(f"/proc/{broker.pid}/limits").read()
        nofile = int(
            next(line for line in limits.splitlines() if line.startswith("Max open files")).split()[
                3
            ]
        )
        assert nofile >= N + 20, (
            f"the broker's open-file limit is {nofile}: the hard limit "
            f"here does not allow {N} connections"
        )
        base = rss_kib(broker.pid)
        procs = [
            ctx.Process(
                target=_client_process,
                args=(broker.port, first, count, barrier, results),
                daemon=True,
            )
            for first, count in parts
        ]
        t0 = time.monotonic()
        for p in procs:
            p.start()
        try:
            barrier.wait(120 + N / 100)  # 1
            connect_s = time.monotonic() - t0
            barrier.wait(60)  # 2
            idle = rss_kib(broker.pid)
            barrier.wait(120 + N / 200)  # 3
            subscribed = rss_kib(broker.pid)
            t1 = time.monotonic()
            _publish_broadcast(broker.port)
            got = [results.get(timeout=60 + N / 500) for _ in procs]
            fanout_s = time.monotonic() - t1
        except threading.BrokenBarrierError:
            got = [results.get(timeout=5) for _ in procs if not results.empty()]
            raise AssertionError(f"a client process failed: {got}") from None
        finally:
            for p in procs:
                p.join(10)
                if p.is_alive():
                    p.kill()
        assert broker.running()
    for r in got:
        assert "error" not in r, r
    totals = {k: sum(r[k] for r in got) for k in ("lost", "unanswered", "bad_subacks", "missing")}
    assert totals == {"lost": 0, "unanswered": 0, "bad_subacks": 0, "missing": 0}, totals
    per_conn = (idle - base) * 1024 / N
    per_sub = (subscribed - base) * 1024 / N
    print(
        f"\nscale: {N} idle connections (keep alive {KEEP_ALIVE} s, {len(parts)} client "
        f"processes) connected in {connect_s:.1f} s; broker RSS {base / 1024:.1f} -> "
        f"{idle / 1024:.1f} MiB = {per_conn / 1024:.1f} KiB per idle connection, "
        f"{per_sub / 1024:.1f} KiB with one subscription each; broadcast to all in "
        f"{fanout_s:.1f} s"
    )
    # A generous bound that still catches a per-connection leak of real buffers.
    assert per_conn < 64 * 1024, f"{per_conn / 1024:.1f} KiB per idle connection"
