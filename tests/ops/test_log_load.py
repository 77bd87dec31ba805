"""Logs that stay readable under load (issue 18 item 5), and mosquitto's log directives
(item 2): connection lines follow connection_messages; connect timeouts, refused
connections and malformed packets make at most one line per kind per second, with a
count; the websockets library's own lines stay out of the broker log; log_dest,
log_timestamp and log_timestamp_format shape the output."""

from __future__ import annotations

import re
import socket
import time

import pytest

from tests.helpers.rawclient import RawClient
from tests.listeners.support import free_port, start_broker  # noqa: F401

from .support import wait_for

pytestmark = pytest.mark.timeout(90)


def _when(read, pred, what: str, timeout: float = 5.0) -> str:
    """read() once pred(text) holds (bounded)."""
    return wait_for(lambda: (lambda t: t if pred(t) else None)(read()), timeout, what)


def _summaries(log: str, kind: str) -> list[int]:
    return [int(n) for n in re.findall(rf"(\d+) more {kind} in the last", log)]


def _lines_per_second(log: str, needle: str) -> dict[str, int]:
    """Lines containing needle, by second of their timestamp."""
    seconds: dict[str, int] = {}
    for line in log.splitlines():
        if needle in line:
            seconds[line[:19]] = seconds.get(line[:19], 0) + 1
    return seconds


def test_connect_timeouts_are_aggregated(start_broker) -> None:
    port = free_port()
    b = start_broker(
        f'[[listener]]\nport = {port}\naddress = "127.0.0.1"\n'
        '[limits]\nconnect_timeout = 0.2\n[persistence]\nmode = "off"\n',
        wait=[port],
    )
    socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(60)]
    try:
        for s in socks:  # every idle connection is closed by the broker
            assert s.recv(1) == b""
    finally:
        for s in socks:
            s.close()

    def total(t: str) -> int:
        sums = _summaries(t, "connect timeouts")
        return t.count("no CONNECT within") - len(sums) + sum(sums)

    log = _when(b.log_text, lambda t: total(t) >= 60, "every connect timeout counted")
    singles = log.count("no CONNECT within") - len(_summaries(log, "connect timeouts"))
    assert singles + sum(_summaries(log, "connect timeouts")) == 60
    assert singles <= 3, log  # not one line per connection
    # At most one line of this kind per second (the first, then a summary a second later).
    assert max(_lines_per_second(log, "no CONNECT within").values()) <= 2, log


def test_refused_and_malformed_are_aggregated(start_broker, tmp_path) -> None:
    from mqttfast.app.security.passwords import PasswordFile

    pf = PasswordFile()
    pf.set("alice", "wonder", iterations=1000)
    pf.save(tmp_path / "pw")
    port = free_port()
    b = start_broker(
        f"listener {port} 127.0.0.1\npassword_file {tmp_path}/pw\n", mosquitto=True, wait=[port]
    )
    for i in range(25):
        with RawClient(port) as c:
            c.connect(f"intruder-{i}", username="alice", password="wrong", expect_rc=None)
    for _ in range(25):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"\x10\x05GARBAGE")  # not a CONNECT anyone could parse
            s.settimeout(5)
            try:
                while s.recv(100):
                    pass
            except OSError:
                pass
    # The connect lines of 25 refused clients are still logged, but aggregated.

    def counted(kind: str, needle: str, total: int):
        def check(t: str) -> bool:
            sums = _summaries(t, kind)
            return t.count(needle) - len(sums) + sum(sums) >= total

        return check

    log = _when(b.log_text, counted("refused connections", "' refused: ", 25), "refusals")
    log = _when(b.log_text, counted("malformed packets", "bad CONNECT", 25), "malformed")
    kinds = [("refused connections", "' refused: "), ("malformed packets", "bad CONNECT")]
    for kind, needle in kinds:
        sums = _summaries(log, kind)
        singles = log.count(needle) - len(sums)
        assert singles + sum(sums) == 25, (kind, log)
        assert singles <= 3 and sums, (kind, log)
    # The authenticator's lines about the same logins are aggregated too.
    assert log.count("login failed for client") <= 4, log
    assert log.count("too many failed logins") <= 4, log


def test_connection_messages_off_and_log_directives(start_broker, tmp_path) -> None:
    port = free_port()
    conf = (
        f"listener {port} 127.0.0.1\nallow_anonymous true\n"
        f"log_dest file {tmp_path}/file.log\nlog_dest stdout\n"
        "log_timestamp_format %Y/%m/%d-%H:%M:%S\nconnection_messages false\n"
    )
    b = start_broker(conf, mosquitto=True, wait=[port])
    with RawClient(port) as c:
        c.connect("quiet-client")
        c.disconnect()
    with RawClient(port) as c:
        c.connect("quiet-client-2")
    _when((tmp_path / "file.log").read_text, lambda t: "listening" in t, "the log file")
    assert b.stop() == 0
    file_log = (tmp_path / "file.log").read_text()
    assert "quiet-client" not in file_log
    assert "quiet-client" not in b.log_text()  # stdout: the same
    first = file_log.splitlines()[0]
    assert re.match(r"\d{4}/\d\d/\d\d-\d\d:\d\d:\d\d INFO ", first), first
    # Defaults: connection messages on (as mosquitto); log_timestamp false: no timestamp.
    conf = (
        f"listener {port} 127.0.0.1\nallow_anonymous true\n"
        f"log_dest file {tmp_path}/file2.log\nlog_timestamp false\n"
    )
    b = start_broker(conf, mosquitto=True, wait=[port])
    with RawClient(port) as c:
        c.connect("loud-client")
        c.disconnect()
    text = _when(
        (tmp_path / "file2.log").read_text, lambda t: "loud-client disc" in t, "connection lines"
    )
    assert "client loud-client connected from" in text
    assert all(line.startswith(("INFO ", "WARNING ")) for line in text.splitlines()), text


def test_websockets_library_lines_stay_out(start_broker) -> None:
    from websockets.sync.client import connect as ws_connect

    port = free_port()
    b = start_broker(
        f'[[listener]]\nport = {port}\naddress = "127.0.0.1"\nprotocol = "websockets"\n'
        '[persistence]\nmode = "off"\n',
        wait=[port],
    )
    with ws_connect(f"ws://127.0.0.1:{port}/", subprotocols=["mqtt"], open_timeout=5):
        pass
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # no Upgrade: a bad handshake
        s.settimeout(5)
        assert s.recv(100).startswith(b"HTTP/1.1 4")
    _when(b.log_text, lambda t: "handshake refused (426" in t, "the refused handshake line")
    time.sleep(0.2)
    log = b.log_text()
    assert log.count("handshake refused") == 1  # the transport's one line
    assert "opening handshake failed" not in log and "Traceback" not in log
    assert "connection open" not in log and "connection closed" not in log


def test_syslog_destination_and_facility(start_broker, tmp_path) -> None:
    """destinations = ["syslog"] with facility local3 (mosquitto: log_facility 3): the
    lines arrive on the syslog socket with PRI local3 (19 * 8 + severity). A syslog that
    goes away costs one line on stderr, not a traceback per log line."""
    sock_path = tmp_path / "syslog.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(sock_path))
    server.settimeout(5)
    port = free_port()
    try:
        b = start_broker(
            f'[[listener]]\nport = {port}\naddress = "127.0.0.1"\n[persistence]\nmode = "off"\n'
            f'[logging]\ndestinations = ["syslog"]\nsyslog_facility = "local3"\n'
            f'syslog_address = "{sock_path}"\n',
            wait=[port],
        )
        lines = []
        deadline = time.monotonic() + 5
        while not any("listening on" in line for line in lines):
            assert time.monotonic() < deadline, lines
            lines.append(server.recv(4096).decode(errors="replace"))
        info = next(line for line in lines if "listening on" in line)
        assert info.startswith(f"<{19 * 8 + 6}>mqttfast["), info  # local3.info
    finally:
        server.close()
        sock_path.unlink()
    for i in range(3):  # log lines with syslog gone
        with RawClient(port) as c:
            c.connect(f"after-{i}")
    assert b.stop() == 0  # no traceback in its output
    assert b.log_text().count("unreachable") == 1, b.log_text()


def test_log_type_error_hides_info_lines(start_broker, tmp_path) -> None:
    port = free_port()
    conf = (
        f"listener {port} 127.0.0.1\nallow_anonymous true\n"
        f"log_dest file {tmp_path}/err.log\nlog_type error\n"
    )
    b = start_broker(conf, mosquitto=True, wait=[port])
    with RawClient(port) as c:
        c.connect("quiet")
    assert b.stop() == 0
    assert "INFO" not in (tmp_path / "err.log").read_text()
