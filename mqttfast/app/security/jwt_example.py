"""Worked example of an auth plug-in: an HS256 JSON Web Token as the MQTT password.

Config (names as the broker's config passes them to ``load_plugin``)::

    auth_plugin mqttfast.app.security.jwt_example:JwtAuthPlugin
    auth_plugin_opt_secret_file /etc/mqttfast/jwt.key    # or auth_plugin_opt_secret
    auth_plugin_opt_audience mqtt                        # optional
    auth_plugin_opt_issuer https://id.example.com        # optional

A client connects with ``username`` = the token's ``sub`` claim and
``password`` = the token. Checks (RFC 7519 / RFC 7515, standard library only):
header ``alg`` must be exactly ``HS256`` (``none`` and everything else are
refused, so a forged header cannot switch algorithms); signature compared in
constant time; ``exp`` required, ``nbf``/``iat`` honoured with ``leeway``
seconds; ``aud``/``iss`` when configured; ``sub`` must equal the username.

A password that is not shaped like a JWT is *deferred* (``None``), so the
password file can still authenticate other users. Optional topic rights: a
``mqtt`` claim ``{"pub": [filters], "sub": [filters]}`` is remembered per
client id after a successful login and used for publish/subscribe/receive.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from .acl import _dollar_blocked, _filter_problem, _matches, _overlaps
from .auth import AuthPlugin

__all__ = ["JwtAuthPlugin", "make_hs256_token"]

MAX_TOKEN_BYTES = 8192
_Rights = tuple[list[list[str]], list[list[str]]]  # (publish filters, subscribe filters)


def _b64url_decode(part: str) -> bytes:
    if not part or any(c in part for c in "=+/ \t\r\n"):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_hs256_token(claims: Mapping[str, Any], secret: bytes) -> str:
    """Sign ``claims`` with HS256 (for tests and for issuing tokens in examples)."""
    header = _b64url_encode(
        json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode()
    )
    payload = _b64url_encode(json.dumps(dict(claims), separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode("ascii")
    sig = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url_encode(sig)}"


class JwtAuthPlugin(AuthPlugin):
    def __init__(
        self, options: Mapping[str, Any] | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(options)
        self.clock = clock
        self.secret = self._read_secret()
        self.audience = self.options.get("audience")
        self.issuer = self.options.get("issuer")
        self.leeway = float(self.options.get("leeway", 30))
        self._rights: OrderedDict[tuple[str, str | None], _Rights] = OrderedDict()
        self._max_clients = int(self.options.get("max_clients", 100_000))

    def _read_secret(self) -> bytes:
        if "secret_file" in self.options:
            with open(self.options["secret_file"], "rb") as fh:
                secret = fh.read().strip()
        else:
            secret = self.options.get("secret", b"")
            secret = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
        if len(secret) < 32:
            # RFC 7518 3.2: an HS256 key must be at least 256 bits.
            raise ValueError("JWT secret must be at least 32 bytes")
        return secret

    def reload(self) -> None:
        self.secret = self._read_secret()

    # -------------------------------------------------------------- checking
    def verify_token(self, token: str) -> dict[str, Any] | None:
        """The claims of a valid token, or None."""
        if len(token) > MAX_TOKEN_BYTES or token.count(".") != 2:
            return None
        head_s, body_s, sig_s = token.split(".")
        try:
            header = json.loads(_b64url_decode(head_s))
            sig = _b64url_decode(sig_s)
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return None
        if not isinstance(header, dict) or header.get("alg") != "HS256" or "crit" in header:
            return None
        expected = hmac.new(
            self.secret, f"{head_s}.{body_s}".encode("ascii"), hashlib.sha256
        ).digest()
        if not hmac.compare_digest(expected, sig):
            return None
        try:
            claims = json.loads(_b64url_decode(body_s))
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return None
        if not isinstance(claims, dict):
            return None
        now = self.clock()
        exp, nbf, iat = claims.get("exp"), claims.get("nbf"), claims.get("iat")
        if not isinstance(exp, (int, float)) or isinstance(exp, bool) or now > exp + self.leeway:
            return None
        for ts in (nbf, iat):
            if ts is not None and (not isinstance(ts, (int, float)) or now + self.leeway < ts):
                return None
        if self.issuer is not None and claims.get("iss") != self.issuer:
            return None
        if self.audience is not None:
            aud = claims.get("aud")
            auds = aud if isinstance(aud, list) else [aud]
            if self.audience not in auds:
                return None
        return claims

    def authenticate(
        self, client_id: str, username: str | None, password: bytes | None, peer: Any
    ) -> bool | int | None:
        # A new login never inherits rights remembered from an earlier one.
        self._rights.pop((client_id, username), None)
        if password is None:
            return None
        try:
            token = bytes(password).decode("ascii")
        except UnicodeDecodeError:
            return None
        if token.count(".") != 2:
            return None  # not a JWT: let the password file decide
        claims = self.verify_token(token)
        if claims is None or username is None or claims.get("sub") != username:
            return False
        self._remember_rights((client_id, username), claims.get("mqtt"))
        return True

    def _remember_rights(self, key: tuple[str, str | None], rights: Any) -> None:
        if not isinstance(rights, dict):
            return

        def filters(key: str) -> list[list[str]]:
            items = rights.get(key, [])
            return (
                [f.split("/") for f in items if isinstance(f, str) and _filter_problem(f) is None]
                if isinstance(items, list)
                else []
            )

        self._rights[key] = (filters("pub"), filters("sub"))
        if len(self._rights) > self._max_clients:
            self._rights.popitem(last=False)

    # ---------------------------------------------------------- authorisation
    @staticmethod
    def _dollar_ok(rule: list[str], target: str) -> bool:
        return not target.startswith("$") or rule[0].startswith("$")

    def authorise_publish(self, client_id: str, username: str | None, topic: str) -> bool | None:
        rights = self._rights.get((client_id, username))
        if rights is None:
            return None
        levels = topic.split("/")
        return any(self._dollar_ok(r, topic) and _matches(r, levels) for r in rights[0])

    def authorise_subscribe(
        self, client_id: str, username: str | None, topic_filter: str
    ) -> bool | None:
        rights = self._rights.get((client_id, username))
        if rights is None:
            return None
        levels = topic_filter.split("/")
        return any(
            self._dollar_ok(r, topic_filter)
            and not _dollar_blocked(r[0], levels[0])
            and _overlaps(r, levels)
            for r in rights[1]
        )

    def authorise_receive(self, client_id: str, username: str | None, topic: str) -> bool | None:
        rights = self._rights.get((client_id, username))
        if rights is None:
            return None
        levels = topic.split("/")
        return any(self._dollar_ok(r, topic) and _matches(r, levels) for r in rights[1])
