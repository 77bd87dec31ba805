"""What a bridged message's ``origin`` looks like to plug-ins and embedded subscribers
(issue 18 item 7): the bridge's name, never an internal ``\\x00`` id; and a client whose
id equals a bridge's name is still bridged out (the bridge recognises its own messages
by origin *and* the hops property)."""

from __future__ import annotations

import asyncio

import mqttfast
from tests.embed.aio_paho import AioPaho, until

from .test_bridge import bridge_cfg, listener


def test_origin_is_the_bridge_name(run):
    async def main():
        async with mqttfast.Broker(port=0) as remote:
            cfg = {
                "listener": listener(),
                "bridge": [
                    bridge_cfg("hub", remote.port, [{"pattern": "t/#", "direction": "both"}])
                ],
            }
            async with mqttfast.Broker(cfg) as local:
                await asyncio.wait_for(local.extensions.bridges[0].connected.wait(), 5)
                seen_local: list = []
                seen_remote: list = []
                local.subscribe("t/#", seen_local.append, qos=1)
                remote.subscribe("t/#", seen_remote.append, qos=1)
                far = AioPaho(remote.port, "far-client", 5)
                # A local client with the bridge's own name: its messages still go out.
                near = AioPaho(local.port, "hub", 5)
                await far.connect()
                await near.connect()
                await asyncio.sleep(0.3)  # the bridge's remote subscription is in place
                await far.publish("t/in", b"from-far", 1)
                await near.publish("t/out", b"from-near", 1)
                await until(
                    lambda: len(seen_local) >= 2 and len(seen_remote) >= 2, what="crossings"
                )
                await asyncio.sleep(0.5)  # a loop would show up as more messages
                by_topic = {m.topic: m.origin for m in seen_local}
                assert by_topic == {"t/in": "hub", "t/out": "hub"}
                assert len(seen_local) == 2 and len(seen_remote) == 2
                remote_origins = {m.topic: m.origin for m in seen_remote}
                # On the remote the bridge is an MQTT client with its client id.
                assert remote_origins == {"t/in": "far-client", "t/out": "mqttfast-bridge-hub"}
                assert not any("\x00" in (m.origin or "") for m in seen_local + seen_remote)
                far.close()
                near.close()

    run(main)
