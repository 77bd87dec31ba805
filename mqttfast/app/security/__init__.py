"""Security building blocks: password files, ACLs, TLS contexts, login rate limiting, auth plug-ins.

Self-contained (no broker imports) so the broker wires them in through its auth hook:
see :class:`mqttfast.app.security.auth.Authenticator`.
"""

from .acl import AclFile, AclParseError, ClientAcl
from .auth import Authenticator, AuthPlugin, connack_code_v311, load_plugin
from .passwords import DEFAULT_ITERATIONS, PasswordFile, PasswordFileError, PasswordHash
from .ratelimit import LoginRateLimiter, source_key
from .tls import build_server_context, identity_from_peercert

__all__ = [
    "AclFile",
    "AclParseError",
    "ClientAcl",
    "AuthPlugin",
    "Authenticator",
    "connack_code_v311",
    "load_plugin",
    "DEFAULT_ITERATIONS",
    "PasswordFile",
    "PasswordFileError",
    "PasswordHash",
    "LoginRateLimiter",
    "source_key",
    "build_server_context",
    "identity_from_peercert",
]
