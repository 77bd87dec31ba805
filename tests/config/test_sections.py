"""Each section of the TOML configuration, parsed and applied: the broker is started
with the file and the effect is observed with a real client (issue 7)."""

from __future__ import annotations

import json
import signal
import time

import pytest

from mqttfast.app.security.passwords import PasswordFile
from mqttfast.codec.packets import Properties
from tests.helpers.rawclient import RawClient
from tests.listeners.support import free_port, unix_raw

pytestmark = pytest.mark.timeout(60)


def listener(port: int) -> str:
    return f'[[listener]]\nport = {port}\naddress = "127.0.0.1"\n'


OFF = '[persistence]\nmode = "off"\n'


def test_listener_section(start_broker, tmp_path) -> None:
    """[[listener]] tables: a TCP and a unix listener, both serving."""
    port = free_port()
    path = str(tmp_path / "s.sock")
    start_broker(listener(port) + f'[[listener]]\nunix_path = "{path}"\n' + OFF, wait=[port, path])
    with RawClient(port) as a, unix_raw(path) as b:
        a.connect("a")
        b.connect("b")
        b.subscribe("l/#")
        a.publish("l/x", b"1")
        assert b.recv_publish().payload == b"1"


def test_limits_section(start_broker) -> None:
    """[limits]: the v5 CONNACK tells max_packet_size, receive_maximum,
    topic_alias_maximum and a capped keep alive; a larger packet is refused (0x95)."""
    port = free_port()
    start_broker(
        listener(port) + OFF + "[limits]\nmax_packet_size = 2000\nreceive_maximum = 7\n"
        "topic_alias_maximum = 3\nmax_keepalive = 30\nmax_inflight = 2\n",
        wait=[port],
    )
    with RawClient(port, version=5) as c:
        ack = c.connect("lim", keep_alive=600)
        p = ack.properties
        assert (
            p.maximum_packet_size,
            p.receive_maximum,
            p.topic_alias_maximum,
            p.server_keep_alive,
        ) == (2000, 7, 3, 30)
        c.publish("big", b"x" * 3000)
        assert c.expect_closed() == 0x95


def test_limits_max_inflight(start_broker) -> None:
    """limits.max_inflight = 2: a subscriber that does not acknowledge gets 2 QoS 1 messages."""
    port = free_port()
    start_broker(listener(port) + OFF + "[limits]\nmax_inflight = 2\n", wait=[port])
    with RawClient(port) as sub, RawClient(port) as pub:
        sub.connect("slow")
        sub.subscribe("q/#", qos=1)
        pub.connect("fast")
        for i in range(5):
            pub.publish("q/t", b"%d" % i, qos=1)
        got = sub.recv_publishes(2, ack=False)
        assert [m.payload for m in got] == [b"0", b"1"]
        sub.expect_no_packet(0.5)


def test_sessions_section(start_broker) -> None:
    """[sessions] max_session_expiry caps what a v5 client asks (told in CONNACK)."""
    port = free_port()
    start_broker(listener(port) + OFF + "[sessions]\nmax_session_expiry = 60\n", wait=[port])
    with RawClient(port, version=5) as c:
        ack = c.connect("s", clean_start=False, properties=Properties(session_expiry_interval=3600))
        assert ack.properties.session_expiry_interval == 60


def test_mqtt_section(start_broker) -> None:
    """[mqtt]: maximum_qos, retain_available and client_id_prefix are applied."""
    port = free_port()
    start_broker(
        listener(port) + OFF + "[mqtt]\nmaximum_qos = 1\nretain_available = false\n"
        'client_id_prefix = "cfg-"\n',
        wait=[port],
    )
    with RawClient(port, version=5) as c:
        p = c.connect("").properties
        assert p.maximum_qos == 1 and p.retain_available == 0
        assert p.assigned_client_identifier.startswith("cfg-")


def test_persistence_section(start_broker, tmp_path) -> None:
    """[persistence] mode/data_dir: a retained message survives a restart, stored
    in the configured directory."""
    port = free_port()
    data = tmp_path / "state"
    text = listener(port) + f'[persistence]\nmode = "strict"\ndata_dir = "{data}"\n'
    b = start_broker(text, wait=[port])
    with RawClient(port) as c:
        c.connect("p")
        c.publish("keep/me", b"stored", qos=1, retain=True)
    assert b.stop() == 0
    assert any(data.iterdir()), "nothing written to data_dir"
    start_broker(text, wait=[port])
    with RawClient(port) as c:
        c.connect("p2")
        c.subscribe("keep/#")
        assert c.recv_publish().payload == b"stored"


def test_auth_section(start_broker, tmp_path) -> None:
    """[auth] password_file (anonymous then off by default), acl_file: a bad password
    gets CONNACK 4, anonymous gets 5, the ACL hides a denied topic from a wildcard
    subscription, retained messages included."""
    port = free_port()
    pw = tmp_path / "passwd"
    pf = PasswordFile()
    pf.set("alice", "wonder", iterations=1000)
    pf.save(pw)
    acl = tmp_path / "acl"
    acl.write_text("user alice\ntopic readwrite a/#\ntopic deny a/secret\n")
    start_broker(
        listener(port) + OFF + f'[auth]\npassword_file = "{pw}"\nacl_file = "{acl}"\n', wait=[port]
    )
    with RawClient(port) as c:
        c.connect("x", username="alice", password="nope", expect_rc=4)
    with RawClient(port) as c:
        c.connect("anon", expect_rc=5)
    with RawClient(port) as pub, RawClient(port) as sub:
        pub.connect("pub", username="alice", password="wonder")
        pub.publish("a/secret", b"hidden", qos=1, retain=True)
        pub.publish("a/open", b"visible", qos=1, retain=True)
        sub.connect("sub", username="alice", password="wonder")
        sub.subscribe("a/#", qos=1)
        got = sub.recv_publish()
        assert got.payload == b"visible"
        sub.expect_no_packet(0.5)


def test_sys_section(start_broker) -> None:
    """[sys] interval = 1: $SYS topics arrive within a few seconds."""
    port = free_port()
    start_broker(listener(port) + OFF + "[sys]\ninterval = 1\n", wait=[port])
    with RawClient(port) as c:
        c.connect("sys")
        c.subscribe("$SYS/#")
        assert c.recv_publish(timeout=5).topic.startswith("$SYS/")


def test_logging_section(start_broker) -> None:
    """[logging] format = "json", level = "warning": every line is a JSON object and
    info lines are gone; SIGHUP picks up a new level from the file."""
    port = free_port()
    b = start_broker(
        listener(port) + OFF + '[logging]\nformat = "json"\nlevel = "warning"\n', wait=[port]
    )
    with RawClient(port) as c:
        c.connect("j")
    time.sleep(0.3)
    lines = [ln for ln in b.log_text().splitlines() if ln.strip()]
    assert all(json.loads(ln)["level"] in ("warning", "error", "critical") for ln in lines), lines
    b.path.write_text(b.path.read_text().replace('level = "warning"', 'level = "info"'))
    b.signal(signal.SIGHUP)
    b.wait_for_log('"log level info"')
    records = [json.loads(ln) for ln in b.log_text().splitlines() if ln.strip()]
    assert {"ts", "level", "logger", "msg"} <= set(records[-1])


def test_metrics_and_admin_sections_parse(tmp_path) -> None:
    """[metrics] and [admin] are accepted with their keys (off by default)."""
    from mqttfast.app.config import from_dict

    cfg = from_dict(
        {
            "metrics": {"enabled": True, "port": 9100},
            "admin": {"enabled": True, "token": "t", "address": "127.0.0.1"},
        }
    )
    assert cfg.metrics.enabled and cfg.metrics.port == 9100 and cfg.admin.token == "t"
    assert from_dict({}).metrics.enabled is False and from_dict({}).admin.enabled is False


def test_cli_flags_override_the_file(start_broker) -> None:
    """--max-packet-size on the command line wins over limits.max_packet_size, and
    --port replaces the first listener's port."""
    port, other = free_port(), free_port()
    start_broker(
        listener(other) + OFF + "[limits]\nmax_packet_size = 1000\n",
        args=["--max-packet-size", "5000", "--port", str(port)],
        wait=[port],
    )
    with RawClient(port, version=5) as c:
        assert c.connect("o").properties.maximum_packet_size == 5000


def test_sighup_reload_adds_user_without_dropping(start_broker, tmp_path) -> None:
    """SIGHUP re-reads the password file: a new user can log in, a connected client stays."""
    port = free_port()
    pw = tmp_path / "passwd"
    pf = PasswordFile()
    pf.set("old", "pw1", iterations=1000)
    pf.save(pw)
    b = start_broker(listener(port) + OFF + f'[auth]\npassword_file = "{pw}"\n', wait=[port])
    with RawClient(port) as stay:
        stay.connect("stay", username="old", password="pw1")
        with RawClient(port) as c:
            c.connect("new1", username="new", password="pw2", expect_rc=4)
        pf.set("new", "pw2", iterations=1000)
        pf.save(pw)
        b.signal(signal.SIGHUP)
        b.wait_for_log("reloaded password file")
        with RawClient(port) as c:
            c.connect("new2", username="new", password="pw2")
        assert stay.is_open()
