"""`mqttfast passwd`: mosquitto_passwd-like management of password files."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mqttfast.app.security import passwd_cli
from mqttfast.app.security.passwords import PasswordFile

pytestmark = pytest.mark.timeout(60)

FAST = ["-I", "1000"]  # keep the unit tests quick; the default is exercised once below


def run(*args: str) -> int:
    return passwd_cli.main(list(args))


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("mqttfast passwd: error: ")
    return lines[0]


def test_create_batch_add_update_delete(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    assert run("-c", "-b", *FAST, str(path), "alice", "one") == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert run("-b", *FAST, str(path), "bob", "two") == 0
    assert run("-b", *FAST, str(path), "alice", "three") == 0
    pf = PasswordFile.load(path)
    assert pf.users() == ["alice", "bob"]
    assert pf.verify("alice", "three") and pf.verify("bob", "two")
    assert run("-D", str(path), "alice") == 0
    assert PasswordFile.load(path).users() == ["bob"]


def test_create_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    assert run("-c", "-b", *FAST, str(path), "alice", "one") == 0
    assert run("-c", "-b", *FAST, str(path), "bob", "two") == 0
    assert PasswordFile.load(path).users() == ["bob"]


def test_default_iterations_are_strong(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    assert run("-c", "-b", str(path), "alice", "one") == 0
    entry = PasswordFile.load(path).get("alice")
    assert entry.scheme == "7" and entry.iterations >= 210_000


def test_prompts_twice_without_batch(tmp_path: Path, monkeypatch, capsys) -> None:
    answers = iter(["s3cret", "s3cret"])
    prompts = []
    monkeypatch.setattr(
        passwd_cli.getpass, "getpass", lambda prompt="": (prompts.append(prompt), next(answers))[1]
    )
    path = tmp_path / "pw"
    assert run("-c", *FAST, str(path), "alice") == 0
    assert prompts == ["Password: ", "Reenter password: "]
    assert PasswordFile.load(path).verify("alice", "s3cret")


def test_prompt_mismatch_is_an_error(tmp_path: Path, monkeypatch, capsys) -> None:
    answers = iter(["one", "two"])
    monkeypatch.setattr(passwd_cli.getpass, "getpass", lambda prompt="": next(answers))
    path = tmp_path / "pw"
    assert run("-c", *FAST, str(path), "alice") == 2
    assert "do not match" in one_error_line(capsys)
    assert not path.exists()


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--bogus", "f", "u"], "unrecognized arguments"),
        (["-c", "-D", "{f}", "u"], "-c and -D"),
        (["-b", "{f}", "u"], "-b needs a PASSWORD"),
        (["{f}", "u", "pw"], "needs -b"),
        (["-b", "{f}", "a:b", "pw"], "':'"),
        (["-D", "{f}", "nobody"], "not found"),
        (["-b", "{f}.missing", "u", "pw"], "does not exist"),
        (["-b", "-I", "0", "{f}", "u", "pw"], "-I"),
        ([], "required"),
    ],
)
def test_errors_are_one_line_and_exit_2(tmp_path: Path, capsys, args, fragment) -> None:
    path = tmp_path / "pw"
    assert run("-c", "-b", *FAST, str(path), "someone", "x") == 0
    before = path.read_bytes()
    capsys.readouterr()
    assert run(*[a.replace("{f}", str(path)) for a in args]) == 2
    assert fragment in one_error_line(capsys)
    assert path.read_bytes() == before  # a failed command never changes the file


def test_upgrade_plaintext_file(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    pf = PasswordFile()
    pf.set("hashed", "already", iterations=1000)
    path.write_text("# users\nplain:letmein\n" + pf.dumps())
    assert run("-U", *FAST, str(path)) == 0
    again = PasswordFile.load(path)
    assert again.warnings == []
    assert again.verify("plain", "letmein") and again.verify("hashed", "already")
    assert path.read_text().startswith("# users\nplain:$7$1000$")


def test_runs_as_a_program_and_real_mosquitto_reads_the_result(
    tmp_path: Path, mosquitto_runner
) -> None:
    path = tmp_path / "pw"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mqttfast.app.security.passwd_cli",
            "-c",
            "-b",
            str(path),
            "alice",
            "wonder land",
        ],
        capture_output=True,
        timeout=30,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "mqttfast.app.security.passwd_cli", "-x"],
        capture_output=True,
        timeout=30,
        text=True,
    )
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1
    with mosquitto_runner(password_file=str(path), allow_anonymous="false") as port:

        def pub(password: str) -> int:
            return subprocess.run(
                [
                    "mosquitto_pub",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-t",
                    "t",
                    "-m",
                    "m",
                    "-u",
                    "alice",
                    "-P",
                    password,
                ],
                capture_output=True,
                timeout=20,
            ).returncode

        assert pub("wonder land") == 0
        assert pub("wonderland") != 0
