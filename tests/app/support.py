"""Helpers of the app tests: an embedded broker on its own event-loop thread (so the
same blocking clients drive it and a broker process), paho clients, bounded waits."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt


def wait_until(cond: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.02)


class Paho:
    """A paho-mqtt client on its own network thread; received messages in ``got``."""

    def __init__(self, port: int, cid: str, **auth: str) -> None:
        self.got: list[mqtt.MQTTMessage] = []
        self.rc: list[int] = []
        c = self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid)
        if auth:
            c.username_pw_set(auth["username"], auth.get("password"))
        c.on_message = lambda _c, _u, m: self.got.append(m)
        c.on_connect = lambda _c, _u, _f, rc, _p: self.rc.append(rc.value)
        c.connect("127.0.0.1", port)
        c.loop_start()
        wait_until(lambda: self.rc, what=f"CONNACK for {cid}")

    def subscribe(self, topic: str, qos: int = 1) -> None:
        seen = len(self.got)
        done = threading.Event()
        self.client.on_subscribe = lambda *_: done.set()
        self.client.subscribe(topic, qos)
        assert done.wait(5), "no SUBACK"
        del seen

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos, retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def http_get(url: str, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


class EmbeddedBroker:
    """``mqttfast.Broker(config_path)`` running on an event loop in a background thread."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.broker: Any = None

    def _call(self, coro: Any, timeout: float = 20.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> EmbeddedBroker:
        import mqttfast

        self.thread.start()

        async def start() -> Any:
            self.broker = mqttfast.Broker(
                str(self.config) if isinstance(self.config, Path) else self.config
            )
            return await self.broker.start()

        self._call(start())
        return self

    def stop(self) -> None:
        try:
            if self.broker is not None:
                self._call(self.broker.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            self.loop.close()
