"""CPU per delivered message: single process vs one ``--cluster`` node vs ``--workers 2``.

    python benchmarks/workers_cpu.py pairs_qos1 pairs_qos1_rate fanin_qos0

For each cell and mode: start the broker (and, for ``cluster1``, a nats-server with
JetStream), run ``mqttfast bench`` against it, and divide the CPU time the broker
processes (and nats-server) used during the run, read from /proc/<pid>/stat, by the
messages delivered. One JSON line per run. The figures of docs/workers.md come from it.
Linux only (/proc). Env: MODES=single,cluster1,workers2, ROUNDS=1.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=REPO)
TICK = os.sysconf("SC_CLK_TCK")

CELLS = {
    "pairs_qos1": ["pairs", "--qos", "1", "--pairs", "8", "--window", "64"],
    "pairs_qos1_rate": ["pairs", "--qos", "1", "--pairs", "8", "--rate", "2000"],
    "fanin_qos0": ["fanin", "--qos", "0", "--pubs", "4"],
    "fanout_qos0": ["fanout", "--qos", "0", "--subs", "16"],
}
COMMON = ["--duration", "4", "--procs", "1"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port}")


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def cpu_seconds(pids: list[int]) -> dict[int, tuple[str, float]]:
    out = {}
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            name = open(f"/proc/{pid}/comm").read().strip()
        except OSError:
            continue
        out[pid] = (name, (int(fields[11]) + int(fields[12])) / TICK)  # utime + stime
    return out


def run(mode: str, cell: str) -> None:
    port = free_port()
    data = os.path.join(tempfile.gettempdir(), f"mqttfast-workers-cpu-{mode}")
    shutil.rmtree(data, ignore_errors=True)
    os.makedirs(data)
    argv = [sys.executable, "-m", "mqttfast", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--log-level", "warning", "--persistence", "off", "--max-inflight", "0"]
    argv += ["--data-dir", data]
    nats = None
    if mode == "workers2":
        argv += ["--workers", "2"]
    elif mode == "cluster1":
        nats_port = free_port()
        nats = subprocess.Popen(
            ["nats-server", "-a", "127.0.0.1", "-p", str(nats_port), "-js", "-sd", data + "/js"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(nats_port)
        argv += ["--cluster", f"nats://127.0.0.1:{nats_port}"]
    broker = subprocess.Popen(argv, env=ENV)
    try:
        wait_port(port)
        # every worker joined; 5 s: past the first heartbeat intervals in which a node
        # sends everything to NATS until it has heard every other node's interest
        time.sleep(0.5 if mode == "single" else 5.0)
        pids = process_tree(broker.pid) + ([nats.pid] if nats else [])
        before = cpu_seconds(pids)
        bench = [sys.executable, "-m", "mqttfast", "bench", *CELLS[cell], *COMMON]
        done = subprocess.run(
            [*bench, "--port", str(port), "--json"],
            env=ENV,
            capture_output=True,
            text=True,
            timeout=180,
        )
        after = cpu_seconds(pids)
    finally:
        broker.send_signal(signal.SIGTERM)
        broker.wait(60)
        if nats is not None:
            nats.terminate()
            nats.wait(10)
    result = json.loads([x for x in done.stdout.splitlines() if x.startswith("{")][-1])
    moved = result.get("received") or result.get("sent") or 1

    def used(is_nats: bool) -> float:
        return sum(
            after[p][1] - before[p][1]
            for p in after
            if p in before and ("nats" in after[p][0]) == is_nats
        )

    line = {
        "cell": cell,
        "mode": mode,
        "msgs_per_s": result.get("msgs_per_s"),
        "delivered": moved,
        "broker_us_per_msg": round(used(False) / moved * 1e6, 2),
        "nats_us_per_msg": round(used(True) / moved * 1e6, 2),
        "p50_us": result.get("p50_us"),
        "p99_us": result.get("p99_us"),
    }
    print(json.dumps(line), flush=True)


def main() -> None:
    modes = os.environ.get("MODES", "single,cluster1,workers2").split(",")
    for _ in range(int(os.environ.get("ROUNDS", "1"))):
        for cell in sys.argv[1:] or list(CELLS):
            for mode in modes:
                run(mode, cell)


if __name__ == "__main__":
    main()
