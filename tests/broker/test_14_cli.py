"""The ``mqttfast`` command line (issue 3): defaults, bad flags, signals."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from tests.helpers.broker import REPO_ROOT, BrokerProcess, free_port, port_accepts
from tests.helpers.rawclient import RawClient

pytestmark = pytest.mark.mqttfast_only("tests mqttfast's own command line")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    return env


def run_cli(
    *args: str, timeout: float = 20, cwd: str | None = None
) -> subprocess.CompletedProcess[str]:
    # A fresh working directory: the broker's default data directory lives there.
    with tempfile.TemporaryDirectory(prefix="mqttfast-cli-") as tmp:
        return subprocess.run(
            [sys.executable, "-m", "mqttfast", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=_env(),
            stdin=subprocess.DEVNULL,
            cwd=cwd or tmp,
        )


def _wait_port(proc: subprocess.Popen, port: int, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"exited with {proc.returncode}: {proc.stdout.read()}"
        if port_accepts(port, host):
            return
        time.sleep(0.05)
    raise AssertionError("broker never accepted TCP")


def test_defaults_serve_mqtt_on_all_interfaces(tmp_path) -> None:
    """No flags but --port (a free one, not 1883): serves MQTT on 0.0.0.0, so it
    is reachable on 127.0.0.1; SIGINT ends it with exit code 0."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mqttfast", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    try:
        _wait_port(proc, port)
        with RawClient(port) as c:
            assert c.connect("defaults").reason_code == 0
            c.subscribe("d/t")
            c.publish("d/t", b"x")
            assert c.recv_publish().payload == b"x"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


@pytest.mark.parametrize(
    "args",
    [
        ["--bogus-flag"],
        ["--port", "notaport"],
        ["--port", "70000"],
        ["--log-level", "loud"],
        ["--max-inflight", "-1"],
        ["stray-positional"],
    ],
)
def test_bad_flag_one_line_exit_2(args) -> None:
    """Bad flags: one-line message on stderr naming the problem, exit code 2, no traceback."""
    res = run_cli(*args)
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{res.stderr}"
    assert "Traceback" not in res.stderr
    assert res.stdout == ""


def test_help_and_version_exit_0() -> None:
    """--help and --version print and exit 0."""
    res = run_cli("--help")
    assert res.returncode == 0 and "--port" in res.stdout
    res = run_cli("--version")
    assert res.returncode == 0 and "mqttfast" in (res.stdout + res.stderr)


def test_sigterm_exits_0_with_clients_connected() -> None:
    """Clean shutdown on SIGTERM: exit code 0 within a bound, even with clients
    connected; their connections are closed."""
    b = BrokerProcess()
    b.start()
    try:
        clients = [RawClient(b.port) for _ in range(3)]
        for i, c in enumerate(clients):
            c.connect(f"term{i}")
            c.subscribe(("t/#", 1))
        assert b.stop(timeout=10) == 0
        for c in clients:
            c.expect_closed(timeout=3)
            c.close()
        assert not port_accepts(b.port)
    finally:
        b.cleanup()


def test_sigint_exits_0() -> None:
    """Clean shutdown on SIGINT (Ctrl-C): exit code 0, no traceback."""
    b = BrokerProcess()
    b.start()
    try:
        b.signal(signal.SIGINT)
        assert b.proc.wait(10) == 0
        assert "Traceback" not in b.log_text()
    finally:
        b.cleanup()


def test_port_in_use_fails_cleanly() -> None:
    """A port already taken: a clear error and a non-zero exit, no traceback."""
    with BrokerProcess() as first:
        res = run_cli("--host", "127.0.0.1", "--port", str(first.port))
        assert res.returncode != 0
        out = res.stdout + res.stderr
        assert "Traceback" not in out and str(first.port) in out


def test_log_level_debug_logs_connections() -> None:
    """--log-level debug: a client connect is logged (with its client id)."""
    with BrokerProcess() as b:
        with RawClient(b.port) as c:
            c.connect("log-me-please")
        b.wait_for_log("log-me-please", timeout=5)


def test_console_script_installed() -> None:
    """The ``mqttfast`` console script (pip install) runs the same CLI."""
    exe = shutil.which("mqttfast")
    assert exe, "the mqttfast console script is not on PATH (pip install -e . first)"
    res = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=20, env=_env())
    assert res.returncode == 0
