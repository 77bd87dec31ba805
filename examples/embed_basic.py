#!/usr/bin/env python3
"""Embed a broker in an asyncio program: a Python callback sees the devices' messages
and answers them, a paho-free round trip through the broker itself.

    python3 examples/embed_basic.py            # serves on 127.0.0.1:<free port> for 2 s
    python3 examples/embed_basic.py --port 1883 --forever
"""

from __future__ import annotations

import argparse
import asyncio

import mqttfast


async def main(port: int, forever: bool) -> None:
    async with mqttfast.Broker(port=port) as broker:
        print(f"listening on {broker.addresses}")

        async def on_temperature(msg: mqttfast.embed.ReceivedMessage) -> None:
            value = float(msg.payload)
            print(f"{msg.topic} = {value} (from {msg.origin or 'the broker'})")
            if value > 30:
                await broker.publish("alerts/heat", f"{msg.topic}: {value}", qos=1)

        broker.subscribe("sensors/+/temperature", on_temperature, qos=1)
        alerts = broker.subscribe("alerts/#", lambda m: print("ALERT", m.payload.decode()))

        # Any MQTT client may publish here (mosquitto_pub -p PORT -t sensors/k/temperature -m 31);
        # the broker can publish itself too:
        await broker.publish("sensors/kitchen/temperature", b"21.5", qos=1, retain=True)
        await broker.publish("sensors/attic/temperature", b"33.0", qos=1)
        await asyncio.sleep(0.1)
        print(
            "retained:", {t: m.payload for t, m in broker.retained.items() if not t.startswith("$")}
        )
        print("clients:", broker.clients, "subscriptions:", broker.subscriptions)
        alerts.unsubscribe()
        if forever:
            await asyncio.Event().wait()
        await asyncio.sleep(2)
    print("stopped")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--forever", action="store_true")
    a = ap.parse_args()
    try:
        asyncio.run(main(a.port, a.forever))
    except KeyboardInterrupt:
        pass
