"""How ``[auth]`` becomes the core's security hooks (used by mqttfast.app.assembly and
``mqttfast check-config``):

* :func:`anonymous_policy`: issue 18's rule. A listener reachable from other hosts
  refuses anonymous clients unless a password file or an authenticating plug-in exists,
  or ``allow_anonymous = true`` asks for it (then a WARNING names the addresses);
* :func:`build_authenticator`: the Authenticator of the password/ACL files and the
  failed-login limiter (file errors name the key and the path);
* :func:`make_security_hooks`: those as the core's hooks, password checks off the loop.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable, Iterable
from typing import Any

from mqttfast.plugins.base import Plugin
from mqttfast.transport.listeners import ListenerConfig

from ..schema import Config, ConfigError

log = logging.getLogger("mqttfast")


def is_loopback(lc: ListenerConfig) -> bool:
    """A unix socket or a loopback address (127.0.0.0/8, ::1, "localhost")."""
    if lc.unix_path:
        return True
    if lc.address == "localhost":
        return True
    try:
        return ipaddress.ip_address(lc.address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False  # a host name: assume it is reachable from elsewhere


def build_authenticator(cfg: Config, allow_anonymous: bool | None) -> Any:
    """The Authenticator of ``[auth]`` (files loaded now: errors name key and path)."""
    from mqttfast.core.rate_limit import LoginRateLimiter

    from .auth import Authenticator

    a = cfg.auth
    errors: list[str] = []
    try:
        limiter = LoginRateLimiter(
            burst=a.rate_limit.burst,
            base_delay=a.rate_limit.base_delay,
            max_delay=a.rate_limit.max_delay,
        )
    except ValueError as err:
        errors.append(f"auth.rate_limit: {err}")
        limiter = None
    try:
        auth = Authenticator(
            password_file=a.password_file,
            acl_file=a.acl_file,
            allow_anonymous=allow_anonymous,
            rate_limiter=limiter,
        )
    except (OSError, ValueError) as err:
        key = "acl_file" if a.acl_file and a.acl_file in str(err) else "password_file"
        if isinstance(err, OSError) and err.filename:
            key = "acl_file" if str(err.filename) == str(a.acl_file) else "password_file"
        path = getattr(a, key)
        errors.append(f"auth.{key}: {path}: {getattr(err, 'strerror', None) or err}")
        auth = None
    if errors:
        raise ConfigError(errors, cfg.source)
    return auth


def make_security_hooks(auth: Any) -> Any:
    """SecurityHooks whose password check runs off the event loop (deferred CONNACK)."""
    from mqttfast.codec.constants import ReasonCode
    from mqttfast.core.hooks import Hooks

    from .hooks import SecurityHooks

    class LoopSecurityHooks(SecurityHooks):
        def begin_authenticate(
            self,
            client: Any,
            username: str | None,
            password: bytes | None,
            done: Callable[[int], None],
        ) -> int | None:
            a = self.auth
            if username is None or a.passwords is None:
                return self.authenticate(client, username, password)  # nothing to hash
            task = asyncio.get_running_loop().create_task(
                a.authenticate_async(
                    client.client_id, username, password, getattr(client, "peer", None)
                )
            )

            def finished(t: asyncio.Task) -> None:
                if t.cancelled():
                    return
                exc = t.exception()
                if exc is not None:
                    log.error("authentication failed with %r; refusing", exc)
                    done(ReasonCode.UNSPECIFIED_ERROR)
                else:
                    done(int(t.result()))

            task.add_done_callback(finished)
            return None

    if auth.acl is None:
        # Nothing can deny a delivery: keep the per-delivery check off the hot path
        # (the core only calls authorise_receive when a hooks class overrides it).
        class NoReadCheckHooks(LoopSecurityHooks):
            authorise_receive = Hooks.authorise_receive

        return NoReadCheckHooks(auth)
    return LoopSecurityHooks(auth)


def _authenticating(plugins: Iterable[Plugin]) -> bool:
    return any(callable(getattr(p, "authenticate", None)) for p in plugins)


def anonymous_policy(cfg: Config, plugins: list[Plugin]) -> bool | None:
    """``allow_anonymous`` for the Authenticator (None: its own default), with the log
    lines of issue 18: a listener reachable from other hosts refuses anonymous clients
    unless a password file or an authenticating plug-in exists or anonymous access is
    asked for explicitly (then a WARNING names the addresses)."""
    a = cfg.auth
    exposed = [lc.label() for lc in cfg.listener if not is_loopback(lc)]
    if not exposed:
        return a.allow_anonymous
    where = ", ".join(exposed)
    if a.allow_anonymous is True:
        log.warning(
            "anonymous clients are accepted on %s, reachable from other hosts "
            "(allow_anonymous); anyone who can reach it may publish and subscribe",
            where,
        )
        return True
    if a.allow_anonymous is None and not a.password_file and not _authenticating(plugins):
        log.warning(
            "%s is reachable from other hosts and no password_file or authentication "
            "plug-in is configured: anonymous clients are refused; give --allow-anonymous "
            "(auth.allow_anonymous = true) to accept them, or a password file",
            where,
        )
        return False
    return a.allow_anonymous


__all__ = ["anonymous_policy", "build_authenticator", "is_loopback", "make_security_hooks"]
