"""A round-robin TCP front (Debian's haproxy) over cluster nodes, started by the test."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.helpers.broker import free_port, port_accepts


class Haproxy:
    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.port = free_port()
        self.kind = "mqttfast"
        self.tmp = tempfile.TemporaryDirectory(prefix="haproxy-test-")
        self.proc: subprocess.Popen[bytes] | None = None

    def config(self) -> str:
        servers = "\n".join(
            f"  server n{i} 127.0.0.1:{p} check inter 300 fall 1 rise 2"
            for i, p in enumerate(self.ports)
        )
        return f"""
global
  maxconn 4000
defaults
  mode tcp
  timeout connect 1s
  timeout client 120s
  timeout server 120s
  retries 2
  option redispatch
frontend mqtt
  bind 127.0.0.1:{self.port}
  default_backend nodes
backend nodes
  balance roundrobin
{servers}
"""

    def start(self) -> Haproxy:
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        cfg = Path(self.tmp.name) / "haproxy.cfg"
        cfg.write_text(self.config())
        self.proc = subprocess.Popen(
            [binary, "-f", str(cfg), "-db"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 10
        while not port_accepts(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"haproxy did not start: {self.proc.stderr.read()!r}")
            time.sleep(0.05)
        # haproxy (2.x) starts its servers UP and its first check of a listening
        # backend passes: with every backend listening there is nothing to wait for.
        # A backend that is not listening is only marked DOWN by a failed check:
        # then wait for the first health checks (rise 2 x 300 ms).
        if not all(port_accepts(p) for p in self.ports):
            time.sleep(0.7)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.tmp.cleanup()
