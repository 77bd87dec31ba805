"""Password files: mosquitto's own files read, our files accepted by the real mosquitto."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import subprocess
from pathlib import Path

import pytest

from mqttfast.app.security.passwords import (
    DEFAULT_ITERATIONS,
    PasswordFile,
    PasswordFileError,
    PasswordHash,
)

pytestmark = pytest.mark.timeout(60)

MOSQUITTO_PASSWD = "mosquitto_passwd"


def mosquitto_passwd(*args: str) -> None:
    subprocess.run([MOSQUITTO_PASSWD, *args], check=True, timeout=20, capture_output=True)


def mosquitto_pub(port: int, username: str, password: str, client_id: str = "pub-test") -> int:
    """Exit status of a real mosquitto_pub QoS 1 publish with these credentials."""
    return subprocess.run(
        [
            "mosquitto_pub",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-i",
            client_id,
            "-q",
            "1",
            "-t",
            "auth/check",
            "-m",
            "x",
            "-u",
            username,
            "-P",
            password,
        ],
        timeout=20,
        capture_output=True,
    ).returncode


# ------------------------------------------------------- files written by mosquitto_passwd
def test_reads_pbkdf2_entries_written_by_mosquitto_passwd(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    mosquitto_passwd("-c", "-b", str(path), "alice", "secret")
    mosquitto_passwd("-b", str(path), "bob", "p@ss:w$rd with spaces")
    assert path.read_text().startswith("alice:$7$101$")
    pf = PasswordFile.load(path)
    assert pf.warnings == []
    assert pf.users() == ["alice", "bob"]
    assert pf.verify("alice", "secret")
    assert pf.verify("alice", b"secret")
    assert pf.verify("bob", "p@ss:w$rd with spaces")
    assert not pf.verify("alice", "Secret")
    assert not pf.verify("alice", "secret ")
    assert not pf.verify("bob", "secret")
    assert not pf.verify("mallory", "secret")
    assert not pf.verify("alice", None)
    assert not pf.verify(None, "secret")


def test_reads_sha512_entries_written_by_mosquitto_passwd(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    mosquitto_passwd("-H", "sha512", "-c", "-b", str(path), "carol", "hunter2")
    assert path.read_text().startswith("carol:$6$")
    pf = PasswordFile.load(path)
    assert pf.get("carol").scheme == "6"
    assert pf.verify("carol", "hunter2")
    assert not pf.verify("carol", "hunter3")


def test_sha512_entry_computed_as_mosquitto_1x_does() -> None:
    """$6$: base64(12-byte salt) $ base64(SHA-512(password || salt)), as mosquitto 1.x writes."""
    salt = bytes(range(12))
    entry = PasswordHash.create_sha512("hunter2", salt=salt)
    expected = hashlib.sha512(b"hunter2" + salt).digest()
    assert entry.format() == (
        "$6$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(expected).decode()
    )
    assert PasswordHash.parse(entry.format()) == entry
    assert entry.verify("hunter2") and not entry.verify("hunter")


# ------------------------------------------------------- files written by us, read by mosquitto
def test_real_mosquitto_accepts_file_written_by_us(tmp_path: Path, mosquitto_runner) -> None:
    path = tmp_path / "pw"
    pf = PasswordFile()
    pf.set("dave", "correct horse")
    pf.set_hash("erin", PasswordHash.create_sha512("legacy-pass"))  # $6$ as 1.x wrote it
    pf.save(path)
    text = path.read_text()
    assert text.startswith(f"dave:$7${DEFAULT_ITERATIONS}$")
    with mosquitto_runner(password_file=str(path), allow_anonymous="false") as port:
        assert mosquitto_pub(port, "dave", "correct horse") == 0
        assert mosquitto_pub(port, "erin", "legacy-pass") == 0
        assert mosquitto_pub(port, "dave", "wrong horse") != 0
        assert mosquitto_pub(port, "nobody", "correct horse") != 0


def test_mosquitto_passwd_can_update_a_file_written_by_us(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    pf = PasswordFile()
    pf.set("dave", "one")
    pf.save(path)
    mosquitto_passwd("-b", str(path), "frank", "two")
    again = PasswordFile.load(path)
    assert again.verify("dave", "one") and again.verify("frank", "two")


# ------------------------------------------------------------------- writing and parsing
def test_save_is_atomic_private_and_keeps_comments_and_unknown_lines(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text("# managed by hand\n\nalice:$7$101$bad\ncarol:plaintext\n")
    os.chmod(path, 0o644)
    pf = PasswordFile.load(path)
    assert len(pf) == 0
    assert len(pf.warnings) == 2
    assert pf.warnings[0].startswith(f"{path}:3: ")
    pf.set("bob", "pw", iterations=1000)
    pf.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = path.read_text().splitlines()
    assert lines[:4] == ["# managed by hand", "", "alice:$7$101$bad", "carol:plaintext"]
    assert lines[4].startswith("bob:$7$1000$")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pw"]  # no temp file left behind


def test_set_replaces_and_delete_removes(tmp_path: Path) -> None:
    pf = PasswordFile()
    pf.set("a", "1", iterations=1000)
    pf.set("b", "2", iterations=1000)
    pf.set("a", "3", iterations=1000)
    assert pf.users() == ["a", "b"]
    assert pf.verify("a", "3") and not pf.verify("a", "1")
    assert pf.delete("a") and not pf.delete("a")
    assert "a" not in pf and pf.dumps().startswith("b:$7$1000$")


@pytest.mark.parametrize("user", ["", "a:b", "line\nbreak", " padded", "#comment", "nul\x00"])
def test_invalid_usernames_refused(user: str) -> None:
    with pytest.raises(ValueError):
        PasswordFile().set(user, "pw", iterations=1000)


def test_empty_or_nul_password_refused() -> None:
    with pytest.raises(ValueError):
        PasswordFile().set("a", "", iterations=1000)
    with pytest.raises(ValueError):
        PasswordFile().set("a", b"x\x00y", iterations=1000)


@pytest.mark.parametrize(
    "text",
    [
        "$5$abc$def",  # unsupported scheme
        "$7$0$AAAAAAAAAAAAAAAA$" + "A" * 88,  # zero iterations
        "$7$x$AAAAAAAAAAAAAAAA$" + "A" * 88,  # non-numeric iterations
        "$7$101$AAAA$" + "A" * 88,  # salt not 12 bytes
        "$6$AAAAAAAAAAAAAAAA$AAAA",  # hash not 64 bytes
        "$6$!!!!$????",  # not base64
        "plain",
    ],
)
def test_malformed_hashes_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        PasswordHash.parse(text)


def test_strict_load_reports_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text("ok:" + PasswordHash.create("x", 1000).format() + "\nbroken:$7$\n")
    with pytest.raises(PasswordFileError) as info:
        PasswordFile.load(path, strict=True)
    assert str(info.value).startswith(f"{path}:2: ")


def test_duplicate_user_keeps_first_entry(tmp_path: Path) -> None:
    first = PasswordHash.create("first", 1000).format()
    second = PasswordHash.create("second", 1000).format()
    pf = PasswordFile.parse(f"u:{first}\nu:{second}\n")
    assert pf.verify("u", "first") and not pf.verify("u", "second")
    assert "duplicate" in pf.warnings[0]


def test_binary_password_bytes_are_hashed_exactly() -> None:
    pf = PasswordFile()
    pf.set("bin", b"\xff\xfe\x01", iterations=1000)
    assert pf.verify("bin", b"\xff\xfe\x01")
    assert not pf.verify("bin", b"\xff\xfe")


def test_unknown_user_costs_a_hash_like_a_known_one() -> None:
    """No username oracle: the dummy entry uses the file's most common scheme and cost."""
    pf = PasswordFile()
    for name in ("a", "b"):
        pf.set(name, "pw", iterations=1234)
    pf.set_hash("legacy", PasswordHash.create_sha512("pw"))
    dummy = pf._dummy_hash()
    assert (dummy.scheme, dummy.iterations) == ("7", 1234)
    assert not pf.verify("nobody", "pw")
    assert PasswordFile()._dummy_hash().iterations == DEFAULT_ITERATIONS
