"""TLS server contexts: handshakes over loopback with certificates made by trustme."""

from __future__ import annotations

import socket
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme

from mqttfast.app.security.tls import build_server_context, identity_from_peercert

pytestmark = pytest.mark.timeout(30)

TIMEOUT = 5.0


@dataclass
class Files:
    ca: trustme.CA
    cafile: str
    certfile: str
    keyfile: str
    tmp: Path
    extra: dict[str, str] = field(default_factory=dict)


@pytest.fixture
def pki(tmp_path: Path) -> Files:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost", common_name="mqttfast-test-server")
    cafile = tmp_path / "ca.pem"
    certfile = tmp_path / "server.pem"
    keyfile = tmp_path / "server.key"
    ca.cert_pem.write_to_path(str(cafile))
    with open(certfile, "wb") as fh:
        for blob in server.cert_chain_pems:
            fh.write(blob.bytes())
    server.private_key_pem.write_to_path(str(keyfile))
    return Files(ca, str(cafile), str(certfile), str(keyfile), tmp_path)


def client_cert(
    files: Files, ca: trustme.CA, name: str, *sans: str, common_name: str | None = None
) -> tuple[str, str]:
    leaf = ca.issue_cert(*(sans or (f"{name}.example",)), common_name=common_name or name)
    path = files.tmp / f"{name}.pem"
    leaf.private_key_and_cert_chain_pem.write_to_path(str(path))
    return str(path), str(path)


class Server:
    """Accept one connection on 127.0.0.1 and complete a TLS handshake in a thread."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self.ctx = ctx
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(TIMEOUT)
        self.port = self.sock.getsockname()[1]
        self.error: BaseException | None = None
        self.peercert: dict | None = None
        self.version: str | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
            conn.settimeout(TIMEOUT)
            with self.ctx.wrap_socket(conn, server_side=True) as tls:
                self.peercert = tls.getpeercert()
                self.version = tls.version()
                data = tls.recv(64)
                tls.sendall(b"echo:" + data)
        except BaseException as exc:  # recorded for the test to inspect
            self.error = exc
        finally:
            self.done.set()
            self.sock.close()

    def finish(self) -> None:
        assert self.done.wait(TIMEOUT), "server thread did not finish"
        self.thread.join(TIMEOUT)


def client_ctx(
    cafile: str, cert: tuple[str, str] | None = None, max_version: ssl.TLSVersion | None = None
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=cafile)
    if cert:
        ctx.load_cert_chain(*cert)
    if max_version:
        ctx.maximum_version = max_version
    return ctx


def talk(port: int, ctx: ssl.SSLContext) -> bytes:
    """Handshake, send, read the echo. Raises on any TLS failure (incl. a late TLS 1.3 alert)."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"hello")
            data = tls.recv(64)
            if not data:
                raise ConnectionError("closed by server")
            return data


def test_server_authentication(pki: Files) -> None:
    server = Server(build_server_context(pki.certfile, pki.keyfile))
    assert talk(server.port, client_ctx(pki.cafile)) == b"echo:hello"
    server.finish()
    assert server.error is None and server.version in ("TLSv1.2", "TLSv1.3")
    assert server.peercert is None  # no client certificates asked for


def test_client_untrusting_the_server_ca_fails(pki: Files) -> None:
    other = trustme.CA()
    other_ca = pki.tmp / "other-ca.pem"
    other.cert_pem.write_to_path(str(other_ca))
    server = Server(build_server_context(pki.certfile, pki.keyfile))
    with pytest.raises(ssl.SSLCertVerificationError):
        talk(server.port, client_ctx(str(other_ca)))
    server.finish()


def test_required_client_certificate_accepted_and_identity_extracted(pki: Files) -> None:
    cert = client_cert(pki, pki.ca, "device-42", "device-42.example")
    ctx = build_server_context(
        pki.certfile, pki.keyfile, cafile=pki.cafile, require_certificate=True
    )
    server = Server(ctx)
    assert talk(server.port, client_ctx(pki.cafile, cert)) == b"echo:hello"
    server.finish()
    assert server.error is None
    assert identity_from_peercert(server.peercert, "cn") == "device-42"
    assert identity_from_peercert(server.peercert, "san") == "device-42.example"


def test_required_client_certificate_missing_is_refused(pki: Files) -> None:
    ctx = build_server_context(
        pki.certfile, pki.keyfile, cafile=pki.cafile, require_certificate=True
    )
    server = Server(ctx)
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        talk(server.port, client_ctx(pki.cafile))
    server.finish()
    assert isinstance(server.error, ssl.SSLError)
    assert "certificate" in str(server.error).lower()


def test_client_certificate_from_wrong_ca_is_refused(pki: Files) -> None:
    rogue = trustme.CA()
    cert = client_cert(pki, rogue, "intruder")
    ctx = build_server_context(
        pki.certfile, pki.keyfile, cafile=pki.cafile, require_certificate=True
    )
    server = Server(ctx)
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        talk(server.port, client_ctx(pki.cafile, cert))
    server.finish()
    assert isinstance(server.error, ssl.SSLError)


def test_optional_client_certificate(pki: Files) -> None:
    ctx = build_server_context(pki.certfile, pki.keyfile, cafile=pki.cafile)
    assert ctx.verify_mode == ssl.CERT_OPTIONAL
    server = Server(ctx)  # no certificate: still fine
    assert talk(server.port, client_ctx(pki.cafile)) == b"echo:hello"
    server.finish()
    assert server.error is None and not server.peercert
    cert = client_cert(pki, trustme.CA(), "rogue")
    server = Server(ctx)  # a certificate that is sent must verify
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        talk(server.port, client_ctx(pki.cafile, cert))
    server.finish()
    assert isinstance(server.error, ssl.SSLError)


def test_plain_mqtt_client_on_tls_port_is_refused(pki: Files) -> None:
    server = Server(build_server_context(pki.certfile, pki.keyfile))
    connect = bytes.fromhex("101000044d5154540402003c0004746573740000")  # CONNECT, 3.1.1
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as raw:
        raw.sendall(connect)
        try:
            reply = raw.recv(64)
        except ConnectionResetError:
            reply = b""
    server.finish()
    assert isinstance(server.error, ssl.SSLError)
    assert not reply.startswith(b"\x20")  # never a CONNACK


def test_minimum_version_enforced(pki: Files) -> None:
    ctx = build_server_context(pki.certfile, pki.keyfile, min_version="TLSv1.3")
    server = Server(ctx)
    with pytest.raises(ssl.SSLError):
        talk(server.port, client_ctx(pki.cafile, max_version=ssl.TLSVersion.TLSv1_2))
    server.finish()
    assert isinstance(server.error, ssl.SSLError)
    server = Server(ctx)
    assert talk(server.port, client_ctx(pki.cafile)) == b"echo:hello"
    server.finish()
    assert server.version == "TLSv1.3"


def test_ciphers_option_applies_to_tls12(pki: Files) -> None:
    ctx = build_server_context(pki.certfile, pki.keyfile, ciphers="ECDHE+AESGCM")
    assert all(c["protocol"] == "TLSv1.3" or "GCM" in c["name"] for c in ctx.get_ciphers())
    server = Server(ctx)
    assert (
        talk(server.port, client_ctx(pki.cafile, max_version=ssl.TLSVersion.TLSv1_2))
        == b"echo:hello"
    )
    server.finish()
    assert server.version == "TLSv1.2"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"min_version": "TLSv1.1"}, "insecure"),
        ({"min_version": "TLSv1"}, "insecure"),
        ({"min_version": "SSLv9"}, "unknown"),
        ({"require_certificate": True}, "cafile"),
    ],
)
def test_bad_settings_rejected(pki: Files, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        build_server_context(pki.certfile, pki.keyfile, **kwargs)


def test_mismatched_key_is_an_error(pki: Files) -> None:
    other = pki.ca.issue_cert("localhost")
    other_key = pki.tmp / "other.key"
    other.private_key_pem.write_to_path(str(other_key))
    with pytest.raises(ssl.SSLError):
        build_server_context(pki.certfile, str(other_key))


def test_hardening_options(pki: Files) -> None:
    ctx = build_server_context(pki.certfile, pki.keyfile)
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.options & ssl.OP_NO_COMPRESSION
    assert ctx.verify_mode == ssl.CERT_NONE


def test_identity_from_der_and_edge_cases(pki: Files) -> None:
    leaf = pki.ca.issue_cert("alt.example", common_name="cn-name")
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    der = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).public_bytes(Encoding.DER)
    assert identity_from_peercert(der, "cn") == "cn-name"
    assert identity_from_peercert(der, "san") == "alt.example"
    assert identity_from_peercert(None) is None
    assert identity_from_peercert({}) is None
    two_cns = {"subject": ((("commonName", "a"),), (("commonName", "b"),))}
    assert identity_from_peercert(two_cns, "cn") is None  # ambiguous
    nul = {"subject": ((("commonName", "admin\x00.evil"),),)}
    assert identity_from_peercert(nul, "cn") is None
    ip_only = {"subjectAltName": (("IP Address", "10.0.0.1"),)}
    assert identity_from_peercert(ip_only, "san") is None
    with pytest.raises(ValueError):
        identity_from_peercert(two_cns, "subject")
