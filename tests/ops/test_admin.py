"""Admin HTTP API end to end: bearer token, clients, kick, subscriptions, retained."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties as PahoProperties

from mqttfast.codec.packets import Properties, Will
from tests.helpers.broker import REPO_ROOT, free_port
from tests.helpers.rawclient import RawClient

from .support import http, wait_for


def test_api_requires_bearer_token(ops_broker) -> None:
    b = ops_broker()
    for token in (None, "wrong", ""):
        status, body = b.api("GET", "/api/stats", token=token)
        assert status == 401, (token, body)
        assert "error" in body
    status, _, headers = http(
        "GET", b.admin_url("/api/clients"), {"Authorization": "Basic dGVzdDp0ZXN0"}
    )
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    status, stats = b.api("GET", "/api/stats")
    assert status == 200 and stats["version"] == __import__("mqttfast").__version__
    # The dashboard page itself carries no data; it asks for the token.
    status, page, headers = http("GET", b.admin_url("/"))
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'id="rate-in"' in page
    status, js, _ = http("GET", b.admin_url("/static/dashboard.js"))
    assert status == 200 and b"Authorization" in js
    assert http("GET", b.admin_url("/static/../api/stats"))[0] == 404


def test_openapi_document_covers_every_route(ops_broker) -> None:
    b = ops_broker()
    status, doc = b.api("GET", "/api/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.")
    paths = set(doc["paths"])
    assert {
        "/api/stats",
        "/api/clients",
        "/api/clients/{client_id}",
        "/api/clients/{client_id}/subscriptions",
        "/api/clients/{client_id}/kick",
        "/api/retained",
        "/api/topics/top",
    } <= paths
    assert "delete" in doc["paths"]["/api/retained"]
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_clients_listed_searched_and_subscriptions(ops_broker) -> None:
    b = ops_broker(["--sys-interval", "0"])
    with RawClient(b.port, version=5) as alpha, RawClient(b.port) as beta:
        alpha.connect("alpha-1", username="ops")
        alpha.subscribe(("a/+", 1), ("$share/g/b/#", 2))
        beta.connect("beta/2")  # a '/' in the id: percent-encoded in the URL
        status, listing = b.api("GET", "/api/clients")
        assert status == 200 and listing["total"] == 2
        by_id = {c["client_id"]: c for c in listing["clients"]}
        assert by_id["alpha-1"]["state"] == "connected"
        assert by_id["alpha-1"]["protocol_version"] == 5
        assert by_id["alpha-1"]["username"] == "ops"
        assert by_id["alpha-1"]["subscriptions"] == 2
        assert by_id["beta/2"]["protocol_version"] == 4
        assert by_id["beta/2"]["peer"].startswith("127.0.0.1:")

        status, page = b.api("GET", "/api/clients?limit=1")
        assert page["total"] == 2 and [c["client_id"] for c in page["clients"]] == ["alpha-1"]
        status, found = b.api("GET", "/api/clients?q=ALPHA")
        assert [c["client_id"] for c in found["clients"]] == ["alpha-1"]
        status, found = b.api("GET", "/api/clients?q=ops")  # by username
        assert [c["client_id"] for c in found["clients"]] == ["alpha-1"]
        status, one = b.api("GET", "/api/clients/beta%2F2")
        assert status == 200 and one["client_id"] == "beta/2"

        status, subs = b.api("GET", "/api/clients/alpha-1/subscriptions")
        assert status == 200
        assert [(s["filter"], s["qos"], s["share_group"]) for s in subs["subscriptions"]] == [
            ("$share/g/b/#", 2, "g"),
            ("a/+", 1, None),
        ]
        assert b.api("GET", "/api/clients/nobody/subscriptions")[0] == 404
        assert b.api("GET", "/api/clients?state=bogus")[0] == 400

        beta.disconnect()
        status, found = b.api("GET", "/api/clients?state=connected")
        assert [c["client_id"] for c in found["clients"]] == ["alpha-1"]


def test_kick_v5_client_gets_disconnect_0x98_and_will_is_published(ops_broker) -> None:
    """Server-initiated close: DISCONNECT 0x98 Administrative action to a v5 client
    [MQTT-4.13.1-1]; the will is published (the close is not a normal DISCONNECT,
    [MQTT-3.1.2-8])."""
    b = ops_broker(["--sys-interval", "0"])
    with (
        RawClient(b.port, version=5) as victim,
        RawClient(b.port) as watcher,
        RawClient(b.port) as old,
    ):
        watcher.connect("watcher")
        watcher.subscribe(("wills/#", 1))
        victim.connect("victim", will=Will(topic="wills/victim", payload=b"gone", qos=1))
        old.connect("old-311")
        status, body = b.api("POST", "/api/clients/victim/kick")
        assert status == 200 and body["was_connected"] is True
        assert victim.expect_closed(timeout=3) == 0x98
        will = watcher.recv_publish(timeout=3)
        assert (will.topic, will.payload) == ("wills/victim", b"gone")
        # Clean start, no session expiry: the session is gone with the connection.
        assert b.api("GET", "/api/clients/victim")[0] == 404
        # An MQTT 3.1.1 client has no DISCONNECT from the server: the socket just closes.
        assert b.api("POST", "/api/clients/old-311/kick")[0] == 200
        assert old.expect_closed(timeout=3) is None
        assert b.api("POST", "/api/clients/nobody/kick")[0] == 404
        assert b.api("GET", "/api/clients/old-311/kick")[0] == 404  # POST only
        assert watcher.is_open()


def test_kick_with_discard_session(ops_broker) -> None:
    b = ops_broker(["--sys-interval", "0"])
    with RawClient(b.port, version=5) as c:
        c.connect("keeper", clean_start=False, properties=Properties(session_expiry_interval=3600))
        c.subscribe(("k/#", 1))
        assert b.api("POST", "/api/clients/keeper/kick")[0] == 200
        assert c.expect_closed(timeout=3) == 0x98
    status, info = b.api("GET", "/api/clients/keeper")
    assert status == 200 and info["state"] == "offline" and info["subscriptions"] == 1
    status, body = b.api("POST", "/api/clients/keeper/kick?discard_session=true")
    assert status == 200 and body == {
        "client_id": "keeper",
        "was_connected": False,
        "session_discarded": True,
    }
    assert b.api("GET", "/api/clients/keeper")[0] == 404
    _, stats = b.api("GET", "/api/stats")
    assert stats["subscriptions"] == 0


def test_retained_listed_and_deleted(ops_broker) -> None:
    b = ops_broker(["--sys-interval", "0"])
    with RawClient(b.port) as pub:
        pub.connect("ret-pub")
        pub.publish("x/1", b"one", qos=1, retain=True)
        pub.publish("x/2", b"two", qos=0, retain=True)
        pub.publish("y/1", b"other", qos=1, retain=True)
        status, listing = b.api("GET", "/api/retained?filter=x/%23&payload=true")
        assert status == 200 and listing["total"] == 2
        assert [(r["topic"], r["qos"], r["payload_bytes"]) for r in listing["retained"]] == [
            ("x/1", 1, 3),
            ("x/2", 0, 3),
        ]
        assert listing["retained"][0]["payload_base64"] == "b25l"
        assert "payload_base64" not in b.api("GET", "/api/retained")[1]["retained"][0]
        assert b.api("GET", "/api/retained?filter=a/%23/b")[0] == 400

        status, body = b.api("DELETE", "/api/retained?topic=x/1")
        assert status == 200 and body == {"deleted": "x/1"}
        assert b.api("DELETE", "/api/retained?topic=x/1")[0] == 404
        assert b.api("DELETE", "/api/retained")[0] == 400
    # A new subscriber no longer receives the deleted message [MQTT-3.3.1-6 / 3.3.1-10].
    with RawClient(b.port) as sub:
        sub.connect("ret-sub")
        sub.subscribe(("x/#", 1))
        got = sub.recv_publish(timeout=2)
        assert (got.topic, got.payload) == ("x/2", b"two")
        sub.expect_no_packet(timeout=0.5)
    _, stats = b.api("GET", "/api/stats")
    assert stats["retained_messages"] == 2


def test_top_topics(ops_broker) -> None:
    b = ops_broker(["--sys-interval", "0"])
    with RawClient(b.port) as pub:
        pub.connect("hot-pub")
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            for _ in range(20):
                pub.publish("hot/topic", b"x")
            pub.publish("cold/topic", b"y")
            pub.ping()
            time.sleep(0.02)

        def ranked():
            topics = b.api("GET", "/api/topics/top?n=5")[1]["topics"]
            return topics if len(topics) == 2 else None

        topics = wait_for(ranked, timeout=3, what="two topics ranked")
    assert [t["topic"] for t in topics] == ["hot/topic", "cold/topic"]
    assert topics[0]["rate"] > topics[1]["rate"] > 0


def test_paho_v5_sees_administrative_action(ops_broker) -> None:
    b = ops_broker(["--sys-interval", "0"])
    reasons: list[int] = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho5", protocol=mqtt.MQTTv5)
    c.on_disconnect = lambda client, userdata, flags, rc, props: reasons.append(rc.value)
    props = PahoProperties(PacketTypes.CONNECT)
    c.connect("127.0.0.1", b.port, keepalive=30, properties=props)
    c.loop_start()
    try:
        wait_for(lambda: b.api("GET", "/api/clients/paho5")[0] == 200, what="paho connected")
        assert b.api("POST", "/api/clients/paho5/kick")[0] == 200
        wait_for(lambda: reasons, timeout=5, what="paho on_disconnect")
    finally:
        c.loop_stop()
    assert reasons[0] == 0x98


def test_admin_without_token_is_a_startup_error() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mqttfast",
            "--host",
            "127.0.0.1",
            "--port",
            str(free_port()),
            "--persistence",
            "off",
            "--admin-port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT)},
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "token" in lines[0], proc.stderr


def test_bad_http_is_answered_400_and_broker_keeps_serving(ops_broker) -> None:
    import socket

    b = ops_broker(["--sys-interval", "0"])
    with socket.create_connection(("127.0.0.1", b.admin_port), timeout=5) as s:
        s.sendall(b"garbage\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400")
    status, _ = b.api("GET", "/api/stats")
    assert status == 200
    assert json.loads(
        http("GET", b.admin_url("/api/nope"), {"Authorization": f"Bearer {b.token}"})[1]
    )["error"]
