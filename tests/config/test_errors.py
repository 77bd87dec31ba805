"""Bad configuration: every error with its key path, unknown keys rejected,
``mqttfast check-config`` exit codes, and a broker refusing to start (exit 2)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mqttfast.app.config import ConfigError, from_dict
from tests.helpers.broker import REPO_ROOT

pytestmark = pytest.mark.timeout(60)


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", "mqttfast", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


def errors_of(data: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        from_dict(data)
    return info.value.errors


@pytest.mark.parametrize(
    "data, expected",
    [
        (
            {"listener": [{"port": 1}, {"port": "x"}]},
            "listener[1].port: expected integer, got string",
        ),
        ({"listener": [{"port": 70000}]}, "listener[0].port: must be <= 65535, got 70000"),
        (
            {"listener": [{"protocol": "ftp"}]},
            "listener[0].protocol: must be one of mqtt, websockets",
        ),
        (
            {"listener": [{"port": 1, "keyfile": "k"}]},
            "listener[0].keyfile: needs listener[0].certfile",
        ),
        (
            {"listener": [{"certfile": "c", "require_certificate": True}]},
            "listener[0].require_certificate: needs listener[0].cafile",
        ),
        (
            {"listener": [{"path": "mqtt", "protocol": "websockets"}]},
            "listener[0].path: must start",
        ),
        ({"listener": [{"port": 5}, {"port": 5}]}, "listener[1]: same address as listener[0]"),
        ({"listener": 5}, "listener: expected array of tables"),
        ({"limits": {"max_inflight": -1}}, "limits.max_inflight: must be >= 0, got -1"),
        ({"limits": {"connect_timeout": "soon"}}, "limits.connect_timeout: expected number"),
        (
            {"limits": {"max_connections": 1.5}},
            "limits.max_connections: expected integer, got number",
        ),
        ({"limits": 3}, "limits: expected table, got integer"),
        ({"sessions": {"max_session_expiry": -5}}, "sessions.max_session_expiry: must be >= 0"),
        ({"mqtt": {"maximum_qos": 3}}, "mqtt.maximum_qos: must be <= 2, got 3"),
        (
            {"mqtt": {"retain_available": "yes"}},
            "mqtt.retain_available: expected boolean, got string",
        ),
        (
            {"persistence": {"mode": "sometimes"}},
            "persistence.mode: must be one of strict, relaxed, off",
        ),
        ({"auth": {"allow_anonymous": 1}}, "auth.allow_anonymous: expected boolean, got integer"),
        (
            {"auth": {"plugin": [{"options": {}}]}},
            "auth.plugin[0].class: exactly one of 'class' or 'entry_point' is required",
        ),
        ({"auth": {"rate_limit": {"burst": -1}}}, "auth.rate_limit.burst: must be >= 0"),
        ({"sys": {"interval": -1}}, "sys.interval: must be >= 0"),
        ({"logging": {"level": "loud"}}, "logging.level: must be one of debug, info"),
        ({"logging": {"format": "xml"}}, "logging.format: must be one of text, json"),
        ({"metrics": {"port": 1e9}}, "metrics.port: expected integer, got number"),
        ({"admin": {"token": 5}}, "admin.token: expected string, got integer"),
    ],
)
def test_bad_value_reports_key_path(data, expected) -> None:
    errors = errors_of(data)
    assert any(e.startswith(expected) for e in errors), errors


@pytest.mark.parametrize(
    "data, path",
    [
        ({"listenr": []}, "listenr"),
        ({"listener": [{"prot": "mqtt"}]}, "listener[0].prot"),
        ({"limits": {"max_inflights": 1}}, "limits.max_inflights"),
        ({"auth": {"rate_limit": {"burstt": 1}}}, "auth.rate_limit.burstt"),
        ({"auth": {"plugin": [{"class": "a:B", "option": {}}]}}, "auth.plugin[0].option"),
        ({"metrics": {"enable": True}}, "metrics.enable"),
    ],
)
def test_unknown_keys_are_errors(data, path) -> None:
    assert f"{path}: unknown key" in errors_of(data)


def test_all_errors_reported_at_once() -> None:
    errors = errors_of(
        {"listener": [{"port": "a"}, {"port": -1}], "limits": {"zzz": 1}, "sys": {"interval": "x"}}
    )
    assert len(errors) == 4, errors


def test_check_config_ok_and_errors(tmp_path) -> None:
    """check-config: exit 0 and "ok" for a valid file; exit 2 with every error (key paths,
    missing files found by loading them) for a bad one."""
    good = tmp_path / "good.toml"
    good.write_text("[[listener]]\nport = 1884\n[limits]\nmax_inflight = 10\n")
    r = run("check-config", str(good))
    assert (r.returncode, r.stdout.strip()) == (0, "ok")
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[[listener]]\nport = "x"\n[auth]\npassword_file = "/nonexistent/pw"\n[limits]\nbogus = 1\n'
    )
    r = run("check-config", str(bad))
    assert r.returncode == 2
    out = r.stdout.splitlines()
    assert "listener[0].port: expected integer, got string" in out
    assert "limits.bogus: unknown key" in out
    assert any(line.startswith("auth.password_file:") for line in out)


def test_check_config_toml_syntax_and_missing_file(tmp_path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[limits\n")
    r = run("check-config", str(broken))
    assert r.returncode == 2 and "TOML syntax error" in r.stdout
    r = run("check-config", str(tmp_path / "missing.toml"))
    assert r.returncode == 2 and "cannot read" in r.stdout


def test_check_config_tls_files_are_loaded(tmp_path) -> None:
    cfg = tmp_path / "tls.toml"
    cfg.write_text(f'[[listener]]\nport = 8883\ncertfile = "{tmp_path}/none.pem"\n')
    r = run("check-config", str(cfg))
    assert r.returncode == 2 and "listener[0].certfile: cannot set up TLS" in r.stdout


def test_broker_refuses_bad_config(tmp_path) -> None:
    """``mqttfast --config bad.toml``: every error on stderr, exit code 2, no traceback."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[limits]\nmax_inflight = "many"\n[nope]\n')
    r = run("--config", str(bad), cwd=tmp_path)
    assert r.returncode == 2
    assert "limits.max_inflight: expected integer" in r.stderr
    assert "nope: unknown key" in r.stderr
    assert "Traceback" not in r.stderr


def test_check_config_runs_the_admin_checks(tmp_path) -> None:
    """[admin] enabled without a token: check-config reports it (the broker would not start)."""
    cfg = tmp_path / "admin.toml"
    cfg.write_text("[admin]\nenabled = true\n")
    env_token = os.environ.pop("MQTTFAST_ADMIN_TOKEN", None)
    try:
        r = run("check-config", str(cfg))
    finally:
        if env_token is not None:
            os.environ["MQTTFAST_ADMIN_TOKEN"] = env_token
    assert r.returncode == 2 and "without a token" in r.stdout
    cfg.write_text('[admin]\nenabled = true\ntoken = "s3cret"\n')
    assert run("check-config", str(cfg)).returncode == 0
