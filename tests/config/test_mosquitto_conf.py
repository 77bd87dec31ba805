"""mosquitto.conf, completely or loudly (issue 18 item 2): the translation of every
supported directive, include_dir, errors with file and line for unknown and refused
directives, ignored ones logged once, docs/mosquitto.md against the translator,
Debian's stock config plus a conf.d, and the same scenario run from a mosquitto.conf
and from the equivalent TOML."""

from __future__ import annotations

import gzip
import re
import socket
from pathlib import Path

import pytest
from websockets.sync.client import connect as ws_connect

from mqttfast.app.config import ConfigError, load_mosquitto, load_toml
from mqttfast.app.mosquitto_conf import DIRECTIVES, IGNORED, REFUSED, include_files
from mqttfast.app.security.passwords import PasswordFile
from mqttfast.codec import Decoder, encode
from mqttfast.codec.packets import Connect
from tests.helpers.broker import REPO_ROOT
from tests.helpers.rawclient import RawClient
from tests.listeners.support import free_port

from .test_errors import run

pytestmark = pytest.mark.timeout(90)

MAN_PAGE = Path("/usr/share/man/man5/mosquitto.conf.5.gz")
DEBIAN_CONF = Path("/etc/mosquitto/mosquitto.conf")


def every_supported(tmp_path: Path) -> str:
    """A mosquitto.conf using every mapped directive (each with a value mqttfast takes)."""
    return f"""
# general
acl_file {tmp_path}/acl
allow_anonymous false
allow_zero_length_clientid false
auto_id_prefix gen-
connection_messages false
log_dest stdout
log_dest file {tmp_path}/broker.log
log_facility 3
log_timestamp false
log_timestamp_format %Y-%m-%dT%H:%M:%S
log_type error
log_type warning
log_type information
max_inflight_messages 7
max_keepalive 120
max_packet_size 200000
max_queued_bytes 1000000
max_queued_messages 50
message_size_limit 1000
password_file {tmp_path}/pw
per_listener_settings false
persistence true
retained_persistence true
persistence_location {tmp_path}/data
persistent_client_expiration 2d
pid_file {tmp_path}/mqttfast.pid
retain_available false
sys_interval 3
user nobody
port 1885
bind_address 127.0.0.2
max_connections 5
# listeners
listener 1884 127.0.0.1
max_connections -1
max_qos 1
maximum_qos 1
max_topic_alias 5
listener 8883
cafile /ca.pem
certfile /server.pem
keyfile /server.key
ciphers ECDHE-RSA-AES128-GCM-SHA256
require_certificate true
use_identity_as_username true
tls_version tlsv1.3
listener 9001 ::1
protocol websockets
listener 0 {tmp_path}/mq.sock
# a bridge
connection edge
address 127.0.0.1:1999
topic sensors/# out 1 local/ remote/
topic cmd/+ in 2
topic "" both 0 a/b c/d
remote_username bob
remote_password secret
remote_clientid edge-1
bridge_protocol_version mqttv50
cleansession true
keepalive_interval 30
try_private false
restart_timeout 2 20
bridge_cafile /ca.pem
bridge_certfile /client.pem
bridge_keyfile /client.key
bridge_insecure true
bridge_tls_version tlsv1.3
bridge_outgoing_retain true
notifications false
round_robin false
start_type automatic
connection second
addresses example.org
topic #
username u2
password p2
clientid c2
"""


def test_translation_of_every_supported_directive(tmp_path) -> None:
    conf = tmp_path / "all.conf"
    conf.write_text(every_supported(tmp_path))
    warnings: list[str] = []
    cfg = load_mosquitto(str(conf), warnings.append)
    assert warnings == []
    assert [(lc.port, lc.address, lc.protocol, lc.unix_path) for lc in cfg.listener] == [
        (1885, "127.0.0.2", "mqtt", None),
        (1884, "127.0.0.1", "mqtt", None),
        (8883, "0.0.0.0", "mqtt", None),
        (9001, "::1", "websockets", None),
        (1883, "0.0.0.0", "mqtt", f"{tmp_path}/mq.sock"),
    ]
    assert [lc.max_connections for lc in cfg.listener[:2]] == [5, 0]
    tls = cfg.listener[2]
    assert (
        tls.cafile,
        tls.certfile,
        tls.keyfile,
        tls.ciphers,
        tls.require_certificate,
        tls.use_identity_as_username,
        tls.tls_version,
    ) == (
        "/ca.pem",
        "/server.pem",
        "/server.key",
        "ECDHE-RSA-AES128-GCM-SHA256",
        True,
        True,
        "TLSv1.3",
    )
    a = cfg.auth
    assert (a.allow_anonymous, a.password_file, a.acl_file) == (
        False,
        f"{tmp_path}/pw",
        f"{tmp_path}/acl",
    )
    m = cfg.mqtt
    assert (m.allow_zero_length_client_id, m.client_id_prefix, m.retain_available) == (
        False,
        "gen-",
        False,
    )
    assert m.maximum_qos == 1 and cfg.limits.topic_alias_maximum == 5
    lim = cfg.limits
    assert (lim.max_inflight, lim.max_keepalive, lim.max_queued_bytes) == (7, 120, 1000000)
    assert lim.max_queued_messages == 50
    assert lim.max_packet_size == 1000 + 65542  # message_size_limit comes after max_packet_size
    assert (cfg.persistence.mode, cfg.persistence.data_dir) == ("strict", f"{tmp_path}/data")
    assert cfg.sessions.persistent_session_expiry == 2 * 86400
    assert cfg.sys.interval == 3
    assert (cfg.process.pid_file, cfg.process.user) == (f"{tmp_path}/mqttfast.pid", "nobody")
    lg = cfg.logging
    assert lg.destinations == ["stdout", f"file:{tmp_path}/broker.log"]
    assert (lg.level, lg.timestamp, lg.timestamp_format) == ("info", False, "%Y-%m-%dT%H:%M:%S")
    assert (lg.connection_messages, lg.syslog_facility) == (False, "local3")

    edge, second = cfg.bridge
    assert (edge.name, edge.address, edge.port, edge.protocol_version) == (
        "edge",
        "127.0.0.1",
        1999,
        5,
    )
    assert (edge.username, edge.password, edge.client_id) == ("bob", "secret", "edge-1")
    assert (edge.clean_start, edge.keepalive, edge.try_private) == (True, 30, False)
    assert (edge.reconnect_min, edge.reconnect_max) == (2.0, 20.0)
    assert (edge.cafile, edge.certfile, edge.keyfile, edge.tls) == (
        "/ca.pem",
        "/client.pem",
        "/client.key",
        True,
    )
    assert (edge.insecure, edge.verify_hostname, edge.tls_version) == (False, False, "TLSv1.3")
    assert [
        (t.pattern, t.direction, t.qos, t.local_prefix, t.remote_prefix) for t in edge.topic
    ] == [
        ("sensors/#", "out", 1, "local/", "remote/"),
        ("cmd/+", "in", 2, "", ""),
        ("", "both", 0, "a/b", "c/d"),
    ]
    # mosquitto's bridge defaults where mqttfast's differ.
    assert (second.address, second.port, second.protocol_version) == ("example.org", 1883, 4)
    assert (second.username, second.password, second.client_id) == ("u2", "p2", "c2")
    assert (second.clean_start, second.reconnect_min, second.reconnect_max) == (False, 5.0, 30.0)
    assert [(t.pattern, t.direction, t.qos) for t in second.topic] == [("#", "out", 0)]


def test_bridge_client_id_defaults_to_mosquittos(tmp_path) -> None:
    conf = tmp_path / "b.conf"
    conf.write_text("connection hub\naddress 127.0.0.1\ntopic # out\n")
    (bridge,) = load_mosquitto(str(conf), lambda w: None).bridge
    assert bridge.client_id == f"{socket.gethostname()}.hub"


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


def test_unknown_refused_and_bad_values_name_file_and_line(tmp_path) -> None:
    conf = tmp_path / "bad.conf"
    conf.write_text(
        "listener abc\n"
        "allow_anonymous maybe\n"
        "allow_anonymus true\n"
        "memory_limit 100\n"
        "auth_opt_db /x\n"
        "log_dest topic\n"
        "topic # out\n"
        "connection b\n"
        "address h1:1883 h2:1883\n"
        "notifications true\n"
        "bridge_protocol_version mqttv31\n"
    )
    with pytest.raises(ConfigError) as info:
        load_mosquitto(str(conf), lambda w: None)
    c = str(conf)
    assert info.value.errors == [
        f"{c}:1: listener: expected an integer, got 'abc'",
        f"{c}:2: allow_anonymous: expected true or false, got 'maybe'",
        f"{c}:3: unknown directive 'allow_anonymus' (did you mean 'allow_anonymous'?)",
        f"{c}:4: 'memory_limit' is not supported by mqttfast: not implemented; "
        "use the queue and retained limits",
        f"{c}:5: 'auth_opt_db' is not supported by mqttfast: mosquitto C plug-ins cannot be "
        "loaded; use [[auth.plugin]]",
        f"{c}:6: log_dest: 'topic' not supported (stdout, stderr, syslog, file PATH, none)",
        f"{c}:7: topic: only allowed after 'connection NAME'",
        f"{c}:9: address: mqttfast bridges take one address",
        f"{c}:10: notifications: true is not supported by mqttfast "
        "(false only (bridge notifications not implemented))",
        f"{c}:11: bridge_protocol_version: 'mqttv31' not supported (mqttv311 or mqttv50)",
        f"{c}:8: connection: the bridge has no address",
        f"{c}:8: connection: the bridge has no topic",
    ]
    r = run("check-config", "--mosquitto", str(conf))
    assert r.returncode == 2
    assert f"{c}:3: unknown directive 'allow_anonymus'" in r.stdout
    # At start-up: the same errors on stderr, exit code 2, nothing listening.
    port = free_port()
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymus true\n")
    r = run("--mosquitto-config", str(conf))
    assert r.returncode == 2, r.stderr
    assert f"{c}:2: unknown directive 'allow_anonymus'" in r.stderr


def test_every_refused_directive_is_an_error_and_every_ignored_one_a_warning(tmp_path) -> None:
    for name, (status, _why) in DIRECTIVES.items():
        directive = name.replace("*", "x")
        conf = tmp_path / "one.conf"
        lines = ["connection b", "address 127.0.0.1", "topic #"]
        conf.write_text("\n".join([*lines, f"{directive} 1", f"{directive} 2"]) + "\n")
        warnings: list[str] = []
        if status == REFUSED:
            with pytest.raises(ConfigError) as info:
                load_mosquitto(str(conf), warnings.append)
            assert f"{conf}:4: '{directive}' is not supported" in info.value.errors[0]
        elif status == IGNORED:
            load_mosquitto(str(conf), warnings.append)
            assert warnings == [f"{conf}:4: mosquitto directive {directive!r} ignored: {_why}"], (
                name
            )  # once, however often it appears


def _doc_rows() -> dict[str, tuple[str, str]]:
    text = (REPO_ROOT / "docs" / "mosquitto.md").read_text()
    rows = {}
    for m in re.finditer(r"^\| `([^`]+)` \| (\w+) \| (.*) \|$", text, re.MULTILINE):
        assert m.group(1) not in rows, f"{m.group(1)} twice in docs/mosquitto.md"
        rows[m.group(1)] = (m.group(2), m.group(3).replace("\\|", "|"))
    return rows


def test_docs_table_is_the_translators_table() -> None:
    assert _doc_rows() == DIRECTIVES


# Every directive mosquitto 2.0.11's src/conf.c accepts (aliases included; the values
# of log_dest, log_type, protocol ... left out), read from its source.
MOSQUITTO_2_0_11 = """
acl_file address addresses allow_anonymous allow_duplicate_messages allow_zero_length_clientid
auth_opt_* auth_plugin auth_plugin_deny_special_chars auto_id_prefix autosave_interval
autosave_on_changes bind_address bind_interface bridge_alpn bridge_attempt_unsubscribe
bridge_bind_address bridge_cafile bridge_capath bridge_certfile bridge_identity bridge_insecure
bridge_keyfile bridge_max_packet_size bridge_outgoing_retain bridge_protocol_version bridge_psk
bridge_require_ocsp bridge_tls_version cafile capath certfile check_retain_source ciphers
ciphers_tls1.3 cleansession clientid clientid_prefixes connection connection_messages crlfile
dhparamfile http_dir idle_timeout include_dir keepalive_interval keyfile listener
local_cleansession local_clientid local_password local_username log_dest log_facility
log_timestamp log_timestamp_format log_type max_connections max_inflight_bytes
max_inflight_messages max_keepalive max_packet_size max_qos max_queued_bytes max_queued_messages
max_topic_alias maximum_qos memory_limit message_size_limit mount_point notification_topic
notifications notifications_local_only password password_file per_listener_settings persistence
persistence_file persistence_location persistent_client_expiration pid_file plugin plugin_opt_*
port protocol psk_file psk_hint queue_qos0_messages remote_clientid remote_password
remote_username require_certificate restart_timeout retain_available retained_persistence
retry_interval round_robin set_tcp_nodelay socket_domain start_type sys_interval threshold
tls_engine tls_engine_kpass_sha1 tls_keyform tls_version topic try_private upgrade_outgoing_qos
use_identity_as_username use_subject_as_username use_username_as_clientid user username
websockets_headers_size websockets_log_level
""".split()


def test_table_is_exactly_mosquitto_2_0s_directives() -> None:
    assert sorted(DIRECTIVES) == sorted(MOSQUITTO_2_0_11)


def test_table_covers_every_directive_of_mosquittos_manual() -> None:
    """Every directive documented in Debian's mosquitto.conf(5) is in the table."""
    man = gzip.decompress(MAN_PAGE.read_bytes()).decode("utf-8", "replace")
    names = set()
    for block in re.findall(r"^\.PP\n(\\fB.*)$", man, re.MULTILINE):
        for name in re.findall(r"\\fB([a-z_][a-z0-9_\\&.]*)\\fR", block):
            names.add(name.replace("\\&", ""))
    names -= {"mosquitto", "mosquitto.conf", "include_dir"} - set(DIRECTIVES)
    assert len(names) > 100
    names = {n + "*" if n.endswith("_") else n for n in names}
    assert names - set(DIRECTIVES) == set()


def test_include_dir_reads_conf_files_in_mosquittos_order(tmp_path) -> None:
    d = tmp_path / "conf.d"
    d.mkdir()
    for name, interval in [("b.conf", 2), ("a.conf", 1), ("A.conf", 3), ("z.txt", 9)]:
        (d / name).write_text(f"sys_interval {interval}\n")
    (d / ".conf").write_text("bogus\n")  # too short a name: mosquitto skips it too
    assert [Path(p).name for p in include_files(str(d))] == ["A.conf", "a.conf", "b.conf"]
    main = tmp_path / "main.conf"
    main.write_text(f"sys_interval 7\ninclude_dir {d}\n")
    assert load_mosquitto(str(main), lambda w: None).sys.interval == 2  # b.conf is last
    # Errors in an included file name that file and line.
    (d / "c.conf").write_text("\nmax_qos 1\nallow_anonymus true\n")
    with pytest.raises(ConfigError) as info:
        load_mosquitto(str(main), lambda w: None)
    assert info.value.errors == [
        f"{d}/c.conf:3: unknown directive 'allow_anonymus' (did you mean 'allow_anonymous'?)"
    ]


def test_debian_stock_config_translates() -> None:
    """The shipped /etc/mosquitto/mosquitto.conf (with its conf.d) is accepted as is."""
    cfg = load_mosquitto(str(DEBIAN_CONF), lambda w: None)
    assert cfg.process.pid_file == "/run/mosquitto/mosquitto.pid"
    assert cfg.persistence.mode == "strict"
    assert cfg.persistence.data_dir == "/var/lib/mosquitto/"
    assert cfg.logging.destinations == ["file:/var/log/mosquitto/mosquitto.log"]
    r = run("check-config", "--mosquitto", str(DEBIAN_CONF))
    assert (r.returncode, r.stdout.strip()) == (0, "ok"), r.stdout + r.stderr


def test_debian_layout_end_to_end(start_broker, tmp_path) -> None:
    """Debian's stock main file (paths moved under tmp) plus a conf.d with a listener,
    a password file and an ignored directive: the broker runs with all of it."""
    stock = DEBIAN_CONF.read_text()
    for old, new in [
        ("/run/mosquitto/mosquitto.pid", f"{tmp_path}/mosquitto.pid"),
        ("/var/lib/mosquitto/", f"{tmp_path}/data/"),
        ("/var/log/mosquitto/mosquitto.log", f"{tmp_path}/mosquitto.log"),
        ("/etc/mosquitto/conf.d", f"{tmp_path}/conf.d"),
    ]:
        assert old in stock
        stock = stock.replace(old, new)
    confd = tmp_path / "conf.d"
    confd.mkdir()
    pf = PasswordFile()
    pf.set("alice", "wonder", iterations=1000)
    pf.save(tmp_path / "pw")
    port = free_port()
    (confd / "10-listener.conf").write_text(f"listener {port} 127.0.0.1\n")
    (confd / "20-auth.conf").write_text(
        f"password_file {tmp_path}/pw\nautosave_interval 1800\nsys_interval 0\n"
    )
    (confd / "README").write_text("not a .conf file: not read\n")
    b = start_broker(stock, mosquitto=True, wait=[port])
    with RawClient(port) as c:
        c.connect("anon", expect_rc=5)  # a listener is configured: no anonymous clients
    with RawClient(port) as c:
        c.connect("alice", username="alice", password="wonder")
        c.publish("t", b"kept", qos=1, retain=True)
    assert (tmp_path / "mosquitto.pid").read_text().strip() == str(b.proc.pid)
    log = (tmp_path / "mosquitto.log").read_text()
    assert "'autosave_interval' ignored" in log
    assert log.count("autosave_interval") == 1
    assert b.stop() == 0
    assert not (tmp_path / "mosquitto.pid").exists()
    assert any((tmp_path / "data").iterdir())  # persistence true: the database is there


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
        "persistence false\nsys_interval 0\nlog_dest stderr\nretry_interval 20\n"
    )
    b = start_broker(mosq, mosquitto=True, wait=[port, ws_port])
    b.wait_for_log("'retry_interval' ignored")
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


def test_every_supported_directive_end_to_end(start_broker, tmp_path, pki) -> None:
    """The config with every mapped directive, pointed at real files, ports and a real
    second broker (the bridge's peer): check-config says ok, and the broker runs with it.
    (``user`` is left out here: tests/migration/test_process.py runs it as root.)
    With ``acl_file`` set, the bridge's local subscription must still receive what
    clients publish (it failed before: the ACL denied the internal subscriber)."""
    from tests.migration.support import Mosquitto

    pf = PasswordFile()
    pf.set("alice", "wonder", iterations=1000)
    pf.save(tmp_path / "pw")
    (tmp_path / "acl").write_text("user alice\ntopic readwrite #\n")
    ports = {name: free_port() for name in ("default", "plain", "tls", "ws", "peer")}
    peer = Mosquitto(tmp_path, ports["peer"], "allow_anonymous true\n")
    try:
        text = every_supported(tmp_path)
        for old, new in [
            ("user nobody\n", ""),
            ("port 1885\n", f"port {ports['default']}\n"),
            ("bind_address 127.0.0.2\n", "bind_address 127.0.0.1\n"),
            ("listener 1884 127.0.0.1", f"listener {ports['plain']} 127.0.0.1"),
            ("listener 8883", f"listener {ports['tls']} 127.0.0.1"),
            ("/ca.pem", pki["ca"]),
            ("/server.pem", pki["server_cert"]),
            ("/server.key", pki["server_key"]),
            ("/client.pem", pki["client"]),
            ("/client.key", pki["client"]),
            ("listener 9001 ::1", f"listener {ports['ws']} 127.0.0.1"),
            ("address 127.0.0.1:1999", f"address 127.0.0.1:{ports['peer']}"),
            ("addresses example.org", f"addresses 127.0.0.1:{ports['peer']}"),
            ("bridge_tls_version tlsv1.3", "bridge_tls_version tlsv1.2"),
        ]:
            assert old in text, old
            text = text.replace(old, new)
        # The first bridge talks TLS: point it at this broker's own TLS listener.
        text = text.replace(
            f"connection edge\naddress 127.0.0.1:{ports['peer']}",
            f"connection edge\naddress localhost:{ports['tls']}",
        )
        conf = tmp_path / "all.conf"
        conf.write_text(text)
        r = run("check-config", "--mosquitto", str(conf))
        assert (r.returncode, r.stdout.strip()) == (0, "ok"), r.stdout + r.stderr
        b = start_broker(text, mosquitto=True, wait=[ports["default"], ports["plain"], ports["ws"]])
        with RawClient(ports["plain"]) as c:
            c.connect("anon", expect_rc=5)  # allow_anonymous false
        # Both bridges connect: "edge" over TLS with a client certificate (to this
        # broker's own TLS listener), "second" to the mosquitto peer.
        b.wait_for_log("bridge edge connected to localhost", timeout=15)
        b.wait_for_log(f"bridge second connected to 127.0.0.1:{ports['peer']}", timeout=15)
        with RawClient(ports["peer"]) as far:
            far.connect("far")
            far.subscribe("#", qos=1)
            with RawClient(ports["plain"]) as c:
                c.connect("alice-1", username="alice", password="wonder")
                c.publish("second/x", b"to-peer", qos=1)
            got = far.recv_publish(timeout=5)
            assert (got.topic, got.payload) == ("second/x", b"to-peer")
        assert (tmp_path / "mqttfast.pid").read_text().strip() == str(b.proc.pid)
        assert b.stop() == 0
        log = (tmp_path / "broker.log").read_text()
        assert "alice-1" not in log  # connection_messages false
        assert "listening on" in log
    finally:
        peer.stop()
