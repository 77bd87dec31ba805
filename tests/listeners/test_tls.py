"""TLS listeners (issue 6): server authentication, client certificates (required,
optional, wrong CA), the certificate identity as username, minimum TLS version,
and a plain client on a TLS port. Certificates are generated per test (trustme)."""

from __future__ import annotations

import socket
import ssl
import threading

import paho.mqtt.client as mqtt
import pytest

from tests.helpers.rawclient import ConnectionClosed

from .support import free_port, tls_raw

pytestmark = pytest.mark.timeout(60)


def client_ctx(pki, cert: str | None = None, max_version=None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=pki["ca"])
    if cert:
        ctx.load_cert_chain(pki[cert])
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


def tls_listener(pki, port: int, **extra) -> str:
    lines = [
        "[[listener]]",
        f"port = {port}",
        'address = "127.0.0.1"',
        f'certfile = "{pki["server_cert"]}"',
        f'keyfile = "{pki["server_key"]}"',
    ]
    lines += [
        f"{k} = {v!r}".replace("'", '"') if isinstance(v, str) else f"{k} = {str(v).lower()}"
        for k, v in extra.items()
    ]
    return "\n".join(lines) + "\n"


BASE = '[persistence]\nmode = "off"\n'


def test_server_authentication_pub_sub_over_tls(start_broker, pki) -> None:
    """A client that verifies the server certificate against the CA talks MQTT over TLS
    (paho-mqtt with tls_set) and gets its own message back."""
    port = free_port()
    start_broker(tls_listener(pki, port) + BASE, wait=[port])
    got: list[bytes] = []
    done = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="tls-paho")
    c.tls_set(ca_certs=pki["ca"])
    c.on_message = lambda cl, ud, msg: (got.append(msg.payload), done.set())
    c.on_connect = lambda cl, ud, fl, rc, pr: cl.subscribe("tls/t", 1)
    c.on_subscribe = lambda cl, ud, mid, rcs, pr: cl.publish("tls/t", b"secret", 1)
    c.connect("localhost", port, keepalive=30)
    c.loop_start()
    try:
        assert done.wait(10), "no message over TLS"
        assert got == [b"secret"]
    finally:
        c.disconnect()
        c.loop_stop()


def test_required_client_certificate(start_broker, pki) -> None:
    """require_certificate: no client certificate -> handshake refused; a certificate
    from the configured CA -> CONNACK 0; one from another CA -> refused."""
    port = free_port()
    start_broker(
        tls_listener(pki, port, cafile=pki["ca"], require_certificate=True) + BASE, wait=[port]
    )
    with tls_raw(port, client_ctx(pki, "client")) as c:
        assert c.connect("with-cert").reason_code == 0
    for ctx in (client_ctx(pki), client_ctx(pki, "rogue")):
        with pytest.raises((ssl.SSLError, ConnectionError, OSError, ConnectionClosed)):
            c = tls_raw(port, ctx)
            # TLS 1.3: the server's verdict arrives with the first read.
            c.connect("no-cert")


def test_optional_client_certificate(start_broker, pki) -> None:
    """cafile without require_certificate: clients with or without a certificate connect."""
    port = free_port()
    start_broker(tls_listener(pki, port, cafile=pki["ca"]) + BASE, wait=[port])
    with tls_raw(port, client_ctx(pki)) as c:
        assert c.connect("anon").reason_code == 0
    with tls_raw(port, client_ctx(pki, "client")) as c:
        assert c.connect("certified").reason_code == 0


def test_wrong_ca_on_server_side_is_refused_by_client(start_broker, pki, tmp_path) -> None:
    """A client trusting another CA refuses the server (certificate verify failed)."""
    import trustme

    port = free_port()
    start_broker(tls_listener(pki, port) + BASE, wait=[port])
    other = trustme.CA()
    other.cert_pem.write_to_path(str(tmp_path / "other.pem"))
    ctx = ssl.create_default_context(cafile=str(tmp_path / "other.pem"))
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_raw(port, ctx)


def test_plain_client_on_tls_port_is_refused(start_broker, pki) -> None:
    """MQTT CONNECT in clear text to a TLS port: no CONNACK, the connection is closed."""
    port = free_port()
    b = start_broker(tls_listener(pki, port) + BASE, wait=[port])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04abcd")
        data = b""
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    assert not data.startswith(b"\x20"), f"got a CONNACK-looking answer: {data!r}"
    assert b.running()


def test_identity_as_username_with_acl(start_broker, pki, tmp_path) -> None:
    """use_identity_as_username: the certificate CN (sensor-9) is the username the ACL
    sees; the MQTT username/password sent are ignored; no certificate -> CONNACK 0x86/4."""
    port = free_port()
    acl = tmp_path / "acl"
    acl.write_text("user sensor-9\ntopic readwrite s9/#\n")
    text = tls_listener(pki, port, cafile=pki["ca"], use_identity_as_username=True)
    text += BASE + f'[auth]\nacl_file = "{acl}"\nallow_anonymous = false\n'
    start_broker(text, wait=[port])
    with tls_raw(port, client_ctx(pki, "client"), version=5) as c:
        c.connect("s9", username="mallory", password="x")
        suback = c.subscribe("s9/#", "other/#", qos=1)
        assert list(suback.reason_codes) == [1, 0x87]
        c.publish("s9/a", b"mine", qos=1)
        assert c.recv_publish().payload == b"mine"
    with tls_raw(port, client_ctx(pki), version=5) as c:
        c.connect("no-cert", username="sensor-9", password="x", expect_rc=0x86)
    with tls_raw(port, client_ctx(pki), version=4) as c:
        c.connect("no-cert-311", expect_rc=4)


def test_minimum_tls_version(start_broker, pki) -> None:
    """tls_version = TLSv1.3: a client limited to TLS 1.2 fails the handshake."""
    port = free_port()
    start_broker(tls_listener(pki, port, tls_version="TLSv1.3") + BASE, wait=[port])
    with pytest.raises(ssl.SSLError):
        tls_raw(port, client_ctx(pki, max_version=ssl.TLSVersion.TLSv1_2))
    with tls_raw(port, client_ctx(pki)) as c:
        assert c.connect("tls13").reason_code == 0


def test_identity_from_subject_alt_name(start_broker, pki, tmp_path) -> None:
    """identity_source = "san": the first DNS SAN (sensor-9.example) is the username."""
    port = free_port()
    acl = tmp_path / "acl"
    acl.write_text("user sensor-9.example\ntopic readwrite san/#\n")
    text = tls_listener(
        pki,
        port,
        cafile=pki["ca"],
        require_certificate=True,
        use_identity_as_username=True,
        identity_source="san",
    )
    start_broker(text + BASE + f'[auth]\nacl_file = "{acl}"\n', wait=[port])
    with tls_raw(port, client_ctx(pki, "client"), version=5) as c:
        c.connect("san")
        assert list(c.subscribe("san/#", "s9/#", qos=0).reason_codes) == [0, 0x87]
