"""The bundled plug-ins: message logger (JSON lines, SQLite), webhook, HTTP auth."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import pytest

import mqttfast
from mqttfast.plugins.http_auth import HttpAuth
from mqttfast.plugins.message_logger import MessageLogger
from mqttfast.plugins.webhook import Webhook
from tests.embed.aio_paho import AioPaho, until

from .http_server import Recorder

pytestmark = pytest.mark.timeout(40)


@pytest.mark.parametrize("fmt", ["jsonl", "sqlite"])
def test_message_logger_by_topic_filter(run, tmp_path, fmt):
    path = tmp_path / ("log.jsonl" if fmt == "jsonl" else "log.db")

    async def main():
        cfg = {
            "listener": [{"address": "127.0.0.1", "port": 0}],
            "plugin": [
                {
                    "class": "mqttfast.plugins.message_logger:MessageLogger",
                    "options": {
                        "path": str(path),
                        "topics": ["keep/#", "also/+"],
                        "flush_interval": 0.1,
                    },
                }
            ],
        }
        async with mqttfast.Broker(cfg) as broker:
            c = AioPaho(broker.port, "logme", 5)
            await c.connect()
            await c.publish("keep/a", b"one", 1)
            await c.publish("skip/a", b"no", 1)
            await c.publish("also/b", b"\xff\x00", 0)
            await c.publish("keep/b/c", "two", 1)
            await asyncio.sleep(0.3)
            c.close()
        # stop() flushed everything.

    run(main)
    if fmt == "jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        assert [(r["topic"], r.get("payload"), r.get("payload_b64")) for r in rows] == [
            ("keep/a", "one", None),
            ("also/b", None, "/wA="),
            ("keep/b/c", "two", None),
        ]
        assert all(r["client_id"] == "logme" for r in rows)
    else:
        with sqlite3.connect(path) as db:
            rows = db.execute(
                "SELECT client_id, topic, qos, payload FROM messages ORDER BY id"
            ).fetchall()
        assert rows == [
            ("logme", "keep/a", 1, b"one"),
            ("logme", "also/b", 0, b"\xff\x00"),
            ("logme", "keep/b/c", 1, b"two"),
        ]


def test_message_logger_options_checked():
    with pytest.raises(ValueError):
        MessageLogger({})
    with pytest.raises(ValueError):
        MessageLogger({"path": "x", "format": "xml"})


def test_webhook_connect_publish_disconnect_with_retries(run):
    """Events arrive in order; a failing endpoint is retried with back-off; a slow
    endpoint holds up no client."""

    async def main():
        failures = {"n": 2}

        def respond(path, body):
            if body["event"] == "message.publish" and failures["n"]:
                failures["n"] -= 1
                return 500, None
            return 200, {}

        http = await Recorder(respond, delay=0.05).start()
        hook = Webhook({"url": http.url("/hook"), "topics": ["alerts/#"], "backoff": 0.05})
        async with mqttfast.Broker(port=0, plugins=[hook]) as broker:
            c = AioPaho(broker.port, "dev", 5)
            await c.connect()
            t0 = asyncio.get_running_loop().time()
            for i in range(5):
                assert await c.publish("alerts/x", f"a{i}", 1) == 0x10
            await c.publish("other", b"ignored", 1)
            assert asyncio.get_running_loop().time() - t0 < 1.0  # nobody waits for HTTP
            c.close()
            await until(lambda: hook.sent == 7, 10, "7 events posted")
        await http.stop()
        ok = [b for _, b in http.requests]
        assert ok[0]["event"] == "client.connected" and ok[0]["client_id"] == "dev"
        publishes = [b["payload"] for b in ok if b["event"] == "message.publish"]
        assert publishes == ["a0", "a0", "a0", "a1", "a2", "a3", "a4"]  # 2 retries of a0
        assert ok[-1]["event"] == "client.disconnected" and ok[-1]["by"] == "client"
        assert hook.failed == 0

    run(main)


def test_webhook_queue_bounded_and_endpoint_down(run):
    async def main():
        hook = Webhook(
            {
                "url": "http://127.0.0.1:9/none",
                "queue_size": 3,
                "retries": 1,
                "backoff": 0.01,
                "timeout": 0.5,
                "events": ["publish"],
            }
        )
        async with mqttfast.Broker(port=0, plugins=[hook]) as broker:
            c = AioPaho(broker.port, "x", 4)
            await c.connect()
            for i in range(10):
                c.publish_nowait("t", str(i), 0)
            await until(lambda: hook.dropped + hook.failed >= 7, 10, "drops and failures")
            assert hook.sent == 0 and hook.dropped >= 1
            c.close()

    run(main)


def test_http_auth_emqx_style(run):
    async def main():
        def respond(path, body):
            if path == "/auth":
                if body["username"] == "alice":
                    return 200, {"result": "allow" if body["password"] == "pw" else "deny"}
                if body["username"] == "eve":
                    return 403, None
                if body["username"] == "err":
                    return 500, None
                return 200, {"result": "ignore"}
            return 200, {"result": "deny" if body["topic"].startswith("secret/") else "allow"}

        http = await Recorder(respond).start()
        auth = HttpAuth({"url": http.url("/auth"), "acl_url": http.url("/acl"), "timeout": 2})
        async with mqttfast.Broker(port=0, plugins=[auth]) as broker:
            ok = AioPaho(broker.port, "ok", 5)
            await ok.connect(username="alice", password="pw")
            for user, pw, code in (("alice", "bad", 0x86), ("eve", "x", 0x86), ("err", "x", 0x86)):
                c = AioPaho(broker.port, f"c-{user}", 5)
                assert (await c.connect(username=user, password=pw, expect_ok=False)).value == code
                c.close()
            anon = AioPaho(broker.port, "anon", 4)
            await anon.connect(username="bob", password="x")  # ignore -> allowed (no file)
            assert await ok.publish("secret/x", b"1", 1) == 0x87
            assert await ok.publish("open/x", b"1", 1) == 0x10
            assert await ok.publish("open/x", b"2", 1) == 0x10  # cached
            assert sum(1 for p, _ in http.requests if p == "/acl") == 2
            auth_bodies = [b for p, b in http.requests if p == "/auth"]
            assert auth_bodies[0]["client_id"] == "ok" and auth_bodies[0]["password"] == "pw"
            for c in (ok, anon):
                c.close()
        await http.stop()

    run(main)
