#!/usr/bin/env python3
"""Memory and latency figures (issues 8 and 9), mqttfast (Cython), mqttfast (pure) and mosquitto
measured side by side in one run.

    python3 benchmarks/bench_memory_latency.py [--conns 5000] [--sessions 1000] [--subs-per-session 10]
        [--scaling-subs 10000] [--retained 100000] [--duration 4] [--brokers ...]

A script, not a test. Each broker in turn is started on a free loopback port (a fresh process for
every measurement, so RSS is measured from a clean start) and stopped afterwards:

1. RSS per idle connection: N connections (CONNECT, keep alive 0) held open by client processes
   (asyncio Protocols, ``mqttfast.codec``); broker VmRSS before and after, divided by N.
   ``--conns 20000`` raises RLIMIT_NOFILE as far as the hard limit allows; the N actually used
   is reported.
2. RSS per persistent session: S clients (clean session 0) subscribe K filters each at QoS 1,
   then DISCONNECT; VmRSS before and after, divided by S.
3. Subscription scaling: fan-in QoS 0 (the shared C load generator, ``fanin --pubs 4``) with the
   load generator's single ``bench/#`` subscription, then again while a few extra connections
   hold 10,000 distinct filters (mixed exact, ``+`` and ``#``, none matching ``bench/<i>`` so
   the delivery work is the same); the ratio is reported.
4. Retained: 100,000 retained messages stored, then a client subscribes to ``#``: time until it
   has them all; meanwhile a separate process keeps a QoS 1 round trip going (publish to
   itself, wait for the PUBLISH back): the max round trip during the flood vs before it.
5. Latency at load: max QoS 0 pairs throughput (``pairs --pairs 4 --qos 0``), then ``--rate``
   at 50% and 90% of it: p50/p99.

Prints one table (absolute numbers, mqttfast/mosquitto and Cython/pure ratios) and writes
``benchmarks/results/memory-latency-latest.json``. Every loop and wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import resource
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from compare_brokers import (  # noqa: E402  (read-only reuse: broker start/stop and the loadgen)
    DEFAULT_LOADGEN,
    RESULTS_DIR,
    Broker,
    available_brokers,
    compile_loadgen,
)

from mqttfast.codec import Decoder, encode  # noqa: E402
from mqttfast.codec.packets import (  # noqa: E402
    Connack,
    Connect,
    Disconnect,
    Pingreq,
    Pingresp,
    Puback,
    Publish,
    Suback,
    Subscribe,
    Subscription,
)

PER_PROCESS = 9000  # client connections per holder process (its fds stay under the hard limit)
CONNECT_PAR = 200  # connects in flight per holder process


# --------------------------------------------------------------------------- helpers


def raise_nofile(want: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE toward ``want`` (never above the hard limit);
    brokers started afterwards inherit it. Returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def settled_rss(pid: int, wait: float = 1.0) -> int:
    """RSS after a short settle (allocations of the last packets done)."""
    time.sleep(wait)
    return rss_kib(pid)


class Client(asyncio.Protocol):
    """A cheap MQTT 3.1.1 client: raw bytes out, ``mqttfast.codec`` in."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_packet: Any = None) -> None:
        self.decoder = Decoder(4)
        self.transport: Any = None
        self.connack = loop.create_future()
        self.suback = loop.create_future()
        self.pong = loop.create_future()
        self.on_packet = on_packet
        self.lost = loop.create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        for p in self.decoder.feed(data):
            if self.on_packet is not None:
                self.on_packet(p)
            if isinstance(p, Connack) and not self.connack.done():
                self.connack.set_result(p.reason_code)
            elif isinstance(p, Suback) and not self.suback.done():
                self.suback.set_result(p.reason_codes)
            elif isinstance(p, Pingresp) and not self.pong.done():
                self.pong.set_result(True)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(True)
        for f in (self.connack, self.suback, self.pong):
            if not f.done():
                f.set_exception(ConnectionError("closed by the broker"))
                f.exception()  # mark retrieved: an awaiter still gets it, nobody else logs it


async def connect(
    port: int, client_id: str, clean: bool = True, on_packet: Any = None, timeout: float = 30
) -> Client:
    loop = asyncio.get_running_loop()
    _, c = await asyncio.wait_for(
        loop.create_connection(lambda: Client(loop, on_packet), "127.0.0.1", port), timeout
    )
    c.transport.write(encode(Connect(client_id, 4, clean, 0), 4))
    rc = await asyncio.wait_for(c.connack, timeout)
    if rc != 0:
        raise ConnectionError(f"CONNACK {rc}")
    return c


async def ping(c: Client, timeout: float = 60) -> None:
    c.pong = asyncio.get_running_loop().create_future()
    c.transport.write(encode(Pingreq(), 4))
    await asyncio.wait_for(c.pong, timeout)


# --------------------------------------------------------------------------- 1. idle connections


def _holder(port: int, first: int, count: int, conn: Any) -> None:
    """Holder process: open ``count`` idle connections, report, hold until told, close."""
    raise_nofile(count + 256)

    async def run() -> None:
        gate = asyncio.Semaphore(CONNECT_PAR)
        clients: list[Client] = []
        failed = 0

        async def one(i: int) -> None:
            nonlocal failed
            async with gate:
                try:
                    clients.append(await connect(port, f"idle-{i}", timeout=60))
                except (TimeoutError, OSError, ConnectionError):
                    failed += 1

        await asyncio.gather(*(one(i) for i in range(first, first + count)))
        conn.send({"open": len(clients), "failed": failed})
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, conn.poll, 300)  # parent says: done measuring
        open_at_end = sum(1 for c in clients if not c.lost.done())
        for c in clients:
            c.transport.close()
        await asyncio.sleep(0.2)
        conn.send({"open_at_end": open_at_end})

    try:
        asyncio.run(run())
    except BaseException as exc:  # report, never hang the parent
        conn.send({"error": repr(exc)})


def measure_idle(broker: Broker, n: int) -> dict[str, Any]:
    pid = broker.proc.pid
    base = settled_rss(pid, 0.5)
    ctx = multiprocessing.get_context("fork")
    parts = [(first, min(PER_PROCESS, n - first)) for first in range(0, n, PER_PROCESS)]
    pipes, procs = [], []
    t0 = time.monotonic()
    for first, count in parts:
        a, b = ctx.Pipe()
        p = ctx.Process(target=_holder, args=(broker.port, first, count, b), daemon=True)
        p.start()
        pipes.append(a)
        procs.append(p)
    try:
        reports = [
            a.recv() if a.poll(120 + n / 100) else {"error": "holder timed out"} for a in pipes
        ]
        connect_s = time.monotonic() - t0
        after = settled_rss(pid, 1.5)
        for a in pipes:
            a.send("done")
        ends = [a.recv() if a.poll(60) else {"error": "holder did not finish"} for a in pipes]
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
    errors = [r["error"] for r in reports + ends if "error" in r]
    opened = sum(r.get("open", 0) for r in reports)
    still = sum(r.get("open_at_end", 0) for r in ends)
    return {
        "conns_requested": n,
        "conns_open": opened,
        "open_at_end": still,
        "failed": sum(r.get("failed", 0) for r in reports),
        "errors": errors,
        "rss_before_kib": base,
        "rss_after_kib": after,
        "connect_s": round(connect_s, 2),
        "kib_per_conn": (after - base) / opened if opened else None,
    }


# --------------------------------------------------------------------------- 2. persistent sessions


async def _sessions(port: int, sessions: int, k: int) -> dict[str, Any]:
    gate = asyncio.Semaphore(CONNECT_PAR)
    ok = 0

    async def one(i: int) -> None:
        nonlocal ok
        async with gate:
            c = await connect(port, f"sess-{i}", clean=False)
            subs = [
                Subscription(f"sess/{i}/t{j}/+" if j % 2 else f"sess/{i}/t{j}", 1) for j in range(k)
            ]
            c.transport.write(encode(Subscribe(1, subs), 4))
            codes = await asyncio.wait_for(c.suback, 30)
            c.transport.write(encode(Disconnect(), 4))
            await asyncio.wait_for(c.lost, 10)  # the broker closes after DISCONNECT
            ok += all(rc == 1 for rc in codes)

    await asyncio.gather(*(one(i) for i in range(sessions)))
    return {"sessions_ok": ok}


def measure_sessions(broker: Broker, sessions: int, k: int) -> dict[str, Any]:
    pid = broker.proc.pid
    base = settled_rss(pid, 0.5)
    t0 = time.monotonic()
    res = asyncio.run(asyncio.wait_for(_sessions(broker.port, sessions, k), 120))
    res["setup_s"] = round(time.monotonic() - t0, 2)
    after = settled_rss(pid, 1.5)
    res.update(
        {
            "sessions": sessions,
            "subs_per_session": k,
            "rss_before_kib": base,
            "rss_after_kib": after,
            "kib_per_session": (after - base) / sessions,
        }
    )
    return res


# --------------------------------------------------------------------------- 3. subscription scaling


def scaling_filters(n: int) -> list[str]:
    """``n`` distinct filters, a third each exact, ``+`` and ``#``, sharing prefixes with the
    load generator's topics (``bench/<i>``, i < 4) without matching them."""
    out = []
    for i in range(n):
        kind = i % 3
        if kind == 0:
            out.append(f"bench/{1000 + i}")  # exact sibling of bench/<i>
        elif kind == 1:
            out.append(f"bench/+/s{i}" if i % 2 else f"+/s{i}")  # single-level wildcards
        else:
            out.append(f"bench/{i}/#" if i % 2 else f"dev/{i % 97}/{i}/#")  # multi-level
    return out


async def _run_loadgen_async(args: list[str], timeout: float) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return {"ok": False, "error": f"loadgen exceeded {timeout:.0f} s"}
    line = next((ln for ln in reversed(out.decode().splitlines()) if ln.startswith("{")), "")
    try:
        res = json.loads(line)
    except json.JSONDecodeError:
        return {
            "ok": False,
            "error": f"no JSON from loadgen (exit {proc.returncode}): {err.decode()[:200]}",
        }
    res["exit_code"] = proc.returncode
    return res


def loadgen_args(loadgen: Path, broker: Broker, mode_args: list[str], duration: float) -> list[str]:
    return [
        str(loadgen),
        *mode_args,
        "--port",
        str(broker.port),
        "--duration",
        str(duration),
        "--drain",
        "10",
        "--pid",
        str(broker.proc.pid),
    ]


async def _scaling(
    loadgen: Path, broker: Broker, nsubs: int, duration: float, holders: int
) -> dict[str, Any]:
    fanin = ["fanin", "--pubs", "4", "--qos", "0", "--size", "64"]
    limit = duration + 90
    single = await _run_loadgen_async(loadgen_args(loadgen, broker, fanin, duration), limit)
    filters = scaling_filters(nsubs)
    clients = []
    granted = 0
    per = (nsubs + holders - 1) // holders
    for h in range(holders):
        c = await connect(broker.port, f"subholder-{h}")
        chunk = filters[h * per : (h + 1) * per]
        for j in range(0, len(chunk), 500):  # several SUBSCRIBE packets of 500 filters
            c.suback = asyncio.get_running_loop().create_future()
            c.transport.write(
                encode(Subscribe(1 + j // 500, [Subscription(f, 0) for f in chunk[j : j + 500]]), 4)
            )
            granted += sum(1 for rc in await asyncio.wait_for(c.suback, 60) if rc == 0)
        clients.append(c)
    rss_with = rss_kib(broker.proc.pid)
    many = await _run_loadgen_async(loadgen_args(loadgen, broker, fanin, duration), limit)
    for c in clients:
        c.transport.close()
    s, m = single.get("msgs_per_s_received"), many.get("msgs_per_s_received")
    return {
        "single": single,
        "many": many,
        "filters_granted": granted,
        "filters": nsubs,
        "rss_with_filters_kib": rss_with,
        "single_msgs_s": s,
        "many_msgs_s": m,
        "ratio": (m / s) if s and m else None,
    }


# --------------------------------------------------------------------------- 4. retained flood


def _rtt_prober(port: int, conn: Any) -> None:
    """Separate process: a QoS 1 round trip (publish to its own subscription, wait for the
    PUBLISH back and the PUBACK) in a loop until told to stop; sends [(t, rtt_s), ...]."""
    samples: list[tuple[float, float]] = []
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        dec = Decoder(4)
        pending: list[Any] = []

        def read_until(pred: Any, deadline: float) -> Any:
            while True:
                for i, p in enumerate(pending):
                    if pred(p):
                        return pending.pop(i)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("prober: no answer")
                s.settimeout(left)
                data = s.recv(65536)
                if not data:
                    raise ConnectionError("prober: closed")
                pending.extend(dec.feed(data))

        s.sendall(encode(Connect("rtt-prober", 4, True, 0), 4))
        read_until(lambda p: isinstance(p, Connack), time.monotonic() + 30)
        s.sendall(encode(Subscribe(1, [Subscription("probe/rtt", 1)]), 4))
        read_until(lambda p: isinstance(p, Suback), time.monotonic() + 30)
        conn.send("ready")
        pid = 1
        while not conn.poll(0):
            t = time.monotonic()
            s.sendall(encode(Publish("probe/rtt", b"x" * 16, 1, False, False, pid), 4))
            got_pub = got_ack = False
            while not (got_pub and got_ack):
                p = read_until(lambda p: isinstance(p, (Publish, Puback)), t + 60)
                if isinstance(p, Puback):
                    got_ack = True
                else:
                    got_pub = True
                    s.sendall(encode(Puback(p.packet_id), 4))
            samples.append((t, time.monotonic() - t))
            pid = pid % 65535 + 1
            time.sleep(0.002)  # ~ a few hundred round trips per second
        s.close()
        conn.send(samples)
    except BaseException as exc:
        conn.send({"error": repr(exc), "samples": samples})


async def _retained(broker: Broker, count: int) -> dict[str, Any]:
    pub = await connect(broker.port, "ret-publisher")
    t0 = time.monotonic()
    batch = []
    for i in range(count):
        batch.append(encode(Publish(f"ret/{i // 1000}/{i % 1000}", b"r%07d" % i, 0, True), 4))
        if len(batch) == 1000:
            pub.transport.writelines(batch)
            batch = []
            while pub.transport.get_write_buffer_size() > 1 << 20:
                await asyncio.sleep(0.005)
    pub.transport.writelines(batch)
    await ping(pub, 120)  # PINGRESP after the last PUBLISH: all stored
    store_s = time.monotonic() - t0
    pub.transport.close()
    return {"store_s": round(store_s, 2)}


async def _retained_subscribe(broker: Broker, count: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    got = 0
    done = loop.create_future()
    t_first: list[float] = []

    def on_packet(p: Any) -> None:
        nonlocal got
        if isinstance(p, Publish) and p.retain and p.topic.startswith("ret/"):
            got += 1
            if got == 1:
                t_first.append(time.monotonic())
            if got == count and not done.done():
                done.set_result(True)

    c = await connect(broker.port, "ret-wildcard", on_packet=on_packet)
    t0 = time.monotonic()
    c.transport.write(encode(Subscribe(1, [Subscription("#", 0)]), 4))
    try:
        await asyncio.wait_for(asyncio.shield(done), 60)
    except TimeoutError:
        pass
    t1 = time.monotonic()
    c.transport.close()
    return {
        "received": got,
        "receive_all_s": round(t1 - t0, 3) if got == count else None,
        "first_after_s": round(t_first[0] - t0, 3) if t_first else None,
        "window": (t0, t1),
    }


def measure_retained(broker: Broker, count: int) -> dict[str, Any]:
    res = asyncio.run(asyncio.wait_for(_retained(broker, count), 300))
    res["rss_after_store_kib"] = rss_kib(broker.proc.pid)
    ctx = multiprocessing.get_context("fork")
    a, b = ctx.Pipe()
    prober = ctx.Process(target=_rtt_prober, args=(broker.port, b), daemon=True)
    prober.start()
    try:
        if not a.poll(30) or a.recv() != "ready":
            raise RuntimeError("RTT prober did not start")
        time.sleep(1.0)  # baseline round trips
        sub = asyncio.run(asyncio.wait_for(_retained_subscribe(broker, count), 90))
        time.sleep(0.5)
        a.send("stop")
        samples = a.recv() if a.poll(90) else {"error": "prober did not answer"}
    finally:
        prober.join(10)
        if prober.is_alive():
            prober.kill()
    prober_error = None
    if isinstance(samples, dict):
        prober_error = samples["error"]
        samples = samples.get("samples", [])
    t0, t1 = sub.pop("window")
    before = [r for t, r in samples if t < t0]
    during = [r for t, r in samples if t0 <= t <= t1]
    res.update(sub)
    res.update(
        {
            "retained": count,
            "prober_error": prober_error,
            "rtt_before_p50_ms": round(statistics.median(before) * 1000, 3) if before else None,
            "rtt_during_n": len(during),
            "rtt_during_p50_ms": round(statistics.median(during) * 1000, 3) if during else None,
            "rtt_during_max_ms": round(max(during) * 1000, 3) if during else None,
        }
    )
    return res


# --------------------------------------------------------------------------- 5. latency at load


def measure_latency(loadgen: Path, broker: Broker, duration: float) -> dict[str, Any]:
    pairs = ["pairs", "--pairs", "4", "--qos", "0", "--size", "64"]
    limit = duration + 90
    mx = asyncio.run(_run_loadgen_async(loadgen_args(loadgen, broker, pairs, duration), limit))
    out: dict[str, Any] = {"max": mx, "max_msgs_s": mx.get("msgs_per_s_received")}
    if not out["max_msgs_s"]:
        return out
    for pct in (50, 90):
        rate = int(out["max_msgs_s"] * pct / 100)
        r = asyncio.run(
            _run_loadgen_async(
                loadgen_args(loadgen, broker, pairs + ["--rate", str(rate)], duration), limit
            )
        )
        out[f"at{pct}"] = r
        out[f"at{pct}_rate"] = rate
        out[f"at{pct}_p50_us"] = r.get("lat_p50_us")
        out[f"at{pct}_p99_us"] = r.get("lat_p99_us")
        out[f"at{pct}_ok"] = r.get("ok")
    return out


# --------------------------------------------------------------------------- table


def rows_for(res: dict[str, Any]) -> list[tuple[str, str, float | None, bool]]:
    """(key, label, value, higher_is_better) for the table."""
    i, s, sc, rt, la = (
        res.get(k, {}) for k in ("idle", "sessions", "scaling", "retained", "latency")
    )
    return [
        (
            "idle_kib_per_conn",
            f"RSS per idle connection, KiB ({i.get('conns_open')} conns)",
            i.get("kib_per_conn"),
            False,
        ),
        (
            "session_kib",
            f"RSS per persistent session, KiB ({s.get('sessions')} x {s.get('subs_per_session')} subs)",
            s.get("kib_per_session"),
            False,
        ),
        ("fanin_single", "fan-in QoS0, 1 subscription, msg/s", sc.get("single_msgs_s"), True),
        (
            "fanin_10k",
            f"fan-in QoS0, +{sc.get('filters')} filters, msg/s",
            sc.get("many_msgs_s"),
            True,
        ),
        ("scaling_ratio", "scaling ratio (10k filters / 1)", sc.get("ratio"), True),
        (
            "retained_all_s",
            f"'#' receives {rt.get('retained')} retained, s",
            rt.get("receive_all_s"),
            False,
        ),
        (
            "retained_rtt_before",
            "QoS1 RTT before flood p50, ms",
            rt.get("rtt_before_p50_ms"),
            False,
        ),
        ("retained_rtt_max", "QoS1 RTT max during flood, ms", rt.get("rtt_during_max_ms"), False),
        ("pairs_max", "pairs QoS0 max (4 pairs), msg/s", la.get("max_msgs_s"), True),
        ("p50_at50", "p50 at 50% of max, us", la.get("at50_p50_us"), False),
        ("p99_at50", "p99 at 50% of max, us", la.get("at50_p99_us"), False),
        ("p50_at90", "p50 at 90% of max, us", la.get("at90_p50_us"), False),
        ("p99_at90", "p99 at 90% of max, us", la.get("at90_p99_us"), False),
    ]


def fmt(v: float | None) -> str:
    if v is None:
        return "n/a"
    if abs(v) >= 10000:
        return f"{v / 1000:.1f}k"
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.2f}"


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "-"


def build_table(results: dict[str, dict[str, Any]], titles: dict[str, str]) -> str:
    keys = list(results)
    ratio_cols = [
        (k, "mosquitto", f"{'Cython' if k == 'mqttfast_cython' else 'pure'}/mosq")
        for k in keys
        if k != "mosquitto" and "mosquitto" in keys
    ]
    if "mqttfast_cython" in keys and "mqttfast_python" in keys:
        ratio_cols.append(("mqttfast_cython", "mqttfast_python", "Cython/pure"))
    head = ["measure"] + [titles[k] for k in keys] + [c[2] for c in ratio_cols]
    per = {k: {r[0]: r for r in rows_for(results[k])} for k in keys}
    first = rows_for(results[keys[0]])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, label, _, hib in first:
        if all(per[k][key][2] is None for k in keys):
            continue  # a measure not run (--measures)
        # The label carries the first broker's counts; they are the same for all unless noted.
        row = [label + ("" if hib else " (lower is better)")]
        row += [fmt(per[k][key][2]) for k in keys]
        row += [ratio(per[a][key][2], per[b][key][2]) for a, b, _ in ratio_cols]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--conns", type=int, default=5000, help="idle connections (default 5000)")
    p.add_argument("--sessions", type=int, default=1000, help="persistent sessions (default 1000)")
    p.add_argument(
        "--subs-per-session", type=int, default=10, help="subscriptions per session (default 10)"
    )
    p.add_argument(
        "--scaling-subs",
        type=int,
        default=10000,
        help="filters for the scaling cell (default 10000)",
    )
    p.add_argument(
        "--holders", type=int, default=5, help="connections holding those filters (default 5)"
    )
    p.add_argument(
        "--retained", type=int, default=100000, help="retained messages (default 100000)"
    )
    p.add_argument(
        "--duration", type=float, default=4.0, help="seconds per loadgen run (default 4)"
    )
    p.add_argument(
        "--brokers", default="", help="comma list of mqttfast_cython,mqttfast_python,mosquitto"
    )
    p.add_argument(
        "--measures",
        default="idle,sessions,scaling,retained,latency",
        help="comma list of idle,sessions,scaling,retained,latency",
    )
    p.add_argument("--loadgen", type=Path, default=DEFAULT_LOADGEN, help="path to mqtt-loadgen.c")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "memory-latency-latest.json")
    a = p.parse_args(argv)
    for name in ("conns", "sessions", "subs_per_session", "scaling_subs", "holders", "retained"):
        if getattr(a, name) < 1 or getattr(a, name) > 1_000_000:
            p.error(f"--{name.replace('_', '-')} must be in 1..1000000")
    if not 0 < a.duration <= 120:
        p.error("--duration must be in (0, 120]")
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    measures = [m for m in a.measures.split(",") if m]
    nofile = raise_nofile(a.conns + 1024)
    # The broker inherits this limit; it needs a few descriptors beyond its connections.
    n_conns = min(a.conns, nofile - 64)
    if n_conns < a.conns:
        print(
            f"note: RLIMIT_NOFILE hard limit {nofile}: using {n_conns} connections instead of {a.conns}",
            file=sys.stderr,
        )
    workdir = Path(tempfile.mkdtemp(prefix="mqttfast-memlat-"))
    load_before = os.getloadavg()
    results: dict[str, dict[str, Any]] = {}
    titles: dict[str, str] = {}
    versions: dict[str, str] = {}
    try:
        loadgen = compile_loadgen(a.loadgen.resolve(), workdir)
        wanted = [x for x in a.brokers.split(",") if x] or [
            "mqttfast_cython",
            "mqttfast_python",
            "mosquitto",
        ]
        brokers = available_brokers(workdir, wanted)
        if not brokers:
            print("error: no broker available", file=sys.stderr)
            return 1
        for b in brokers:
            titles[b.key], versions[b.key] = b.title, b.version
            res: dict[str, Any] = {}
            steps = {
                "idle": lambda b=b: measure_idle(b, n_conns),
                "sessions": lambda b=b: measure_sessions(b, a.sessions, a.subs_per_session),
                "scaling": lambda b=b: asyncio.run(
                    asyncio.wait_for(
                        _scaling(loadgen, b, a.scaling_subs, a.duration, a.holders),
                        2 * a.duration + 300,
                    )
                ),
                "retained": lambda b=b: measure_retained(b, a.retained),
                "latency": lambda b=b: measure_latency(loadgen, b, a.duration),
            }
            for m in measures:
                b.start()  # a fresh broker per measure: RSS from a clean start, no leftovers
                print(
                    f"== {b.title}: {m} (127.0.0.1:{b.port}, pid {b.proc.pid})",
                    file=sys.stderr,
                    flush=True,
                )
                try:
                    res[m] = steps[m]()
                except Exception as exc:  # one failed measure must not lose the others
                    res[m] = {"error": repr(exc)}
                    print(f"   failed: {exc!r}\n{b.log_tail()}", file=sys.stderr)
                finally:
                    if not b.alive():
                        res[m]["broker_died"] = True
                        print(f"   broker died; log tail:\n{b.log_tail()}", file=sys.stderr)
                    b.stop()
                brief = {k: v for k, v in res[m].items() if not isinstance(v, (dict, list))}
                print(f"   {json.dumps(brief)}", file=sys.stderr, flush=True)
            results[b.key] = res
    finally:
        for b in locals().get("brokers", []) or []:
            b.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    load_after = os.getloadavg()
    table = build_table(results, titles)
    cmd = "python3 benchmarks/bench_memory_latency.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    try:
        cpu = next(
            ln.split(":", 1)[1].strip()
            for ln in open("/proc/cpuinfo")
            if ln.startswith("model name")
        )
    except (OSError, StopIteration):
        cpu = platform.machine()
    machine = f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"
    header = (
        f"{stamp}; `{cmd.strip()}`; {machine}; load average {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after; RLIMIT_NOFILE {nofile}.\nVersions: "
        + "; ".join(f"{titles[k]} {versions[k]}" for k in results)
    )
    print()
    print(header)
    print()
    print(table)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(
        json.dumps(
            {
                "when": stamp,
                "command": cmd.strip(),
                "machine": machine,
                "loadavg_before": load_before,
                "loadavg_after": load_after,
                "rlimit_nofile": nofile,
                "conns_used": n_conns,
                "versions": versions,
                "table": table,
                "results": results,
            },
            indent=1,
            default=str,
        )
        + "\n"
    )
    print(f"\nresults: {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
