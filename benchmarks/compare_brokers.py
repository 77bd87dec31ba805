#!/usr/bin/env python3
"""Side-by-side broker comparison: mqttfast (Cython), mqttfast (pure Python), mosquitto, amqtt.

One command:

    python3 benchmarks/compare_brokers.py [--quick] [--duration 6] [--runs 3]

compiles the independent load generator (``<repo>/../shared/bench/mqtt-loadgen.c``, or
``--loadgen PATH``) with gcc into a temporary directory, starts each broker in turn on a
free loopback port, runs the scenario matrix of the shared bench README against it with
that same load generator, and stops it. It prints one table (medians of N runs, ratios
to mosquitto and Cython vs pure) and writes ``benchmarks/results/compare-latest.json``,
``compare-latest.md`` and ``compare-latest.png`` (the chart needs matplotlib; without
it the chart is skipped with a message).

Only ratios measured in one run mean anything: on a 2-core machine the load generator
and the broker share the CPU. Every wait is bounded; each broker is stopped afterwards.
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
DEFAULT_LOADGEN = REPO.parent / "shared" / "bench" / "mqtt-loadgen.c"
RESULTS_DIR = REPO / "benchmarks" / "results"

# How long a broker may take to accept connections, and to exit after SIGTERM.
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


# --------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Cell:
    """One scenario of the matrix: loadgen arguments and the number it reports."""

    name: str
    label: str
    args: tuple[str, ...]
    metric: str  # key of the loadgen JSON line
    unit: str
    higher_is_better: bool = True
    timed: bool = True  # takes --duration
    with_pid: bool = False  # pass --pid BROKER_PID
    extra_metrics: tuple[str, ...] = ()
    fresh_broker: bool = (
        False  # restart the broker before each run (memory is measured from a clean start)
    )


def scenario_matrix(quick: bool) -> list[Cell]:
    """The cells of ../shared/bench/README.md, in its order (memory last)."""
    conns = "500" if quick else "2000"
    hold = "2" if quick else "5"
    return [
        Cell(
            "fanin_qos0",
            "fan-in QoS0, 4 publishers",
            ("fanin", "--pubs", "4", "--qos", "0", "--size", "64"),
            "msgs_per_s_received",
            "msg/s",
            with_pid=True,
        ),
        Cell(
            "fanout_qos0",
            "fan-out QoS0, 16 subscribers (deliveries)",
            ("fanout", "--subs", "16", "--qos", "0", "--size", "64"),
            "msgs_per_s_received",
            "msg/s",
            with_pid=True,
        ),
        Cell(
            "pairs_qos1",
            "pairs QoS1, 8 pairs",
            ("pairs", "--pairs", "8", "--qos", "1", "--window", "64"),
            "msgs_per_s_received",
            "msg/s",
            with_pid=True,
        ),
        Cell(
            "pairs_qos2",
            "pairs QoS2, 4 pairs",
            ("pairs", "--pairs", "4", "--qos", "2", "--window", "64"),
            "msgs_per_s_received",
            "msg/s",
            with_pid=True,
        ),
        Cell(
            "fanin_16k",
            "fan-in QoS0, 16 KiB payload",
            ("fanin", "--pubs", "4", "--qos", "0", "--size", "16384"),
            "msgs_per_s_received",
            "msg/s",
            with_pid=True,
        ),
        Cell(
            "latency_2000",
            "latency p99 at 2,000 msg/s, QoS0",
            ("pairs", "--pairs", "4", "--qos", "0", "--rate", "2000"),
            "lat_p99_us",
            "us",
            higher_is_better=False,
            extra_metrics=("lat_p50_us",),
        ),
        Cell(
            "connections",
            f"memory per idle connection ({conns})",
            ("connections", "--conns", conns, "--hold", hold),
            "rss_kb_per_conn",
            "KiB",
            higher_is_better=False,
            timed=False,
            with_pid=True,
            fresh_broker=True,
        ),
    ]


# --------------------------------------------------------------------------- brokers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


@dataclass
class Broker:
    """A broker we can start on a loopback port and stop again."""

    key: str
    title: str
    workdir: Path
    env_extra: dict[str, str] = field(default_factory=dict)
    env_remove: tuple[str, ...] = ()
    proc: subprocess.Popen | None = None
    port: int = 0
    version: str = ""
    log_path: Path | None = None

    def command(self, port: int) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        for k in self.env_remove:
            env.pop(k, None)
        env.update(self.env_extra)
        return env

    def start(self) -> None:
        self.port = free_port()
        self.log_path = self.workdir / f"{self.key}.log"
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.command(self.port),
            cwd=self.cwd(),
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        if not wait_for_port(self.port, self.proc, START_TIMEOUT_S):
            self.stop()
            raise RuntimeError(
                f"{self.title} did not accept connections on 127.0.0.1:{self.port} "
                f"within {START_TIMEOUT_S:.0f} s; log tail:\n{self.log_tail()}"
            )

    def cwd(self) -> Path:
        return self.workdir

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT_S)
        self.proc = None

    def log_tail(self, n: int = 15) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines() if self.log_path else []
        except OSError:
            return ""
        return "\n".join(lines[-n:])


class MqttfastBroker(Broker):
    def command(self, port: int) -> list[str]:
        # --max-inflight 0 (= 65535) matches mosquitto's max_inflight_messages 0 below: with a
        # window of 20 the loadgen's 250-message lead per publisher overflows the 1,000-message
        # session queue and QoS 1 messages are dropped (by design, counted), which is not what
        # this benchmark measures.
        # --persistence off matches mosquitto's "persistence false" (both keep state in memory);
        # the data dir is private to this run anyway, so two instances never share a lock.
        return [
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
            str(self.workdir / f"{self.key}-data"),
        ]

    def env(self) -> dict[str, str]:
        env = super().env()
        # Import the work tree's package while running in the temporary directory, so nothing
        # the broker writes lands in the repository.
        env["PYTHONPATH"] = str(REPO) + (
            os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
        )
        return env

    def probe(self) -> str:
        """Which codec twin this environment selects ('cython'/'python'), or raise."""
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                "import mqttfast, mqttfast.codec as c; print(c.IMPLEMENTATION, mqttfast.__version__)",
            ],
            cwd=self.workdir,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        if out.returncode != 0:
            raise RuntimeError(
                out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "import failed"
            )
        impl, _, ver = out.stdout.strip().partition(" ")
        self.version = f"{ver} ({impl}) {git_rev()}"
        return impl


class MosquittoBroker(Broker):
    exe = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )

    def command(self, port: int) -> list[str]:
        conf = self.workdir / "mosquitto.conf"
        # set_tcp_nodelay: mosquitto leaves Nagle on by default, which puts ~17 ms p50 on the
        # 2,000 msg/s latency cell (delayed-ACK interplay); every other broker here disables it.
        # max_inflight_messages 0: with the default of 20, mosquitto 2.0.11 stops delivering
        # queued QoS 2 messages in the pairs QoS2 cell (measured: loss, then stall). Both match
        # the anchor numbers in ../shared/bench/README.md.
        conf.write_text(
            f"listener {port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "set_tcp_nodelay true\n"
            "max_inflight_messages 0\n"
            "log_dest stderr\n"
            "log_type error\n"
            "log_type warning\n"
        )
        return [self.exe, "-c", str(conf)]

    def probe(self) -> str:
        out = subprocess.run([self.exe, "-h"], capture_output=True, text=True, timeout=10)
        first = (out.stdout or out.stderr).splitlines()[0] if (out.stdout or out.stderr) else ""
        self.version = first.replace("mosquitto version", "").strip() or "?"
        return "c"


class AmqttBroker(Broker):
    """amqtt 0.12 (optional). Either ``--amqtt PATH`` (its ``amqtt`` script, e.g. from a venv, so
    it cannot conflict with this environment) or an ``amqtt`` on PATH importable here."""

    exe: str | None = None

    def command(self, port: int) -> list[str]:
        conf = self.workdir / "amqtt.yaml"
        # amqtt 0.12 configuration: one TCP listener, anonymous clients, no $SYS or packet logging.
        conf.write_text(
            "---\n"
            "listeners:\n"
            "  default:\n"
            "    type: tcp\n"
            f"    bind: 127.0.0.1:{port}\n"
            "plugins:\n"
            "  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
            "    allow_anonymous: true\n"
        )
        assert self.exe is not None
        return [self.exe, "-c", str(conf)]

    def probe(self) -> str:
        if self.exe is None:
            found = shutil.which("amqtt")
            ok = subprocess.run(
                [sys.executable, "-c", "import amqtt"], capture_output=True, timeout=60
            )
            if not found or ok.returncode != 0:
                raise RuntimeError(
                    "amqtt is not installed (optional: python3 -m venv /tmp/amqtt && "
                    "/tmp/amqtt/bin/pip install amqtt, then --amqtt /tmp/amqtt/bin/amqtt)"
                )
            self.exe = found
        out = subprocess.run([self.exe, "--version"], capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"{self.exe} --version failed: {out.stderr.strip()[-200:]}")
        self.version = out.stdout.strip()
        return "python"


def git_rev() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def available_brokers(workdir: Path, wanted: list[str], amqtt: Path | None = None) -> list[Broker]:
    candidates: list[Broker] = [
        MqttfastBroker(
            "mqttfast_cython", "mqttfast (Cython)", workdir, env_remove=("MQTTFAST_NO_EXTENSIONS",)
        ),
        MqttfastBroker(
            "mqttfast_python",
            "mqttfast (pure Python)",
            workdir,
            env_extra={"MQTTFAST_NO_EXTENSIONS": "1"},
        ),
        MosquittoBroker("mosquitto", "mosquitto", workdir),
        AmqttBroker("amqtt", "amqtt", workdir),
    ]
    if amqtt is not None:
        candidates[-1].exe = str(amqtt)
    chosen = []
    for b in candidates:
        if wanted and b.key not in wanted:
            continue
        if isinstance(b, MosquittoBroker) and not b.exe:
            print("skip mosquitto: not installed (apt-get install mosquitto)", file=sys.stderr)
            continue
        try:
            impl = b.probe()
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            print(f"skip {b.title}: {exc}", file=sys.stderr)
            continue
        if b.key == "mqttfast_cython" and impl != "cython":
            print(
                "skip mqttfast (Cython): the extensions are not built; the codec reports "
                f"IMPLEMENTATION={impl!r} (run: python3 setup.py build_ext --inplace)",
                file=sys.stderr,
            )
            continue
        chosen.append(b)
    return chosen


# --------------------------------------------------------------------------- running


def compile_loadgen(src: Path, workdir: Path) -> Path:
    if not src.is_file():
        raise SystemExit(f"error: load generator source not found: {src} (use --loadgen PATH)")
    gcc = shutil.which("gcc") or shutil.which("cc")
    if not gcc:
        raise SystemExit("error: gcc not found (apt-get install gcc)")
    exe = workdir / "mqtt-loadgen"
    subprocess.run([gcc, "-O2", "-o", str(exe), str(src)], check=True, timeout=120)
    return exe


def run_cell(
    loadgen: Path, broker: Broker, cell: Cell, duration: float, label: str
) -> dict[str, Any]:
    args = [str(loadgen), *cell.args, "--port", str(broker.port), "--label", label]
    if cell.timed:
        args += ["--duration", str(duration), "--drain", "10"]
    if cell.with_pid and broker.proc is not None:
        args += ["--pid", str(broker.proc.pid)]
    # The loadgen has its own hard alarm; this outer limit only guards against a wedged process.
    limit = (duration if cell.timed else 0) + 10 + 150
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"loadgen exceeded {limit:.0f} s"}
    line = next((ln for ln in reversed(out.stdout.splitlines()) if ln.startswith("{")), "")
    try:
        res = json.loads(line)
    except json.JSONDecodeError:
        return {
            "ok": False,
            "error": f"no JSON from loadgen (exit {out.returncode}): {out.stderr.strip()[:200]}",
        }
    res["exit_code"] = out.returncode
    return res


def median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in runs if isinstance(r.get(key), (int, float)) and r[key] >= 0]
    return statistics.median(vals) if vals else None


# --------------------------------------------------------------------------- reporting


def fmt_value(v: float | None, unit: str) -> str:
    if v is None:
        return "n/a"
    if unit == "msg/s":
        return f"{v / 1000:.1f}k" if v >= 1000 else f"{v:.0f}"
    if unit == "us":
        return f"{v:.0f} us" if v < 1000 else f"{v / 1000:.2f} ms"
    return f"{v:.1f} {unit}" if v < 100 else f"{v:.0f} {unit}"


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}x"


def build_table(cells: list[Cell], brokers: list[dict[str, Any]], medians: dict) -> str:
    keys = [b["key"] for b in brokers]
    head = ["cell"] + [b["title"] for b in brokers]
    ratio_cols = []
    if "mosquitto" in keys:
        ratio_cols += [(k, "mosquitto", f"{short(k)}/mosq") for k in keys if k != "mosquitto"]
    if "mqttfast_cython" in keys and "mqttfast_python" in keys:
        ratio_cols.append(("mqttfast_cython", "mqttfast_python", "Cython/pure"))
    head += [c[2] for c in ratio_cols]
    rows = []
    for cell in cells:
        row = [cell.label + ("" if cell.higher_is_better else " (lower is better)")]
        for k in keys:
            m = medians.get(k, {}).get(cell.name, {})
            txt = fmt_value(m.get("value"), cell.unit)
            if cell.name == "latency_2000" and m.get("lat_p50_us") is not None:
                txt = f"p50 {fmt_value(m['lat_p50_us'], 'us')}, p99 {txt}"
            if m.get("failures"):
                txt += f" [{m['failures']}/{m['runs']} runs with loss/errors]"
            row.append(txt)
        for a, b, _ in ratio_cols:
            row.append(
                ratio(
                    medians.get(a, {}).get(cell.name, {}).get("value"),
                    medians.get(b, {}).get(cell.name, {}).get("value"),
                )
            )
        rows.append(row)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def short(key: str) -> str:
    return {"mqttfast_cython": "Cython", "mqttfast_python": "pure", "amqtt": "amqtt"}.get(key, key)


def _log_if_wide(ax: Any, values: list[float]) -> None:
    """Log scale when the bars span more than 20x (amqtt beside mosquitto), so all stay visible."""
    pos = [v for v in values if v and v > 0]
    if pos and max(pos) / min(pos) > 20:
        ax.set_yscale("log")


def draw_chart(
    path: Path, cells: list[Cell], brokers: list[dict[str, Any]], medians: dict, title: str
) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "chart skipped: matplotlib is not installed (pip install matplotlib)"
    thr = [c for c in cells if c.unit == "msg/s"]
    other = [c for c in cells if c.unit != "msg/s"]
    fig, axes = plt.subplots(
        1,
        1 + len(other),
        figsize=(5 + 4 * len(thr) / 2 + 3 * len(other), 5),
        gridspec_kw={"width_ratios": [max(len(thr), 1) * 1.2] + [1] * len(other)},
    )
    if not isinstance(axes, (list, tuple)):
        axes = list(getattr(axes, "flat", [axes]))
    width = 0.8 / max(len(brokers), 1)
    palette = {
        "mqttfast_cython": "#1f77b4",
        "mqttfast_python": "#aec7e8",
        "mosquitto": "#2ca02c",
        "amqtt": "#d62728",
    }
    colors = [palette.get(b["key"], "#9467bd") for b in brokers]

    ax = axes[0]
    for i, b in enumerate(brokers):
        vals = [(medians.get(b["key"], {}).get(c.name, {}).get("value") or 0) / 1000 for c in thr]
        ax.bar(
            [x + i * width for x in range(len(thr))], vals, width, label=b["title"], color=colors[i]
        )
    ax.set_xticks([x + width * (len(brokers) - 1) / 2 for x in range(len(thr))])
    ax.set_xticklabels([c.name for c in thr], rotation=20, ha="right", fontsize=8)
    _log_if_wide(
        ax,
        [
            (medians.get(b["key"], {}).get(c.name, {}).get("value") or 0) / 1000
            for b in brokers
            for c in thr
        ],
    )
    ax.set_ylabel("thousand msg/s (higher is better)")
    ax.set_title("throughput")
    ax.legend(fontsize=8)
    for ax, c in zip(axes[1:], other):
        vals = [medians.get(b["key"], {}).get(c.name, {}).get("value") or 0 for b in brokers]
        ax.bar(range(len(brokers)), vals, color=colors)
        ax.set_xticks(range(len(brokers)))
        ax.set_xticklabels([short(b["key"]) for b in brokers], rotation=20, ha="right", fontsize=8)
        ax.set_title(c.label.replace(", QoS0", ""), fontsize=9)
        _log_if_wide(ax, vals)
        ax.set_ylabel(f"{c.unit} (lower is better)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return f"chart: {path}"


README = REPO / "benchmarks" / "README.md"
_START, _END = "<!-- latest-table -->", "<!-- /latest-table -->"


def update_readme(text: str) -> str:
    """Put the latest full table between the markers of benchmarks/README.md."""
    try:
        doc = README.read_text()
    except OSError as exc:
        return f"README not updated: {exc}"
    i, j = doc.find(_START), doc.find(_END)
    if i < 0 or j < i:
        return "README not updated: markers not found"
    README.write_text(doc[: i + len(_START)] + "\n" + text + "\n" + doc[j:])
    return f"updated {README}"


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 2 s cells, 1 run each, 500 connections (numbers are rough)",
    )
    p.add_argument(
        "--duration", type=float, default=None, help="seconds of publishing per cell (default 6)"
    )
    p.add_argument(
        "--runs", type=int, default=None, help="runs per cell, the median is reported (default 3)"
    )
    p.add_argument("--loadgen", type=Path, default=DEFAULT_LOADGEN, help="path to mqtt-loadgen.c")
    p.add_argument(
        "--amqtt",
        type=Path,
        default=None,
        help="amqtt executable to include (e.g. from a separate venv); default: amqtt on PATH if importable",
    )
    p.add_argument(
        "--brokers",
        default="",
        help="comma list of mqttfast_cython,mqttfast_python,mosquitto,amqtt (default: all available)",
    )
    p.add_argument("--cells", default="", help="comma list of cell names (default: all)")
    p.add_argument(
        "--out", type=Path, default=RESULTS_DIR, help="directory for JSON/markdown/PNG results"
    )
    a = p.parse_args(argv)
    a.duration = a.duration if a.duration is not None else (2.0 if a.quick else 6.0)
    a.runs = a.runs if a.runs is not None else (1 if a.quick else 3)
    if a.duration <= 0 or a.duration > 600:
        p.error("--duration must be in (0, 600]")
    if a.runs < 1 or a.runs > 20:
        p.error("--runs must be in 1..20")
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    cells = scenario_matrix(a.quick)
    if a.cells:
        wanted = set(a.cells.split(","))
        unknown = wanted - {c.name for c in cells}
        if unknown:
            print(
                f"error: unknown cells {sorted(unknown)}; known: {[c.name for c in cells]}",
                file=sys.stderr,
            )
            return 2
        cells = [c for c in cells if c.name in wanted]
    workdir = Path(tempfile.mkdtemp(prefix="mqttfast-compare-"))
    try:
        loadgen = compile_loadgen(a.loadgen.resolve(), workdir)
        brokers = available_brokers(workdir, [x for x in a.brokers.split(",") if x], a.amqtt)
        if not brokers:
            print("error: no broker available to benchmark", file=sys.stderr)
            return 1
        raw: dict[str, dict[str, list[dict[str, Any]]]] = {}
        medians: dict[str, dict[str, dict[str, Any]]] = {}
        # All brokers run side by side (idle ones cost nothing) and every run of a cell visits
        # each broker in turn, rotating the order, so slow drift in machine load (other
        # processes, thermal) spreads over all brokers instead of biasing the last one.
        raw: dict[str, dict[str, list[dict[str, Any]]]] = {b.key: {} for b in brokers}
        medians: dict[str, dict[str, dict[str, Any]]] = {b.key: {} for b in brokers}
        load_before = os.getloadavg()
        live: list[Broker] = []
        try:
            for b in brokers:
                try:
                    b.start()
                except RuntimeError as exc:
                    print(f"== {b.title}: could not start: {exc}", file=sys.stderr)
                    continue
                live.append(b)
                print(
                    f"== {b.title} {b.version}: 127.0.0.1:{b.port} pid {b.proc.pid}",
                    file=sys.stderr,
                    flush=True,
                )
            for cell in cells:
                for b in live:
                    raw[b.key][cell.name] = []
                for i in range(a.runs):
                    k = i % len(live) if live else 0
                    for b in live[k:] + live[:k]:
                        runs = raw[b.key][cell.name]
                        if cell.fresh_broker or not b.alive():
                            if not b.alive():
                                print(
                                    f"   {b.title} died; log tail:\n{b.log_tail()}\n   restarting",
                                    file=sys.stderr,
                                )
                            b.stop()
                            try:
                                b.start()
                            except RuntimeError as exc:
                                runs.append(
                                    {"ok": False, "error": f"broker (re)start failed: {exc}"}
                                )
                                continue
                        res = run_cell(loadgen, b, cell, a.duration, f"{b.key}/{cell.name}/{i}")
                        runs.append(res)
                        note = (
                            ""
                            if res.get("ok")
                            else f"  (not ok: {res.get('error') or 'loss'}, lost={res.get('lost')})"
                        )
                        print(
                            f"   {cell.name:14s} run {i + 1}/{a.runs} {b.key:16s} "
                            f"{cell.metric}={res.get(cell.metric)}{note}",
                            file=sys.stderr,
                            flush=True,
                        )
                for b in live:
                    runs = raw[b.key][cell.name]
                    m = {
                        "value": median_of(runs, cell.metric),
                        "runs": len(runs),
                        "failures": sum(1 for r in runs if not r.get("ok")),
                        "broker_cpu_pct": median_of(runs, "broker_cpu_pct"),
                    }
                    for extra in cell.extra_metrics:
                        m[extra] = median_of(runs, extra)
                    medians[b.key][cell.name] = m
        finally:
            for b in brokers:
                b.stop()
        load_after = os.getloadavg()
        binfo = [{"key": b.key, "title": b.title, "version": b.version} for b in brokers]
        table = build_table(cells, binfo, medians)
        cmd = "python3 benchmarks/compare_brokers.py " + " ".join(
            argv if argv is not None else sys.argv[1:]
        )
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        cpu = platform.processor() or platform.machine()
        try:
            cpu = next(
                ln.split(":", 1)[1].strip()
                for ln in open("/proc/cpuinfo")
                if ln.startswith("model name")
            )
        except (OSError, StopIteration):
            pass
        machine = f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"
        header = (
            f"{stamp}; `{cmd.strip()}`; medians of {a.runs} run(s), {a.duration:g} s per cell, "
            f"64-byte payloads unless stated; {machine}; load average "
            f"{load_before[0]:.1f} before, {load_after[0]:.1f} after.\n"
            "Versions: " + "; ".join(f"{b['title']} {b['version']}" for b in binfo)
        )
        print()
        print(header)
        print()
        print(table)
        a.out.mkdir(parents=True, exist_ok=True)
        result = {
            "when": stamp,
            "command": cmd.strip(),
            "machine": machine,
            "runs": a.runs,
            "loadavg_before": load_before,
            "loadavg_after": load_after,
            "duration_s": a.duration,
            "brokers": binfo,
            "cells": [
                {
                    "name": c.name,
                    "label": c.label,
                    "metric": c.metric,
                    "unit": c.unit,
                    "higher_is_better": c.higher_is_better,
                    "loadgen_args": list(c.args),
                }
                for c in cells
            ],
            "medians": medians,
            "raw": raw,
        }
        (a.out / "compare-latest.json").write_text(json.dumps(result, indent=1) + "\n")
        (a.out / "compare-latest.md").write_text(header + "\n\n" + table + "\n")
        print(f"\nresults: {a.out / 'compare-latest.json'}, {a.out / 'compare-latest.md'}")
        if a.out.resolve() == RESULTS_DIR.resolve() and not a.cells and not a.brokers:
            print(update_readme(header + "\n\n" + table))
        print(
            draw_chart(
                a.out / "compare-latest.png",
                cells,
                binfo,
                medians,
                f"{stamp} - {machine} - load average {load_before[0]:.1f}/{load_after[0]:.1f} "
                f"- medians of {a.runs} x {a.duration:g} s",
            )
        )
        return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
