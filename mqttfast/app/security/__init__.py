"""Security building blocks: password files, ACLs, TLS contexts, the Authenticator.

The failed-login limiter lives with the other rate limiter in mqttfast.core.rate_limit;
authentication plug-ins are Plugins (mqttfast.plugins; AuthPlugin is deprecated).

Wired into the broker by mqttfast.app.assembly through the core's hook seam:
see :class:`mqttfast.app.security.auth.Authenticator`.
"""

from mqttfast.core.rate_limit import LoginRateLimiter, source_key

from .acl import AclFile, AclParseError, ClientAcl
from .auth import Authenticator, AuthPlugin, connack_code_v311, load_plugin
from .passwords import DEFAULT_ITERATIONS, PasswordFile, PasswordFileError, PasswordHash
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
