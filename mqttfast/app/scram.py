"""SCRAM-SHA-256 (RFC 5802 / RFC 7677) over MQTT 5 enhanced authentication (4.12).

A worked example of the core's enhanced-auth seam (``Hooks.auth_start`` /
``Hooks.auth_continue``); usable as is. The exchange:

    CONNECT  Authentication Method "SCRAM-SHA-256", Data = client-first ("n,,n=user,r=cnonce")
    AUTH 0x18  <- server-first  ("r=cnonce+snonce,s=salt,i=iterations")
    AUTH 0x18  -> client-final  ("c=biws,r=cnonce+snonce,p=proof")
    CONNACK 0x00 <- server-final ("v=server-signature"), or CONNACK 0x87 on a bad proof.

Re-authentication (AUTH 0x19) runs the same exchange. The server stores only the
salted keys (StoredKey, ServerKey), never the password. No channel binding ("n,,").
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from typing import Any

from mqttfast.codec.constants import ReasonCode
from mqttfast.core.hooks import AUTH_CONTINUE, AUTH_FAIL, AUTH_SUCCESS, AuthStep, Hooks

METHOD = "SCRAM-SHA-256"
DEFAULT_ITERATIONS = 4096


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b))


def _attrs(msg: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in msg.split(","):
        key, sep, value = part.partition("=")
        if not sep or len(key) != 1:
            raise ValueError(f"bad SCRAM attribute {part!r}")
        out[key] = value
    return out


@dataclass(frozen=True)
class ScramCredential:
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    @classmethod
    def from_password(
        cls, password: str, salt: bytes | None = None, iterations: int = DEFAULT_ITERATIONS
    ) -> ScramCredential:
        salt = salt if salt is not None else os.urandom(16)
        salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
        client_key = _hmac(salted, b"Client Key")
        return cls(salt, iterations, _h(client_key), _hmac(salted, b"Server Key"))


class _Exchange:
    __slots__ = ("user", "client_first_bare", "server_first", "nonce", "credential")

    def __init__(
        self,
        user: str,
        client_first_bare: str,
        server_first: str,
        nonce: str,
        credential: ScramCredential | None,
    ) -> None:
        self.user = user
        self.client_first_bare = client_first_bare
        self.server_first = server_first
        self.nonce = nonce
        self.credential = credential


class ScramHooks(Hooks):
    """Enhanced authentication with SCRAM-SHA-256; other decisions go to ``inner``."""

    def __init__(self, credentials: dict[str, ScramCredential], inner: Hooks | None = None) -> None:
        self.credentials = credentials
        self.inner = inner or Hooks()
        # Unknown users get a stable fake salt so that they look like real ones.
        self._fake_salt_key = os.urandom(16)

    # Delegation of the plain hooks.
    def authenticate(self, client: Any, username: str | None, password: bytes | None) -> int:
        return self.inner.authenticate(client, username, password)

    def authorise_publish(self, client: Any, topic: str, qos: int, retain: bool) -> bool:
        return self.inner.authorise_publish(client, topic, qos, retain)

    def authorise_subscribe(self, client: Any, topic_filter: str, qos: int) -> bool:
        return self.inner.authorise_subscribe(client, topic_filter, qos)

    # Enhanced authentication.
    def auth_start(self, client: Any, method: str, data: bytes | None) -> AuthStep | None:
        if method != METHOD:
            return self.inner.auth_start(client, method, data)
        try:
            text = (data or b"").decode("utf-8")
            if not text.startswith("n,,"):
                raise ValueError("channel binding not supported")
            bare = text[3:]
            attrs = _attrs(bare)
            user = attrs["n"].replace("=2C", ",").replace("=3D", "=")
            cnonce = attrs["r"]
        except (ValueError, KeyError, UnicodeDecodeError):
            return AuthStep(AUTH_FAIL, reason_code=ReasonCode.MALFORMED_PACKET)
        cred = self.credentials.get(user)
        if cred is not None:
            salt, iterations = cred.salt, cred.iterations
        else:
            salt, iterations = _hmac(self._fake_salt_key, user.encode())[:16], DEFAULT_ITERATIONS
        nonce = cnonce + secrets.token_urlsafe(18)
        server_first = f"r={nonce},s={_b64(salt)},i={iterations}"
        return AuthStep(
            AUTH_CONTINUE,
            server_first.encode(),
            state=_Exchange(user, bare, server_first, nonce, cred),
        )

    def auth_continue(self, client: Any, method: str, data: bytes | None, state: Any) -> AuthStep:
        if method != METHOD or not isinstance(state, _Exchange):
            return self.inner.auth_continue(client, method, data, state)
        fail = AuthStep(AUTH_FAIL, reason_code=ReasonCode.NOT_AUTHORIZED)
        try:
            final = (data or b"").decode("utf-8")
            without_proof, _, proof_part = final.rpartition(",p=")
            attrs = _attrs(without_proof)
            proof = base64.b64decode(proof_part, validate=True)
        except (ValueError, UnicodeDecodeError):
            return fail
        cred = state.credential
        if cred is None or attrs.get("r") != state.nonce or attrs.get("c") != "biws":
            return fail
        auth_message = f"{state.client_first_bare},{state.server_first},{without_proof}".encode()
        client_signature = _hmac(cred.stored_key, auth_message)
        client_key = _xor(proof, client_signature)
        if len(proof) != len(client_signature) or not hmac.compare_digest(
            _h(client_key), cred.stored_key
        ):
            return fail
        server_signature = _hmac(cred.server_key, auth_message)
        client.username = state.user
        return AuthStep(AUTH_SUCCESS, f"v={_b64(server_signature)}".encode())


class ScramClient:
    """The client side, for tests and examples."""

    def __init__(self, user: str, password: str) -> None:
        self.user = user
        self.password = password
        self.cnonce = secrets.token_urlsafe(18)
        self.client_first_bare = f"n={user.replace('=', '=3D').replace(',', '=2C')},r={self.cnonce}"
        self.auth_message = b""
        self.salted = b""

    def first(self) -> bytes:
        return ("n,," + self.client_first_bare).encode()

    def final(self, server_first: bytes) -> bytes:
        text = server_first.decode()
        attrs = _attrs(text)
        if not attrs["r"].startswith(self.cnonce):
            raise ValueError("server nonce does not extend ours")
        salt = base64.b64decode(attrs["s"])
        self.salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(), salt, int(attrs["i"]))
        without_proof = f"c=biws,r={attrs['r']}"
        self.auth_message = f"{self.client_first_bare},{text},{without_proof}".encode()
        client_key = _hmac(self.salted, b"Client Key")
        signature = _hmac(_h(client_key), self.auth_message)
        return f"{without_proof},p={_b64(_xor(client_key, signature))}".encode()

    def verify(self, server_final: bytes) -> bool:
        expected = _hmac(_hmac(self.salted, b"Server Key"), self.auth_message)
        return server_final.decode() == f"v={_b64(expected)}"
