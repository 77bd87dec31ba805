"""An auth plug-in loaded by dotted path from a config file in test_security_wiring."""

from __future__ import annotations

from mqttfast.app.security.auth import AuthPlugin


class OnlyNamedUser(AuthPlugin):
    """Accepts exactly options["user"] (any password); denies publishing to "forbidden/#"."""

    def authenticate(self, client_id, username, password, peer):  # type: ignore[no-untyped-def]
        return username == self.options.get("user")

    def authorise_publish(self, client_id, username, topic):  # type: ignore[no-untyped-def]
        return False if topic.startswith("forbidden/") else None


class SlowForOneUser(AuthPlugin):
    """Blocks (in the broker's worker thread) for options["delay"] s when the username is
    "slow"; accepts everyone."""

    def authenticate(self, client_id, username, password, peer):  # type: ignore[no-untyped-def]
        if username == "slow":
            import time

            time.sleep(float(self.options.get("delay", 3)))
        return True
