"""Authentication (and publish authorisation) by an HTTP endpoint, the EMQX pattern.

::

    [[plugin]]
    class = "mqttfast.plugins.http_auth:HttpAuth"
    options = { url = "http://127.0.0.1:8080/auth", acl_url = "http://127.0.0.1:8080/acl" }

On CONNECT the plug-in POSTs ``{"client_id", "username", "password", "peer"}``
(password as text, or ``password_b64`` when not UTF-8) to ``url``. The answer
decides, as EMQX 5's HTTP authenticator: a 2xx with JSON
``{"result": "allow" | "deny" | "ignore"}`` (``ignore``: next plug-in / the
password file); a 2xx without that body allows; 401/403 deny (0x86);
any other status, a timeout or a network error gives ``on_error``
("deny": 0x86, default; "ignore"; or "unavailable": 0x88 Server unavailable).

With ``acl_url``, every client PUBLISH is asked too:
``{"action": "publish", "client_id", "username", "topic", "qos", "retain"}``;
``deny`` drops it (v5 publishers: 0x87). Answers are cached for ``cache_ttl``
seconds (default 10) per (client, topic). The HTTP call is async: only the
connecting/publishing client waits for it.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from typing import Any

from mqttfast.codec.constants import ReasonCode

from ._http import check_url, post_json
from .base import Plugin

log = logging.getLogger("mqttfast.plugins.http_auth")


class HttpAuth(Plugin):
    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        o = self.options
        self.url = str(o.get("url") or "")
        check_url(self.url)
        self.acl_url = str(o.get("acl_url") or "")
        if self.acl_url:
            check_url(self.acl_url)
        else:
            self.authorise_publish = None  # type: ignore[assignment]
        self.timeout = float(o.get("timeout", 5.0))
        self.hook_timeout = self.timeout + 1.0
        self.on_error = str(o.get("on_error", "deny"))
        if self.on_error not in ("deny", "ignore", "unavailable"):
            raise ValueError("http_auth: on_error must be deny, ignore or unavailable")
        self.cache_ttl = float(o.get("cache_ttl", 10.0))
        self.headers = {str(k): str(v) for k, v in dict(o.get("headers", {})).items()}
        self.cache: dict[tuple[str, str, str], tuple[float, bool | None]] = {}

    async def _ask(self, url: str, body: dict) -> str:
        """ "allow", "deny", "ignore" or "error"."""
        try:
            status, data = await post_json(url, body, self.timeout, self.headers)
        except (TimeoutError, OSError, ValueError, EOFError) as exc:
            log.warning("http auth %s: %r", url, exc)
            return "error"
        if status in (401, 403):
            return "deny"
        if not 200 <= status < 300:
            log.warning("http auth %s: HTTP %d", url, status)
            return "error"
        try:
            result = json.loads(data or b"{}").get("result", "allow")
        except (ValueError, AttributeError):
            result = "allow"
        return result if result in ("allow", "deny", "ignore") else "deny"

    async def authenticate(
        self, client: Any, username: str | None, password: bytes | None
    ) -> bool | int | None:
        body: dict[str, Any] = {
            "client_id": client.client_id,
            "username": username,
            "peer": client.peer,
        }
        if password is not None:
            try:
                body["password"] = password.decode("utf-8")
            except UnicodeDecodeError:
                body["password_b64"] = base64.b64encode(password).decode("ascii")
        answer = await self._ask(self.url, body)
        if answer == "allow":
            return True
        if answer == "deny":
            return False
        if answer == "ignore":
            return None
        if self.on_error == "ignore":
            return None
        if self.on_error == "unavailable":
            return ReasonCode.SERVER_UNAVAILABLE
        return False

    async def authorise_publish(
        self, client: Any, topic: str, qos: int, retain: bool
    ) -> bool | None:
        key = (client.client_id, client.username or "", topic)
        now = time.monotonic()
        hit = self.cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        answer = await self._ask(
            self.acl_url,
            {
                "action": "publish",
                "client_id": client.client_id,
                "username": client.username,
                "topic": topic,
                "qos": qos,
                "retain": retain,
            },
        )
        verdict = {"allow": True, "deny": False, "ignore": None}.get(
            answer, None if self.on_error == "ignore" else False
        )
        if len(self.cache) > 10000:
            self.cache.clear()
        self.cache[key] = (now + self.cache_ttl, verdict)
        return verdict
