"""A real ``mqttfast --workers N`` process group for the tests: start, wait until every
worker answers, find the processes in /proc, stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.helpers.broker import REPO_ROOT, free_port, port_accepts

START_TIMEOUT = 40.0  # N Python workers importing mqttfast on a loaded 2-core box
ADMIN_TOKEN = "test-token"


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid``, from /proc (Linux)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may contain spaces, so split after ")".
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            out.append(int(entry))
    return out


def descendants_of(pid: int) -> list[int]:
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children_of(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


def describe(pid: int) -> str:
    """What a process that should have ended is doing: its command line, its state and,
    where readable, its kernel stack (for a failure report)."""
    parts = [f"pid {pid}: {' '.join(cmdline(pid))[:200]}"]
    for name in ("status", "stack"):
        try:
            text = Path(f"/proc/{pid}/{name}").read_text()
        except OSError:
            continue
        if name == "status":
            text = "".join(
                ln for ln in text.splitlines(True) if ln.startswith(("State", "Threads"))
            )
        parts.append(text.strip())
    return "\n".join(parts)


class Group:
    def __init__(self, tmp: Path, workers: int = 2, extra: list[str] | None = None) -> None:
        self.tmp = tmp
        self.count = workers
        self.port = free_port()
        self.metrics_port = free_port()
        self.admin_port = free_port()
        self.extra = extra or []
        self.log_path = tmp / "supervisor.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Group:
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
        argv = [
            sys.executable,
            "-m",
            "mqttfast",
            "--workers",
            str(self.count),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.tmp / "data"),
            "--metrics-port",
            str(self.metrics_port),
            "--admin-port",
            str(self.admin_port),
            "--admin-token",
            ADMIN_TOKEN,
            *self.extra,
        ]
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Until the MQTT port accepts, every worker answers the group's /metrics and has
        told the supervisor that its listeners are open."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"supervisor exited {self.proc.returncode}:\n{self.logs()}")
            if port_accepts(self.port):
                try:
                    ups = self.metric_values("mqttfast_supervisor_worker_up")
                except OSError:
                    ups = {}
                if len(ups) == self.count and all(v == 1 for v in ups.values()):
                    group = self.admin("/api/group")
                    if all(w.get("ready") for w in group.get("worker", [])):
                        return
            time.sleep(0.1)
        raise AssertionError(f"group not ready in {timeout} s:\n{self.logs()}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    # -- figures --------------------------------------------------------------
    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.read().decode()

    def metric_values(self, name: str) -> dict[str, float]:
        """worker label -> value of ``name`` (samples without other labels)."""
        out = {}
        for line in self.metrics().splitlines():
            if line.startswith(name + "{"):
                labels, value = line[len(name) + 1 :].rsplit("} ", 1)
                pairs = dict(p.split("=", 1) for p in labels.split(","))
                if "worker" in pairs and len(pairs) == 1:
                    out[pairs["worker"].strip('"')] = float(value)
        return out

    def admin(self, path: str, method: str = "GET") -> dict:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.admin_port}{path}",
            method=method,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as err:
            return {"status": err.code, "body": err.read().decode()}

    # -- processes ------------------------------------------------------------
    def worker_pids(self) -> dict[int, int]:
        """worker index -> pid, from the supervisor's children's command lines."""
        assert self.proc is not None
        out = {}
        for pid in children_of(self.proc.pid):
            argv = cmdline(pid)
            if "--worker-index" in argv and alive(pid):
                # The last --worker-index is the supervisor's (later flags win).
                idx = len(argv) - 1 - argv[::-1].index("--worker-index")
                out[int(argv[idx + 1])] = pid
        return out

    def nats_pid(self) -> int | None:
        assert self.proc is not None
        for pid in children_of(self.proc.pid):
            if any("nats-server" in a for a in cmdline(pid)[:1]):
                return pid
        return None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                for pid in descendants_of(self.proc.pid):
                    os.kill(pid, signal.SIGKILL)
                self.proc.kill()
                self.proc.wait()
                raise
        self.log.close()
        return self.proc.returncode
