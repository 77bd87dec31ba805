"""mqttfast.Broker inside an asyncio program, with real paho-mqtt clients."""

from __future__ import annotations

import asyncio
import socket

import pytest

import mqttfast
from mqttfast.app.config import Config, ConfigError
from mqttfast.codec.errors import MQTTError

from .aio_paho import AioPaho, until

pytestmark = pytest.mark.timeout(30)


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("version", [4, 5])
def test_paho_and_python_callbacks_exchange_messages(run, version):
    """A paho client and Python callbacks exchange QoS 0/1/2 messages both ways; the
    broker stops cleanly: port closed, client told (v5 DISCONNECT 0x8B), no task left."""

    async def main():
        sync_got, async_got = [], []

        async def slow_consumer(m):
            await asyncio.sleep(0.01)
            async_got.append(m)

        async with mqttfast.Broker(port=0) as broker:
            port = broker.port
            assert broker.ports == [port] and port > 0
            assert broker.addresses[0][:2] == ("127.0.0.1", port)
            h1 = broker.subscribe("dev/+/temp", sync_got.append)
            broker.subscribe("dev/#", slow_consumer, qos=1)
            c = AioPaho(port, "dev-1", version)
            await c.connect()
            assert await c.subscribe("cmd/#", 2) == [2]
            for qos in (0, 1, 2):
                await c.publish("dev/1/temp", f"t{qos}".encode(), qos)
            await until(lambda: len(sync_got) == 3 and len(async_got) == 3, what="callbacks")
            assert [m.payload for m in sync_got] == [b"t0", b"t1", b"t2"]
            assert [m.qos for m in sync_got] == [0, 1, 2]
            assert [m.qos for m in async_got] == [0, 1, 1]  # capped by the subscription
            assert all(m.origin == "dev-1" for m in sync_got)
            # The broker publishes to the client.
            assert await broker.publish("cmd/1", b"reboot", qos=1) == 1
            assert await broker.publish("cmd/2", "text payload", qos=2, retain=True) == 1
            msgs = await c.received(2)
            assert [(m.topic, m.payload, m.qos) for m in msgs] == [
                ("cmd/1", b"reboot", 1),
                ("cmd/2", b"text payload", 2),
            ]
            # Views.
            assert [ci.client_id for ci in broker.clients] == ["dev-1"]
            assert broker.clients[0].protocol_version == version
            assert broker.sessions["dev-1"].connected
            assert [(s.client_id, s.topic_filter, s.qos) for s in broker.subscriptions] == [
                ("dev-1", "cmd/#", 2)
            ]
            assert broker.retained["cmd/2"].payload == b"text payload"
            assert not any(cid.startswith("\x00") for cid in broker.sessions)
            h1.unsubscribe()
            await c.publish("dev/1/temp", b"after", 1)
            await until(lambda: len(async_got) == 4, what="async callback")
            assert len(sync_got) == 3  # unsubscribed
        assert not broker.running
        await until(lambda: c.disconnected is not None, what="client disconnected")
        if version == 5:
            assert c.disconnected.value == 0x8B  # server shutting down
        c.close()
        assert not port_open(port)

    run(main)


def test_retained_messages_reach_a_new_python_subscription(run):
    async def main():
        async with mqttfast.Broker(port=0) as broker:
            c = AioPaho(broker.port, "r", 4)
            await c.connect()
            await c.publish("state/a", b"1", 1, retain=True)
            got = []
            broker.subscribe("state/#", got.append)
            assert [(m.topic, m.payload, m.retain) for m in got] == [("state/a", b"1", True)]
            c.close()

    run(main)


def test_python_subscription_no_local_and_shared(run):
    async def main():
        async with mqttfast.Broker(port=0) as broker:
            mine = []
            h = broker.subscribe("x/#", mine.append, no_local=True)
            await h.publish("x/1", b"own")  # No Local: not back to itself
            await broker.publish("x/2", b"other")
            assert [m.payload for m in mine] == [b"other"]
            a, b = [], []
            broker.subscribe("$share/g/job/#", a.append)
            broker.subscribe("$share/g/job/#", b.append)
            for i in range(10):
                await broker.publish("job/x", str(i))
            assert len(a) + len(b) == 10 and a and b
            with pytest.raises(MQTTError):
                await broker.publish("bad/+", b"")
            with pytest.raises(MQTTError):
                broker.subscribe("a/#/b", mine.append)

    run(main)


def test_configured_by_config_object_dict_and_overrides(run, tmp_path):
    async def main():
        cfg = {
            "listener": [{"address": "127.0.0.1", "port": 0}],
            "limits": {"max_inflight": 7},
            "mqtt": {"maximum_qos": 1},
        }
        async with mqttfast.Broker(cfg, max_queued_messages=5) as broker:
            s = broker.core.settings
            assert (s.max_inflight, s.maximum_qos, s.max_queued_messages) == (7, 1, 5)
            assert s.persistence == "off"  # embedding default unless configured
            c = AioPaho(broker.port, "q", 5)
            await c.connect()
            assert await c.subscribe("a", 2) == [1]  # granted QoS capped by maximum_qos
            c.close()
        toml = tmp_path / "b.toml"
        toml.write_text('[[listener]]\naddress = "127.0.0.1"\nport = 0\n[sys]\ninterval = 0\n')
        async with mqttfast.Broker(str(toml)) as broker:
            assert broker.core.settings.sys_interval == 0 and port_open(broker.port)
        async with mqttfast.Broker(Config(), port=0) as broker:
            assert port_open(broker.port)

    run(main)
    with pytest.raises(TypeError):
        mqttfast.Broker(no_such_setting=1)
    with pytest.raises(ConfigError) as err:
        mqttfast.Broker({"limits": {"max_inflight": -1}})
    assert "limits.max_inflight" in str(err.value)


def test_two_brokers_in_one_loop_and_restart(run):
    async def main():
        async with mqttfast.Broker(port=0) as a, mqttfast.Broker(port=0) as b:
            assert a.port != b.port and port_open(a.port) and port_open(b.port)
        broker = mqttfast.Broker(port=0)
        await broker.start()
        port = broker.port
        await broker.stop()
        await broker.stop()  # idempotent
        assert not port_open(port)

    run(main)


def test_import_codec_stays_light():
    import subprocess
    import sys

    code = (
        "import sys, mqttfast.codec; "
        "assert 'asyncio' not in sys.modules and 'mqttfast.embed' not in sys.modules; "
        "import mqttfast; assert mqttfast.Broker.__module__ == 'mqttfast.embed'; "
        "assert mqttfast.Plugin.__name__ == 'Plugin'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


def test_runs_under_uvloop_too():
    """The same API in a uvloop event loop (what the mqttfast command uses)."""
    uvloop = pytest.importorskip("uvloop")

    async def main():
        got = []
        async with mqttfast.Broker(port=0) as broker:
            broker.subscribe("u/#", got.append)
            c = AioPaho(broker.port, "u", 5)
            await c.connect()
            await c.publish("u/1", b"fast", 1)
            await until(lambda: got, what="message under uvloop")
            c.close()
        assert got[0].payload == b"fast"
        left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert not left

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
