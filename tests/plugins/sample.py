"""Plug-ins used by the tests (loaded by dotted path, like a user's)."""

from __future__ import annotations

import asyncio

from mqttfast import Plugin


class Recorder(Plugin):
    """Every hook, synchronous, recording (hook, details) in order."""

    def __init__(self, options=None):
        super().__init__(options)
        self.events: list[tuple] = []
        self.ticks = 0
        self.tick_interval = float(self.options.get("tick", 1.0))

    def authenticate(self, client, username, password):
        self.events.append(("authenticate", client.client_id, username))
        if username == "mallory":
            return False
        return None

    def authorise_publish(self, client, topic, qos, retain):
        self.events.append(("authorise_publish", client.client_id, topic))
        return not topic.startswith("forbidden/")

    def authorise_subscribe(self, client, topic_filter, qos):
        self.events.append(("authorise_subscribe", client.client_id, topic_filter))
        return not topic_filter.startswith("forbidden/")

    def on_publish(self, client, message):
        self.events.append(("on_publish", client.client_id, message.topic, message.payload))
        if message.topic.startswith("rename/"):
            message.topic = "renamed/" + message.topic[len("rename/") :]
            message.payload = message.payload.upper()
        if message.topic.startswith("quota/"):
            return 0x97
        if message.topic.startswith("drop/"):
            return False
        return None

    def on_deliver(self, client, message):
        self.events.append(("on_deliver", client.client_id, message.topic))
        return not message.topic.startswith("hidden/")

    def on_subscribe(self, client, topic_filter, qos):
        self.events.append(("on_subscribe", client.client_id, topic_filter, qos))

    def on_unsubscribe(self, client, topic_filter):
        self.events.append(("on_unsubscribe", client.client_id, topic_filter))

    def on_connect(self, client):
        self.events.append(("on_connect", client.client_id, client.protocol_version))

    def on_disconnect(self, client, reason):
        self.events.append(("on_disconnect", client.client_id, reason.by, reason.reason_code))

    def on_tick(self, now):
        self.ticks += 1

    def names(self, hook):
        return [e for e in self.events if e[0] == hook]


class Raiser(Plugin):
    """Raises in every hook it has, for topics/clients that ask for it."""

    def authenticate(self, client, username, password):
        if username == "boom":
            raise RuntimeError("authenticate exploded")
        return None

    def on_publish(self, client, message):
        if message.topic.startswith("boom/"):
            raise RuntimeError("on_publish exploded")

    def on_connect(self, client):
        raise RuntimeError("on_connect exploded")

    def on_deliver(self, client, message):
        raise RuntimeError("on_deliver exploded")

    def on_tick(self, now):
        raise RuntimeError("on_tick exploded")


class SlowAsync(Plugin):
    """Async hooks: on_publish sleeps on 'slow/' topics; authenticate checks a password."""

    hook_timeout = 5.0

    def __init__(self, options=None):
        super().__init__(options)
        self.delay = float(self.options.get("delay", 1.0))
        self.hook_timeout = float(self.options.get("timeout", 5.0))
        self.started = self.stopped = False

    async def start(self, broker):
        self.started = True

    async def stop(self):
        self.stopped = True

    async def authenticate(self, client, username, password):
        await asyncio.sleep(0.05)
        if username == "alice":
            return password == b"secret"
        return None

    async def on_publish(self, client, message):
        if message.topic.startswith("slow/"):
            await asyncio.sleep(self.delay)
            message.payload = message.payload + b"+slow"
        return None

    async def on_connect(self, client):
        await asyncio.sleep(self.delay)  # a slow notification holds nobody up
