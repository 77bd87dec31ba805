"""Run a real broker as a subprocess on a free loopback port.

By default the broker is mqttfast (``python3 -m mqttfast``). With the
environment variable ``MQTTFAST_TEST_BROKER=mosquitto`` it is Debian's
``mosquitto`` with a generated configuration instead, so the expectations of
the end-to-end tests can be checked against a reference implementation.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

REPO_ROOT = Path(__file__).resolve().parents[2]

# How long start() waits for the port to accept TCP. Generous because the
# first import of a freshly built package can be slow on a loaded 2-core CI box.
START_TIMEOUT = 15.0


def mosquitto_mode() -> bool:
    """True when the tests should run against Debian's mosquitto."""
    return os.environ.get("MQTTFAST_TEST_BROKER", "").strip().lower() == "mosquitto"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now.

    The kernel picks it (bind to port 0), so parallel xdist workers get
    different ports; start() retries with a new port in the rare case that
    someone else grabbed it in between.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_accepts(port: int, host: str = "127.0.0.1", timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# mqttfast flags -> mosquitto.conf directives, for tests that configure limits.
# A flag with no mosquitto equivalent raises, so a test that needs it must be
# marked ``mqttfast_only``.
_MOSQUITTO_FLAGS = {
    "--sys-interval": "sys_interval",
    "--max-inflight": "max_inflight_messages",
    "--max-queued-messages": "max_queued_messages",
    "--max-packet-size": "max_packet_size",
}


class BrokerProcess:
    """A broker subprocess listening on ``127.0.0.1:<port>``.

    ``extra_args`` are appended to the mqttfast command line; ``env`` adds to
    (not replaces) the current environment. Output goes to a temporary log
    file, readable with :meth:`log_text`.
    """

    def __init__(
        self,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.port = port if port is not None else free_port()
        self._fixed_port = port is not None
        self.proc: subprocess.Popen[bytes] | None = None
        self._tmpdir = tempfile.TemporaryDirectory(prefix="mqttfast-test-")
        self.log_path = Path(self._tmpdir.name) / "broker.log"
        self.kind = "mosquitto" if mosquitto_mode() else "mqttfast"

    # -- command lines ----------------------------------------------------
    def command(self) -> list[str]:
        if self.kind == "mosquitto":
            return [self._mosquitto_binary(), "-c", str(self._write_mosquitto_conf())]
        return [
            sys.executable,
            "-m",
            "mqttfast",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            "debug",
            *self.extra_args,
        ]

    @staticmethod
    def _mosquitto_binary() -> str:
        found = shutil.which("mosquitto") or (
            "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None
        )
        if not found:
            raise RuntimeError("MQTTFAST_TEST_BROKER=mosquitto but no mosquitto binary found")
        return found

    def _write_mosquitto_conf(self) -> Path:
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "log_dest stdout",
            "log_type all",
            "persistence false",
        ]
        args = list(self.extra_args)
        while args:
            flag = args.pop(0)
            if flag not in _MOSQUITTO_FLAGS or not args:
                raise RuntimeError(
                    f"broker flag {flag!r} has no mosquitto equivalent; mark the test mqttfast_only"
                )
            lines.append(f"{_MOSQUITTO_FLAGS[flag]} {args.pop(0)}")
        conf = Path(self._tmpdir.name) / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        # The repository root first, so the package under test is imported even
        # when it is not installed (an editable install points here anyway).
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.update(self.env)
        return env

    # -- life cycle -------------------------------------------------------
    def start(self, timeout: float = START_TIMEOUT) -> BrokerProcess:
        """Start the broker and wait (bounded) until its port accepts TCP."""
        for attempt in range(3):
            self._spawn()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                if port_accepts(self.port):
                    return self
                time.sleep(0.02)
            if self.proc.poll() is None:
                self.kill()
                raise RuntimeError(
                    f"{self.kind} did not accept TCP on port {self.port} "
                    f"within {timeout}s; log:\n{self.log_text()}"
                )
            log = self.log_text()
            in_use = "in use" in log.lower()
            if in_use and not self._fixed_port and attempt < 2:
                self.port = free_port()  # someone took the port between pick and bind
                continue
            raise RuntimeError(
                f"{self.kind} exited with {self.proc.returncode} during start; log:\n{log}"
            )
        raise AssertionError("unreachable")

    def _spawn(self) -> None:
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._environment(),
                cwd=self._tmpdir.name,
            )
        finally:
            log.close()  # the child keeps its own descriptor

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, needle: str, timeout: float = 5.0) -> str:
        """Wait until ``needle`` (case-insensitive) appears in the log."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_text()
            if needle.lower() in text.lower():
                return text
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{needle!r} not in the broker log within {timeout}s; log tail:\n{text[-3000:]}"
                )
            time.sleep(0.05)

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM, wait up to ``timeout`` s, return the exit code.

        A broker that ignores SIGTERM is killed and TimeoutError raised, so a
        stuck shutdown fails the test instead of hanging the suite.
        """
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise TimeoutError(
                    f"{self.kind} did not exit within {timeout}s of SIGTERM; "
                    f"log tail:\n{self.log_text()[-3000:]}"
                ) from None
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def cleanup(self) -> None:
        self.kill()
        self._tmpdir.cleanup()

    def __enter__(self) -> BrokerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                self.stop()
            else:
                self.kill()
        finally:
            self.cleanup()

    def __repr__(self) -> str:
        return f"<BrokerProcess {self.kind} port={self.port} running={self.running()}>"
