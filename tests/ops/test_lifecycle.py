"""Lifecycle: SIGTERM/SIGINT stop the broker cleanly (v5 clients get DISCONNECT 0x8B,
wills are published, persistence is flushed, exit 0 in bounded time); SIGHUP reloads
the log level without dropping connections; ``--version``."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

import mqttfast
from mqttfast.codec.packets import Will
from tests.helpers.broker import REPO_ROOT
from tests.helpers.rawclient import RawClient

from .support import OpsBroker


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_sends_0x8b_to_v5_clients_and_exits_0(ops_broker, signum) -> None:
    """[MQTT-4.13.1-1]/3.14.2.1: a server closing a v5 connection sends DISCONNECT
    with a reason code: 0x8B Server shutting down."""
    b = ops_broker(["--sys-interval", "0"])
    v5a, v5b, v311 = RawClient(b.port, version=5), RawClient(b.port, version=5), RawClient(b.port)
    try:
        v5a.connect("v5-a")
        v5b.connect("v5-b")
        v5b.subscribe("x/#")
        v311.connect("v311")
        started = time.monotonic()
        b.signal(signum)
        assert v5a.expect_closed(timeout=5) == 0x8B
        assert v5b.expect_closed(timeout=5) == 0x8B
        assert v311.expect_closed(timeout=5) is None  # 3.1.1 has no server DISCONNECT
        assert b.proc.wait(10) == 0
        assert time.monotonic() - started < 5
    finally:
        for c in (v5a, v5b, v311):
            c.close()
    log = b.log_text()
    assert "shutting down" in log and "stopped" in log


def test_shutdown_publishes_wills_and_flushes_persistence(ops_broker, tmp_path) -> None:
    """Wills of connections the server closes are published [MQTT-3.1.2-8]; what the
    shutdown produced (the will queued for an offline persistent session, a retained
    message) survives the restart (persistence flushed before exit)."""
    data = tmp_path / "data"
    args = ["--sys-interval", "0", "--persistence", "relaxed", "--data-dir", str(data)]
    b = ops_broker(args, admin=False)
    with RawClient(b.port) as sub:
        sub.connect("will-watcher", clean_start=False)
        sub.subscribe(("wills/#", 1))
        sub.disconnect()  # offline: the will must wait in its session
    victim = RawClient(b.port, version=5)
    try:
        victim.connect("victim", will=Will(topic="wills/victim", payload=b"bye", qos=1))
        with RawClient(b.port) as pub:
            pub.connect("retainer")
            pub.publish("kept/r", b"keep", qos=1, retain=True)
        b.signal(signal.SIGTERM)
        assert victim.expect_closed(timeout=5) == 0x8B
        assert b.proc.wait(10) == 0
    finally:
        victim.close()

    again = OpsBroker(args, admin=False, metrics=False, port=b.port)
    ops_broker.made.append(again)
    again.start()
    with RawClient(again.port) as sub:
        ack = sub.connect("will-watcher", clean_start=False)
        assert ack.session_present
        will = sub.recv_publish(timeout=3)
        assert (will.topic, will.payload) == ("wills/victim", b"bye")
        sub.subscribe(("kept/#", 1))
        kept = sub.recv_publish(timeout=3)
        assert (kept.topic, kept.payload, kept.retain) == ("kept/r", b"keep", True)


def test_sighup_reloads_log_level_and_keeps_connections(ops_broker, tmp_path) -> None:
    conf = tmp_path / "mqttfast.toml"
    conf.write_text('[logging]\nlevel = "info"\n')
    b = ops_broker(
        ["--config", str(conf), "--sys-interval", "0"], log_level=None, admin=False, metrics=False
    )
    with RawClient(b.port) as keeper:
        keeper.connect("keeper")
        b.wait_for_log("client keeper connected")

        conf.write_text('[logging]\nlevel = "warning"\n')
        b.signal(signal.SIGHUP)
        b.wait_for_log("SIGHUP: reloading")
        time.sleep(0.3)  # the reload runs right after that line, on the loop
        with RawClient(b.port) as quiet:
            quiet.connect("quiet-client")
            quiet.ping()
        time.sleep(0.3)
        assert "quiet-client" not in b.log_text()  # INFO is off now

        conf.write_text('[logging]\nlevel = "debug"\n')
        b.signal(signal.SIGHUP)
        b.wait_for_log("log level debug")
        with RawClient(b.port) as loud:
            loud.connect("loud-client")
        b.wait_for_log("client loud-client connected")
        assert keeper.is_open(timeout=2)  # SIGHUP dropped no connection
    assert b.running()


def test_version_flag() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mqttfast", "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO_ROOT,
    )
    assert proc.returncode == 0
    assert proc.stdout.strip().startswith(f"mqttfast {mqttfast.__version__} (codec: ")


def test_bad_ops_flag_is_one_line_exit_2() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mqttfast", "--metrics-port", "70000"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO_ROOT,
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "--metrics-port" in proc.stderr


def test_shutdown_is_bounded_with_a_client_that_never_reads(ops_broker) -> None:
    """A subscriber that stopped reading (full socket buffers) cannot hold the exit."""
    import socket

    b = ops_broker(["--sys-interval", "0"], admin=False, metrics=False)
    stuck = RawClient(b.port, version=5)
    stuck.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        stuck.connect("never-reads")
        stuck.subscribe("flood/#")
        with RawClient(b.port) as pub:
            pub.connect("flooder")
            for _ in range(400):
                pub.publish("flood/x", b"z" * 8192)
            pub.ping(timeout=5)
        started = time.monotonic()
        b.signal(signal.SIGTERM)
        assert b.proc.wait(15) == 0
        assert time.monotonic() - started < 8
    finally:
        stuck.close()
