"""A client subprocess whose stdout is read line by line with deadlines (never blocks
forever): mosquitto_sub, node scripts. Broker processes are tests/helpers/broker.py."""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from typing import Any


def require_program(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed (scripts/test.sh installs it); this test needs it"
    return path


class LineProcess:
    def __init__(
        self,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        stdin_data: bytes | None = None,
    ) -> None:
        self.argv = list(argv)
        self.proc = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )
        if stdin_data is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.write(stdin_data)
            self.proc.stdin.close()
        os.set_blocking(self.proc.stdout.fileno(), False)
        self._buf = b""
        self.lines: list[str] = []  # every line read so far

    def readline(self, timeout: float = 5.0) -> str | None:
        """The next stdout line, or None at EOF; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        try:
            while b"\n" not in self._buf:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"no output line from {self.argv[0]} within {timeout}s;"
                        f" so far: {self.lines[-10:]}; stderr: {self.stderr()}"
                    )
                if not sel.select(remaining):
                    continue
                chunk = self.proc.stdout.read(65536)
                if not chunk:
                    if self._buf:
                        line, self._buf = self._buf, b""
                        return self._record(line)
                    return None
                self._buf += chunk
        finally:
            sel.close()
        line, self._buf = self._buf.split(b"\n", 1)
        return self._record(line)

    def _record(self, raw: bytes) -> str:
        line = raw.decode(errors="replace").rstrip("\r")
        self.lines.append(line)
        return line

    def wait_for_line(self, predicate, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            line = self.readline(max(0.01, deadline - time.monotonic()))
            if line is None:
                raise AssertionError(
                    f"{self.argv[0]} ended before the expected line; "
                    f"output: {self.lines[-20:]}; stderr: {self.stderr()}"
                )
            if predicate(line):
                return line

    def json_events(self, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Read JSON lines until EOF (bounded)."""
        deadline = time.monotonic() + timeout
        events = []
        while True:
            line = self.readline(max(0.01, deadline - time.monotonic()))
            if line is None:
                return events
            if line.strip():
                events.append(json.loads(line))

    def wait_json(self, event: str, timeout: float = 10.0) -> dict[str, Any]:
        line = self.wait_for_line(
            lambda ln: ln.startswith("{") and json.loads(ln).get("event") in (event, "error"),
            timeout,
        )
        obj = json.loads(line)
        assert obj["event"] == event, f"{self.argv}: {obj}; stderr: {self.stderr()}"
        return obj

    def wait(self, timeout: float = 10.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"{self.argv[0]} did not exit within {timeout}s; output: {self.lines[-20:]}"
            ) from None

    def stderr(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return "<still running>"
        try:
            return self.proc.stderr.read().decode(errors="replace")[-2000:]
        except (ValueError, OSError):
            return ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def close(self) -> None:
        self.kill()
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()

    def __enter__(self) -> LineProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
