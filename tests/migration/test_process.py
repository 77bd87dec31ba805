"""``pid_file`` and ``user`` from a mosquitto.conf (issue 18 item 2): started as root, the
broker becomes the configured user before it creates the pid file, the log file and the
data directory, so all three belong to that user; the pid file holds the broker's pid
and is removed at exit. The user is a system user this test creates (``useradd
--system``) and deletes."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.rawclient import RawClient
from tests.listeners.support import free_port

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def system_user() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("dropping privileges needs root (the suite runs as root in CI)")
    name = f"mqf{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        check=True,
        capture_output=True,
        timeout=30,
    )
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], capture_output=True, timeout=30)
        with pytest.raises(KeyError):
            pwd.getpwnam(name)


@pytest.fixture
def shared_dir(system_user: str) -> Iterator[Path]:
    """A directory outside root's private /tmp/pytest-of-root, owned by the user."""
    d = Path(tempfile.mkdtemp(prefix="mqttfast-drop-", dir="/tmp"))
    entry = pwd.getpwnam(system_user)
    os.chown(d, entry.pw_uid, entry.pw_gid)
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _status_ids(pid: int) -> tuple[int, int]:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["Uid"].split()[1]), int(fields["Gid"].split()[1])  # effective ids


def test_user_drops_root_before_any_file_is_created(start_broker, system_user, shared_dir) -> None:
    entry = pwd.getpwnam(system_user)
    port = free_port()
    conf = (
        f"user {system_user}\n"
        f"pid_file {shared_dir}/mqttfast.pid\n"
        f"listener {port} 127.0.0.1\nallow_anonymous true\n"
        f"persistence true\npersistence_location {shared_dir}/data/\n"
        f"log_dest file {shared_dir}/broker.log\nlog_dest stdout\n"
    )
    b = start_broker(conf, mosquitto=True, wait=[port])
    assert _status_ids(b.proc.pid) == (entry.pw_uid, entry.pw_gid)
    pid_file = shared_dir / "mqttfast.pid"
    assert pid_file.read_text() == f"{b.proc.pid}\n"
    with RawClient(port) as c:
        c.connect("drop", clean_start=False)
        c.publish("kept/t", b"x", qos=1, retain=True)
    for path in (pid_file, shared_dir / "broker.log", shared_dir / "data"):
        st = path.stat()
        assert (st.st_uid, st.st_gid) == (entry.pw_uid, entry.pw_gid), path
    for db in (shared_dir / "data").iterdir():
        assert db.stat().st_uid == entry.pw_uid, db
    log = (shared_dir / "broker.log").read_text()
    assert f"running as user {system_user}" in log
    assert b.stop() == 0
    assert not pid_file.exists()


def test_unknown_user_is_a_config_error(start_broker, tmp_path) -> None:
    from tests.config.test_errors import run

    if os.geteuid() != 0:
        pytest.skip("the user is only looked up when started as root")
    conf = tmp_path / "m.conf"
    conf.write_text(f"user no-such-user-{uuid.uuid4().hex[:6]}\nlistener {free_port()} 127.0.0.1\n")
    r = run("--mosquitto-config", str(conf))
    assert r.returncode == 2
    assert "process.user: no such user" in r.stderr


def test_pid_file_without_user(start_broker, tmp_path) -> None:
    port = free_port()
    b = start_broker(
        f"pid_file {tmp_path}/m.pid\nlistener {port} 127.0.0.1\n", mosquitto=True, wait=[port]
    )
    assert (tmp_path / "m.pid").read_text().strip() == str(b.proc.pid)
    assert b.stop() == 0
    assert not (tmp_path / "m.pid").exists()
