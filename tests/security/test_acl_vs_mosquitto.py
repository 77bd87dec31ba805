"""Differential check: the real mosquitto broker and AclFile agree on publish and delivery.

The same ACL and password files are loaded by mosquitto; real clients (paho-mqtt)
publish and subscribe; what mosquitto lets through must be exactly what
``can_publish`` / ``can_receive`` allow. ($SYS is left out: clients cannot
publish there in mosquitto at all.)
"""

from __future__ import annotations

import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from mqttfast.app.security.acl import AclFile
from mqttfast.app.security.passwords import PasswordFile

pytestmark = [pytest.mark.timeout(90), pytest.mark.interop]

ACL = """\
# anonymous clients
topic readwrite public/#
topic deny public/secret
topic read sentinel/#
user roger
topic foo/bar
topic read sentinel/#
topic readwrite topic/global/#
topic deny topic/global/except
user fred
topic read fred/in/#
topic write fred/out
topic read sentinel/#
user admin
topic readwrite #
pattern write sensor/%u/data
pattern readwrite devices/%c/#
"""

USERS = {"roger": "rpw", "fred": "fpw", "admin": "apw"}

TOPICS = [
    "public/a",
    "public/secret",
    "foo/bar",
    "foo/baz",
    "topic/global/x",
    "topic/global/except",
    "fred/in/1",
    "fred/out",
    "sensor/fred/data",
    "sensor/roger/data",
    "devices/dev-1/t",
    "devices/dev-2/t",
    "devices/dev-1",
    "other",
]

PUBLISHERS = [("anon-1", None), ("dev-1", "roger"), ("dev-2", "fred"), ("dev-1b", "fred")]


def _client(port: int, client_id: str, username: str | None) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    if username is not None:
        c.username_pw_set(username, USERS[username])
    connected = threading.Event()
    c.on_connect = lambda *a: connected.set()
    c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()
    assert connected.wait(10), f"{client_id} did not connect"
    return c


class _Collector:
    def __init__(self) -> None:
        self.topics: set[str] = set()
        self.lock = threading.Lock()
        self.sentinel = threading.Event()

    def on_message(self, client, userdata, msg) -> None:
        if msg.topic == "sentinel/done":
            self.sentinel.set()
            return
        with self.lock:
            self.topics.add(msg.topic)


def _subscribe_all(c: mqtt.Client, collector: _Collector) -> None:
    done = threading.Event()
    c.on_message = collector.on_message
    c.on_subscribe = lambda *a: done.set()
    c.subscribe([("#", 1), ("sentinel/done", 1)])
    assert done.wait(10)


def _publish_all(c: mqtt.Client, topics: list[str]) -> None:
    for topic in topics:
        info = c.publish(topic, b"x", qos=1)
        info.wait_for_publish(10)
        assert info.is_published()


def _flush(admin: mqtt.Client, collectors: list[_Collector]) -> None:
    admin.publish("sentinel/done", b"", qos=1).wait_for_publish(10)
    for col in collectors:
        assert col.sentinel.wait(10), "sentinel not delivered"


def test_publish_and_delivery_decisions_match_mosquitto(tmp_path: Path, mosquitto_runner) -> None:
    acl_path = tmp_path / "acl"
    acl_path.write_text(ACL)
    pw_path = tmp_path / "pw"
    pf = PasswordFile()
    for user, password in USERS.items():
        pf.set(user, password, iterations=1000)
    pf.save(pw_path)
    ours = AclFile.load(acl_path)

    clients: list[mqtt.Client] = []
    try:
        with mosquitto_runner(
            password_file=str(pw_path), acl_file=str(acl_path), allow_anonymous="true"
        ) as port:
            admin = _client(port, "admin-1", "admin")
            clients.append(admin)
            observer = _Collector()
            _subscribe_all(admin, observer)

            # Receivers: each subscribes to '#'; mosquitto filters deliveries by read access.
            receivers = {}
            for cid, user in [("anon-r", None), ("rog-r", "roger"), ("fred-r", "fred")]:
                c = _client(port, cid, user)
                clients.append(c)
                col = _Collector()
                _subscribe_all(c, col)
                receivers[(cid, user)] = col

            for cid, user in PUBLISHERS:
                observer.topics.clear()
                observer.sentinel.clear()
                pub = _client(port, cid, user)
                clients.append(pub)
                _publish_all(pub, TOPICS)
                _flush(admin, [observer])
                expected = {t for t in TOPICS if ours.can_publish(cid, user, t)}
                assert observer.topics == expected, (cid, user)
                pub.disconnect()
                pub.loop_stop()

            # Everything admin publishes reaches the receivers only where they may read.
            for col in receivers.values():
                col.topics.clear()
                col.sentinel.clear()
            _publish_all(admin, TOPICS)
            _flush(admin, list(receivers.values()))
            for (cid, user), col in receivers.items():
                expected = {t for t in TOPICS if ours.can_receive(cid, user, t)}
                assert col.topics == expected, (cid, user)
    finally:
        for c in clients:
            c.disconnect()
            c.loop_stop()
