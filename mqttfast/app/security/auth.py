"""Authentication and authorisation in one object the broker calls.

The broker needs four questions answered; :class:`Authenticator` answers them
from (in order) plug-ins, then the password/ACL files:

* ``authenticate(client_id, username, password, peer) -> int``: an MQTT 5
  CONNACK reason code (0 = accept). Use :func:`connack_code_v311` for 3.1.1.
  CPU-heavy (PBKDF2): from asyncio call ``await authenticate_async(...)``.
* ``authorise_publish(client_id, username, topic) -> bool``
* ``authorise_subscribe(client_id, username, filter) -> bool``
* ``authorise_receive(client_id, username, topic) -> bool`` per delivered
  message, retained messages on subscribe included.

The broker builds it from ``[auth]`` (password and ACL files, the failed-login
limiter) and runs plug-ins beside it through the one plug-in dispatcher
(:mod:`mqttfast.plugins`). For library use it still accepts deprecated
:class:`~mqttfast.plugins.legacy_auth.AuthPlugin` objects (``plugins=``), asked
before the files; the first non-``None`` answer wins. ``reload()`` (SIGHUP)
re-reads the files; a file that fails to load keeps its previous contents and the
error is logged.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

from mqttfast.codec.constants import CONNACK_REASON_CODES, ConnackCode311, ReasonCode
from mqttfast.core.rate_limit import LoginRateLimiter, source_key
from mqttfast.plugins.legacy_auth import AuthPlugin
from mqttfast.plugins.loader import PluginError, import_class

from .acl import AclFile
from .passwords import PasswordFile

__all__ = ["AuthPlugin", "Authenticator", "connack_code_v311", "load_plugin"]

log = logging.getLogger("mqttfast.security.auth")

Peer = tuple[Any, ...] | str | None


def load_plugin(spec: str, options: Mapping[str, Any] | None = None) -> AuthPlugin:
    """Instantiate a deprecated ``AuthPlugin`` class for :class:`Authenticator`'s own
    ``plugins`` (library use; the broker loads every plug-in through
    :func:`mqttfast.plugins.loader.load_plugin`, which wraps AuthPlugins in Plugins)."""
    try:
        cls = import_class(spec)
    except PluginError as err:
        raise ValueError(str(err).replace("plug-in", "auth plug-in", 1)) from None
    if not issubclass(cls, AuthPlugin):
        raise ValueError(f"auth plug-in {spec!r}: {cls.__name__} is not an AuthPlugin subclass")
    return cls(options)


_V311: dict[int, int] = {
    ReasonCode.SUCCESS: ConnackCode311.ACCEPTED,
    ReasonCode.BAD_USER_NAME_OR_PASSWORD: ConnackCode311.BAD_USER_NAME_OR_PASSWORD,
}


def connack_code_v311(reason: int) -> int:
    """Map an MQTT 5 CONNACK reason code from :meth:`Authenticator.authenticate` to 3.1.1."""
    return int(_V311.get(reason, ConnackCode311.NOT_AUTHORIZED))


def _peer_host(peer: Peer) -> str | None:
    """The address part of a peer: ``(host, port, ...)``, ``"host:port"``, ``"[v6]:port"``,
    a bare address, or a unix socket path."""
    if isinstance(peer, tuple):
        return str(peer[0]) if peer else None
    if not peer:
        return None
    if peer.startswith("["):
        return peer[1:].partition("]")[0]
    # The transport writes "host:port" without brackets, so "::1:5555" is ambiguous;
    # IPv6 sources are keyed by /64 anyway, which makes the last group irrelevant.
    host, sep, port = peer.rpartition(":")
    if sep and port.isdigit():
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
            return host
        except ValueError:
            pass
    return peer


class Authenticator:
    """``allow_anonymous`` defaults to True unless a password file is configured."""

    def __init__(
        self,
        *,
        password_file: str | os.PathLike[str] | None = None,
        acl_file: str | os.PathLike[str] | None = None,
        allow_anonymous: bool | None = None,
        plugins: Iterable[AuthPlugin] = (),
        rate_limiter: LoginRateLimiter | None = None,
    ) -> None:
        self.password_file_path = password_file
        self.acl_file_path = acl_file
        self.allow_anonymous = (
            (password_file is None) if allow_anonymous is None else allow_anonymous
        )
        self.plugins = list(plugins)
        self.rate_limiter = rate_limiter if rate_limiter is not None else LoginRateLimiter()
        # Loaded eagerly: a broken file at start-up is a configuration error (raises).
        self.passwords: PasswordFile | None = (
            PasswordFile.load(password_file) if password_file is not None else None
        )
        self.acl: AclFile | None = AclFile.load(acl_file) if acl_file is not None else None
        # Counters for metrics.
        self.auth_failures = 0
        self.auth_rate_limited = 0

    # ---------------------------------------------------------- authentication
    def authenticate(
        self, client_id: str, username: str | None, password: bytes | str | None, peer: Peer = None
    ) -> int:
        """MQTT 5 CONNACK reason code for this CONNECT (0 = accepted). Blocks while hashing."""
        key = self._admit(peer)
        if key is None:
            return ReasonCode.CONNECTION_RATE_EXCEEDED
        password = password.encode("utf-8") if isinstance(password, str) else password
        reason = self._decide(client_id, username, password, peer)
        return self._account(key, client_id, username, reason)

    async def authenticate_async(
        self, client_id: str, username: str | None, password: bytes | str | None, peer: Peer = None
    ) -> int:
        """Like ``authenticate``; the hashing/plug-in part runs in the loop's default executor.

        Rate-limiter bookkeeping stays on the event-loop thread, so the limiter
        needs no lock, and a blocked source never costs a thread or a hash.
        """
        key = self._admit(peer)
        if key is None:
            return ReasonCode.CONNECTION_RATE_EXCEEDED
        password = password.encode("utf-8") if isinstance(password, str) else password
        loop = asyncio.get_running_loop()
        reason = await loop.run_in_executor(None, self._decide, client_id, username, password, peer)
        return self._account(key, client_id, username, reason)

    def _admit(self, peer: Peer) -> str | None:
        key = source_key(_peer_host(peer))
        if self.rate_limiter.allowed(key):
            return key
        self.auth_rate_limited += 1
        log.warning(
            "login from %s refused: too many failed logins (retry in %.0fs)",
            key,
            self.rate_limiter.retry_after(key),
        )
        return None

    def _account(self, key: str, client_id: str, username: str | None, reason: int) -> int:
        if reason == ReasonCode.SUCCESS:
            self.rate_limiter.record_success(key)
        elif reason != ReasonCode.NOT_AUTHORIZED or username is not None:
            # Anonymous-not-allowed is not a guess; every credential failure is.
            self.auth_failures += 1
            delay = self.rate_limiter.record_failure(key)
            log.info(
                "login failed for client %r user %r from %s (reason 0x%02X)%s",
                client_id,
                username,
                key,
                reason,
                f"; source blocked for {delay:.0f}s" if delay else "",
            )
        return reason

    def _decide(
        self, client_id: str, username: str | None, password: bytes | None, peer: Peer
    ) -> int:
        for plugin in self.plugins:
            try:
                answer = plugin.authenticate(client_id, username, password, peer)
            except Exception:
                log.exception("auth plug-in %s failed; refusing the login", type(plugin).__name__)
                return ReasonCode.NOT_AUTHORIZED
            if answer is None:
                continue
            if answer is True:
                return ReasonCode.SUCCESS
            if answer is False:
                return ReasonCode.BAD_USER_NAME_OR_PASSWORD
            if isinstance(answer, int) and answer in CONNACK_REASON_CODES:
                return int(answer)
            log.error(
                "auth plug-in %s returned %r, not a CONNACK reason code; refusing",
                type(plugin).__name__,
                answer,
            )
            return ReasonCode.NOT_AUTHORIZED
        if username is None:
            # Anonymous (an MQTT 5 password without a username included: no user to check).
            return ReasonCode.SUCCESS if self.allow_anonymous else ReasonCode.NOT_AUTHORIZED
        passwords = self.passwords
        if passwords is None:
            # No password file: a username is only a label when anonymous access is on.
            return (
                ReasonCode.SUCCESS if self.allow_anonymous else ReasonCode.BAD_USER_NAME_OR_PASSWORD
            )
        if passwords.verify(username, password):
            return ReasonCode.SUCCESS
        return ReasonCode.BAD_USER_NAME_OR_PASSWORD

    # ----------------------------------------------------------- authorisation
    def _ask(self, method: str, client_id: str, username: str | None, arg: str) -> bool | None:
        for plugin in self.plugins:
            try:
                answer = getattr(plugin, method)(client_id, username, arg)
            except Exception:
                log.exception("auth plug-in %s.%s failed; denying", type(plugin).__name__, method)
                return False
            if answer is not None:
                return bool(answer)
        return None

    def authorise_publish(self, client_id: str, username: str | None, topic: str) -> bool:
        answer = self._ask("authorise_publish", client_id, username, topic)
        if answer is not None:
            return answer
        acl = self.acl
        return True if acl is None else acl.can_publish(client_id, username, topic)

    def authorise_subscribe(self, client_id: str, username: str | None, topic_filter: str) -> bool:
        answer = self._ask("authorise_subscribe", client_id, username, topic_filter)
        if answer is not None:
            return answer
        acl = self.acl
        return True if acl is None else acl.can_subscribe(client_id, username, topic_filter)

    def authorise_receive(self, client_id: str, username: str | None, topic: str) -> bool:
        answer = self._ask("authorise_receive", client_id, username, topic)
        if answer is not None:
            return answer
        acl = self.acl
        return True if acl is None else acl.can_receive(client_id, username, topic)

    # ------------------------------------------------------------------ reload
    def reload(self) -> bool:
        """Re-read the password and ACL files (SIGHUP). True if everything reloaded.

        Each file is swapped in only when it loaded completely; on error the
        previous version stays active. Connected clients keep their connection;
        their next publish/subscribe/delivery uses the new rules.
        """
        ok = True
        if self.password_file_path is not None:
            try:
                self.passwords = PasswordFile.load(self.password_file_path)
                log.info(
                    "reloaded password file %s (%d users)",
                    self.password_file_path,
                    len(self.passwords),
                )
            except (OSError, ValueError) as exc:
                ok = False
                log.error("password file reload failed, keeping the previous one: %s", exc)
        if self.acl_file_path is not None:
            try:
                self.acl = AclFile.load(self.acl_file_path)
                log.info("reloaded ACL file %s", self.acl_file_path)
            except (OSError, ValueError) as exc:
                ok = False
                log.error("ACL file reload failed, keeping the previous one: %s", exc)
        for plugin in self.plugins:
            try:
                plugin.reload()
            except Exception as exc:
                ok = False
                log.error("auth plug-in %s reload failed: %s", type(plugin).__name__, exc)
        return ok
