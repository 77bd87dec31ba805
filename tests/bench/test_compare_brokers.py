"""benchmarks/compare_brokers.py and benchmarks/render_tables.py: a run needs nothing outside
the repository, writes one results file, and every docs table is rendered from that file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.broker import REPO_ROOT

# One xdist group: the module fixture (a 17 s benchmark run) is made once, on one worker.
pytestmark = [pytest.mark.timeout(120), pytest.mark.xdist_group("compare_brokers")]


def run(script: str, *args: str, timeout: float = 100) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO_ROOT,
    )


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One 1-second smoke run against mqttfast (Cython) with the project's own load generator;
    asking for a kind that cannot run here (a base tree that is missing) is refused."""
    out = tmp_path_factory.mktemp("results")
    r = run(
        "compare_brokers.py",
        "--brokers",
        "mqttfast_cython,mqttfast_workers2",
        "--cells",
        "latency_2000,connections",
        "--conns",
        "50",
        "--duration",
        "1",
        "--runs",
        "1",
        "--out",
        str(out),
        "--tag",
        "t",
    )
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    files = sorted(p.name for p in out.iterdir())
    assert "compare-latest.json" in files and "compare-latest.md" in files
    assert any(f.startswith("compare-") and f.endswith("-t.json") for f in files), files
    data = json.loads((out / "compare-latest.json").read_text())
    data["_dir"] = str(out)
    return data


def test_a_run_records_command_machine_load_config_and_medians(results: dict) -> None:
    assert results["schema"] == 1 and "compare_brokers.py" in results["command"]
    assert len(results["loadavg_before"]) == 3 and len(results["loadavg_after"]) == 3
    assert results["loadgens_used"] == ["mqttfast"]  # no file outside the repository needed
    (b,) = [b for b in results["brokers"] if b["key"] == "mqttfast_cython"]
    assert {"persistence", "in-flight", "logging"} <= set(b["config"])
    lat = results["medians"]["mqttfast"]["mqttfast_cython"]["latency_2000"]
    assert lat["failures"] == 0 and 0 < lat["lat_p50_us"] <= lat["lat_p99_us"]
    assert lat["loadgen_cpu_pct"] > 0 and lat["broker_cpu_pct"] is not None
    mem = results["medians"]["mqttfast"]["mqttfast_cython"]["connections"]
    assert mem["value"] is not None and mem["value"] > 0
    raw = results["raw"]["mqttfast"]["mqttfast_cython"]["latency_2000"][0]
    assert "mqttfast bench pairs" in raw["command"] and "--pid" in raw["command"]


def test_a_kind_that_cannot_run_is_skipped_with_its_reason(results: dict) -> None:
    """--workers is detected from the tree's CLI: either it ran, or the reason is recorded."""
    keys = {b["key"] for b in results["brokers"]}
    assert "mqttfast_workers2" in keys or "--workers" in results["skipped"]["mqttfast_workers2"]


def test_render_rewrites_marked_sections_and_check_detects_stale(
    results: dict, tmp_path: Path
) -> None:
    src = Path(results["_dir"]) / "compare-latest.json"
    doc = tmp_path / "doc.md"
    doc.write_text(
        "intro\n<!-- bench:summary -->\nold\n<!-- /bench:summary -->\n"
        "<!-- bench:config -->\n<!-- /bench:config -->\nend\n"
    )
    assert run("render_tables.py", str(src), "--files", str(doc), "--check").returncode == 1
    r = run("render_tables.py", str(src), "--files", str(doc))
    assert r.returncode == 0, r.stderr
    text = doc.read_text()
    assert "old" not in text and text.startswith("intro\n") and text.endswith("end\n")
    assert "| latency at 2,000 msg/s" in text and "| mqttfast (Cython) |" in text
    assert "--persistence off" in text  # the configuration table
    assert run("render_tables.py", str(src), "--files", str(doc), "--check").returncode == 0
    doc.write_text("<!-- bench:nosuch -->\n<!-- /bench:nosuch -->\n")
    r = run("render_tables.py", str(src), "--files", str(doc))
    assert r.returncode == 2 and "nosuch" in r.stderr
