"""What one idle MQTT connection costs in mqttfast, object by object (issue 17).

    python3 benchmarks/memory_breakdown.py [--conns 2000] [--out FILE]

Runs the broker in this process (uvloop, a listener opened as the CLI opens it, default
settings, persistence off), lets the project's load generator open N MQTT 3.1.1 connections
(``mqttfast bench connections --conns N --hold H --keepalive K``: CONNECT, keep alive 0 by
default, then idle), and while they are held prints:

- ``sys.getsizeof`` of every per-connection object of one sample connection (protocol and
  its ``__dict__``, sink, decoder, transport, Connection, Session and each container they
  own, the id strings), and the broker-wide containers' growth divided by N;
- ``tracemalloc``'s Python-heap growth over N (everything Python allocated per connection);
- ``VmRSS`` growth over N (adds what Python cannot see: libuv handles, malloc slack).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import tracemalloc
from pathlib import Path
from types import MappingProxyType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def size_of(obj: Any) -> int:
    if obj is None:
        return 0
    n = sys.getsizeof(obj)
    d = getattr(obj, "__dict__", None)
    if d is not None:
        n += sys.getsizeof(d)
    return n


def breakdown(proto: Any) -> dict[str, int]:
    """Shallow sizes of the objects one connection owns (shared objects excluded)."""
    conn = proto.conn
    session = conn.session
    sink = proto.sink
    out: dict[str, int] = {
        "protocol (+__dict__)": size_of(proto),
        "sink": size_of(sink),
        "sink.buf": sys.getsizeof(sink.buf) if getattr(sink, "buf", None) is not None else 0,
        "decoder": size_of(proto.decoder),
        "transport (Python object)": size_of(sink.transport),
        "Connection": size_of(conn),
    }
    for name in ("aliases_out", "aliases_in", "paused_publishers", "blocked_by"):
        v = getattr(conn, name, None)
        # A shared empty default (one frozenset for all) costs nothing per connection.
        shared = isinstance(v, frozenset) and not v
        out[f"Connection.{name}"] = 0 if (v is None or shared) else sys.getsizeof(v)
    # Made on demand (not held) when the connection keeps the transport's peer source.
    held_peer = getattr(conn, "_peer", conn.peer)
    out["peer str"] = sys.getsizeof(held_peer) if isinstance(held_peer, str) else 0
    rare = getattr(conn, "_rare", None)
    out["Connection._rare (rarely used fields)"] = 0 if rare is None else sys.getsizeof(rare)
    out["client_id str"] = sys.getsizeof(conn.client_id)
    if session is not None:
        out["Session"] = size_of(session)
        rare = getattr(session, "_rare", None)
        out["Session._rare"] = 0 if rare is None else sys.getsizeof(rare)
        for name in ("subscriptions", "inflight", "queue", "awaiting_pubrel"):
            v = getattr(session, name, None)
            # A shared empty default (one object for all sessions) costs nothing per session.
            shared = (
                v is not None
                and len(v) == 0
                and isinstance(v, (tuple, frozenset, MappingProxyType))
            )
            out[f"Session.{name}"] = 0 if (v is None or shared) else sys.getsizeof(v)
    return out


async def measure(n: int, hold: float, trace: bool, keepalive: int = 0) -> dict[str, Any]:
    from mqttfast.core.broker import BrokerCore
    from mqttfast.core.settings import BrokerSettings
    from mqttfast.transport import tcp
    from mqttfast.transport.listeners import ListenerConfig
    from mqttfast.transport.server import MQTTServer

    protos: list[Any] = []
    orig_made = tcp.MQTTProtocol.connection_made

    def connection_made(self: Any, transport: Any) -> None:
        orig_made(self, transport)
        if len(protos) < 1:
            protos.append(self)

    tcp.MQTTProtocol.connection_made = connection_made  # type: ignore[method-assign]
    broker = BrokerCore(BrokerSettings())
    server = MQTTServer(broker)
    listener = await server.start_listener(ListenerConfig(port=0, address="127.0.0.1"))
    port = listener.addresses()[0][1]
    gc.collect()
    rss0 = rss_bytes()
    if trace:  # tracemalloc's own bookkeeping inflates RSS: RSS is read from a run without
        tracemalloc.start(1)
        snap0 = tracemalloc.take_snapshot()
    heap0 = tracemalloc.get_traced_memory()[0]
    sessions0 = sys.getsizeof(broker.sessions)
    conns0 = sys.getsizeof(broker.connections)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mqttfast",
        "bench",
        "connections",
        "--conns",
        str(n),
        "--hold",
        str(hold),
        "--port",
        str(port),
        "--keepalive",
        str(keepalive),
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while len(broker.connections) < n and loop.time() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # settle: every CONNACK written
    gc.collect()
    heap1 = tracemalloc.get_traced_memory()[0]
    rss1 = rss_bytes()
    top: list[str] = []
    if trace:
        snap1 = tracemalloc.take_snapshot()
        for st in snap1.compare_to(snap0, "lineno")[:15]:
            frame = st.traceback[0]
            where = f"{Path(frame.filename).name}:{frame.lineno}"
            top.append(f"{where:40} {st.size_diff / max(1, n):7.0f} B/conn")
    got = len(broker.connections)
    parts = breakdown(protos[0]) if protos and protos[0].conn is not None else {}
    parts["broker.sessions dict (per conn)"] = (sys.getsizeof(broker.sessions) - sessions0) // max(
        1, got
    )
    parts["broker.connections dict (per conn)"] = (
        sys.getsizeof(broker.connections) - conns0
    ) // max(1, got)
    tracemalloc.stop()
    await proc.communicate()
    await server.stop()
    return {
        "conns": got,
        "objects_bytes": parts,
        "objects_total_bytes": sum(parts.values()),
        "tracemalloc_bytes_per_conn": (heap1 - heap0) / max(1, got) if trace else None,
        "tracemalloc_top_lines": top,
        "rss_bytes_per_conn": None if trace else (rss1 - rss0) / max(1, got),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--conns", type=int, default=2000)
    p.add_argument("--hold", type=float, default=8)
    p.add_argument("--keepalive", type=int, default=0, help="clients' keep alive (s)")
    p.add_argument("--out", default=None)
    p.add_argument("--trace", action="store_true", help="tracemalloc figures (then no RSS figure)")
    a = p.parse_args(argv)
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    from mqttfast.transport.server import new_event_loop

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        res = runner.run(measure(a.conns, a.hold, a.trace, a.keepalive))
    print(f"{res['conns']} idle connections")
    for k, v in res["objects_bytes"].items():
        print(f"  {k:38} {v:6d} B")
    print(f"  {'sum of the objects above':38} {res['objects_total_bytes']:6d} B")
    if a.trace:
        print(
            f"tracemalloc (Python heap) per connection: {res['tracemalloc_bytes_per_conn']:.0f} B"
        )
        print("largest allocation sites (growth per connection):")
        for line in res["tracemalloc_top_lines"]:
            print("  " + line)
    else:
        print(f"VmRSS per connection: {res['rss_bytes_per_conn'] / 1024:.2f} KiB")
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
