#!/usr/bin/env python3
"""A plug-in in a few lines: tag every message with its publisher, refuse a topic,
count connections; plus the bundled JSON-lines message logger.

    python3 examples/embed_plugin.py
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import mqttfast
from mqttfast.plugins import Properties
from mqttfast.plugins.message_logger import MessageLogger


class Tagger(mqttfast.Plugin):
    connected = 0

    def authorise_publish(self, client, topic, qos, retain):
        return not topic.startswith("admin/")  # v5 publishers get 0x87

    def on_publish(self, client, message):
        props = message.properties.copy() if message.properties else Properties()
        props.user_property = (props.user_property or []) + [("publisher", client.client_id)]
        message.properties = props
        if message.payload == b"":
            return 0x99  # Payload format invalid: dropped, a v5 publisher is told

    def on_connect(self, client):
        self.connected += 1

    async def on_disconnect(self, client, reason):
        print(f"{client.client_id} left ({reason.by}, reason {reason.reason_code})")


async def main() -> None:
    log_path = Path(tempfile.mkdtemp()) / "messages.jsonl"
    logger = MessageLogger({"path": str(log_path), "topics": ["#"], "flush_interval": 0.2})
    async with mqttfast.Broker(port=0, plugins=[Tagger(), logger]) as broker:
        print("port", broker.port, "- try: mosquitto_pub -V 5 -p", broker.port, "-t a -m hi")
        _reader, writer = await asyncio.open_connection("127.0.0.1", broker.port)
        # A raw MQTT 3.1.1 client in two packets: CONNECT "raw", PUBLISH "a/b" QoS 0 "hello".
        writer.write(
            bytes.fromhex("100f00044d5154540402003c0003726177") + b"\x30\x0a\x00\x03a/bhello"
        )
        await asyncio.sleep(0.3)
        writer.close()
        await asyncio.sleep(0.3)
    print(log_path.read_text())


if __name__ == "__main__":
    asyncio.run(main())
