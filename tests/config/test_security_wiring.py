"""Security wired into the running broker from the config file: deferred (off-loop)
password checks with packets pipelined behind CONNECT, ACL on every live delivery,
plug-ins by dotted path, and PBKDF2 at full strength not stalling other clients."""

from __future__ import annotations

import time

import pytest

from mqttfast.app.security.passwords import PasswordFile
from mqttfast.codec import encode
from mqttfast.codec.packets import Connect, Publish, Subscribe, Subscription
from tests.helpers.rawclient import RawClient
from tests.listeners.support import free_port

pytestmark = pytest.mark.timeout(60)

OFF = '[persistence]\nmode = "off"\n'


def listener(port: int) -> str:
    return f'[[listener]]\nport = {port}\naddress = "127.0.0.1"\n'


@pytest.fixture
def secured(start_broker, tmp_path):
    port = free_port()
    pw = tmp_path / "pw"
    pf = PasswordFile()
    pf.set("alice", "wonder", iterations=1000)
    pf.set("carol", "strong")  # the default (slow) PBKDF2 strength
    pf.save(pw)
    acl = tmp_path / "acl"
    acl.write_text(
        "user alice\ntopic readwrite a/#\ntopic deny a/secret\nuser carol\ntopic readwrite a/#\n"
    )
    start_broker(
        listener(port) + OFF + f'[auth]\npassword_file = "{pw}"\nacl_file = "{acl}"\n', wait=[port]
    )
    return port


def test_packets_pipelined_behind_connect_wait_for_deferred_auth(secured) -> None:
    """CONNECT + SUBSCRIBE + PUBLISH in one write while the password is checked off the
    event loop: CONNACK first, then SUBACK, then the message (nothing lost or reordered)."""
    with RawClient(secured) as c:
        c.send(
            encode(
                Connect(client_id="pipe", protocol_version=4, username="alice", password=b"wonder"),
                4,
            )
            + encode(Subscribe(1, [Subscription("a/p", 0)]), 4)
            + encode(Publish("a/p", b"after-connect", 0), 4)
        )
        assert c.recv_packet().reason_code == 0  # CONNACK
        assert type(c.recv_packet()).__name__ == "Suback"
        assert c.recv_publish().payload == b"after-connect"


def test_nothing_after_refused_connect_is_processed(secured) -> None:
    """[MQTT-3.1.4-5] a PUBLISH pipelined behind a CONNECT with a bad password is dropped."""
    with RawClient(secured) as sub:
        sub.connect("watch", username="alice", password="wonder")
        sub.subscribe("a/#")
        with RawClient(secured) as bad:
            bad.send(
                encode(
                    Connect(
                        client_id="bad", protocol_version=4, username="alice", password=b"guess"
                    ),
                    4,
                )
                + encode(Publish("a/x", b"sneaky", 0), 4)
            )
            assert bad.recv_packet().reason_code == 4
            bad.expect_closed()
        sub.expect_no_packet(0.5)


def test_acl_applies_to_live_deliveries(secured) -> None:
    """A wildcard subscription overlapping a deny never delivers the denied topic."""
    with RawClient(secured) as sub, RawClient(secured) as pub:
        sub.connect("s", username="alice", password="wonder")
        sub.subscribe("a/#", qos=1)
        pub.connect("p", username="carol", password="strong")
        pub.publish("a/secret", b"no", qos=1)
        pub.publish("a/open", b"yes", qos=1)
        assert sub.recv_publish().payload == b"yes"
        sub.expect_no_packet(0.5)


def test_slow_password_hash_does_not_stall_others(secured) -> None:
    """While carol's full-strength PBKDF2 runs, a connected client's PINGs are answered
    well before the hash finishes (it runs in a worker thread, not on the loop)."""
    with RawClient(secured) as other:
        other.connect("busy", username="alice", password="wonder")
        slow = RawClient(secured)
        try:
            started = time.monotonic()
            slow.send(
                encode(
                    Connect(
                        client_id="slow", protocol_version=4, username="carol", password=b"strong"
                    ),
                    4,
                )
            )
            time.sleep(0.03)  # the broker has read the CONNECT and is hashing
            t0 = time.monotonic()
            other.ping()
            ping_latency = time.monotonic() - t0
            assert slow.recv_packet(timeout=10).reason_code == 0
            auth_time = time.monotonic() - started
        finally:
            slow.close()
    # Were the hash on the event loop, the PINGRESP would wait for it.
    assert auth_time > 0.05, f"the hash took only {auth_time:.3f}s; nothing to measure"
    assert ping_latency < auth_time / 2, (ping_latency, auth_time)


def test_plugin_by_dotted_path(start_broker) -> None:
    """[[auth.plugin]] class = "tests.config.plugin_example:OnlyNamedUser" with options."""
    port = free_port()
    start_broker(
        listener(port) + OFF + "[[auth.plugin]]\n"
        'class = "tests.config.plugin_example:OnlyNamedUser"\n'
        'options = { user = "bob" }\n',
        wait=[port],
    )
    with RawClient(port, version=5) as c:
        c.connect("x", username="eve", password="pw", expect_rc=0x86)
    with RawClient(port, version=5) as c:
        c.connect("b", username="bob", password="anything")
        c.subscribe("#")
        c.publish("forbidden/x", b"1", qos=1)
        c.publish("fine/x", b"2", qos=1)
        got = [m.payload for m in c.recv_publishes(1)]
        assert got == [b"2"]


def test_connect_timeout_while_authentication_hangs(start_broker) -> None:
    """A plug-in that hangs past limits.connect_timeout: that connection is closed
    without CONNACK; other clients connect and work meanwhile; the late answer is ignored."""
    port = free_port()
    b = start_broker(
        listener(port) + OFF + "[limits]\nconnect_timeout = 1\n"
        '[[auth.plugin]]\nclass = "tests.config.plugin_example:SlowForOneUser"\n'
        "options = { delay = 2.5 }\n",
        wait=[port],
    )
    with RawClient(port) as slow, RawClient(port) as other:
        slow.send(
            encode(Connect(client_id="hang", protocol_version=4, username="slow", password=b"x"), 4)
        )
        other.connect("other", username="quick", password="x")
        assert other.is_open()
        started = time.monotonic()
        assert slow.expect_closed(timeout=5) is None
        assert time.monotonic() - started < 2.4  # closed by the timeout, not the answer
        time.sleep(1.5)  # the plug-in answers now, for a closed connection
        assert other.is_open()
    assert b.running()
