"""Shared helpers for the security tests: free loopback ports and a real mosquitto broker."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.broker import free_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"mosquitto exited with {proc.returncode}: {err}")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"mosquitto did not listen on {port} within {timeout}s")


@contextlib.contextmanager
def run_mosquitto(tmp_path: Path, **settings: str) -> Iterator[int]:
    """Start the real mosquitto on a free 127.0.0.1 port with ``settings`` as config lines."""
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    lines = [
        f"listener {port} 127.0.0.1",
        "persistence false",
        "user root",  # we run as root in CI; stay root so 0600 files stay readable
        "log_dest stderr",
    ]
    lines += [f"{key} {value}" for key, value in settings.items()]
    conf.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen(
        [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_for_port(port, proc)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        if proc.stderr:
            proc.stderr.close()


@pytest.fixture
def mosquitto_runner(tmp_path: Path):
    """``with mosquitto_runner(password_file=..., acl_file=...) as port:``"""

    def start(**settings: str):
        return run_mosquitto(tmp_path, **settings)

    return start
