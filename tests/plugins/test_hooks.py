"""Plug-in hooks through a real broker with real paho clients (v3.1.1 and v5)."""

from __future__ import annotations

import asyncio
import time

import pytest

import mqttfast
from mqttfast.core.hooks import Hooks
from mqttfast.plugins import PluginError, PluginHooks
from mqttfast.plugins.manager import MAX_WAITING
from tests.embed.aio_paho import AioPaho, until

from .sample import Raiser, Recorder, SlowAsync

pytestmark = pytest.mark.timeout(40)


def test_every_hook_in_order(run):
    """authenticate, on_connect, authorise_subscribe, on_subscribe, authorise_publish,
    on_publish, on_deliver, on_unsubscribe, on_disconnect (client reason code 0)."""

    async def main():
        rec = Recorder({"tick": 0.1})
        async with mqttfast.Broker(port=0, plugins=[rec]) as broker:
            sub = AioPaho(broker.port, "sub", 5)
            await sub.connect()
            assert await sub.subscribe("t/#", 1) == [1]
            pub = AioPaho(broker.port, "pub", 4)
            await pub.connect(username="bob", password="x")
            await pub.publish("t/1", b"hello", 1)
            await sub.received(1)
            sub.c.unsubscribe("t/#")
            await until(lambda: rec.names("on_unsubscribe"), what="on_unsubscribe")
            pub.close()
            await until(lambda: rec.names("on_disconnect"), what="on_disconnect")
            await until(lambda: rec.ticks >= 2, what="ticks")
            sub.close()
        ev = rec.events
        assert ("authenticate", "pub", "bob") in ev
        assert ("on_connect", "sub", 5) in ev and ("on_connect", "pub", 4) in ev
        assert ("authorise_subscribe", "sub", "t/#") in ev
        assert ("on_subscribe", "sub", "t/#", 1) in ev
        i = ev.index(("authorise_publish", "pub", "t/1"))
        assert ev[i + 1] == ("on_publish", "pub", "t/1", b"hello")
        assert ev[i + 2] == ("on_deliver", "sub", "t/1")
        assert ("on_unsubscribe", "sub", "t/#") in ev
        assert ("on_disconnect", "pub", "client", 0) in ev

    run(main)


def test_modify_drop_and_deny_with_reason_codes(run):
    """on_publish renames and rewrites; drops with 0x97 / 0x80 are told to v5
    publishers [MQTT-3.4.2-1 reason codes]; authorise_* refusals give 0x87."""

    async def main():
        rec = Recorder()
        async with mqttfast.Broker(port=0, plugins=[rec]) as broker:
            sub = AioPaho(broker.port, "sub", 5)
            await sub.connect()
            await sub.subscribe("#", 1)
            assert await sub.subscribe("forbidden/x", 1) == [0x87]
            pub = AioPaho(broker.port, "pub5", 5)
            await pub.connect()
            assert await pub.publish("rename/a", b"abc", 1) == 0
            msgs = await sub.received(1)
            assert (msgs[0].topic, msgs[0].payload) == ("renamed/a", b"ABC")
            assert await pub.publish("quota/a", b"x", 1) == 0x97
            assert await pub.publish("drop/a", b"x", 1) == 0x80
            assert await pub.publish("forbidden/a", b"x", 1) == 0x87
            # on_deliver skipped the only subscriber: nobody received it.
            assert await pub.publish("hidden/a", b"x", 1) == 0x10
            # 3.1.1 publishers get a normal ack for a dropped message.
            old = AioPaho(broker.port, "pub4", 4)
            await old.connect()
            assert await old.publish("quota/b", b"x", 1) == 0
            await pub.publish("t/end", b"end", 1)
            await until(lambda: any(m.topic == "t/end" for m in sub.messages), what="end")
            assert [m.topic for m in sub.messages] == ["renamed/a", "t/end"]
            refused = AioPaho(broker.port, "m", 5)
            rc = await refused.connect(username="mallory", password="x", expect_ok=False)
            assert rc.value == 0x86
            for c in (sub, pub, old, refused):
                c.close()

    run(main)


def test_raising_plugin_is_isolated(run, caplog):
    """A plug-in that raises costs the one message (PUBACK 0x83) or connection
    (CONNACK 0x83); the broker and everyone else carry on, and it is logged."""

    async def main():
        raiser = Raiser()
        async with mqttfast.Broker(port=0, plugins=[raiser, Recorder({"tick": 0.1})]) as broker:
            hooks = broker.core.hooks
            sub = AioPaho(broker.port, "sub", 5)
            await sub.connect()  # on_connect raised: still connected
            await sub.subscribe("#", 1)
            pub = AioPaho(broker.port, "pub", 5)
            await pub.connect()
            assert await pub.publish("boom/1", b"x", 1) == 0x83
            assert await pub.publish("ok/1", b"fine", 1) == 0  # on_deliver raised: delivered
            await sub.received(1)
            assert [m.topic for m in sub.messages] == ["ok/1"]
            bad = AioPaho(broker.port, "bad", 5)
            rc = await bad.connect(username="boom", password="x", expect_ok=False)
            assert rc.value == 0x83
            old = AioPaho(broker.port, "old", 4)
            await old.connect()
            assert await old.publish("boom/2", b"x", 1) == 0  # 3.1.1: dropped, plain ack
            await until(lambda: hooks.failures >= 5, what="failures counted")
            for c in (sub, pub, bad, old):
                c.close()
        assert "on_publish exploded" in caplog.text and "isolated" in caplog.text

    run(main)


def test_slow_async_plugin_does_not_stall_other_clients(run):
    """A slow async on_publish holds only its publisher's acknowledgement (and keeps that
    publisher's messages in order); other clients' messages flow meanwhile."""

    async def main():
        slow = SlowAsync({"delay": 1.5})
        async with mqttfast.Broker(port=0, plugins=[slow]) as broker:
            assert slow.started
            sub = AioPaho(broker.port, "sub", 5)
            await sub.connect()
            await sub.subscribe("#", 1)
            a = AioPaho(broker.port, "a", 5)
            b = AioPaho(broker.port, "b", 4)
            await a.connect()
            await b.connect()
            t0 = time.monotonic()
            mid_slow = a.publish_nowait("slow/1", b"s")
            mid_after = a.publish_nowait("fast/a", b"after-slow")
            await asyncio.sleep(0.1)
            assert await b.publish("fast/b", b"other", 1) == 0
            await until(lambda: any(m.topic == "fast/b" for m in sub.messages), what="fast/b")
            assert time.monotonic() - t0 < 1.0, "another client waited for the slow plug-in"
            assert mid_slow not in a.acks
            await until(lambda: mid_after in a.acks, timeout=5, what="slow ack")
            assert time.monotonic() - t0 >= 1.4
            await until(lambda: len(sub.messages) == 3, what="all messages")
            assert [(m.topic, m.payload) for m in sub.messages] == [
                ("fast/b", b"other"),
                ("slow/1", b"s+slow"),
                ("fast/a", b"after-slow"),
            ]
            for c in (sub, a, b):
                c.close()
        assert slow.stopped

    run(main)


def test_async_authenticate_and_hook_timeout(run):
    async def main():
        slow = SlowAsync({"delay": 3.0, "timeout": 0.3})
        async with mqttfast.Broker(port=0, plugins=[slow]) as broker:
            ok = AioPaho(broker.port, "ok", 5)
            await ok.connect(username="alice", password="secret")
            bad = AioPaho(broker.port, "bad", 5)
            assert (
                await bad.connect(username="alice", password="nope", expect_ok=False)
            ).value == 0x86
            t0 = time.monotonic()
            assert await ok.publish("slow/x", b"x", 1) == 0x83  # timed out
            assert time.monotonic() - t0 < 2.0
            for c in (ok, bad):
                c.close()

    run(main)


def test_loaded_from_config_and_entry_point(run, tmp_path, monkeypatch):
    dist = tmp_path / "fake_mqttfast_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fake-mqttfast-plugin\nVersion: 1.0\n"
    )
    (dist / "entry_points.txt").write_text(
        "[mqttfast.plugins]\nrecorder = tests.plugins.sample:Recorder\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    async def main():
        cfg = {
            "listener": [{"address": "127.0.0.1", "port": 0}],
            "plugin": [
                {"class": "tests.plugins.sample:SlowAsync", "options": {"delay": 0.1}},
                {"entry_point": "recorder"},
            ],
        }
        async with mqttfast.Broker(cfg) as broker:
            hooks = broker.core.hooks
            assert isinstance(hooks, PluginHooks)
            assert [p.name for p in hooks.plugins] == ["SlowAsync", "Recorder"]
            c = AioPaho(broker.port, "c", 5)
            await c.connect()
            assert await c.publish("slow/1", b"x", 1) == 0x10  # no subscribers
            assert hooks.plugins[1].names("on_publish")[0][3] == b"x+slow"  # ran in order
            c.close()

    run(main)
    from mqttfast.app.config import ConfigError

    with pytest.raises(ConfigError):
        mqttfast.Broker({"plugin": [{"klass": "x"}]})
    with pytest.raises(PluginError):
        run(_start, {"plugin": [{"class": "tests.plugins.sample:Nope"}]})


async def _start(cfg):
    async with mqttfast.Broker(cfg, port=0):
        pass


def test_no_plugins_no_event_cost(run):
    """Without plug-ins the core keeps its own Hooks: events and messages off, no deliver
    check; a plug-in with only connection hooks leaves the message path alone."""

    async def main():
        async with mqttfast.Broker(port=0) as broker:
            assert type(broker.core.hooks) is Hooks and not broker.core.hooks.events
            assert not broker.core.hooks.messages
            assert broker.core.router.deliver_check is None
            assert broker.core.router.receive_check is None

        class OnlyConnect(mqttfast.Plugin):
            def on_connect(self, client):
                pass

        async with mqttfast.Broker(port=0, plugins=[OnlyConnect()]) as broker:
            hooks = broker.core.hooks
            assert hooks.events and not hooks.messages
            assert broker.core.router.deliver_check is None

    run(main)


def test_async_authorise_subscribe_refused_at_load():
    class Bad(mqttfast.Plugin):
        async def authorise_subscribe(self, client, topic_filter, qos):
            return True

    with pytest.raises(PluginError):
        PluginHooks(None, [Bad()])


class Gate(mqttfast.Plugin):
    """on_publish waits for a gate on 'gated/' topics (async)."""

    def __init__(self, options=None):
        super().__init__(options)
        self.gate = asyncio.Event()
        self.hook_timeout = 30

    async def on_publish(self, client, message):
        if message.topic.startswith("gated/"):
            await self.gate.wait()


def test_flood_behind_a_slow_async_hook_is_bounded_and_ordered(run):
    """1500 messages behind a blocked async hook: the publisher is paused (bounded
    memory), others flow, and once the hook answers all arrive in order."""

    async def main():
        gate = Gate()
        async with mqttfast.Broker(port=0, plugins=[gate]) as broker:
            sub = AioPaho(broker.port, "sub", 5)
            await sub.connect()
            await sub.subscribe("#", 0)
            flood = AioPaho(broker.port, "flood", 4)
            await flood.connect()
            flood.publish_nowait("gated/first", b"0", 0)
            for i in range(1, 1500):
                flood.publish_nowait("free/x", str(i).encode(), 0)
            hooks = broker.core.hooks
            await until(
                lambda: (
                    len(
                        hooks.waiting.get(
                            next(
                                iter(c for c in broker.core.connections if c.client_id == "flood")
                            ),
                            (),
                        )
                    )
                    >= MAX_WAITING
                ),
                what="publisher queue at its bound",
            )
            await asyncio.sleep(0.3)
            waiting = len(next(iter(hooks.waiting.values())))
            # Reading paused at the bound exactly: the pause takes effect at the next
            # packet of the same read, and the message being decided counts.
            assert waiting == MAX_WAITING
            other = AioPaho(broker.port, "other", 5)
            await other.connect()
            await other.publish("side/x", b"still fine", 1)
            await until(lambda: any(m.topic == "side/x" for m in sub.messages), what="side")
            gate.gate.set()
            await until(lambda: len(sub.messages) == 1501, 15, "all flood messages")
            flood_payloads = [int(m.payload) for m in sub.messages if m.topic != "side/x"]
            assert flood_payloads == list(range(1500))
            assert not hooks.waiting
            for c in (sub, flood, other):
                c.close()

    run(main)
