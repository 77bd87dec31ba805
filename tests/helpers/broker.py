"""The one way tests run a broker process: :class:`BrokerProcess`.

By default the broker is mqttfast (``python3 -m mqttfast``) on a free 127.0.0.1
port given as ``--host``/``--port``. With ``config=TEXT`` it is started from that
TOML (or, ``mosquitto=True``, mosquitto.conf) file written into its working
directory instead, and ``wait=`` lists what must accept connections before
``start()`` returns. Output is captured in a log file (:meth:`log_text`,
:meth:`wait_for_log`); :meth:`stop` is SIGTERM with a bound, :meth:`kill` is
kill -9. The ``run`` fixture (tests/helpers/fixtures.py) runs a coroutine in a
fresh event loop for embedded brokers.

With the environment variable ``MQTTFAST_TEST_BROKER=mosquitto`` the flag-driven
broker is Debian's ``mosquitto`` with a generated configuration instead, so the
expectations of the end-to-end tests can be checked against a reference
implementation.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
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


# Below Linux's ephemeral range (32768-60999): a port picked from the ephemeral range
# could be taken by any test's outgoing connection before the broker binds it (seen
# in CI: "address already in use" for a TLS listener written into a config file).
_PORTS = (20000, 32767)


def _worker_slice() -> tuple[int, int]:
    """This pytest-xdist worker's own part of ``_PORTS``: two workers never pick the
    same port (seen in CI: a broker that lost the race for its port, while the test
    talked to another worker's broker that held it)."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    index = int(name[2:]) if name.startswith("gw") and name[2:].isdigit() else 0
    size = (_PORTS[1] - _PORTS[0] + 1) // max(count, 1)
    low = _PORTS[0] + (index % max(count, 1)) * size
    return low, low + size - 1


_cursor: list[int] = []  # the next port to try in this process's slice


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, from this test
    worker's own slice below the ephemeral range, never the same one twice in a row
    (a test that picks several ports before starting anything gets distinct ones);
    start() still retries with a new port if the port was taken in between."""
    low, high = _worker_slice()
    if not _cursor:
        _cursor.append(random.randint(low, high))
    for _ in range(high - low + 1):
        port = _cursor[0]
        _cursor[0] = low if port >= high else port + 1
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:  # crowded: the kernel's pick
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on TCP ``port`` (any address), from /proc/net/tcp{,6}."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 9 and f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f[9])
    return inodes


def owns_listening_port(pid: int, port: int) -> bool:
    """Does ``pid`` or one of its descendants hold the socket listening on ``port``?"""
    if not Path("/proc/net/tcp").exists():
        return True
    wanted = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    if not wanted:
        return False
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            for fd in os.listdir(f"/proc/{p}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{p}/fd/{fd}") in wanted:
                        return True
            for task in os.listdir(f"/proc/{p}/task"):
                children = Path(f"/proc/{p}/task/{task}/children").read_text().split()
                todo.extend(int(c) for c in children)
        except OSError:
            continue  # gone meanwhile
    return False


def port_accepts(port: int, host: str = "127.0.0.1", timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def accepts(target: object) -> bool:
    """A port on 127.0.0.1, a ``(host, port)`` pair or a unix socket path accepts."""
    if isinstance(target, int):
        return port_accepts(target)
    if isinstance(target, tuple):
        host, port = target
        return port_accepts(port, host)
    path = str(target)
    if not os.path.exists(path):
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(0.2)
            s.connect(path)
        return True
    except OSError:
        return False


TRACEBACK = re.compile(r"^Traceback \(most recent call last\):", re.MULTILINE)


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
    """A broker subprocess.

    ``extra_args`` are appended to the mqttfast command line; ``env`` adds to
    (not replaces) the current environment. Output goes to a log file, readable
    with :meth:`log_text`.

    Without ``config`` it listens on ``127.0.0.1:<port>`` (``--host``/``--port``).
    With ``config`` (the text of a TOML file, or of a mosquitto.conf when
    ``mosquitto``) it is started with ``--config FILE`` in ``workdir`` (default: a
    temporary directory), and ``wait`` lists what must accept connections before
    :meth:`start` returns: ports on 127.0.0.1, ``(host, port)`` pairs or unix
    socket paths (default: nothing).
    """

    def __init__(
        self,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        *,
        config: str | None = None,
        mosquitto: bool = False,
        workdir: Path | None = None,
        wait: Sequence[object] = (),
    ) -> None:
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.port = port if port is not None else free_port()
        self._fixed_port = port is not None
        self.proc: subprocess.Popen[bytes] | None = None
        self._tmpdir = tempfile.TemporaryDirectory(prefix="mqttfast-test-")
        self.workdir = Path(workdir) if workdir is not None else Path(self._tmpdir.name)
        self.log_path = self.workdir / f"broker-{time.monotonic_ns()}.log"
        self.config_text = config
        self.mosquitto_config = mosquitto
        self.config_file: Path | None = None
        if config is not None:
            self.config_file = self.workdir / ("mosquitto.conf" if mosquitto else "mqttfast.toml")
            self.config_file.write_text(config)
        self.wait_targets = list(wait)
        self.kind = "mosquitto" if mosquitto_mode() and config is None else "mqttfast"

    # -- command lines ----------------------------------------------------
    def command(self) -> list[str]:
        if self.kind == "mosquitto":
            return [self._mosquitto_binary(), "-c", str(self._write_mosquitto_conf())]
        if self.config_file is not None:
            flag = "--mosquitto-config" if self.mosquitto_config else "--config"
            return [sys.executable, "-m", "mqttfast", flag, str(self.config_file), *self.extra_args]
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
        """Start the broker and wait (bounded) until its port accepts TCP (with a
        config file: until every ``wait`` target accepts)."""
        if self.config_file is not None:
            return self._start_configured(timeout)
        for attempt in range(3):
            self._spawn()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                if port_accepts(self.port) and self._owns_port():
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

    def _owns_port(self) -> bool:
        """The process that accepted is this broker (or a child of it), not another one
        that held the port first: its listening socket is among this process's open
        files. (Linux /proc; elsewhere, assumed.)"""
        assert self.proc is not None
        return owns_listening_port(self.proc.pid, self.port)

    def _start_configured(self, timeout: float) -> BrokerProcess:
        self._spawn()
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        pending = list(self.wait_targets)
        while pending:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"mqttfast exited with {self.proc.returncode}; log:\n{self.log_text()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"listeners {pending} not ready; log:\n{self.log_text()}")
            pending = [w for w in pending if not accepts(w)]
            if pending:
                time.sleep(0.05)
        return self

    def spawn(self) -> BrokerProcess:
        """Start the process without waiting for anything (a test that signals it
        while it is still starting)."""
        self._spawn()
        return self

    def _spawn(self) -> None:
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._environment(),
                cwd=self.workdir,
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
        """kill -9 (no clean shutdown: what a crash or power cut looks like)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def assert_no_traceback(self) -> None:
        text = self.log_text()
        assert not TRACEBACK.search(text), f"traceback in the broker log:\n{text[-5000:]}"

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
