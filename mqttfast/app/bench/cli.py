"""``mqttfast bench SCENARIO [options]``: flags, process orchestration, progress and table."""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from mqttfast.app.cli import OneLineParser

from . import hist, procstat
from .worker import STAMP_SIZE, worker_main

SCENARIOS = ("fanin", "fanout", "pairs", "shared", "connections")


def parse_target(text: str, default_port: int) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT`` or ``[V6]:PORT`` -> (host, port); ValueError with the reason."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise ValueError(f"--host {text!r}: missing ']'")
        port_txt = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise ValueError(f"--host {text!r}: expected [ADDRESS]:PORT")
    elif text.count(":") == 1:
        host, _, port_txt = text.partition(":")
    else:  # a bare name, IPv4 address or unbracketed IPv6 address
        host, port_txt = text, ""
    if not host:
        raise ValueError(f"--host {text!r}: empty host")
    if not port_txt:
        return host, default_port
    if not port_txt.isdigit() or not 0 < int(port_txt) < 65536:
        raise ValueError(f"--host {text!r}: the port must be in 1..65535")
    return host, int(port_txt)


def build_parser() -> OneLineParser:
    p = OneLineParser(
        prog="mqttfast bench",
        description=(
            "MQTT 3.1.1 load generator: fan-in, fan-out, pairs, shared subscription, connections."
        ),
    )
    p.add_argument("scenario", choices=SCENARIOS)
    p.add_argument(
        "--host",
        action="append",
        default=None,
        metavar="HOST[:PORT]",
        help="broker address; repeat to spread the clients over several brokers (cluster nodes): "
        "subscriber i on host i mod n, publisher i on host (i + --pub-offset) mod n "
        "(default 127.0.0.1)",
    )
    p.add_argument("--port", type=int, default=1883, help="port of a --host without one")
    p.add_argument(
        "--pub-offset",
        type=int,
        default=None,
        help="with several hosts: publisher i goes to host (i + OFFSET) mod n; the default 1 puts "
        "a pair's publisher and subscriber on different hosts (cross-node), 0 on the same one",
    )
    p.add_argument("--username", default=None)
    p.add_argument("--password", default=None)
    p.add_argument("--tls", action="store_true", help="connect with TLS")
    p.add_argument("--cafile", default=None, help="TLS: CA certificates to verify the broker with")
    p.add_argument(
        "--insecure",
        action="store_true",
        help="TLS: do not verify the broker's certificate or host name",
    )
    p.add_argument(
        "--pid",
        type=int,
        action="append",
        default=None,
        help="broker process id (repeatable; its child processes count too): report its CPU "
        "share, and its RSS per connection in the connections scenario",
    )
    p.add_argument("--qos", type=int, choices=(0, 1, 2), default=0)
    p.add_argument(
        "--size", type=int, default=64, help=f"payload bytes (>= {STAMP_SIZE}; default 64)"
    )
    run = p.add_mutually_exclusive_group()
    run.add_argument(
        "--duration", type=float, default=None, help="seconds of publishing (default 5)"
    )
    run.add_argument("--count", type=int, default=None, help="messages per publisher")
    p.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="total messages/s over all publishers (latency mode); 0 = as fast as possible",
    )
    p.add_argument(
        "--pubs", type=int, default=None, help="fanin/shared: publishers (default 4 / 200)"
    )
    p.add_argument(
        "--subs",
        type=int,
        default=None,
        help="fanout: subscribers (default 16); shared: consumers of $share/g/telemetry/# (4)",
    )
    p.add_argument(
        "--pairs", type=int, default=8, help="pairs: publisher/subscriber pairs (default 8)"
    )
    p.add_argument("--conns", type=int, default=1000, help="connections: how many (default 1000)")
    p.add_argument(
        "--hold", type=float, default=5.0, help="connections: seconds to hold them (default 5)"
    )
    p.add_argument(
        "--window", type=int, default=64, help="QoS 1/2 messages in flight per publisher"
    )
    p.add_argument(
        "--max-ahead",
        type=int,
        default=250,
        help="messages per publisher in flight end to end (0 = open loop)",
    )
    p.add_argument("--batch", type=int, default=32, help="messages per write (default 32)")
    p.add_argument("--procs", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--drain", type=float, default=5.0, help="seconds to wait for the last messages")
    p.add_argument("--keepalive", type=int, default=60)
    p.add_argument(
        "--persistent",
        action="store_true",
        help="connect with Clean Session 0: every session persists (a broker's storage is "
        "exercised by every QoS 1/2 message)",
    )
    p.add_argument("--json", action="store_true", help="also print the result as one JSON line")
    return p


def check(p: OneLineParser, a: Any) -> None:
    if a.pubs is None:
        a.pubs = 200 if a.scenario == "shared" else 4
    if a.subs is None:
        a.subs = 4 if a.scenario == "shared" else 16
    try:
        a.targets = [parse_target(h, a.port) for h in (a.host or ["127.0.0.1"])]
    except ValueError as err:
        p.error(str(err))
    if a.pub_offset is None:
        a.pub_offset = 1 if len(a.targets) > 1 else 0
    if a.pub_offset < 0:
        p.error("--pub-offset must be >= 0")
    if (a.cafile or a.insecure) and not a.tls:
        p.error("--cafile and --insecure need --tls")
    if a.cafile and not os.path.isfile(a.cafile):
        p.error(f"--cafile {a.cafile}: no such file")
    if a.password is not None and a.username is None:
        p.error("--password needs --username (MQTT 3.1.1 [MQTT-3.1.2-22])")
    if a.size < STAMP_SIZE or a.size > 256 * 1024 * 1024:
        p.error(f"--size must be in {STAMP_SIZE}..268435455")
    if not 0 < a.port < 65536:
        p.error("--port must be in 1..65535")
    if a.duration is not None and not 0 < a.duration <= 86400:
        p.error("--duration must be in (0, 86400]")
    if a.count is not None and a.count < 1:
        p.error("--count must be >= 1")
    if a.rate < 0:
        p.error("--rate must be >= 0")
    for name in ("pubs", "subs", "pairs", "conns", "window", "batch", "procs"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if a.window > 65535:
        p.error("--window must be <= 65535")
    if a.max_ahead < 0 or a.hold < 0 or a.drain < 0:
        p.error("--max-ahead, --hold and --drain must be >= 0")


def topology(a: Any) -> dict:
    """Who publishes where and who receives whom, as functions of indices."""
    if a.scenario == "fanin":
        npubs, nsubs = a.pubs, 1
        return dict(
            npubs=npubs,
            nsubs=nsubs,
            pub_topic=lambda p: f"bench/{p}",
            sub_filter=lambda s: "bench/#",
            subs_of=lambda p: [0],
            pubs_of=lambda s: list(range(npubs)),
        )
    if a.scenario == "fanout":
        nsubs = a.subs
        return dict(
            npubs=1,
            nsubs=nsubs,
            pub_topic=lambda p: "bench/fan",
            sub_filter=lambda s: "bench/fan",
            subs_of=lambda p: list(range(nsubs)),
            pubs_of=lambda s: [0],
        )
    if a.scenario == "shared":
        # The IoT cell: many devices publish telemetry, a shared subscription spreads it over
        # a few consumers; each message is delivered to exactly one of them.
        npubs, nsubs = a.pubs, a.subs
        return dict(
            npubs=npubs,
            nsubs=nsubs,
            shared=True,
            pub_topic=lambda p: f"telemetry/{p}",
            sub_filter=lambda s: "$share/g/telemetry/#",
            subs_of=lambda p: list(range(nsubs)),
            pubs_of=lambda s: list(range(npubs)),
        )
    if a.scenario == "pairs":
        return dict(
            npubs=a.pairs,
            nsubs=a.pairs,
            pub_topic=lambda p: f"bench/pair/{p}",
            sub_filter=lambda s: f"bench/pair/{s}",
            subs_of=lambda p: [p],
            pubs_of=lambda s: [s],
        )
    return dict(npubs=0, nsubs=a.conns, pub_topic=None, sub_filter=None, subs_of=None, pubs_of=None)


def fmt_rate(v: float) -> str:
    return f"{v / 1000:.1f}k" if v >= 10_000 else f"{v:.0f}"


def fmt_us(v: int | None) -> str:
    if v is None:
        return "-"
    return f"{v / 1000:.2f} ms" if v >= 1000 else f"{v} us"


def print_table(rows: list[tuple[str, str]]) -> None:
    w = max(len(k) for k, _ in rows)
    v = max(len(x) for _, x in rows)
    print(f"{'metric'.ljust(w)} | value")
    print(f"{'-' * w}-+-{'-' * v}")
    for k, x in rows:
        print(f"{k.ljust(w)} | {x}")


def placement(a: Any, npubs: int, nsubs: int) -> tuple[list[int], list[int]]:
    """Index into ``a.targets`` for each subscriber and each publisher."""
    n = len(a.targets)
    subs_at = [s % n for s in range(nsubs)]
    pubs_at = [(p + a.pub_offset) % n for p in range(npubs)]
    return subs_at, pubs_at


def assign_processes(procs: int, cfg: dict) -> tuple[list[list[int]], list[list[int]]]:
    """Which subscribers and publishers each worker process runs.

    A publisher held back by --max-ahead runs in the same process as every subscriber it
    waits for: it then sees their progress in the same loop turn instead of through another
    process's scheduling slot (a timer sleep lasts a millisecond under uvloop), which keeps
    the broker busy as a single-process generator does. So each group of publishers and
    subscribers linked by that wait (pair i; all of fan-in; all of fan-out) shares a process,
    and the groups go round-robin over the processes. Publishers that nothing holds back (a
    shared subscription, --max-ahead 0) and connections are spread evenly.
    """
    npubs, nsubs = cfg["npubs"], cfg["nsubs"]
    n = max(1, min(procs, nsubs + npubs))
    if not (cfg["max_ahead"] and nsubs and npubs and not cfg.get("shared")):
        subs_for = [list(range(w, nsubs, n)) for w in range(n)]
        spread: list[list[int]] = [[] for _ in range(n)]
        for p in range(npubs):
            spread[(nsubs + p) % n].append(p)
        return subs_for, spread
    group = list(range(nsubs))  # union-find over subscribers; publishers join their subscribers

    def root(s: int) -> int:
        while group[s] != s:
            group[s] = group[group[s]]
            s = group[s]
        return s

    for p in range(npubs):
        first, *rest = cfg["subs_of"](p)
        for s in rest:
            group[root(s)] = root(first)
    roots = sorted({root(s) for s in range(nsubs)})
    n = min(n, len(roots))
    where = {r: i % n for i, r in enumerate(roots)}
    subs_for = [[s for s in range(nsubs) if where[root(s)] == w] for w in range(n)]
    pubs_for = [
        [p for p in range(npubs) if where[root(cfg["subs_of"](p)[0])] == w] for w in range(n)
    ]
    return subs_for, pubs_for


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(list(argv) if argv is not None else None)
    check(parser, a)
    if a.duration is None and a.count is None:
        a.duration = 5.0
    topo = topology(a)
    npubs, nsubs = topo["npubs"], topo["nsubs"]
    subs_at, pubs_at = placement(a, npubs, nsubs)
    ctx = multiprocessing.get_context("fork")  # closures in cfg; no loop runs in the parent
    shared = {
        "sent": ctx.RawArray("q", max(npubs, 1)),
        "done": ctx.RawArray("b", max(npubs, 1)),
        "recv": ctx.RawArray("q", max(npubs * nsubs, 1)),
        "start_ns": ctx.RawValue("q", 0),
    }
    cfg = dict(
        topo,
        scenario=a.scenario,
        targets=a.targets,
        sub_target=subs_at,
        pub_target=pubs_at,
        username=a.username,
        password=a.password,
        tls=a.tls,
        cafile=a.cafile,
        insecure=a.insecure,
        qos=a.qos,
        size=a.size,
        duration=a.duration,
        count=a.count or 0,
        batch=a.batch,
        window=a.window,
        max_ahead=a.max_ahead,
        drain=a.drain,
        keepalive=a.keepalive,
        persistent=a.persistent,
        hold=a.hold,
        rate_per_pub=(a.rate / npubs) if (a.rate and npubs) else 0.0,
        connect_timeout=10.0,
        connect_concurrency=200,
        tag=f"mfb{os.getpid()}",
    )
    subs_for, pubs_for = assign_processes(a.procs, cfg)
    procs_n = len(subs_for)
    results = ctx.Queue()
    start_event = ctx.Event()
    broker = BrokerWatch(a.pid or [])
    workers = [
        ctx.Process(
            target=worker_main,
            daemon=True,
            args=(w, cfg, shared, pubs_for[w], subs_for[w], results, start_event),
        )
        for w in range(procs_n)
    ]
    for w in workers:
        w.start()
    try:
        return orchestrate(a, cfg, shared, workers, results, start_event, broker)
    finally:
        for w in workers:
            w.join(timeout=2)
            if w.is_alive():
                w.kill()


class BrokerWatch:
    """The broker's CPU share over the measured window and its RSS, when ``--pid`` is given."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.rss_before = procstat.rss_kb(pids) if pids else None
        self.rss_peak: int | None = None
        self.cpu0: float | None = None
        self.t0 = 0.0

    def start(self) -> None:
        if self.pids:
            self.cpu0 = procstat.cpu_seconds(self.pids)
        self.t0 = time.monotonic()

    def sample_rss(self) -> None:
        if self.pids:
            r = procstat.rss_kb(self.pids)
            if r is not None and (self.rss_peak is None or r > self.rss_peak):
                self.rss_peak = r

    def cpu_pct(self) -> float | None:
        if not self.pids or self.cpu0 is None:
            return None
        cpu1 = procstat.cpu_seconds(self.pids)
        wall = time.monotonic() - self.t0
        if cpu1 is None or wall <= 0:
            return None
        return round(100.0 * (cpu1 - self.cpu0) / wall, 1)


def targets_text(a: Any) -> str:
    return ", ".join(f"{h}:{p}" for h, p in a.targets) + (" (TLS)" if a.tls else "")


def orchestrate(
    a: Any,
    cfg: dict,
    shared: dict,
    workers: list,
    results: Any,
    start_event: Any,
    broker: BrokerWatch,
) -> int:
    n = len(workers)
    out: dict[int, dict] = {}
    errors: list[str] = []
    ready = 0
    setup_deadline = time.monotonic() + 30 + (a.conns / 200 if a.scenario == "connections" else 0)
    while ready + len(errors) < n:
        try:
            msg = results.get(timeout=max(0.1, setup_deadline - time.monotonic()))
        except Exception:
            print("mqttfast bench: error: clients not ready in time", file=sys.stderr)
            return 1
        if msg[0] == "ready":
            ready += 1
        elif msg[0] == "error":
            errors.append(msg[2])
    if errors:
        print(f"mqttfast bench: error: {errors[0]} ({targets_text(a)})", file=sys.stderr)
        return 1
    start = time.monotonic()
    broker.start()
    if a.scenario == "connections":
        broker.sample_rss()  # every client is connected now
    shared["start_ns"].value = time.monotonic_ns() + 50_000_000
    start_event.set()
    tty = sys.stderr.isatty()
    limit = (a.duration or 0) + a.drain + a.hold + 60 + (a.count or 0) / 1000
    last_print = 0.0
    last_recv = 0
    last_t = start
    sent, recv = shared["sent"], shared["recv"]
    while len(out) + len(errors) < n:
        try:
            msg = results.get(timeout=0.25)
            if msg[0] == "result":
                out[msg[1]] = msg[2]
            elif msg[0] == "error":
                errors.append(msg[2])
        except Exception:
            pass
        now = time.monotonic()
        if now - start > limit:
            errors.append(f"timed out after {limit:.0f} s")
            break
        if a.scenario == "connections":
            if now - start < a.hold:  # every client still held open
                broker.sample_rss()
        elif now - last_print >= 1.0:
            r = sum(recv)
            rate = (r - last_recv) / (now - last_t)
            line = (
                f"[{now - start:5.1f}s] sent {sum(sent):,}  received {r:,}  {fmt_rate(rate)} msg/s"
            )
            print(
                ("\r" + line) if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True
            )
            last_print, last_recv, last_t = now, r, now
    cpu = broker.cpu_pct()
    wall = max(time.monotonic() - start, 1e-9)
    gen_cpu = sum(r.get("cpu_s", 0.0) for r in out.values())
    figures = {
        "broker_cpu_pct": cpu,
        "loadgen_cpu_pct": round(100.0 * gen_cpu / wall, 1),
    }
    if tty and a.scenario != "connections":
        print(file=sys.stderr)
    if a.scenario == "connections":
        return report_connections(a, list(out.values()), errors, broker, figures)
    return report_messages(a, cfg, shared, list(out.values()), errors, figures)


def cpu_row(figures: dict) -> tuple[str, str]:
    b = figures.get("broker_cpu_pct")
    return (
        "CPU: broker / loadgen",
        f"{'-' if b is None else f'{b:.0f}%'} / {figures['loadgen_cpu_pct']:.0f}%",
    )


def report_messages(
    a: Any, cfg: dict, shared: dict, res: list[dict], errors: list[str], figures: dict
) -> int:
    start_ns = shared["start_ns"].value
    sent = list(shared["sent"])[: cfg["npubs"]]
    if cfg.get("shared"):
        expected = sum(sent)  # one of the group's consumers gets each message
    else:
        expected = sum(s * len(cfg["subs_of"](p)) for p, s in enumerate(sent))
    h = hist.new()
    for r in res:
        hist.merge(h, r["hist"])
        errors.extend(r["errors"])
    unique = sum(r["unique"] for r in res)
    dups = sum(r["dups"] for r in res)
    received = sum(r["received"] for r in res)
    last_ns = max([r["last_ns"] for r in res], default=0)
    elapsed = max((last_ns - start_ns) / 1e9, 1e-9) if last_ns else 0.0
    rate = unique / elapsed if elapsed else 0.0
    loss = max(expected - unique, 0)
    p50, p95, p99 = (hist.percentile(h, q) for q in (50, 95, 99))
    clients = f"{cfg['npubs']} pub, {cfg['nsubs']} sub"
    rows = [
        ("scenario", f"{a.scenario} QoS{a.qos}, {a.size} B, {clients}, {targets_text(a)}"),
        ("sent", f"{sum(sent):,}"),
        ("received", f"{received:,} (expected {expected:,})"),
        ("msgs/s", f"{rate:,.0f}" + (f" (offered {a.rate:,.0f})" if a.rate else "")),
        ("latency p50", fmt_us(p50)),
        ("latency p95", fmt_us(p95)),
        ("latency p99", fmt_us(p99)),
        ("loss", f"{loss:,} ({100 * loss / expected:.3f}%)" if expected else "0"),
        ("duplicates", f"{dups:,}"),
        cpu_row(figures),
    ]
    print_table(rows)
    for e in errors[:5]:
        print(f"mqttfast bench: {e}", file=sys.stderr)
    ok = not loss and not errors and bool(expected)
    if a.json:
        print(
            json.dumps(
                {
                    "scenario": a.scenario,
                    "mode": a.scenario,
                    "qos": a.qos,
                    "size": a.size,
                    "pubs": cfg["npubs"],
                    "subs": cfg["nsubs"],
                    "targets": [f"{h}:{p}" for h, p in a.targets],
                    "sent": sum(sent),
                    "expected": expected,
                    "received": received,
                    "unique": unique,
                    "duplicates": dups,
                    "loss": loss,
                    "lost": loss,
                    "seconds": round(elapsed, 3),
                    "msgs_per_s": round(rate, 1),
                    "msgs_per_s_received": round(rate, 1),
                    "rate": a.rate,
                    "p50_us": p50,
                    "p95_us": p95,
                    "p99_us": p99,
                    "lat_p50_us": p50,
                    "lat_p99_us": p99,
                    **figures,
                    "errors": errors[:5],
                    "error": errors[0] if errors else "",
                    "ok": ok,
                }
            )
        )
    return 0 if ok else 1


def report_connections(
    a: Any, res: list[dict], errors: list[str], broker: BrokerWatch, figures: dict
) -> int:
    connack = sum(r["connack"] for r in res)
    failed = sum(r["failed"] for r in res)
    open_end = sum(r["open_at_end"] for r in res)
    secs = max([r["connect_s"] for r in res], default=0.0)
    for r in res:
        errors.extend(r["errors"])
    per_conn = None
    if broker.rss_before is not None and broker.rss_peak is not None and connack:
        per_conn = round((broker.rss_peak - broker.rss_before) / connack, 2)
    rows = [
        ("scenario", f"connections, {a.conns} clients, {targets_text(a)}"),
        ("connected", f"{connack:,} (failed {failed:,})"),
        ("connects/s", f"{connack / secs:,.0f}" if secs else "-"),
        (f"open after {a.hold:g} s", f"{open_end:,}"),
        ("broker RSS per connection", "-" if per_conn is None else f"{per_conn:.2f} KiB"),
    ]
    print_table(rows)
    for e in errors[:5]:
        print(f"mqttfast bench: {e}", file=sys.stderr)
    ok = connack == a.conns and open_end == a.conns and not failed
    if a.json:
        print(
            json.dumps(
                {
                    "scenario": "connections",
                    "mode": "connections",
                    "conns": a.conns,
                    "targets": [f"{h}:{p}" for h, p in a.targets],
                    "connack": connack,
                    "failed": failed,
                    "open_at_end": open_end,
                    "connect_s": secs,
                    "broker_rss_kb_before": broker.rss_before,
                    "broker_rss_kb_connected": broker.rss_peak,
                    "rss_kb_per_conn": per_conn,
                    **figures,
                    "error": errors[0] if errors else "",
                    "ok": ok,
                }
            )
        )
    return 0 if ok else 1
