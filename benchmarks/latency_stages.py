"""Where a message's time goes inside mqttfast at low load (issue 17), stage by stage.

    python3 benchmarks/latency_stages.py [--rate 2000] [--duration 6] [--out FILE]
                                         [--c-source PATH/mqtt-loadgen.c]

Starts one mqttfast broker (the CLI path, uvloop, same flags as compare_brokers.py) in a
child process whose transport is instrumented with ``time.perf_counter_ns`` wrappers, runs
the project's load generator (``mqttfast bench pairs --pairs 4 --qos 0 --rate R``, the
latency cell of compare_brokers.py; ``--c-source PATH/mqtt-loadgen.c`` drives it with that
C load generator instead, as a yardstick) against it, then prints the p50/p99 of each stage:

  decode   data_received entry -> Decoder.feed returned
  core     Decoder.feed returned -> first byte handed to the subscriber's sink
           (handler, authorisation, routing, encoding)
  tail     first sink write -> its flush (the rest of the core's work; 0 when a small
           read's first write goes straight to the socket)
  wait     data_received returned -> the sink is flushed (0 when flushed in the same turn;
           else the loop turn that ran the call_soon flush)
  send     flush start (or the direct write) -> transport.write returned (the send syscall)
  total    data_received entry -> transport.write returned

and the load generator's end-to-end p50/p99 (socket to socket, both kernels included).
The wrappers themselves cost ~1 us per message (four perf_counter_ns calls and a few
Python calls), so the total is an upper bound. The JSON holds every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def pct(values: list[int], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] / 1000.0  # ns -> us


def serve(port: int, out: str) -> int:
    """The instrumented broker (child process)."""
    from mqttfast.app.cli import main
    from mqttfast.transport import tcp

    stages: dict[str, list[int]] = {k: [] for k in ("decode", "core", "tail", "wait", "send")}
    totals: list[int] = []
    clock = time.perf_counter_ns
    state: dict[str, Any] = {"t0": 0, "t1": 0, "first_write": None}
    pending: dict[int, tuple[int, int, int]] = {}  # id(sink) -> (t0, t1, t_write)
    ended: dict[int, int] = {}  # id(sink) -> t at the end of its data_received

    orig_data_received = tcp.MQTTProtocol.data_received
    orig_feed_owner = tcp.MQTTProtocol

    def data_received(self: Any, data: bytes) -> None:
        t0 = clock()
        state["t0"] = t0
        decoder = self.decoder
        # Decoding is timed by running feed through a proxy around the real decoder.
        real = decoder
        proxy = _FeedTimer(real, state)
        self.decoder = proxy
        try:
            orig_data_received(self, data)
        finally:
            self.decoder = real
        t_end = clock()
        for sid, (a, _b, _c) in pending.items():
            if a == t0 and sid not in ended:
                ended[sid] = t_end

    class _FeedTimer:
        __slots__ = ("real", "state")

        def __init__(self, real: Any, st: dict[str, Any]) -> None:
            self.real = real
            self.state = st

        def feed(self, data: bytes) -> Any:
            r = self.real.feed(data)
            self.state["t1"] = clock()
            return r

        @property
        def protocol_version(self) -> Any:
            return self.real.protocol_version

        @property
        def buffered(self) -> Any:
            return self.real.buffered

    orig_write = tcp.BatchedSink.write
    orig_writelines = tcp.BatchedSink.writelines
    orig_flush = tcp.BatchedSink.flush

    def note_write(sink: Any) -> None:
        if not sink.buf and id(sink) not in pending:
            pending[id(sink)] = (state["t0"], state["t1"], clock())

    def direct(orig: Any, sink: Any, data: Any) -> bool:
        """A small read's first write goes straight to the socket (tcp.BatchedSink.write):
        no tail, no wait; send is the write call."""
        if sink.buf is not None or not getattr(sink.flusher, "direct", False):
            return False
        tw = clock()
        orig(sink, data)
        t_sent = clock()
        t0, t1 = state["t0"], state["t1"]
        for k, v in (("decode", t1 - t0), ("core", tw - t1), ("tail", 0), ("wait", 0)):
            stages[k].append(v)
        stages["send"].append(t_sent - tw)
        totals.append(t_sent - t0)
        return True

    def write(self: Any, data: bytes) -> None:
        if not direct(orig_write, self, data):
            note_write(self)
            orig_write(self, data)

    def writelines(self: Any, parts: Any) -> None:
        if not direct(orig_writelines, self, parts):
            note_write(self)
            orig_writelines(self, parts)

    def flush(self: Any) -> None:
        rec = pending.pop(id(self), None)
        if rec is None or not self.buf:
            orig_flush(self)
            return
        t_flush = clock()
        orig_flush(self)
        t_sent = clock()
        t0, t1, tw = rec
        t_end = ended.pop(id(self), None)
        if t_end is None:  # flushed inside data_received (same turn, before it returned)
            t_end = t_flush
        stages["decode"].append(t1 - t0)
        stages["core"].append(tw - t1)
        stages["tail"].append(max(0, t_end - tw))
        stages["wait"].append(max(0, t_flush - t_end))
        stages["send"].append(t_sent - t_flush)
        totals.append(t_sent - t0)

    tcp.MQTTProtocol.data_received = data_received  # type: ignore[method-assign]
    tcp.BatchedSink.write = write  # type: ignore[method-assign]
    tcp.BatchedSink.writelines = writelines  # type: ignore[method-assign]
    tcp.BatchedSink.flush = flush  # type: ignore[method-assign]
    del orig_feed_owner
    data_dir = tempfile.mkdtemp(prefix="mqttfast-stages-")
    try:
        rc = main(
            [
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--max-inflight",
                "0",
                "--persistence",
                "off",
                "--data-dir",
                data_dir,
            ]
        )
    finally:
        stages["total"] = totals
        Path(out).write_text(json.dumps(stages))
    return int(rc or 0)


def run(args: argparse.Namespace) -> int:
    from compare_brokers import bench_env, compile_c, free_port

    work = Path(tempfile.mkdtemp(prefix="mqttfast-stages-run-"))
    lg_args = ["pairs", "--pairs", "4", "--qos", "0", "--rate", str(args.rate)]
    if args.c_source:
        loadgen = [str(compile_c(Path(args.c_source).resolve(), work)), *lg_args]
    else:
        loadgen = [sys.executable, "-m", "mqttfast", "bench", *lg_args, "--json"]
    port = free_port()
    raw = work / "stages.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
    )
    broker = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port), str(raw)], env=env, cwd=work
    )
    try:
        deadline = time.monotonic() + 20
        import socket

        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        lg = subprocess.run(
            [*loadgen, "--port", str(port), "--duration", str(args.duration)],
            capture_output=True,
            text=True,
            timeout=args.duration + 60,
            env=bench_env(),
            cwd=work,
        )
        line = next((ln for ln in reversed(lg.stdout.splitlines()) if ln.startswith("{")), "{}")
        e2e = json.loads(line)
    finally:
        broker.send_signal(signal.SIGTERM)
        try:
            broker.wait(15)
        except subprocess.TimeoutExpired:
            broker.kill()
            broker.wait(5)
    stages = json.loads(raw.read_text()) if raw.exists() else {}
    result: dict[str, Any] = {
        "rate": args.rate,
        "loadgen": e2e,
        "stages_us": {
            k: {"n": len(v), "p50": pct(v, 0.5), "p99": pct(v, 0.99)} for k, v in stages.items()
        },
    }
    print(f"end to end (loadgen): p50 {e2e.get('lat_p50_us')} us, p99 {e2e.get('lat_p99_us')} us")
    print(f"{'stage':8} {'n':>7} {'p50 us':>8} {'p99 us':>8}")
    for k, v in result["stages_us"].items():
        print(f"{k:8} {v['n']:7d} {v['p50'] or 0:8.1f} {v['p99'] or 0:8.1f}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rate", type=int, default=2000)
    p.add_argument("--duration", type=float, default=6)
    p.add_argument(
        "--c-source", default=None, help="mqtt-loadgen.c: drive with the C load generator"
    )
    p.add_argument("--out", default=None)
    p.add_argument("--serve", nargs=2, metavar=("PORT", "OUT"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.serve:
        return serve(int(a.serve[0]), a.serve[1])
    return run(a)


if __name__ == "__main__":
    sys.exit(main())
