#!/usr/bin/env python3
"""Two brokers in one program joined by a bridge: "out" topics of the edge broker appear,
prefixed, on the central one, and commands flow back.

    python3 examples/embed_bridge.py
"""

from __future__ import annotations

import asyncio

import mqttfast


async def main() -> None:
    async with mqttfast.Broker(port=0) as central:
        edge_cfg = {
            "listener": [{"address": "127.0.0.1", "port": 0}],
            "bridge": [
                {
                    "name": "edge-1",
                    "address": "127.0.0.1",
                    "port": central.port,
                    "protocol_version": 5,
                    "topic": [
                        {
                            "pattern": "telemetry/#",
                            "direction": "out",
                            "qos": 1,
                            "remote_prefix": "edge-1/",
                        },
                        {
                            "pattern": "cmd/#",
                            "direction": "in",
                            "qos": 1,
                            "remote_prefix": "edge-1/",
                        },
                    ],
                }
            ],
        }
        async with mqttfast.Broker(edge_cfg) as edge:
            await asyncio.wait_for(edge.extensions.bridges[0].connected.wait(), 5)
            central.subscribe("edge-1/#", lambda m: print("central got", m.topic, m.payload))
            edge.subscribe("cmd/#", lambda m: print("edge got", m.topic, m.payload))
            await asyncio.sleep(0.2)  # the bridge's SUBSCRIBE reaches the central broker
            await edge.publish("telemetry/pump", b"on", qos=1)
            await central.publish("edge-1/cmd/pump", b"off", qos=1)
            await asyncio.sleep(0.5)


if __name__ == "__main__":
    asyncio.run(main())
