"""mosquitto.conf's common subset (``--mosquitto-config``): the translation, warnings for
unsupported directives, and the same scenario run from a mosquitto.conf and from the
equivalent TOML."""

from __future__ import annotations

import pytest
from websockets.sync.client import connect as ws_connect

from mqttfast.app.config import ConfigError, load_mosquitto, load_toml
from mqttfast.app.security.passwords import PasswordFile
from mqttfast.codec import Decoder, encode
from mqttfast.codec.packets import Connect
from tests.helpers.rawclient import RawClient
from tests.listeners.support import free_port

from .test_errors import run

pytestmark = pytest.mark.timeout(90)


def test_translation_of_the_common_subset(tmp_path) -> None:
    conf = tmp_path / "m.conf"
    conf.write_text(f"""
# comment
per_listener_settings false
allow_anonymous false
password_file {tmp_path}/pw
acl_file {tmp_path}/acl
persistence true
persistence_location {tmp_path}/data
max_queued_messages 50
max_inflight_messages 7
message_size_limit 1000
sys_interval 3
listener 1884 127.0.0.1
max_connections 10
listener 8883
cafile /ca.pem
certfile /server.pem
keyfile /server.key
require_certificate true
use_identity_as_username true
tls_version tlsv1.3
listener 9001 ::1
protocol websockets
listener 0 {tmp_path}/mq.sock
log_dest stdout
log_dest file /x
log_type all
""")
    warnings: list[str] = []
    cfg = load_mosquitto(str(conf), warnings.append)
    assert [(lc.port, lc.address, lc.protocol, lc.unix_path) for lc in cfg.listener] == [
        (1884, "127.0.0.1", "mqtt", None),
        (8883, "0.0.0.0", "mqtt", None),
        (9001, "::1", "websockets", None),
        (1883, "0.0.0.0", "mqtt", f"{tmp_path}/mq.sock"),
    ]
    assert cfg.listener[0].max_connections == 10
    tls = cfg.listener[1]
    assert (
        tls.cafile,
        tls.certfile,
        tls.keyfile,
        tls.require_certificate,
        tls.use_identity_as_username,
        tls.tls_version,
    ) == ("/ca.pem", "/server.pem", "/server.key", True, True, "TLSv1.3")
    assert cfg.auth.allow_anonymous is False
    assert cfg.auth.password_file == f"{tmp_path}/pw" and cfg.auth.acl_file == f"{tmp_path}/acl"
    assert (cfg.persistence.mode, cfg.persistence.data_dir) == ("strict", f"{tmp_path}/data")
    assert (cfg.limits.max_queued_messages, cfg.limits.max_inflight) == (50, 7)
    assert cfg.limits.max_packet_size == 1000 + 65542
    assert cfg.sys.interval == 3
    # One warning per unsupported directive, however often it appears.
    assert len([w for w in warnings if "'log_dest'" in w]) == 1
    assert {w.split("'")[1] for w in warnings} == {"per_listener_settings", "log_dest", "log_type"}


def test_mosquitto_defaults() -> None:
    """No listener line: mosquitto 2's local-only default listener, anonymous allowed,
    no persistence."""
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".conf") as fh:
        fh.write("sys_interval 5\n")
        fh.flush()
        cfg = load_mosquitto(fh.name, lambda w: None)
    assert [(lc.address, lc.port) for lc in cfg.listener] == [("127.0.0.1", 1883)]
    assert cfg.auth.allow_anonymous is None and cfg.persistence.mode == "off"


def test_bad_mosquitto_values_name_the_line(tmp_path) -> None:
    conf = tmp_path / "bad.conf"
    conf.write_text("listener abc\nallow_anonymous maybe\n")
    with pytest.raises(ConfigError) as info:
        load_mosquitto(str(conf), lambda w: None)
    assert info.value.errors == [
        f"{conf}:1: listener: expected an integer, got 'abc'",
        f"{conf}:2: allow_anonymous: expected true or false, got 'maybe'",
    ]
    r = run("check-config", "--mosquitto", str(conf))
    assert r.returncode == 2


def scenario(port: int, ws_port: int) -> None:
    """Password + ACL + two listeners + in-flight window, the same from either file."""
    with RawClient(port) as c:
        c.connect("bad", username="alice", password="wrong", expect_rc=4)
    with RawClient(port) as c:
        c.connect("anon", expect_rc=5)
    with RawClient(port) as sub, RawClient(port) as pub:
        sub.connect("sub", username="alice", password="wonder")
        assert list(sub.subscribe("a/#", "b/#", qos=1).reason_codes) == [1, 0x80]
        pub.connect("pub", username="alice", password="wonder")
        for i in range(4):
            pub.publish("a/t", b"%d" % i, qos=1)
        assert [m.payload for m in sub.recv_publishes(3, ack=False)] == [b"0", b"1", b"2"]
        sub.expect_no_packet(0.4)  # max_inflight_messages 3
    with ws_connect(f"ws://127.0.0.1:{ws_port}/mqtt", subprotocols=["mqtt"], open_timeout=5) as ws:
        ws.send(
            encode(
                Connect(client_id="w", protocol_version=4, username="alice", password=b"wonder"), 4
            )
        )
        assert Decoder(4).feed(ws.recv(timeout=5))[0].reason_code == 0


@pytest.fixture
def auth_files(tmp_path):
    pw = tmp_path / "pw"
    pf = PasswordFile()
    pf.set("alice", "wonder", iterations=1000)
    pf.save(pw)
    acl = tmp_path / "acl"
    acl.write_text("user alice\ntopic readwrite a/#\n")
    return pw, acl


def test_same_scenario_from_mosquitto_conf_and_toml(start_broker, tmp_path, auth_files) -> None:
    pw, acl = auth_files
    port, ws_port = free_port(), free_port()
    mosq = (
        f"listener {port} 127.0.0.1\nlistener {ws_port} 127.0.0.1\nprotocol websockets\n"
        f"password_file {pw}\nacl_file {acl}\nmax_inflight_messages 3\n"
        "persistence false\nsys_interval 0\nlog_dest stderr\n"
    )
    b = start_broker(mosq, mosquitto=True, wait=[port, ws_port])
    b.wait_for_log("'log_dest' is not supported")
    scenario(port, ws_port)
    assert b.stop() == 0

    toml = (
        f'[[listener]]\nport = {port}\naddress = "127.0.0.1"\n'
        f'[[listener]]\nport = {ws_port}\naddress = "127.0.0.1"\nprotocol = "websockets"\n'
        f'[auth]\npassword_file = "{pw}"\nacl_file = "{acl}"\nallow_anonymous = false\n'
        '[limits]\nmax_inflight = 3\n[persistence]\nmode = "off"\n[sys]\ninterval = 0\n'
    )
    (tmp_path / "equiv.toml").write_text(toml)
    assert (
        load_toml(str(tmp_path / "equiv.toml")).listener
        == load_mosquitto(str(b.path), lambda w: None).listener
    )
    start_broker(toml, wait=[port, ws_port])
    scenario(port, ws_port)
