"""Authenticator: anonymous policy, password file, rate limiting, plug-ins, SIGHUP reload."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest

from mqttfast.app.security.auth import (
    Authenticator,
    AuthPlugin,
    connack_code_v311,
    load_plugin,
)
from mqttfast.app.security.passwords import PasswordFile
from mqttfast.codec.constants import ConnackCode311, ReasonCode
from mqttfast.core.rate_limit import LoginRateLimiter

pytestmark = pytest.mark.timeout(30)

PEER = ("192.0.2.10", 50000)
OTHER_PEER = ("192.0.2.11", 50001)


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def pwfile(tmp_path: Path) -> Path:
    path = tmp_path / "pw"
    pf = PasswordFile()
    pf.set("alice", "secret", iterations=1000)
    pf.set("bob", "hunter2", iterations=1000)
    pf.save(path)
    return path


def test_anonymous_allowed_by_default_without_password_file() -> None:
    auth = Authenticator()
    assert auth.allow_anonymous
    assert auth.authenticate("c", None, None, PEER) == ReasonCode.SUCCESS
    assert auth.authenticate("c", "anyone", b"x", PEER) == ReasonCode.SUCCESS
    assert auth.authorise_publish("c", None, "any/topic")
    assert auth.authorise_subscribe("c", None, "#")


def test_password_file_turns_anonymous_off(pwfile: Path) -> None:
    auth = Authenticator(password_file=pwfile)
    assert not auth.allow_anonymous
    assert auth.authenticate("c", None, None, PEER) == ReasonCode.NOT_AUTHORIZED
    assert auth.authenticate("c", "alice", b"secret", PEER) == ReasonCode.SUCCESS
    assert auth.authenticate("c", "alice", "secret", PEER) == ReasonCode.SUCCESS
    assert auth.authenticate("c", "alice", b"nope", PEER) == ReasonCode.BAD_USER_NAME_OR_PASSWORD
    assert auth.authenticate("c", "eve", b"secret", PEER) == ReasonCode.BAD_USER_NAME_OR_PASSWORD
    assert auth.authenticate("c", "alice", None, PEER) == ReasonCode.BAD_USER_NAME_OR_PASSWORD


def test_allow_anonymous_can_be_forced_on_with_password_file(pwfile: Path) -> None:
    auth = Authenticator(password_file=pwfile, allow_anonymous=True)
    assert auth.authenticate("c", None, None, PEER) == ReasonCode.SUCCESS
    # A username is still checked when a password file exists.
    assert auth.authenticate("c", "alice", b"bad", PEER) == ReasonCode.BAD_USER_NAME_OR_PASSWORD


def test_no_password_file_and_anonymous_off_refuses_everyone() -> None:
    auth = Authenticator(allow_anonymous=False)
    assert auth.authenticate("c", None, None, PEER) == ReasonCode.NOT_AUTHORIZED
    assert auth.authenticate("c", "x", b"y", PEER) == ReasonCode.BAD_USER_NAME_OR_PASSWORD


def test_v311_connack_codes() -> None:
    assert connack_code_v311(ReasonCode.SUCCESS) == ConnackCode311.ACCEPTED
    assert (
        connack_code_v311(ReasonCode.BAD_USER_NAME_OR_PASSWORD)
        == ConnackCode311.BAD_USER_NAME_OR_PASSWORD
    )
    assert connack_code_v311(ReasonCode.NOT_AUTHORIZED) == ConnackCode311.NOT_AUTHORIZED
    assert connack_code_v311(ReasonCode.CONNECTION_RATE_EXCEEDED) == ConnackCode311.NOT_AUTHORIZED


def test_failed_logins_are_rate_limited_per_source(pwfile: Path) -> None:
    clock = Clock()
    limiter = LoginRateLimiter(burst=3, base_delay=10, forgive_per_second=0, clock=clock)
    auth = Authenticator(password_file=pwfile, rate_limiter=limiter)
    for _ in range(4):
        assert (
            auth.authenticate("c", "alice", b"guess", PEER) == ReasonCode.BAD_USER_NAME_OR_PASSWORD
        )
    # Blocked now: even the right password is not checked.
    assert auth.authenticate("c", "alice", b"secret", PEER) == ReasonCode.CONNECTION_RATE_EXCEEDED
    # IPv4 and IPv4-mapped IPv6 are the same source.
    assert (
        auth.authenticate("c", "alice", b"secret", ("::ffff:192.0.2.10", 1, 0, 0))
        == ReasonCode.CONNECTION_RATE_EXCEEDED
    )
    # Another source is not disturbed.
    assert auth.authenticate("c", "bob", b"hunter2", OTHER_PEER) == ReasonCode.SUCCESS
    assert auth.auth_failures == 4 and auth.auth_rate_limited == 2
    clock.now += 10
    assert auth.authenticate("c", "alice", b"secret", PEER) == ReasonCode.SUCCESS


def test_anonymous_refusal_is_not_counted_as_a_guess(pwfile: Path) -> None:
    limiter = LoginRateLimiter(burst=0, forgive_per_second=0, clock=Clock())
    auth = Authenticator(password_file=pwfile, rate_limiter=limiter)
    for _ in range(3):
        assert auth.authenticate("c", None, None, PEER) == ReasonCode.NOT_AUTHORIZED
    assert auth.authenticate("c", "alice", b"secret", PEER) == ReasonCode.SUCCESS


def test_authenticate_async_runs_off_the_loop(pwfile: Path) -> None:
    auth = Authenticator(password_file=pwfile)

    async def main() -> list[int]:
        return await asyncio.gather(
            auth.authenticate_async("c1", "alice", b"secret", PEER),
            auth.authenticate_async("c2", "bob", b"wrong", OTHER_PEER),
        )

    assert asyncio.run(main()) == [ReasonCode.SUCCESS, ReasonCode.BAD_USER_NAME_OR_PASSWORD]


def test_acl_file_applied(tmp_path: Path, pwfile: Path) -> None:
    acl = tmp_path / "acl"
    acl.write_text(
        "user alice\ntopic readwrite a/#\ntopic deny a/secret\npattern read clients/%c/#\n"
    )
    auth = Authenticator(password_file=pwfile, acl_file=acl)
    assert auth.authorise_publish("c", "alice", "a/x")
    assert not auth.authorise_publish("c", "alice", "a/secret")
    assert not auth.authorise_publish("c", "bob", "a/x")
    assert auth.authorise_subscribe("c", "bob", "clients/c/#")
    assert auth.authorise_receive("c", "bob", "clients/c/x")
    assert not auth.authorise_receive("c", "bob", "clients/d/x")


# ------------------------------------------------------------------------ plug-ins
PLUGIN_SOURCE = '''
from mqttfast.app.security.auth import AuthPlugin

class TokenPlugin(AuthPlugin):
    """Accepts password == options['token'] for anyone; defers otherwise."""
    def authenticate(self, client_id, username, password, peer):
        if password == self.options["token"].encode():
            return True
        return None

    def authorise_publish(self, client_id, username, topic):
        if topic.startswith("blocked/"):
            return False
        return None

class Banning(AuthPlugin):
    def authenticate(self, client_id, username, password, peer):
        return 0x8A if client_id.startswith("banned") else None

class Broken(AuthPlugin):
    def authenticate(self, client_id, username, password, peer):
        raise RuntimeError("backend down")
    def authorise_subscribe(self, client_id, username, topic_filter):
        raise RuntimeError("backend down")

class Weird(AuthPlugin):
    def authenticate(self, client_id, username, password, peer):
        return 0x42 if client_id == "odd" else "yes"

class NotAPlugin:
    pass
'''


@pytest.fixture
def plugin_module(tmp_path: Path, monkeypatch) -> str:
    pkg = tmp_path / "plugsrc"
    pkg.mkdir()
    (pkg / "sec_test_plugins.py").write_text(textwrap.dedent(PLUGIN_SOURCE))
    monkeypatch.syspath_prepend(str(pkg))
    return "sec_test_plugins"


def test_load_plugin_and_precedence(plugin_module: str, pwfile: Path, tmp_path: Path) -> None:
    token = load_plugin(f"{plugin_module}:TokenPlugin", {"token": "t0ken"})
    banning = load_plugin(f"{plugin_module}.Banning")
    acl = tmp_path / "acl"
    acl.write_text("user alice\ntopic readwrite #\n")
    auth = Authenticator(password_file=pwfile, acl_file=acl, plugins=[banning, token])
    assert auth.authenticate("banned-1", "alice", b"secret", PEER) == ReasonCode.BANNED
    assert auth.authenticate("c", "whoever", b"t0ken", PEER) == ReasonCode.SUCCESS
    # Deferred by both plug-ins: the password file decides.
    assert auth.authenticate("c", "alice", b"secret", PEER) == ReasonCode.SUCCESS
    assert (
        auth.authenticate("c", "alice", b"bad", OTHER_PEER) == ReasonCode.BAD_USER_NAME_OR_PASSWORD
    )
    # Plug-in denies where the ACL would allow; defers elsewhere to the ACL.
    assert not auth.authorise_publish("c", "alice", "blocked/x")
    assert auth.authorise_publish("c", "alice", "open/x")
    assert not auth.authorise_publish("c", "bob", "open/x")


def test_failing_plugin_denies(plugin_module: str) -> None:
    auth = Authenticator(plugins=[load_plugin(f"{plugin_module}:Broken")])
    assert auth.authenticate("c", None, None, PEER) == ReasonCode.NOT_AUTHORIZED
    assert not auth.authorise_subscribe("c", None, "a")
    assert auth.authorise_publish("c", None, "a")  # method not overridden: defers


def test_plugin_answers_outside_connack_codes_refuse(plugin_module: str) -> None:
    auth = Authenticator(plugins=[load_plugin(f"{plugin_module}:Weird")])
    assert auth.authenticate("odd", "u", b"p", PEER) == ReasonCode.NOT_AUTHORIZED
    assert auth.authenticate("c", "u", b"p", OTHER_PEER) == ReasonCode.NOT_AUTHORIZED


@pytest.mark.parametrize(
    "spec",
    ["nodots", "sec_test_plugins:NotAPlugin", "sec_test_plugins:Missing", "no.such.module:X"],
)
def test_load_plugin_errors(plugin_module: str, spec: str) -> None:
    with pytest.raises(ValueError):
        load_plugin(spec)


def test_base_plugin_defers_everything() -> None:
    p = AuthPlugin({"a": 1})
    assert p.options == {"a": 1}
    assert p.authenticate("c", "u", b"p", PEER) is None
    assert p.authorise_publish("c", "u", "t") is None
    assert p.authorise_subscribe("c", "u", "t") is None
    assert p.authorise_receive("c", "u", "t") is None


# -------------------------------------------------------------------------- reload
def test_reload_picks_up_changes(tmp_path: Path, pwfile: Path) -> None:
    acl = tmp_path / "acl"
    acl.write_text("user alice\ntopic readwrite a/#\n")
    auth = Authenticator(password_file=pwfile, acl_file=acl)
    pf = PasswordFile.load(pwfile)
    pf.set("carol", "new", iterations=1000)
    pf.delete("bob")
    pf.save(pwfile)
    acl.write_text("user alice\ntopic readwrite b/#\n")
    assert auth.reload()
    assert auth.authenticate("c", "carol", b"new", PEER) == ReasonCode.SUCCESS
    assert auth.authenticate("c", "bob", b"hunter2", PEER) == ReasonCode.BAD_USER_NAME_OR_PASSWORD
    assert auth.authorise_publish("c", "alice", "b/x")
    assert not auth.authorise_publish("c", "alice", "a/x")


def test_reload_errors_keep_previous_files(tmp_path: Path, pwfile: Path, caplog) -> None:
    acl = tmp_path / "acl"
    acl.write_text("user alice\ntopic readwrite a/#\n")
    auth = Authenticator(password_file=pwfile, acl_file=acl)
    acl.write_text("user alice\ntopic sometimes a/#\n")  # parse error
    pwfile.unlink()  # unreadable
    assert auth.reload() is False
    assert auth.authenticate("c", "alice", b"secret", PEER) == ReasonCode.SUCCESS
    assert auth.authorise_publish("c", "alice", "a/x")
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "keeping the previous one" in messages and f"{acl}:2:" in messages


def test_broken_files_at_startup_raise(tmp_path: Path) -> None:
    acl = tmp_path / "acl"
    acl.write_text("topic nope a\n")
    with pytest.raises(ValueError):
        Authenticator(acl_file=acl)
    with pytest.raises(OSError):
        Authenticator(password_file=tmp_path / "missing")
