"""TLS server contexts for listeners, and client-certificate identities.

``build_server_context`` gives a hardened ``ssl.SSLContext``: TLS 1.2 minimum
(1.0/1.1 refused outright), no compression, no renegotiation, server cipher
preference, and client-certificate verification when a CA is configured:

* ``cafile`` + ``require_certificate=True``: a client without a certificate
  signed by that CA fails the handshake (mosquitto ``require_certificate true``);
* ``cafile`` only: a certificate is asked for and verified if sent, but not
  required;
* no ``cafile``: no client certificates.

``identity_from_peercert`` extracts the name used by ``use_identity_as_username``.
"""

from __future__ import annotations

import ssl
from typing import Any

__all__ = ["build_server_context", "identity_from_peercert", "TLS_VERSIONS"]

TLS_VERSIONS = {
    "tlsv1.2": ssl.TLSVersion.TLSv1_2,
    "tlsv1.3": ssl.TLSVersion.TLSv1_3,
}
_TOO_OLD = {"tlsv1", "tlsv1.0", "tlsv1.1", "sslv3"}


def _tls_version(name: str) -> ssl.TLSVersion:
    key = name.strip().lower()
    if key in _TOO_OLD:
        raise ValueError(f"TLS version {name!r} is insecure; use TLSv1.2 or TLSv1.3")
    try:
        return TLS_VERSIONS[key]
    except KeyError:
        raise ValueError(f"unknown TLS version {name!r} (expected TLSv1.2 or TLSv1.3)") from None


def build_server_context(
    certfile: str,
    keyfile: str | None = None,
    cafile: str | None = None,
    require_certificate: bool = False,
    min_version: str = "TLSv1.2",
    ciphers: str | None = None,
    capath: str | None = None,
    keyfile_password: str | None = None,
    alpn_protocols: list[str] | None = None,
) -> ssl.SSLContext:
    """A server-side context; raises ValueError for bad settings, ssl.SSLError/OSError for
    unreadable or mismatched certificate files (callers report them as config errors)."""
    if require_certificate and not (cafile or capath):
        raise ValueError("require_certificate needs cafile or capath to verify clients against")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _tls_version(min_version)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    ctx.options |= ssl.OP_SINGLE_ECDH_USE | ssl.OP_SINGLE_DH_USE
    if ciphers:
        ctx.set_ciphers(ciphers)  # applies to TLS <= 1.2; TLS 1.3 suites are fixed and strong
    ctx.load_cert_chain(certfile, keyfile, password=keyfile_password)
    if cafile or capath:
        ctx.load_verify_locations(cafile=cafile, capath=capath)
        ctx.verify_mode = ssl.CERT_REQUIRED if require_certificate else ssl.CERT_OPTIONAL
    else:
        ctx.verify_mode = ssl.CERT_NONE
    if alpn_protocols:
        ctx.set_alpn_protocols(alpn_protocols)
    return ctx


def _clean(value: Any) -> str | None:
    if not isinstance(value, str) or not value or "\x00" in value:
        return None  # an embedded NUL is a classic certificate-name spoofing trick
    return value


def _from_der(der: bytes, use: str) -> str | None:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = x509.load_der_x509_certificate(der)
    if use == "cn":
        attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return _clean(attrs[0].value) if len(attrs) == 1 else None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    for name in san:
        if isinstance(name, (x509.DNSName, x509.RFC822Name, x509.UniformResourceIdentifier)):
            return _clean(name.value)
    return None


def identity_from_peercert(cert: dict[str, Any] | bytes | None, use: str = "cn") -> str | None:
    """The username a verified client certificate stands for, or None.

    ``cert`` is ``SSLObject.getpeercert()`` (a dict; only filled in for a
    *verified* certificate) or its DER bytes (``getpeercert(True)``).
    ``use="cn"``: the subject's common name; a subject with several CNs is
    ambiguous and gives None. ``use="san"``: the first DNS, e-mail or URI
    subjectAltName entry.
    """
    if use not in ("cn", "san"):
        raise ValueError("use must be 'cn' or 'san'")
    if not cert:
        return None
    if isinstance(cert, (bytes, bytearray, memoryview)):
        return _from_der(bytes(cert), use)
    if use == "cn":
        cns = [
            value for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName"
        ]
        return _clean(cns[0]) if len(cns) == 1 else None
    for kind, value in cert.get("subjectAltName", ()):
        if kind in ("DNS", "email", "URI"):
            return _clean(value)
    return None
