"""Disk faults under strict persistence (issue 17): ``strace --inject`` makes the
database's WAL writes fail (ENOSPC on pwrite64) or its fsyncs fail (EIO on fdatasync)
in a running broker. The broker never acknowledges what it could not store, says so in
one log line, and then stops (``persistence.on_error = "stop"``, the default) or serves
on without persistence for new messages, flagged in the log and /metrics ("degrade")."""

from __future__ import annotations

import glob
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mqttfast.codec.packets import Puback, Publish
from tests.helpers.broker import free_port
from tests.helpers.rawclient import ConnectionClosed, NoPacket, RawClient

from .helpers import DurableBroker, persistent
from .test_pipeline import metric

FAULTS = {"EIO": "fdatasync", "ENOSPC": "pwrite64"}


def traced(pid: int) -> bool:
    tasks = glob.glob(f"/proc/{pid}/task/*/status")
    if not tasks:
        return False
    for status in tasks:
        try:
            text = Path(status).read_text()
        except OSError:
            continue
        if "TracerPid:\t0\n" in text:
            return False
    return True


@pytest.fixture
def inject() -> Iterator:
    started: list[subprocess.Popen] = []

    def attach(pid: int, path: Path, errno: str) -> subprocess.Popen:
        """Every ``FAULTS[errno]`` call on ``path`` in process ``pid`` fails from now on."""
        call = FAULTS[errno]
        proc = subprocess.Popen(
            ["strace", "-f", "-qq", "-o", "/dev/null", "-p", str(pid), "-P", str(path)]
            + ["-e", f"trace={call}", "-e", f"inject={call}:error={errno}"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started.append(proc)
        deadline = time.monotonic() + 10
        while not traced(pid):
            assert proc.poll() is None, f"strace exited with {proc.returncode}"
            assert time.monotonic() < deadline, "strace did not attach"
            time.sleep(0.05)
        return proc

    yield attach
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)


def fault_lines(log: str) -> list[str]:
    return [ln for ln in log.splitlines() if "persistence: cannot write" in ln]


def start_loaded(tmp_path: Path, extra: list[str]) -> tuple[DurableBroker, RawClient]:
    """A strict broker with one offline persistent subscriber (every message on 't/#'
    must be stored) and a connected publisher that got one message acknowledged."""
    broker = DurableBroker(tmp_path / "data", extra).start()
    sub, _ = persistent("fault-sub", broker.port)
    sub.subscribe(("t/#", 1))
    sub.disconnect()
    pub = RawClient(broker.port, 5)
    pub.connect("fault-pub")
    pub.send_packet(Publish("t/x", b"stored", qos=1, packet_id=1))
    assert pub.expect(Puback).packet_id == 1
    return broker, pub


def no_ack(pub: RawClient, timeout: float = 3.0) -> None:
    """Nothing acknowledges the publish: the connection closes or stays silent."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pkt = pub.recv_packet(timeout=deadline - time.monotonic())
        except (ConnectionClosed, NoPacket, OSError):
            return
        assert not isinstance(pkt, Puback), f"acknowledged what was not stored: {pkt}"


@pytest.mark.parametrize("errno", sorted(FAULTS))
def test_disk_fault_stops_the_broker(tmp_path: Path, inject, errno: str) -> None:
    """on_error = "stop" (default): no PUBACK for the message that could not be stored,
    one log line, exit code 1; what was acknowledged before is there after a restart."""
    broker, pub = start_loaded(tmp_path, [])
    try:
        assert broker.proc is not None
        inject(broker.proc.pid, broker.data_dir / "mqttfast.db-wal", errno)
        pub.send_packet(Publish("t/x", b"lost", qos=1, packet_id=2))
        no_ack(pub)
        assert broker.proc.proc.wait(10) == 1
        log = broker.proc.log_text()
        lines = fault_lines(log)
        assert len(lines) == 1, log[-3000:]
        assert "persistence.on_error = stop" in lines[0] and "Traceback" not in log
        broker.proc.cleanup()
        broker.proc = None
        broker.start()  # the fault is gone: what was acknowledged before is recovered
        sub, connack = persistent("fault-sub", broker.port)
        assert connack.session_present
        assert sub.recv_publish().payload == b"stored"
        sub.close()
    finally:
        pub.close()
        broker.close()


@pytest.mark.parametrize("errno", sorted(FAULTS))
def test_disk_fault_degrades_when_configured(tmp_path: Path, inject, errno: str) -> None:
    """on_error = "degrade": no PUBACK for what could not be stored (that connection is
    closed), one log line, /metrics counts the error and flags the mode; the broker
    serves on and acknowledges new messages without storing them."""
    conf = tmp_path / "mqttfast.toml"
    conf.write_text('[persistence]\non_error = "degrade"\n')
    mport = free_port()
    broker, pub = start_loaded(tmp_path, ["--config", str(conf), "--metrics-port", str(mport)])
    try:
        assert broker.proc is not None
        assert metric(mport, "mqttfast_persistence_degraded_total") == 0
        tracer = inject(broker.proc.pid, broker.data_dir / "mqttfast.db-wal", errno)
        pub.send_packet(Publish("t/x", b"lost", qos=1, packet_id=2))
        no_ack(pub)
        deadline = time.monotonic() + 10
        while not fault_lines(broker.proc.log_text()):
            assert time.monotonic() < deadline, broker.proc.log_text()[-3000:]
            time.sleep(0.05)
        tracer.terminate()
        tracer.wait(10)
        assert broker.proc.running()
        lines = fault_lines(broker.proc.log_text())
        assert len(lines) == 1 and "PERSISTENCE IS OFF" in lines[0], lines
        assert metric(mport, "mqttfast_persistence_errors_total") == 1
        assert metric(mport, "mqttfast_persistence_degraded_total") == 1
        again = RawClient(broker.port, 5)
        again.connect("fault-pub-2")
        again.send_packet(Publish("t/x", b"unguarded", qos=1, packet_id=1))
        assert again.expect(Puback).packet_id == 1
        again.close()
        assert "Traceback" not in broker.proc.log_text()
    finally:
        pub.close()
        broker.close()
