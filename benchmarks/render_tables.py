#!/usr/bin/env python3
"""Rewrite the benchmark tables of the docs from ONE results file of compare_brokers.py.

    python3 benchmarks/render_tables.py [RESULTS.json] [--files F ...] [--check]

Every ``<!-- bench:NAME -->`` ... ``<!-- /bench:NAME -->`` section found in the files
(default: README.md, benchmarks/README.md, docs/performance.md) is replaced by the table
NAME rendered from the results file (default: benchmarks/results/compare-latest.json), so
the README, the benchmarks page and the performance page always show the same run.
``--check`` changes nothing and exits 1 when a section differs from what it would render.

Sections: header (when, command, machine, load), summary (the single-node brokers), cluster
(issue 16: one process vs --workers 2 vs a 2-node cluster vs nats-server's MQTT), cpu (load
generator and broker CPU share per cell), loadgen (mqttfast bench vs the C yardstick),
config (each broker's settings and versions, skipped kinds), full (all of them).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_RESULTS = REPO / "benchmarks" / "results" / "compare-latest.json"
DEFAULT_FILES = ("README.md", "benchmarks/README.md", "docs/performance.md")
SECTION = re.compile(r"(<!-- bench:([a-z]+) -->\n)(.*?)(<!-- /bench:\2 -->)", re.DOTALL)

SINGLE = (
    "mqttfast_cython",
    "mqttfast_pure",
    "mqttfast_base",
    "mosquitto",
    "aedes",
    "amqtt",
    "nats_mqtt",
)
CLUSTER_BROKERS = (
    "mqttfast_cython",
    "mqttfast_workers2",
    "mqttfast_cluster2",
    "nats_mqtt",
    "mosquitto",
)
CLUSTER_CELLS = (
    "fanin_qos0",
    "pairs_qos1",
    "fanout_qos0",
    "iot_shared",
    "connections",
    "same_pairs_qos0",
    "cross_pairs_qos0",
    "same_pairs_qos1",
    "cross_pairs_qos1",
    "same_latency_2000",
    "cross_latency_2000",
)


# --------------------------------------------------------------------------- formatting


def fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "n/a"
    if unit == "msg/s":
        return f"{v / 1000:.1f}k" if v >= 1000 else f"{v:.0f}"
    if unit == "us":
        return f"{v:.0f} µs" if v < 1000 else f"{v / 1000:.2f} ms"
    if unit == "%":
        return f"{v:.0f}%"
    return f"{v:.2f} {unit}" if v < 10 else f"{v:.1f} {unit}"


def cell_text(m: dict[str, Any] | None, cell: dict[str, Any]) -> str:
    if not m:
        return "-"
    if cell["metric"] == "lat_p50_us":
        txt = f"{fmt(m.get('lat_p50_us'), 'us')} / {fmt(m.get('lat_p99_us'), 'us')}"
    else:
        txt = fmt(m.get("value"), cell["unit"])
    if m.get("failures"):
        txt += f" ⚠{m['failures']}/{m['runs']}"
    return txt


def ratio(a: dict | None, b: dict | None) -> str:
    va, vb = (a or {}).get("value"), (b or {}).get("value")
    if not va or not vb:
        return "-"
    return f"{va / vb:.2f}x"


def table(head: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


class Results:
    def __init__(self, data: dict[str, Any], source: str) -> None:
        self.d = data
        self.source = source
        self.cells = {c["name"]: c for c in data["cells"]}
        self.brokers = {b["key"]: b for b in data["brokers"]}
        self.lg = "mqttfast" if "mqttfast" in data["loadgens_used"] else data["loadgens_used"][0]

    def m(self, broker: str, cell: str, lg: str | None = None) -> dict[str, Any] | None:
        return self.d["medians"].get(lg or self.lg, {}).get(broker, {}).get(cell)

    def present(self, keys: tuple[str, ...]) -> list[str]:
        return [k for k in keys if k in self.brokers]

    # -- sections ------------------------------------------------------------------------------

    def header(self) -> str:
        d = self.d
        lb, la = d["loadavg_before"], d["loadavg_after"]
        lg = d["loadgens"][self.lg]
        return (
            f"{d['when']}, {d['machine']}; medians of {d['runs']} run(s), {d['duration_s']:g} s "
            f"per cell, 64-byte payloads unless stated; load average (1/5/15 min) "
            f"{lb[0]:.1f}/{lb[1]:.1f}/{lb[2]:.1f} before, {la[0]:.1f}/{la[1]:.1f}/{la[2]:.1f} "
            f"after; load generator: {lg}.\n"
            f"Command: `{d['command']}` (tree {d['git']}). "
            f"Results: `{self.source}`. ⚠k/n: k of n runs lost messages or failed.\n"
        )

    def summary(self) -> str:
        keys = self.present(SINGLE)
        cells = [c for c in self.cells.values() if not c["multi_only"]]
        ratios = []
        if "mqttfast_cython" in keys and "mosquitto" in keys:
            ratios.append(("mqttfast_cython", "mosquitto", "Cython / mosquitto"))
        if "mqttfast_cython" in keys and "mqttfast_base" in keys:
            ratios.append(("mqttfast_cython", "mqttfast_base", "after / before"))
        head = ["cell"] + [self.brokers[k]["title"] for k in keys] + [r[2] for r in ratios]
        rows = []
        for c in cells:
            lower = "" if c["higher_is_better"] else " (lower is better)"
            row = [c["label"] + lower] + [cell_text(self.m(k, c["name"]), c) for k in keys]
            row += [ratio(self.m(a, c["name"]), self.m(b, c["name"])) for a, b, _ in ratios]
            rows.append(row)
        return table(head, rows) + "\n"

    def cluster(self) -> str:
        keys = self.present(CLUSTER_BROKERS)
        cells = [self.cells[n] for n in CLUSTER_CELLS if n in self.cells]
        ratios = []
        if "mqttfast_workers2" in keys and "mqttfast_cython" in keys:
            ratios.append(("mqttfast_workers2", "mqttfast_cython", "workers 2 / one process"))
        if "mqttfast_cluster2" in keys and "nats_mqtt" in keys:
            ratios.append(("mqttfast_cluster2", "nats_mqtt", "cluster / nats-server"))
        if "mqttfast_workers2" in keys and "nats_mqtt" in keys:
            ratios.append(("mqttfast_workers2", "nats_mqtt", "workers 2 / nats-server"))
        if not cells or len(keys) < 2:
            return "(no cluster kinds in this run)\n"
        head = ["cell"] + [self.brokers[k]["title"] for k in keys] + [r[2] for r in ratios]
        rows = []
        for c in cells:
            lower = "" if c["higher_is_better"] else " (lower is better)"
            row = [c["label"] + lower] + [cell_text(self.m(k, c["name"]), c) for k in keys]
            row += [ratio(self.m(a, c["name"]), self.m(b, c["name"])) for a, b, _ in ratios]
            rows.append(row)
        out = table(head, rows) + "\n"
        cross = self.cross_node()
        return out + ("\n" + cross if cross else "")

    def cross_node(self) -> str:
        k = "mqttfast_cluster2"
        lines = []
        for what in ("pairs_qos0", "pairs_qos1"):
            same, cross = self.m(k, f"same_{what}"), self.m(k, f"cross_{what}")
            if same and cross:
                lines.append(
                    f"cross-node / same-node {what.replace('_', ' ')}: {ratio(cross, same)}"
                )
        same, cross = self.m(k, "same_latency_2000"), self.m(k, "cross_latency_2000")
        if same and cross and same.get("lat_p50_us") and cross.get("lat_p50_us"):
            lines.append(
                f"cross-node p50 at 2,000 msg/s: "
                f"+{cross['lat_p50_us'] - same['lat_p50_us']:.0f} µs over same-node"
            )
        return ("2-node cluster: " + "; ".join(lines) + ".\n") if lines else ""

    def cpu(self) -> str:
        keys = [k for k in self.brokers]
        cells = [c for c in self.cells.values() if c["name"] != "connections"]
        head = ["cell (load generator / broker CPU, % of one core)"]
        head += [self.brokers[k]["title"] for k in keys]
        rows = []
        for c in cells:
            row = [c["name"]]
            for k in keys:
                m = self.m(k, c["name"])
                if not m:
                    row.append("-")
                    continue
                row.append(
                    f"{fmt(m.get('loadgen_cpu_pct'), '%')} / {fmt(m.get('broker_cpu_pct'), '%')}"
                )
            rows.append(row)
        note = (
            "\nThe load generator needs much less CPU against mqttfast than against the other "
            "brokers at the same or a higher rate: mqttfast coalesces the writes of one event-loop "
            "turn into one `send`, so the clients receive fewer, larger TCP segments and wake up "
            "less often. On a 2-core machine that leaves more of the CPU to the broker, which is "
            "part of mqttfast's lead: compare brokers by the ratio in one run, and read this "
            "table next to it. A broker above ~95% of its cores was the bottleneck; one far below "
            "was waiting for the load generator or for the network.\n"
        )
        return table(head, rows) + "\n" + note

    def loadgen(self) -> str:
        if set(self.d["loadgens_used"]) != {"mqttfast", "c"}:
            return (
                "(this run used one load generator; `--loadgen both --c-source PATH` puts "
                "mqttfast bench and the C yardstick side by side)\n"
            )
        head = [
            "broker",
            "cell",
            "mqttfast bench",
            "C loadgen",
            "bench / C",
            "CPU bench",
            "CPU C",
            "broker CPU (bench / C)",
        ]
        rows = []
        for k in self.brokers:
            for c in self.cells.values():
                mb, mc = self.m(k, c["name"], "mqttfast"), self.m(k, c["name"], "c")
                if not mb or not mc:
                    continue
                better = ratio(mb, mc)
                if not c["higher_is_better"] and mb.get("value") and mc.get("value"):
                    better = f"{mb['value'] / mc['value']:.2f}x (lower is better)"
                rows.append(
                    [
                        self.brokers[k]["title"],
                        c["name"],
                        cell_text(mb, c),
                        cell_text(mc, c),
                        better,
                        fmt(mb.get("loadgen_cpu_pct"), "%"),
                        fmt(mc.get("loadgen_cpu_pct"), "%"),
                        f"{fmt(mb.get('broker_cpu_pct'), '%')} / {fmt(mc.get('broker_cpu_pct'), '%')}",
                    ]
                )
        return table(head, rows) + "\n"

    def config(self) -> str:
        rows = []
        for b in self.d["brokers"]:
            cfg = b.get("config", {})
            rows.append(
                [
                    b["title"],
                    b["version"],
                    cfg.get("persistence", "?"),
                    cfg.get("in-flight", "?"),
                    cfg.get("logging", "?"),
                    "; ".join(
                        v
                        for k, v in cfg.items()
                        if k not in ("persistence", "in-flight", "logging")
                    ),
                ]
            )
        out = table(["broker", "version", "persistence", "in-flight", "logging", "other"], rows)
        skipped = self.d.get("skipped") or {}
        if skipped:
            out += "\n\nNot in this run: " + "; ".join(
                f"{k}: {v.splitlines()[0]}" for k, v in skipped.items()
            )
        return out + "\n"

    def full(self) -> str:
        parts = [self.header(), self.summary()]
        if any(k in self.brokers for k in ("mqttfast_workers2", "mqttfast_cluster2")):
            parts += ["Several processes and nodes (issue 16):\n", self.cluster()]
        parts += ["CPU per cell:\n", self.cpu()]
        if set(self.d["loadgens_used"]) == {"mqttfast", "c"}:
            parts += ["Load generators on the same brokers:\n", self.loadgen()]
        parts += ["Broker configurations:\n", self.config()]
        return "\n".join(parts)

    def render(self, name: str) -> str:
        fn = getattr(self, name, None)
        if name not in ("header", "summary", "cluster", "cpu", "loadgen", "config", "full"):
            raise KeyError(name)
        assert fn is not None
        text = fn()
        return f"<!-- generated by benchmarks/render_tables.py from {self.source}; do not edit by hand -->\n{text}"


def draw_chart(data: dict[str, Any], path: Path) -> str:
    """Throughput cells as grouped bars plus latency p50 and memory per connection, one panel
    each; returns what it did (matplotlib is optional: without it, the chart is skipped)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "chart skipped: matplotlib is not installed (pip install 'mqttfast[bench]')"
    res = Results(data, "")
    keys = list(res.brokers)
    thr = [c for c in res.cells.values() if c["unit"] == "msg/s" and not c["multi_only"]]
    side = [res.cells[n] for n in ("latency_2000", "connections") if n in res.cells]
    fig, axes = plt.subplots(
        1,
        1 + len(side),
        figsize=(6 + 1.4 * len(thr) + 3 * len(side), 5),
        gridspec_kw={"width_ratios": [max(len(thr), 1)] + [1] * len(side)},
        squeeze=False,
    )
    width = 0.8 / max(len(keys), 1)
    ax = axes[0][0]
    for i, k in enumerate(keys):
        vals = [((res.m(k, c["name"]) or {}).get("value") or 0) / 1000 for c in thr]
        ax.bar([x + i * width for x in range(len(thr))], vals, width, label=res.brokers[k]["title"])
    ax.set_xticks([x + width * (len(keys) - 1) / 2 for x in range(len(thr))])
    ax.set_xticklabels([c["name"] for c in thr], rotation=20, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("thousand msg/s (log scale, higher is better)")
    ax.legend(fontsize=7)
    for ax, c in zip(axes[0][1:], side):
        vals = [(res.m(k, c["name"]) or {}).get("value") or 0 for k in keys]
        ax.bar(range(len(keys)), vals, color=[f"C{i}" for i in range(len(keys))])
        ax.set_xticks(range(len(keys)))
        ax.set_xticklabels(
            [res.brokers[k]["title"] for k in keys], rotation=30, ha="right", fontsize=7
        )
        ax.set_yscale("log")
        ax.set_title(
            ("p50 latency at 2,000 msg/s" if c["unit"] == "us" else c["label"]), fontsize=9
        )
        ax.set_ylabel(f"{'µs' if c['unit'] == 'us' else c['unit']} (lower is better)")
    lb, la = data["loadavg_before"], data["loadavg_after"]
    fig.suptitle(
        f"{data['when']} - {data['machine']} - medians of {data['runs']} x "
        f"{data['duration_s']:g} s - load {lb[0]:.1f}/{la[0]:.1f}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return f"chart: {path}"


def render_markdown(
    data: dict[str, Any], source: str = "benchmarks/results/compare-latest.json"
) -> str:
    return "# mqttfast compare_brokers.py run\n\n" + Results(data, source).full()


def rewrite(text: str, res: Results) -> str:
    def sub(m: re.Match[str]) -> str:
        return m.group(1) + res.render(m.group(2)) + m.group(4)

    return SECTION.sub(sub, text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="?", type=Path, default=DEFAULT_RESULTS)
    p.add_argument(
        "--files",
        nargs="*",
        default=list(DEFAULT_FILES),
        help="files (relative to the repository) whose bench: sections to rewrite",
    )
    p.add_argument("--check", action="store_true", help="exit 1 if a section is out of date")
    p.add_argument(
        "--chart",
        type=Path,
        default=None,
        help="also draw the chart (PNG) to this path, e.g. benchmarks/results/compare-latest.png",
    )
    p.add_argument(
        "--print",
        dest="show",
        default=None,
        metavar="SECTION",
        help="print one section (with its markers) instead of rewriting files",
    )
    a = p.parse_args(argv)
    try:
        data = json.loads(a.results.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        print(f"error: {a.results}: {exc}", file=sys.stderr)
        return 2
    if data.get("schema") != 1:
        print(
            f"error: {a.results} is not a results file of this compare_brokers.py "
            "(no schema 1); rerun benchmarks/compare_brokers.py",
            file=sys.stderr,
        )
        return 2
    try:
        source = str(a.results.resolve().relative_to(REPO))
    except ValueError:
        source = str(a.results)
    res = Results(data, source)
    if a.chart is not None:
        print(draw_chart(data, a.chart))
    if a.show:
        try:
            body = res.render(a.show)
        except KeyError:
            print(f"error: unknown section {a.show!r}", file=sys.stderr)
            return 2
        print(f"<!-- bench:{a.show} -->\n{body}<!-- /bench:{a.show} -->")
        return 0
    stale = []
    for name in a.files:
        path = REPO / name
        try:
            old = path.read_text()
        except OSError as exc:
            print(f"skip {name}: {exc}", file=sys.stderr)
            continue
        try:
            new = rewrite(old, res)
        except KeyError as exc:
            print(f"error: {name}: unknown section bench:{exc.args[0]}", file=sys.stderr)
            return 2
        found = len(SECTION.findall(old))
        if new != old:
            stale.append(name)
            if not a.check:
                path.write_text(new)
        print(
            f"{name}: {found} section(s)"
            + (
                " rewritten"
                if new != old and not a.check
                else " up to date"
                if new == old
                else " stale"
            )
        )
    return 1 if a.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
