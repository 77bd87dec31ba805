"""Plug-ins loaded by dotted path in the app tests."""

from __future__ import annotations

from typing import Any

import mqttfast


class TokenAuth(mqttfast.Plugin):
    """Accepts a client whose password is options["token"]; refuses anyone else."""

    def authenticate(self, client: Any, username: str | None, password: bytes | None) -> bool:
        return password == self.options["token"].encode()
