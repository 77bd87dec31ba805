"""The database file: foreign, damaged, newer or locked -> one-line error and exit code 2,
the file untouched; an older schema is migrated; the format is identifiable."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from mqttfast.app.persistence import schema
from mqttfast.app.persistence.schema import APPLICATION_ID, SCHEMA_VERSION

from .helpers import DurableBroker, run_cli


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _assert_refused(data_dir: Path, needle: str) -> None:
    db = data_dir / "mqttfast.db"
    before = _digest(db)
    res = run_cli(["--data-dir", str(data_dir)])
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("mqttfast: error:"), res.stderr
    assert needle in lines[0], lines[0]
    assert "Traceback" not in res.stdout + res.stderr
    assert _digest(db) == before  # never silently rewritten


def test_not_a_database_refused(tmp_path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "mqttfast.db").write_bytes(b"this is a text file, not SQLite\n" * 200)
    _assert_refused(data, "not a usable mqttfast database")


def test_foreign_sqlite_database_refused(tmp_path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    db = sqlite3.connect(data / "mqttfast.db")
    db.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT)")
    db.execute("INSERT INTO accounts VALUES (1, 'someone else')")
    db.commit()
    db.close()
    _assert_refused(data, "not an mqttfast database")


def test_damaged_database_refused(tmp_path) -> None:
    """A real mqttfast database with overwritten pages: quick_check fails -> exit 2."""
    data = tmp_path / "data"
    b = DurableBroker(data).start()
    try:
        from .helpers import persistent

        for i in range(30):
            c, _ = persistent(f"client-{i}", b.port)
            c.subscribe((f"t/{i}/#", 1))
            c.disconnect()
    finally:
        assert b.stop() == 0
    path = data / "mqttfast.db"
    raw = bytearray(path.read_bytes())
    assert len(raw) >= 3 * 4096
    raw[4096 + 8 : 3 * 4096 - 8] = b"\xa5" * (2 * 4096 - 16)  # trash pages 2 and 3, keep header
    path.write_bytes(bytes(raw))
    _assert_refused(data, "damaged")


def test_newer_schema_refused(tmp_path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    db = schema.open_database(str(data / "mqttfast.db"), "FULL")
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    db.close()
    _assert_refused(data, "newer than this mqttfast supports")


def test_data_dir_in_use_refused(tmp_path) -> None:
    """Two brokers on one data directory would corrupt each other's state: the
    second exits 2 while the first keeps running."""
    data = tmp_path / "data"
    b = DurableBroker(data).start()
    try:
        res = run_cli(["--data-dir", str(data)])
        assert res.returncode == 2
        assert "in use by another mqttfast process" in res.stderr
        assert b.proc.running()
    finally:
        b.close()


def test_bad_persistence_flag_exit_2() -> None:
    res = run_cli(["--persistence", "sometimes"])
    assert res.returncode == 2
    assert len([ln for ln in res.stderr.splitlines() if ln.strip()]) == 1


def test_new_database_is_identified(tmp_path) -> None:
    """application_id "MQFT" and meta.schema_version mark the file as ours."""
    data = tmp_path / "data"
    b = DurableBroker(data).start()
    assert b.stop() == 0
    db = sqlite3.connect(data / "mqttfast.db")
    try:
        assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(
            SCHEMA_VERSION
        )
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()


def test_migration_path(tmp_path, monkeypatch) -> None:
    """An older schema is upgraded in place by MIGRATIONS, step by step, keeping rows."""
    path = str(tmp_path / "mqttfast.db")
    db = schema.open_database(path, "FULL")
    db.execute("INSERT INTO retained VALUES ('a/b', x'01', 1, NULL, NULL)")
    db.close()

    def add_column(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE retained ADD COLUMN note TEXT")

    monkeypatch.setattr(schema, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    monkeypatch.setitem(schema.MIGRATIONS, SCHEMA_VERSION, add_column)
    db = schema.open_database(path, "FULL")
    try:
        assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(
            SCHEMA_VERSION + 1
        )
        assert db.execute("SELECT topic, note FROM retained").fetchall() == [("a/b", None)]
    finally:
        db.close()


def test_missing_migration_is_an_error(tmp_path) -> None:
    path = str(tmp_path / "mqttfast.db")
    db = schema.open_database(path, "FULL")
    db.execute("UPDATE meta SET value = '0' WHERE key = 'schema_version'")
    db.close()
    with pytest.raises(schema.PersistenceError, match="no migration from schema version 0"):
        schema.open_database(path, "FULL")


def test_version_1_database_is_migrated_keeping_sessions(tmp_path) -> None:
    """A database written by schema version 1 (before sessions kept their user name)
    is upgraded in place at start-up; its sessions, subscriptions and queued
    messages are all there afterwards (session present, message delivered)."""
    from .helpers import persistent

    data = tmp_path / "data"
    data.mkdir()
    db = sqlite3.connect(data / "mqttfast.db", isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.executescript("BEGIN;" + schema.SCHEMA_V1 + "COMMIT;")
    db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    db.execute("INSERT INTO sessions (client_id, expiry_interval) VALUES ('old-client', 3600)")
    db.execute("INSERT INTO subscriptions VALUES ('old-client', 'old/#', 1, 0, 0, 0, NULL)")
    db.execute("INSERT INTO messages VALUES (1, 'old/t', x'6869', 1, 0, NULL, NULL, NULL)")
    db.execute("INSERT INTO deliveries VALUES (1, 'old-client', 1, 1, 0, NULL, 1, 0, NULL)")
    db.close()
    b = DurableBroker(data).start()
    try:
        c, connack = persistent("old-client", b.port)
        assert connack.session_present is True
        assert c.recv_publish().payload == b"hi"
        c.disconnect()
        assert b.stop() == 0
    finally:
        b.close()
    db = sqlite3.connect(data / "mqttfast.db")
    try:
        assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(
            SCHEMA_VERSION
        )
        assert db.execute("SELECT username FROM sessions").fetchall() == [(None,)]
    finally:
        db.close()


def test_session_user_name_is_stored(tmp_path) -> None:
    """The user name of a persistent session is kept (read ACLs apply to what it
    receives while offline, also after a restart)."""
    from .helpers import db_rows, persistent

    data = tmp_path / "data"
    b = DurableBroker(data).start()
    try:
        c, _ = persistent("named", b.port, username="alice", password="pw")
        c.disconnect()
        assert b.stop() == 0
    finally:
        b.close()
    assert db_rows(data, "SELECT client_id, username FROM sessions") == [("named", "alice")]


def test_failed_start_does_not_leak_the_broker(tmp_path: Path) -> None:
    """DurableBroker.start() whose handshake fails (anonymous CONNECT refused: a password
    file is set) kills the broker it started: its data directory is free again (the
    broker holds an exclusive lock on mqttfast.lock while it runs)."""
    import fcntl
    import os
    import subprocess
    import sys
    import time

    pwfile = tmp_path / "passwd"
    subprocess.run(
        [sys.executable, "-m", "mqttfast", "passwd", "-c", "-b", str(pwfile), "u", "p"],
        check=True,
        timeout=30,
        capture_output=True,
    )
    broker = DurableBroker(tmp_path / "data", ["--password-file", str(pwfile)])
    try:
        with pytest.raises(AssertionError):
            broker.start()
        assert broker.proc is None
        fd = os.open(tmp_path / "data" / "mqttfast.lock", os.O_RDWR)
        try:
            deadline = time.monotonic() + 5
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError:
                    assert time.monotonic() < deadline, "the broker of a failed start still runs"
                    time.sleep(0.05)
        finally:
            os.close(fd)
    finally:
        broker.close()
