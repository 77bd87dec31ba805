#!/usr/bin/env python3
"""QoS 1 throughput with persistence strict vs relaxed vs off (and mosquitto), as ratios.

    python3 benchmarks/bench_persistence.py [--duration 5] [--pairs 8] [--runs 1]

"vs off" is the ratio of the medians; "per round" the median of the ratios of each
round (cells are run round-robin, so both see the same load drift).

Load: ``mqttfast bench pairs`` (this repository; QoS 1, window 64, 64-byte
payloads), once with clean sessions (which persistence must not touch) and once
with ``--persistent`` (Clean Session 0), so every subscriber holds a *persistent*
session and every QoS 1 message really goes through the storage. ``--c-source
PATH/mqtt-loadgen.c`` uses that C load generator instead (compiled twice into /tmp,
the second time with the CONNECT flags byte patched from Clean Session=1 to 0). Each broker run gets a
fresh data directory. mosquitto (Debian) is run with ``persistence true``
(it snapshots to disk every ``autosave_interval`` s, i.e. it is comparable
to ``relaxed``, not to ``strict``) when installed.

``--base PATH`` adds the mqttfast cells once more with the broker imported from another
checkout (``base:mqttfast-off`` ...), interleaved in the same rounds: a before/after
comparison in one run ("vs off" then compares within each tree). Each row also shows the
broker's CPU time per message (median), which a shared machine disturbs less than msg/s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# --c-source: the CONNECT flags byte of that C generator, patched for persistent sessions.
CLEAN_FLAGS = b"*p++ = 4; *p++ = 0x02;"
PERSISTENT_FLAGS = b"*p++ = 4; *p++ = 0x00;"


BENCH_PERSISTENT = "mqttfast-bench-persistent"
BENCH_CLEAN = "mqttfast-bench-clean"


def loadgen_command(loadgen: str) -> list[str]:
    """The command line start of a load generator: ``mqttfast bench`` (its JSON line), or
    a compiled C generator's path."""
    if loadgen in (BENCH_PERSISTENT, BENCH_CLEAN):
        cmd = [sys.executable, "-m", "mqttfast", "bench", "--json"]
        return [*cmd, "--persistent"] if loadgen == BENCH_PERSISTENT else cmd
    return [loadgen]


def build_loadgen(source: Path, persistent: bool) -> str:
    src = source.read_bytes()
    if persistent:
        assert src.count(CLEAN_FLAGS) == 1, "loadgen CONNECT encoding changed; update the patch"
        src = src.replace(CLEAN_FLAGS, PERSISTENT_FLAGS)
    name = "persistent" if persistent else "clean"
    c_path = Path(tempfile.gettempdir()) / f"mqtt-loadgen-{name}.c"
    exe = str(c_path.with_suffix(""))
    c_path.write_bytes(src)
    subprocess.run(["gcc", "-O2", "-o", exe, str(c_path)], check=True)
    return exe


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"broker exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("broker did not listen")


def split_kind(kind: str) -> tuple[str, str]:
    """``base:mqttfast-off`` -> (``base:``, ``mqttfast-off``); no prefix: the repository."""
    prefix, _, name = kind.rpartition(":")
    return (prefix + ":" if prefix else ""), name


def start_broker(kind: str, port: int, workdir: Path, tree: Path = REPO) -> subprocess.Popen:
    if kind.startswith("mosquitto"):
        persist = kind == "mosquitto-persist"
        conf = workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence {'true' if persist else 'false'}\n"
            f"persistence_location {workdir}/\nmax_queued_messages 100000\n"
        )
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        cmd = [exe, "-c", str(conf)]
    else:
        mode = kind.split("-", 1)[1]
        cmd = [
            sys.executable,
            "-m",
            "mqttfast",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--persistence",
            mode,
            "--data-dir",
            str(workdir / "data"),
            "--max-queued-messages",
            "100000",
        ]
    env = dict(os.environ, PYTHONPATH=str(tree))
    proc = subprocess.Popen(
        cmd,
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    wait_port(port, proc)
    return proc


def run_cell(kind: str, loadgen: str, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-persist-") as tmp:
        port = free_port()
        prefix, name = split_kind(kind)
        tree = args.base if prefix else REPO
        proc = start_broker(name, port, Path(tmp), tree)
        try:
            res = subprocess.run(
                [
                    *loadgen_command(loadgen),
                    "pairs",
                    "--pairs",
                    str(args.pairs),
                    "--qos",
                    "1",
                    "--window",
                    "64",
                    "--size",
                    "64",
                    "--duration",
                    str(args.duration),
                    "--port",
                    str(port),
                    "--pid",
                    str(proc.pid),
                ],
                capture_output=True,
                text=True,
                timeout=args.duration + 120,
                env=dict(os.environ, PYTHONPATH=str(REPO)),
            )
            line = [ln for ln in res.stdout.splitlines() if ln.startswith("{")][-1]
            out = json.loads(line)
            out["exit"] = res.returncode
            return out
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def rate_of(result: dict) -> float:
    for key in ("msgs_per_s_received", "msgs_per_s"):
        if key in result:
            return float(result[key])
    raise KeyError(f"no rate in {result}")


def storage_calls(rounds: int = 9, n: int = 50_000) -> None:
    """``--calls``: the loop thread's cost of the storage calls one QoS 1 message makes
    for a persistent subscriber (best of ``rounds``, us per message; the call sites' own
    ``session.persisted`` test and attribute loads included). Queued: put (queued),
    put (in flight), remove (PUBACK) (and dequeue, in a tree whose core still calls it);
    direct: put (in flight), remove."""
    sys.path.insert(0, str(REPO))
    from mqttfast.app.persistence.store import SQLiteStorage
    from mqttfast.core.message import Delivery, Message
    from mqttfast.core.storage import MemoryStorage

    class Broker:
        storage: object

    class Session:
        client_id = "bench"
        conn = None
        persisted = True
        broker = Broker()

    session = Session()
    msg = Message("bench/t", b"x" * 64, 1, False)
    dequeue = hasattr(MemoryStorage, "delivery_dequeue")

    def queued(ds: list) -> None:
        s = session
        for d in ds:
            if s.persisted:
                s.broker.storage.delivery_put(s, d, 0)
            if dequeue and s.persisted:  # (a core before issue 17's relaxed change)
                s.broker.storage.delivery_dequeue(s, d)
            if s.persisted:
                s.broker.storage.delivery_put(s, d, 7)
            if s.persisted:
                s.broker.storage.delivery_remove(s, d)

    def direct(ds: list) -> None:
        s = session
        for d in ds:
            if s.persisted:
                s.broker.storage.delivery_put(s, d, 7)
            if s.persisted:
                s.broker.storage.delivery_remove(s, d)

    def best(fn: Any) -> float:
        times = []
        for _ in range(rounds):
            ds = [Delivery(msg, 1, False, None) for _ in range(n)]
            t = time.perf_counter()
            fn(ds)
            times.append(time.perf_counter() - t)
        return min(times) / n * 1e6

    with tempfile.TemporaryDirectory(prefix="bench-calls-") as tmp:
        stores: list[tuple[str, Any]] = [("no-op (MemoryStorage)", MemoryStorage())]
        for mode in ("relaxed", "strict"):
            stores.append((mode, SQLiteStorage(os.path.join(tmp, mode), mode)))
        print(f"storage calls per QoS 1 message, us (best of {rounds} x {n}; {REPO})")
        for name, store in stores:
            Session.broker.storage = store
            print(f"  {name:22s} queued {best(queued):6.3f}   direct {best(direct):6.3f}")
            if hasattr(store, "close"):
                store.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--runs", type=int, default=1, help="rounds; medians over them")
    ap.add_argument("--no-mosquitto", action="store_true", help="mqttfast cells only")
    ap.add_argument(
        "--persistent-only",
        action="store_true",
        help="skip the clean-session cells (persistent subscriber sessions only)",
    )
    ap.add_argument("--c-source", type=Path, default=None, help="path to mqtt-loadgen.c")
    ap.add_argument(
        "--base",
        type=Path,
        default=None,
        help="another checkout: its mqttfast cells run too (prefix base:), same rounds",
    )
    ap.add_argument(
        "--calls",
        action="store_true",
        help="only time the storage calls of one message (loop thread, us), then exit",
    )
    args = ap.parse_args()
    if args.calls:
        storage_calls()
        return 0
    if args.c_source is not None:
        persistent_lg = build_loadgen(args.c_source, True)
        clean_lg = build_loadgen(args.c_source, False)
    else:  # the project's own load generator (the default: reruns from the repository)
        persistent_lg, clean_lg = BENCH_PERSISTENT, BENCH_CLEAN
    cells = [
        ("mqttfast-off", persistent_lg),
        ("mqttfast-relaxed", persistent_lg),
        ("mqttfast-strict", persistent_lg),
    ]
    if not args.persistent_only:
        cells += [("mqttfast-off", clean_lg), ("mqttfast-strict", clean_lg)]
    if args.base is not None:
        cells += [("base:" + kind, lg) for kind, lg in cells]
    if not args.no_mosquitto and (
        shutil.which("mosquitto") or os.path.exists("/usr/sbin/mosquitto")
    ):
        cells += [("mosquitto-persist", persistent_lg), ("mosquitto-nopersist", persistent_lg)]
    # Rounds interleave the cells (off, relaxed, strict, ... then again), so that the load
    # of a shared machine drifting during the run hits every cell alike; the ratios are
    # also taken per round (each cell against the off cell of the same round).
    samples: dict[tuple[str, str], list[float]] = {}
    cpu_us: dict[tuple[str, str], list[float]] = {}  # broker CPU us per message
    for round_no in range(args.runs):
        for kind, lg in cells:
            sessions = "persistent" if lg == persistent_lg else "clean"
            r = run_cell(kind, lg, args)
            samples.setdefault((kind, sessions), []).append(rate_of(r))
            cpu = r.get("broker_cpu_pct")
            if isinstance(cpu, (int, float)) and rate_of(r) > 0:
                cpu_us.setdefault((kind, sessions), []).append(cpu * 1e4 / rate_of(r))
            print(
                f"  round {round_no + 1} {kind:27s} {sessions:10s} {rate_of(r):10.0f} msg/s  "
                f"(exit {r['exit']}, lost {r.get('lost', '?')}, "
                f"broker cpu {r.get('broker_cpu_pct', '?')}%)",
                flush=True,
            )
    results = {key: statistics.median(rates) for key, rates in samples.items()}
    round_ratios: dict[tuple[str, str], float] = {}
    for (kind, sessions), rates in samples.items():
        prefix, name = split_kind(kind)
        base_kind = prefix + (
            "mqttfast-off" if name.startswith("mqttfast") else "mosquitto-nopersist"
        )
        base = samples.get((base_kind, sessions))
        if base:
            round_ratios[(kind, sessions)] = statistics.median(
                rate / b for rate, b in zip(rates, base, strict=True)
            )
    print(f"\nQoS 1, {args.pairs} pairs, window 64, 64 B, {args.duration:g} s per cell (median)")
    print(
        f"{'broker':27s} {'sessions':10s} {'msg/s':>10s} {'vs off':>8s} {'per round':>10s} "
        f"{'cpu us/msg':>10s}"
    )
    for (kind, sessions), rate in results.items():
        prefix, name = split_kind(kind)
        base = (
            results.get((prefix + "mqttfast-off", sessions))
            if name.startswith("mqttfast")
            else results.get((prefix + "mosquitto-nopersist", sessions))
        )
        ratio = f"{rate / base:.2f}" if base else "-"
        per_round = round_ratios.get((kind, sessions))
        per = f"{per_round:.2f}" if per_round is not None else "-"
        us = cpu_us.get((kind, sessions))
        cpu_text = f"{statistics.median(us):.2f}" if us else "-"
        print(f"{kind:27s} {sessions:10s} {rate:10.0f} {ratio:>8s} {per:>10s} {cpu_text:>10s}")
    strict = results.get(("mqttfast-strict", "persistent"))
    mosq = results.get(("mosquitto-persist", "persistent"))
    relaxed = results.get(("mqttfast-relaxed", "persistent"))
    if strict and mosq:
        print(f"\nmqttfast strict / mosquitto persistence: {strict / mosq:.2f}")
    if relaxed and mosq:
        print(f"mqttfast relaxed / mosquitto persistence: {relaxed / mosq:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
