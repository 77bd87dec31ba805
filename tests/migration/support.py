"""A real mosquitto process (the bridge's peer) and bounded waits."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.helpers.broker import port_accepts


class Mosquitto:
    """``mosquitto -c FILE`` on 127.0.0.1:port; ``stop()`` ends it."""

    def __init__(self, workdir: Path, port: int, extra: str = "") -> None:
        self.port = port
        self.conf = workdir / f"mosquitto-{port}.conf"
        self.log = workdir / f"mosquitto-{port}.log"
        self.conf.write_text(
            # user root: started as root, mosquitto would become "mosquitto", which
            # cannot read the test's private temporary directory.
            f"user root\nlistener {port} 127.0.0.1\nlog_dest stderr\nlog_type all\n{extra}"
        )
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [binary, "-c", str(self.conf)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        wait_until(lambda: port_accepts(port) or self.proc.poll() is not None, 10, "mosquitto")
        assert self.proc.poll() is None, f"mosquitto exited: {self.log_text()}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def mosquitto_password_file(path: Path, user: str, password: str) -> None:
    subprocess.run(
        ["mosquitto_passwd", "-c", "-b", str(path), user, password],
        check=True,
        capture_output=True,
        timeout=10,
    )


def wait_until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting: {what}")
        time.sleep(0.05)
