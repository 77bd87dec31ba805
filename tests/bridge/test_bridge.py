"""Bridges ([[bridge]]): two mqttfast brokers and one Debian mosquitto on loopback ports,
real paho clients at every end."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
from collections import Counter

import pytest

import mqttfast
from mqttfast.app.bridge import parse_bridge_tables
from mqttfast.app.config import ConfigError
from tests.embed.aio_paho import AioPaho, until
from tests.helpers.broker import free_port, port_accepts

pytestmark = pytest.mark.timeout(60)


class Mosquitto:
    """Debian's mosquitto on a loopback port (optionally with persistence)."""

    def __init__(self, tmp_path, port: int | None = None, persistence: bool = False) -> None:
        self.binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        assert os.path.exists(self.binary), "mosquitto is not installed"
        self.port = port or free_port()
        self.dir = tmp_path
        conf = tmp_path / "mosquitto.conf"
        # user root: as root, mosquitto would switch to "mosquitto", who cannot write tmp_path.
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "log_dest none",
            "user root" if os.geteuid() == 0 else "",
            f"persistence {'true' if persistence else 'false'}",
            f"persistence_location {tmp_path}/",
        ]
        conf.write_text("\n".join(lines) + "\n")
        self.conf = conf
        self.proc: subprocess.Popen | None = None

    async def start(self) -> Mosquitto:
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        await until(lambda: port_accepts(self.port), 5, "mosquitto listening")
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


def bridge_cfg(name, port, topics, version=5, **kw):
    return {
        "name": name,
        "address": "127.0.0.1",
        "port": port,
        "protocol_version": version,
        "reconnect_min": 0.1,
        "reconnect_max": 0.5,
        "keepalive": 10,
        "topic": topics,
        **kw,
    }


def listener():
    return [{"address": "127.0.0.1", "port": 0}]


def test_messages_cross_both_ways_with_remapping(run, tmp_path):
    """A bridges to B (MQTT 5) and to mosquitto (MQTT 3.1.1, try_private): each message
    crosses once, remapped, in both directions; nothing comes back (no loops)."""

    async def main():
        mosq = await Mosquitto(tmp_path).start()
        try:
            async with mqttfast.Broker(port=0) as b:
                cfg = {
                    "listener": listener(),
                    "bridge": [
                        bridge_cfg(
                            "to-b",
                            b.port,
                            [
                                {
                                    "pattern": "sensors/#",
                                    "direction": "out",
                                    "qos": 1,
                                    "remote_prefix": "site-a/",
                                },
                                {
                                    "pattern": "cmd/#",
                                    "direction": "in",
                                    "qos": 1,
                                    "local_prefix": "from-b/",
                                    "remote_prefix": "site-a/",
                                },
                            ],
                        ),
                        bridge_cfg(
                            "to-m",
                            mosq.port,
                            [
                                {
                                    "pattern": "x/#",
                                    "direction": "both",
                                    "qos": 1,
                                    "local_prefix": "local/",
                                    "remote_prefix": "remote/",
                                }
                            ],
                            version=4,
                        ),
                    ],
                }
                async with mqttfast.Broker(cfg) as a:
                    bridges = {br.cfg.name: br for br in a.extensions.bridges}
                    for br in bridges.values():
                        await asyncio.wait_for(br.connected.wait(), 5)
                    ca, cb, cm = (
                        AioPaho(a.port, "ca", 5),
                        AioPaho(b.port, "cb", 5),
                        AioPaho(mosq.port, "cm", 4),
                    )
                    for c in (ca, cb, cm):
                        await c.connect()
                    await ca.subscribe("#", 1)
                    await cb.subscribe("#", 1)
                    await cm.subscribe("#", 1)
                    await asyncio.sleep(0.3)  # the bridges' remote SUBSCRIBEs are in place
                    await ca.publish("sensors/t1", b"21.5", 1)  # A -> B
                    await cb.publish("site-a/cmd/reboot", b"now", 1)  # B -> A
                    await ca.publish("local/x/1", b"to-m", 1)  # A -> mosquitto
                    await cm.publish("remote/x/2", b"from-m", 1)  # mosquitto -> A
                    await until(
                        lambda: (
                            len(ca.messages) >= 4
                            and len(cb.messages) >= 2
                            and len(cm.messages) >= 2
                        ),
                        what="all crossings",
                    )
                    await asyncio.sleep(1.0)  # a loop would show up as more messages
                    seen = lambda c: Counter((m.topic, m.payload) for m in c.messages)  # noqa
                    assert seen(ca) == Counter(
                        {
                            ("sensors/t1", b"21.5"): 1,
                            ("from-b/cmd/reboot", b"now"): 1,
                            ("local/x/1", b"to-m"): 1,
                            ("local/x/2", b"from-m"): 1,
                        }
                    )
                    assert seen(cb) == Counter(
                        {("site-a/sensors/t1", b"21.5"): 1, ("site-a/cmd/reboot", b"now"): 1}
                    )
                    assert seen(cm) == Counter(
                        {("remote/x/1", b"to-m"): 1, ("remote/x/2", b"from-m"): 1}
                    )
                    for c in (ca, cb, cm):
                        c.close()
        finally:
            mosq.stop()

    run(main)


@pytest.mark.parametrize("remote", ["mqttfast-v5", "mosquitto-v5", "mosquitto-v311"])
def test_no_loop_on_same_topics_both_ways(run, tmp_path, remote):
    """direction both on the same topics, no prefixes: every message exactly once on
    each side (No Local on the bridge's remote subscription / try_private for 3.1.1,
    and the bridge never forwards what it published itself)."""

    async def main():
        mosq = None
        remote_broker = None
        if remote.startswith("mosquitto"):
            mosq = await Mosquitto(tmp_path).start()
            rport = mosq.port
        else:
            remote_broker = await mqttfast.Broker(port=0).start()
            rport = remote_broker.port
        version = 4 if remote.endswith("v311") else 5
        try:
            cfg = {
                "listener": listener(),
                "bridge": [
                    bridge_cfg(
                        "loop",
                        rport,
                        [{"pattern": "loop/#", "direction": "both", "qos": 1}],
                        version=version,
                    )
                ],
            }
            async with mqttfast.Broker(cfg) as a:
                br = a.extensions.bridges[0]
                await asyncio.wait_for(br.connected.wait(), 5)
                local, far = AioPaho(a.port, "l", 5), AioPaho(rport, "r", 4)
                await local.connect()
                await far.connect()
                await local.subscribe("loop/#", 1)
                await far.subscribe("loop/#", 1)
                await asyncio.sleep(0.3)
                await local.publish("loop/a", b"1", 1)
                await far.publish("loop/b", b"2", 1)
                await until(
                    lambda: len(local.messages) >= 2 and len(far.messages) >= 2,
                    what="both messages on both sides",
                )
                await asyncio.sleep(1.0)
                for c in (local, far):
                    assert sorted((m.topic, m.payload) for m in c.messages) == [
                        ("loop/a", b"1"),
                        ("loop/b", b"2"),
                    ]
                assert br.sent == 1 and br.received == 1
                local.close()
                far.close()
        finally:
            if mosq is not None:
                mosq.stop()
            if remote_broker is not None:
                await remote_broker.stop()

    run(main)


def test_remote_down_then_back_queued_qos1_arrive(run):
    """Kill the remote (B), publish QoS 1 on A, restart B on the same port: every queued
    message arrives, in order, with no more than QoS 1 duplicates; then none more."""

    async def main():
        b = await mqttfast.Broker(port=0).start()
        port = b.port
        cfg = {
            "listener": listener(),
            "bridge": [
                bridge_cfg(
                    "q", port, [{"pattern": "data/#", "direction": "out", "qos": 1}], queue_size=100
                )
            ],
        }
        async with mqttfast.Broker(cfg) as a:
            br = a.extensions.bridges[0]
            await asyncio.wait_for(br.connected.wait(), 5)
            pub = AioPaho(a.port, "pub", 5)
            await pub.connect()
            got = []
            b.subscribe("data/#", got.append, qos=1)
            await pub.publish("data/0", b"before", 1)
            await until(lambda: got, what="first message")
            await b.stop()  # the remote goes away
            await until(lambda: not br.connected.is_set(), what="bridge noticed")
            for i in range(1, 21):
                await pub.publish(f"data/{i}", str(i).encode(), 1)
            assert len(br.queue) + len(br.inflight) == 20
            b = mqttfast.Broker(port=port)
            await b.start()
            got2 = []
            b.subscribe("data/#", got2.append, qos=1)  # before the bridge's next attempt
            await until(lambda: len({m.topic for m in got2}) == 20, 10, "queued messages")
            await asyncio.sleep(0.5)
            topics = [m.topic for m in got2]
            assert sorted(set(topics), key=lambda t: int(t.split("/")[1])) == [
                f"data/{i}" for i in range(1, 21)
            ]
            assert len(topics) == len(set(topics)), "duplicates without a reconnect in between"
            assert not br.queue and not br.inflight
            pub.close()
        await b.stop()

    run(main)


def test_bridge_queue_is_bounded(run):
    async def main():
        port = free_port()  # nothing listens there
        cfg = {
            "listener": listener(),
            "bridge": [
                bridge_cfg(
                    "down", port, [{"pattern": "d/#", "direction": "out", "qos": 1}], queue_size=5
                )
            ],
        }
        async with mqttfast.Broker(cfg) as a:
            br = a.extensions.bridges[0]
            for i in range(8):
                await a.publish(f"d/{i}", b"x", 1)
            assert len(br.queue) == 5 and br.dropped == 3

    run(main)


def test_mosquitto_restart_queued_messages_arrive(run, tmp_path):
    """The remote is mosquitto (persistent): SIGKILL it, publish QoS 1 locally, start it
    again; the queued messages reach the remote subscriber's persistent session."""

    async def main():
        mosq = await Mosquitto(tmp_path, persistence=True).start()
        try:
            cfg = {
                "listener": listener(),
                "bridge": [
                    bridge_cfg(
                        "m",
                        mosq.port,
                        [{"pattern": "q/#", "direction": "out", "qos": 1}],
                        version=4,
                    )
                ],
            }
            async with mqttfast.Broker(cfg) as a:
                br = a.extensions.bridges[0]
                await asyncio.wait_for(br.connected.wait(), 5)
                sub = AioPaho(mosq.port, "msub", 4, clean_session=False)
                await sub.connect()
                await sub.subscribe("q/#", 1)
                sub.close()  # offline; mosquitto keeps its session
                await asyncio.sleep(0.2)
                mosq.stop(signal.SIGTERM)  # saves its persistence file
                await until(lambda: not br.connected.is_set(), what="bridge noticed")
                for i in range(10):
                    await a.publish(f"q/{i}", str(i), qos=1)
                await mosq.start()
                await asyncio.wait_for(br.connected.wait(), 10)
                await until(lambda: not br.queue and not br.inflight, 10, "queue flushed")
                sub.connack = None
                sub.disconnected = None
                await sub.connect()
                await until(
                    lambda: len({m.topic for m in sub.messages}) == 10,
                    10,
                    "queued messages at the mosquitto subscriber",
                )
                assert sorted({m.topic for m in sub.messages}) == sorted(
                    f"q/{i}" for i in range(10)
                )
                sub.close()
        finally:
            mosq.stop()

    run(main)


def test_bridge_config_errors():
    errors: list[str] = []
    parse_bridge_tables(
        [
            {
                "name": "x",
                "port": 70000,
                "protocol_version": 3,
                "bogus": 1,
                "topic": [{"pattern": "a/#/b", "direction": "sideways"}],
            }
        ],
        errors,
    )
    text = "\n".join(errors)
    for needle in (
        "bridge[0].bogus: unknown key",
        "bridge[0].protocol_version",
        "bridge[0].port",
        "bridge[0].topic[0].direction",
        "bridge[0].topic[0]: invalid topic filter",
    ):
        assert needle in text
    with pytest.raises(ConfigError):
        mqttfast.Broker({"bridge": [{"address": "h"}]})


def test_bridge_over_tls_v311_to_mqttfast(run, tmp_path):
    """TLS to a remote mqttfast listener (certificate checked against a CA), MQTT 3.1.1:
    try_private is refused by mqttfast, so the bridge falls back to plain 3.1.1."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    certfile, cafile = tmp_path / "server.pem", tmp_path / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    ca.cert_pem.write_to_path(str(cafile))

    async def main():
        remote_cfg = {"listener": [{"address": "127.0.0.1", "port": 0, "certfile": str(certfile)}]}
        async with mqttfast.Broker(remote_cfg) as remote:
            got = []
            remote.subscribe("tls/#", got.append)
            cfg = {
                "listener": listener(),
                "bridge": [
                    bridge_cfg(
                        "tls",
                        remote.port,
                        [
                            {
                                "pattern": "#",
                                "direction": "out",
                                "qos": 1,
                                "local_prefix": "secure/",
                                "remote_prefix": "tls/",
                            }
                        ],
                        version=4,
                        cafile=str(cafile),
                    )
                ],
            }
            async with mqttfast.Broker(cfg) as a:
                br = a.extensions.bridges[0]
                await asyncio.wait_for(br.connected.wait(), 10)
                assert not br.private  # mqttfast refused protocol level 0x84
                await a.publish("secure/door", b"locked", qos=1)
                await until(lambda: got, what="message over TLS")
                assert (got[0].topic, got[0].payload) == ("tls/door", b"locked")
            bad = {
                "listener": listener(),
                "bridge": [
                    bridge_cfg(
                        "untrusted", remote.port, [{"pattern": "x", "direction": "out"}], tls=True
                    )
                ],
            }
            async with mqttfast.Broker(bad) as b:
                await asyncio.sleep(0.5)  # the system CAs do not know trustme's CA
                assert not b.extensions.bridges[0].connected.is_set()

    run(main)


def test_queue_file_keeps_the_queue_across_a_restart(run, tmp_path):
    """queue_file: messages queued for a remote that is down survive a restart of this
    broker (saved at stop, reloaded at start) and reach the remote when it is back."""
    qfile = tmp_path / "bridge-queue.jsonl"

    async def main():
        port = free_port()
        cfg = {
            "listener": listener(),
            "bridge": [
                bridge_cfg(
                    "p",
                    port,
                    [{"pattern": "keep/#", "direction": "out", "qos": 1}],
                    queue_file=str(qfile),
                )
            ],
        }
        from mqttfast.codec.packets import Properties

        async with mqttfast.Broker(cfg) as a:
            for i in range(5):
                await a.publish(
                    f"keep/{i}",
                    bytes([i, 255]),
                    qos=1,
                    properties=Properties(user_property=[("n", str(i))]),
                )
        assert len(qfile.read_text().splitlines()) == 5
        async with mqttfast.Broker(port=port) as remote:
            got = []
            remote.subscribe("keep/#", got.append)
            async with mqttfast.Broker(cfg):
                await until(lambda: len(got) == 5, 10, "reloaded queue delivered")
            assert [(m.topic, m.payload, m.properties.user_property) for m in got] == [
                (f"keep/{i}", bytes([i, 255]), [("n", str(i)), ("mqttfast-bridge-hops", "1")])
                for i in range(5)
            ]
        assert not qfile.exists()

    run(main)


def test_two_bridges_between_the_same_brokers_do_not_loop(run):
    """A bridges to B and B bridges to A, both ways on the same topics (MQTT 5): the
    hop marker (max_hops 2) stops every copy after two bridges; counts stay bounded
    and stop growing (without it the message would circle forever)."""

    async def main():
        b_port = free_port()
        topics = [{"pattern": "ring/#", "direction": "both", "qos": 1}]
        a_cfg = {"listener": listener(), "bridge": [bridge_cfg("ab", b_port, topics)]}
        async with mqttfast.Broker(a_cfg) as a:
            b_cfg = {
                "listener": [{"address": "127.0.0.1", "port": b_port}],
                "bridge": [bridge_cfg("ba", a.port, topics)],
            }
            async with mqttfast.Broker(b_cfg) as b:
                ab, ba = a.extensions.bridges[0], b.extensions.bridges[0]
                await asyncio.wait_for(ab.connected.wait(), 5)
                await asyncio.wait_for(ba.connected.wait(), 5)
                on_a, on_b = [], []
                a.subscribe("ring/#", on_a.append)
                b.subscribe("ring/#", on_b.append)
                await asyncio.sleep(0.3)
                c = AioPaho(a.port, "c", 5)
                await c.connect()
                await c.publish("ring/x", b"once", 1)
                await until(lambda: on_b, what="crossed to B")
                await asyncio.sleep(1.0)
                counts = (len(on_a), len(on_b), ab.sent, ba.sent)
                await asyncio.sleep(0.5)
                assert (len(on_a), len(on_b), ab.sent, ba.sent) == counts, "still circling"
                assert 1 <= len(on_a) <= 3 and 1 <= len(on_b) <= 3  # bounded, no loop
                assert ab.skipped + ba.skipped >= 1
                hops = [
                    dict(m.properties.user_property).get("mqttfast-bridge-hops")
                    for m in on_b
                    if m.properties
                ]
                assert "1" in hops
                c.close()

    run(main)
