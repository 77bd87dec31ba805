"""A real paho-mqtt client driven from asyncio tests without blocking the event loop
(the broker under test runs in that loop). Every wait is bounded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties as PahoProperties


async def until(cond: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Poll ``cond`` every 10 ms (yielding to the broker) until truthy, or fail."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


class AioPaho:
    def __init__(
        self,
        port: int,
        client_id: str,
        version: int = 5,
        clean_session: bool | None = None,
        **kw: Any,
    ) -> None:
        proto = mqtt.MQTTv5 if version == 5 else mqtt.MQTTv311
        self.c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=proto,
            clean_session=clean_session,
        )
        self.port = port
        self.version = version
        self.kw = kw
        self.messages: list[mqtt.MQTTMessage] = []
        self.connack: Any = None
        self.acks: dict[int, int] = {}  # mid -> PUBACK/PUBREC reason code
        self.subacks: dict[int, list[int]] = {}
        self.disconnected: Any = None
        self.c.on_connect = self._on_connect
        self.c.on_message = lambda c, u, m: self.messages.append(m)
        self.c.on_publish = self._on_publish
        self.c.on_subscribe = self._on_subscribe
        self.c.on_disconnect = self._on_disconnect

    def _on_connect(self, c: Any, u: Any, flags: Any, rc: Any, props: Any = None) -> None:
        self.connack = rc

    def _on_publish(self, c: Any, u: Any, mid: int, rc: Any, props: Any = None) -> None:
        self.acks[mid] = rc.value if hasattr(rc, "value") else int(rc)

    def _on_subscribe(self, c: Any, u: Any, mid: int, rcs: Any, props: Any = None) -> None:
        self.subacks[mid] = [r.value if hasattr(r, "value") else int(r) for r in rcs]

    def _on_disconnect(self, c: Any, u: Any, flags: Any, rc: Any, props: Any = None) -> None:
        self.disconnected = rc

    async def connect(
        self, username: str | None = None, password: str | None = None, expect_ok: bool = True
    ) -> Any:
        if username is not None:
            self.c.username_pw_set(username, password)
        self.c.connect_async("127.0.0.1", self.port, keepalive=30, **self.kw)
        self.c.loop_start()
        await until(
            lambda: self.connack is not None or self.disconnected is not None, what="CONNACK"
        )
        rc = self.connack
        if expect_ok:
            assert rc is not None and not rc.is_failure, f"connect refused: {rc}"
        return rc

    async def subscribe(self, topic: str, qos: int = 1) -> list[int]:
        _, mid = self.c.subscribe(topic, qos)
        return await until(lambda: self.subacks.get(mid), what=f"SUBACK {topic}")

    async def publish(
        self,
        topic: str,
        payload: bytes | str,
        qos: int = 1,
        retain: bool = False,
        user_props: list[tuple[str, str]] | None = None,
        timeout: float = 5.0,
    ) -> int:
        props = None
        if user_props and self.version == 5:
            props = PahoProperties(PacketTypes.PUBLISH)
            props.UserProperty = user_props
        info = self.c.publish(topic, payload, qos, retain, properties=props)
        if qos == 0:
            return 0
        return (
            await until(
                lambda: self.acks.get(info.mid, -1) != -1 and self.acks[info.mid] + 1,
                timeout,
                f"ack of {topic}",
            )
            - 1
        )

    def publish_nowait(self, topic: str, payload: bytes | str, qos: int = 1) -> int:
        return self.c.publish(topic, payload, qos).mid

    async def received(self, n: int, timeout: float = 5.0) -> list[mqtt.MQTTMessage]:
        await until(lambda: len(self.messages) >= n, timeout, f"{n} messages")
        return self.messages

    def close(self) -> None:
        try:
            self.c.disconnect()
        finally:
            self.c.loop_stop()
