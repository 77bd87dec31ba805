#!/usr/bin/env python3
"""Bounded mixed-load soak run of an mqttfast broker, reporting memory over time.

    python3 scripts/soak.py                      # 10 minutes, RSS every 10 s
    python3 scripts/soak.py --duration 60 --interval 5 --workers 4 --persistence relaxed

It starts a broker subprocess on a free 127.0.0.1 port (tests/helpers/broker.py) and
runs, until the duration is over:

* session workers: v5 clients with unique client ids and a 1 s Session Expiry that
  subscribe (QoS 1 and a QoS 0 fan-out filter), publish QoS 1/2 through a topic alias,
  set and clear retained messages, unsubscribe, and leave by DISCONNECT or by dropping
  the connection (a will then goes out); their sessions expire a second later, so
  sessions, subscriptions, retained messages, aliases and expiry timers are created and
  removed all the time;
* v3.1.1 persistent clients (a fixed pool of ids, clean session 0) that come back and
  collect what was queued for them;
* a QoS 0 fan-out publisher.

Every ``--interval`` seconds it prints the broker's RSS (VmRSS) and its session,
subscription and retained-message counts ($SYS). At the end it prints the RSS growth
after the warm-up (the first quarter of the run, at least 5 s) and checks that, once
the load stops, only the persistent pool's sessions and subscriptions are left (every
expiring session and its subscriptions gone) and no more retained messages than during
the run. Exit status 1 if the growth is
over ``--max-growth-mib`` or the counts did not come back.
tests/robustness/test_soak_short.py runs a ~20 s version of this in the test suite.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from mqttfast.codec.packets import Properties, Publish, Will  # noqa: E402
from tests.helpers.broker import BrokerProcess  # noqa: E402
from tests.helpers.rawclient import RawClient  # noqa: E402

# The broker under soak runs through this launcher: the normal command line, plus a
# SIGUSR1 handler that runs a full gc.collect(). The broker tunes its collector to run
# rarely (app/cli.py tune_gc), so cyclic garbage of closed connections can pile up for
# tens of seconds before it is freed: a sawtooth of ~20 MiB that says nothing about
# leaks. Each sample forces a collection first, so RSS follows live memory.
LAUNCHER = """
import gc, signal, sys
signal.signal(signal.SIGUSR1, lambda *_: gc.collect())
from mqttfast.app.cli import main
sys.exit(main(sys.argv[1:]))
"""


class SoakBroker(BrokerProcess):
    def command(self) -> list[str]:
        return [sys.executable, "-c", LAUNCHER] + super().command()[3:]


def collected_rss_kib(broker: BrokerProcess) -> int:
    """RSS right after a full collection in the broker (SIGUSR1, see LAUNCHER)."""
    broker.signal(signal.SIGUSR1)
    time.sleep(0.3)
    return rss_kib(broker.pid)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def sys_counts(port: int) -> dict[str, int]:
    """Sessions, subscriptions and retained messages from $SYS (retained, so one read)."""
    names = {
        "clients/total": "sessions",
        "subscriptions/count": "subscriptions",
        "retained messages/count": "retained",
    }
    out: dict[str, int] = {}
    with RawClient(port, connect_timeout=10) as c:
        c.connect("", timeout=10)
        c.subscribe(*[f"$SYS/broker/{n}" for n in names], timeout=10)
        while len(out) < len(names):
            p = c.recv_publish(5)
            out[names[p.topic[len("$SYS/broker/") :]]] = int(p.payload)
        c.disconnect(wait=0.5)
    return out


@dataclass
class Load:
    port: int
    rate: float = 0.0  # client cycles per second per worker; 0 = as fast as possible
    stop: threading.Event = field(default_factory=threading.Event)
    cycles: int = 0
    messages: int = 0
    errors: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, cycles: int = 0, messages: int = 0) -> None:
        with self.lock:
            self.cycles += cycles
            self.messages += messages

    def pace(self, next_t: float) -> float:
        """Hold a worker to ``rate`` cycles per second (returns the next slot). A fixed
        rate keeps the working set (sessions alive within their 1 s expiry) the same
        from warm-up to the end, so RSS growth means a leak, not a faster second half.
        A worker that falls behind does not catch up in a burst."""
        if self.rate <= 0:
            return 0.0
        next_t = max(next_t, time.monotonic() - 1.0) + 1.0 / self.rate
        delay = next_t - time.monotonic()
        if delay > 0:
            self.stop.wait(delay)
        return next_t


def session_worker(load: Load, k: int) -> None:
    i = 0
    slot = time.monotonic()
    try:
        while not load.stop.is_set():
            tag = f"{k}-{i}"
            c = RawClient(load.port, 5, connect_timeout=10)
            props = Properties(session_expiry_interval=1, topic_alias_maximum=5)
            will = Will(
                f"soak/will/{k}", tag.encode(), 1, False, Properties(message_expiry_interval=5)
            )
            c.connect(f"soak-{tag}", clean_start=True, properties=props, will=will, timeout=10)
            c.subscribe((f"soak/{k}/{i}/+", 1), ("soak/fan/#", 0), timeout=10)
            c.publish(
                f"soak/{k}/{i}/a",
                f"{tag}a".encode(),
                qos=1,
                timeout=10,
                properties=Properties(topic_alias=1, message_expiry_interval=30),
            )
            c.publish(
                "", f"{tag}b".encode(), qos=2, timeout=10, properties=Properties(topic_alias=1)
            )
            for suffix in "ab":
                c.ack(c.recv_until(Publish, 10, payload=f"{tag}{suffix}".encode()), 10)
            c.publish(f"soak/ret/{k}/{i % 50}", b"r" * 64, qos=1, retain=True, timeout=10)
            c.publish(f"soak/ret/{k}/{(i + 25) % 50}", b"", qos=1, retain=True, timeout=10)
            c.unsubscribe(f"soak/{k}/{i}/+", timeout=10)
            c.pending.clear()
            if i % 3 == 0:
                c.close()  # ungraceful: the will goes out
            else:
                c.disconnect(wait=1.0)
            load.count(1, 4)
            i += 1
            slot = load.pace(slot)
    except Exception as exc:  # reported by run()
        if not load.stop.is_set():
            load.errors.append(f"session worker {k}, cycle {i}: {exc!r}")


def persistent_worker(load: Load, k: int) -> None:
    i = 0
    slot = time.monotonic()
    try:
        while not load.stop.is_set():
            cid = f"soak-p{k}-{i % 5}"
            c = RawClient(load.port, 4, connect_timeout=10)
            c.connect(cid, clean_start=False, timeout=10)
            c.subscribe((f"soak/p/{cid}", 1), timeout=10)
            with RawClient(load.port, 4, connect_timeout=10) as p:
                p.connect("", timeout=10)
                p.publish(f"soak/p/soak-p{k}-{(i + 1) % 5}", b"q" * 200, qos=1, timeout=10)
                p.disconnect(wait=0.5)
            deadline = time.monotonic() + 0.3
            while time.monotonic() < deadline:
                try:
                    c.recv_publish(max(0.01, deadline - time.monotonic()))
                except AssertionError:
                    break
            c.disconnect(wait=1.0)
            load.count(1, 1)
            i += 1
            slot = load.pace(slot)
    except Exception as exc:
        if not load.stop.is_set():
            load.errors.append(f"persistent worker {k}, cycle {i}: {exc!r}")


def fan_publisher(load: Load) -> None:
    try:
        with RawClient(load.port, 4, connect_timeout=10) as c:
            c.connect("soak-fan", timeout=10)
            n = 0
            while not load.stop.is_set():
                c.publish(f"soak/fan/{n % 10}", b"f" * 128)
                n += 1
                if n % 50 == 0:
                    c.ping(10)  # bounded: never runs ahead of the broker
                    load.count(0, 50)
                    time.sleep(0.05)
            c.disconnect(wait=1.0)
    except Exception as exc:
        if not load.stop.is_set():
            load.errors.append(f"fan publisher: {exc!r}")


def run(
    duration: float = 600.0,
    interval: float = 10.0,
    workers: int = 4,
    persistence: str = "off",
    max_growth_mib: float = 16.0,
    rate: float = 0.0,
    out=print,
) -> dict:  # type: ignore[no-untyped-def]
    """Run the soak; a report dict (samples, growth_mib, counts, ok)."""
    warmup = max(5.0, duration / 4)
    broker = SoakBroker(
        ["--persistence", persistence, "--sys-interval", "1", "--log-level", "warning"]
    )
    broker.start()
    load = Load(broker.port, rate)
    threads = [
        threading.Thread(target=session_worker, args=(load, k), daemon=True) for k in range(workers)
    ]
    threads += [
        threading.Thread(target=persistent_worker, args=(load, k), daemon=True)
        for k in range(max(1, workers // 2))
    ]
    threads.append(threading.Thread(target=fan_publisher, args=(load,), daemon=True))
    samples: list[tuple[float, int]] = []
    report: dict = {"ok": False}
    try:
        t0 = time.monotonic()
        for t in threads:
            t.start()
        out(
            f"soak: {duration:.0f} s, {workers} session workers"
            f"{f' at {rate:g} cycles/s each' if rate else ''}, persistence {persistence}, "
            f"broker pid {broker.pid} port {broker.port}"
        )
        base_counts: dict[str, int] | None = None
        base_rss: int | None = None
        next_sample = t0
        while time.monotonic() - t0 < duration and not load.errors:
            now = time.monotonic()
            if now >= next_sample:
                rss = collected_rss_kib(broker)
                samples.append((now - t0, rss))
                out(
                    f"  t={now - t0:6.1f}s rss={rss / 1024:7.1f} MiB cycles={load.cycles} "
                    f"messages={load.messages}"
                )
                next_sample += interval
                if base_rss is None and now - t0 >= warmup:
                    base_rss = rss
            if base_counts is None and now - t0 >= warmup:
                base_counts = sys_counts(broker.port)
                out(f"  after warm-up: {base_counts}")
            time.sleep(min(0.2, max(0.0, next_sample - time.monotonic())))
        load.stop.set()
        for t in threads:
            t.join(15)
        final_rss = collected_rss_kib(broker)
        samples.append((time.monotonic() - t0, final_rss))
        if base_rss is None:
            base_rss = samples[0][1]
        # Let the last sessions expire (1 s + a tick) and $SYS catch up. What may stay:
        # the persistent pool's sessions with one subscription each (plus, depending on
        # when $SYS was last published, the reading client itself and its 3 filters).
        pool = max(1, workers // 2) * 5
        expected = {
            "sessions": pool + 1,
            "subscriptions": pool + 3,
            "retained": base_counts["retained"] if base_counts else 0,
        }
        deadline = time.monotonic() + 10
        counts = sys_counts(broker.port)
        while time.monotonic() < deadline and any(counts[k] > expected[k] for k in counts):
            time.sleep(0.5)
            counts = sys_counts(broker.port)
        after_rss = max(rss for t, rss in samples if rss and t >= warmup) if samples else final_rss
        growth = (after_rss - base_rss) / 1024
        counts_ok = base_counts is not None and all(counts[k] <= expected[k] for k in counts)
        report = {
            "samples": samples,
            "base_rss_kib": base_rss,
            "growth_mib": growth,
            "base_counts": base_counts,
            "counts": counts,
            "expected_counts": expected,
            "cycles": load.cycles,
            "messages": load.messages,
            "errors": list(load.errors),
            "ok": not load.errors and counts_ok and growth <= max_growth_mib,
        }
        out(
            f"soak: {load.cycles} client cycles, {load.messages} messages; RSS after warm-up "
            f"{base_rss / 1024:.1f} MiB, peak later {after_rss / 1024:.1f} MiB "
            f"(growth {growth:+.1f} MiB, bound {max_growth_mib} MiB); counts at the end {counts} "
            f"(at most {expected}; during the run {base_counts}); errors {load.errors or 'none'}; "
            f"{'OK' if report['ok'] else 'FAILED'}"
        )
        if not broker.running():
            report["ok"] = False
            report["errors"].append("broker died")
    finally:
        load.stop.set()
        code = broker.stop(10) if broker.running() else broker.proc.returncode
        report["exit_code"] = code
        if "Traceback" in broker.log_text():
            report["ok"] = False
            report.setdefault("errors", []).append("Traceback in the broker log")
        broker.cleanup()
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=600.0, help="seconds (default 600)")
    p.add_argument("--interval", type=float, default=10.0, help="seconds between RSS samples")
    p.add_argument("--workers", type=int, default=4, help="session workers (default 4)")
    p.add_argument("--persistence", default="off", choices=["off", "relaxed", "strict"])
    p.add_argument(
        "--max-growth-mib",
        type=float,
        default=16.0,
        help="allowed RSS growth after the warm-up (default 16 MiB)",
    )
    p.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="client cycles per second per worker (default 0 = as fast as possible; "
        "a fixed rate makes the RSS figure independent of machine load)",
    )
    args = p.parse_args(argv)
    report = run(
        args.duration, args.interval, args.workers, args.persistence, args.max_growth_mib, args.rate
    )
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
