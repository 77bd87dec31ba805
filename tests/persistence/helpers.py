"""Helpers for the persistence tests: a broker restartable on one data dir and port."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from mqttfast.codec.packets import Properties
from tests.helpers.broker import REPO_ROOT, BrokerProcess, free_port
from tests.helpers.rawclient import RawClient


class DurableBroker:
    """Starts/stops/kills ``python3 -m mqttfast --data-dir DIR`` on one fixed port."""

    def __init__(self, data_dir: Path, extra_args: Sequence[str] = ()) -> None:
        self.data_dir = data_dir
        self.extra_args = list(extra_args)
        self.port = free_port()
        self.proc: BrokerProcess | None = None
        self.logs: list[str] = []

    def start(self) -> DurableBroker:
        self.proc = BrokerProcess(
            ["--data-dir", str(self.data_dir), *self.extra_args], port=self.port
        )
        try:
            self.proc.start()
            # One CONNECT round trip: the broker's event loop is running, so its SIGTERM
            # handler is installed (a SIGTERM right after bind would otherwise kill it).
            with RawClient(self.port, 4) as c:
                c.connect("")
                c.disconnect()
        except BaseException:
            # A failed start must not leave the broker running (nor its data dir locked):
            # kill it, keep its log for the failure message.
            self.proc.kill()
            self._finish()
            raise
        return self

    def _finish(self) -> None:
        assert self.proc is not None
        self.logs.append(self.proc.log_text())
        self.proc.cleanup()
        self.proc = None

    def stop(self) -> int:
        """SIGTERM (clean shutdown); returns the exit code."""
        assert self.proc is not None
        code = self.proc.stop(timeout=10)
        self._finish()
        return code

    def crash(self) -> None:
        """SIGKILL: no shutdown code runs."""
        assert self.proc is not None
        self.proc.signal(signal.SIGKILL)
        self.proc.proc.wait(5)
        self._finish()

    def restart(self, how: int = signal.SIGTERM) -> DurableBroker:
        if how == signal.SIGKILL:
            self.crash()
        else:
            assert self.stop() == 0, self.logs[-1][-3000:]
        return self.start()

    def log_text(self) -> str:
        return "\n".join(self.logs) + (self.proc.log_text() if self.proc else "")

    def client(self, version: int = 5) -> RawClient:
        return RawClient(self.port, version=version)

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self._finish()


def persistent(
    client_id: str, port: int, version: int = 5, expiry: int = 3600, clean_start: bool = False, **kw
) -> tuple[RawClient, object]:
    """A connected client with a persistent session; returns (client, connack)."""
    c = RawClient(port, version=version)
    props = Properties(session_expiry_interval=expiry) if version == 5 else None
    connack = c.connect(client_id, clean_start=clean_start, properties=props, **kw)
    return c, connack


def run_cli(args: Sequence[str], timeout: float = 15.0) -> subprocess.CompletedProcess:
    """Run ``python3 -m mqttfast ARGS`` to completion (for start-up failures)."""
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mqttfast",
            "--host",
            "127.0.0.1",
            "--port",
            str(free_port()),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def db_rows(data_dir: Path, sql: str) -> list[tuple]:
    """Read the database of a STOPPED broker (read-only)."""
    db = sqlite3.connect(f"file:{data_dir / 'mqttfast.db'}?mode=ro", uri=True)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()
