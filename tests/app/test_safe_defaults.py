"""Issue 18, items 1, 3 and 4, end to end with real broker processes: local-only by
default, anonymous clients refused on exposed listeners, paths relative to the config
file, and a discoverable command line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mqttfast.app.security.passwords import PasswordFile
from tests.helpers.broker import REPO_ROOT, BrokerProcess, free_port
from tests.helpers.rawclient import RawClient

pytestmark = pytest.mark.timeout(60)


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    return subprocess.run(
        [sys.executable, "-m", "mqttfast", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=cwd or REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})},
    )


def flag_broker(port: int, *args: str, env: dict[str, str] | None = None) -> BrokerProcess:
    """A broker process on ``port`` whose flags are exactly ``args`` (no --host added)."""
    b = BrokerProcess(["--persistence", "off", "--port", str(port), *args], env=env, port=port)
    b.command = lambda: [sys.executable, "-m", "mqttfast", *b.extra_args]  # type: ignore[method-assign]
    return b


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on ``port`` (from /proc/net/tcp{,6})."""
    found: set[str] = set()
    for name, size in (("tcp", 8), ("tcp6", 32)):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            addr, _, hexport = fields[1].partition(":")
            if int(hexport, 16) != port or fields[3] != "0A":  # 0A: LISTEN
                continue
            raw = bytes.fromhex(addr)
            # /proc prints each 32-bit word in host (little-endian) order.
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            family = socket.AF_INET if size == 8 else socket.AF_INET6
            found.add(socket.inet_ntop(family, raw))
    return found


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def connack(port: int, **kw: object) -> int:
    with RawClient(port) as c:
        return int(c.connect("who", expect_rc=None, timeout=5.0, **kw).reason_code)  # type: ignore[arg-type]


def test_no_listener_means_loopback_only_and_says_so() -> None:
    """No --host and no [[listener]]: 127.0.0.1 and ::1 only (mosquitto 2's local only
    mode), one log line saying so and how to open it; anonymous clients work there."""
    port = free_port()
    b = flag_broker(port)
    try:
        b.start()
        log = b.wait_for_log("local only mode")
        assert "--host 0.0.0.0" in log and "--allow-anonymous" in log
        expected = {"127.0.0.1", "::1"} if has_ipv6_loopback() else {"127.0.0.1"}
        assert listening_addresses(port) == expected
        assert connack(port) == 0
    finally:
        b.stop()
        b.cleanup()


def test_exposed_listener_refuses_anonymous_clients() -> None:
    """--host 0.0.0.0 without a password file: anonymous CONNECT refused (3.1.1 code 5
    Not authorized) and a WARNING naming the address explains why and how to allow it."""
    port = free_port()
    b = flag_broker(port, "--host", "0.0.0.0")
    try:
        b.start()
        log = b.wait_for_log("anonymous clients are refused")
        line = next(ln for ln in log.splitlines() if "anonymous clients are refused" in ln)
        assert "WARNING" in line and "0.0.0.0" in line and "--allow-anonymous" in line
        assert connack(port) == 5
    finally:
        b.stop()
        b.cleanup()


def test_allow_anonymous_on_exposed_listener_warns_with_the_address() -> None:
    """--allow-anonymous: anonymous clients accepted, with a WARNING naming the address."""
    port = free_port()
    b = flag_broker(port, "--host", "0.0.0.0", "--allow-anonymous")
    try:
        b.start()
        log = b.wait_for_log("anonymous clients are accepted")
        line = next(ln for ln in log.splitlines() if "anonymous clients are accepted" in ln)
        assert "WARNING" in line and f"0.0.0.0:{port}" in line
        assert connack(port) == 0
    finally:
        b.stop()
        b.cleanup()


def test_exposed_with_a_password_file_flag(tmp_path: Path) -> None:
    """The README's safe way to open the broker: --host 0.0.0.0 --password-file FILE;
    users log in, anonymous clients are refused, no WARNING about anonymous access."""
    pf = PasswordFile()
    pf.set("alice", "wonder", iterations=1000)
    pf.save(tmp_path / "passwd")
    port = free_port()
    b = flag_broker(port, "--host", "0.0.0.0", "--password-file", str(tmp_path / "passwd"))
    try:
        b.start()
        assert connack(port, username="alice", password=b"wonder") == 0
        assert connack(port) == 5
        assert "anonymous clients are" not in b.log_text()
    finally:
        b.stop()
        b.cleanup()


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    """data_dir and password_file relative to the file's directory, whatever the working
    directory; the data directory is logged as an absolute path; the password works."""
    confdir = tmp_path / "etc"
    confdir.mkdir()
    pf = PasswordFile()
    pf.set("alice", "wonder", iterations=1000)
    pf.save(confdir / "passwd")
    port = free_port()
    (confdir / "mqttfast.toml").write_text(
        f'[[listener]]\nport = {port}\naddress = "0.0.0.0"\n'
        '[persistence]\ndata_dir = "data"\n[auth]\npassword_file = "passwd"\n'
    )
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    b = BrokerProcess(["--config", str(confdir / "mqttfast.toml")], workdir=elsewhere, port=port)
    b.command = lambda: [sys.executable, "-m", "mqttfast", *b.extra_args]  # type: ignore[method-assign]
    try:
        b.start()
        log = b.wait_for_log(f"persistence strict in {confdir / 'data'}")
        assert str(elsewhere / "mqttfast-data") not in log
        assert (confdir / "data" / "mqttfast.db").exists()
        assert connack(port, username="alice", password=b"wonder") == 0
        assert connack(port) == 5  # a password file: anonymous refused
    finally:
        b.stop()
        b.cleanup()


def test_file_errors_name_the_key_and_the_path(tmp_path: Path) -> None:
    """A missing password file: exit 2, one message naming auth.password_file and the
    absolute path it was looked for at."""
    conf = tmp_path / "mqttfast.toml"
    conf.write_text('[auth]\npassword_file = "nope/passwd"\n')
    r = run_cli("--config", str(conf), "--port", str(free_port()))
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert "auth.password_file" in lines[0] and str(tmp_path / "nope" / "passwd") in lines[0]
    check = run_cli("check-config", str(conf))
    assert check.returncode == 2 and "auth.password_file" in check.stdout
    assert str(tmp_path / "nope" / "passwd") in check.stdout


def test_help_lists_the_subcommands() -> None:
    """``mqttfast --help``: check-config, passwd and bench, one line each."""
    r = run_cli("--help")
    assert r.returncode == 0
    _, found, listing = r.stdout.partition("subcommands")
    assert found, r.stdout
    for name in ("check-config", "passwd", "bench"):
        lines = [ln for ln in listing.splitlines() if ln.strip().startswith(name + " ")]
        assert len(lines) == 1 and len(lines[0].split()) > 2, (name, r.stdout)


@pytest.mark.parametrize("no_ext", ["1", ""])
def test_version_names_the_codec(no_ext: str) -> None:
    """``mqttfast --version``: version and codec implementation (python when
    MQTTFAST_NO_EXTENSIONS=1, else whatever is built)."""
    import mqttfast
    from mqttfast.codec import IMPLEMENTATION

    r = run_cli("--version", env={"MQTTFAST_NO_EXTENSIONS": no_ext})
    codec = "python" if no_ext else IMPLEMENTATION
    if not no_ext and os.environ.get("MQTTFAST_NO_EXTENSIONS", "") not in ("", "0"):
        codec = "cython"  # this pass forces python; the child is free to load the build
    assert r.returncode == 0
    assert r.stdout.strip() == f"mqttfast {mqttfast.__version__} (codec: {codec})"


def test_pure_python_codec_warns_at_start() -> None:
    """MQTTFAST_NO_EXTENSIONS=1: a WARNING at start-up saying the codec is pure Python
    and how to get the compiled one."""
    b = flag_broker(free_port(), env={"MQTTFAST_NO_EXTENSIONS": "1"})
    try:
        b.start()
        log = b.wait_for_log("pure Python")
        line = next(ln for ln in log.splitlines() if "pure Python" in ln)
        assert "WARNING" in line and "MQTTFAST_NO_EXTENSIONS" in line and "pip install" in line
    finally:
        b.stop()
        b.cleanup()
