"""Enhanced authentication (4.12) through the core's hook seam, with the
SCRAM-SHA-256 example implementation (mqttfast.app.scram)."""

from __future__ import annotations

from mqttfast.app.scram import METHOD, ScramClient, ScramCredential, ScramHooks
from mqttfast.codec.packets import Auth, Connack, Connect

from .conftest import Disconnect, FakeClient, Properties


def _scram_broker(make_broker):
    b = make_broker()
    b.hooks = ScramHooks({"alice": ScramCredential.from_password("s3cret", iterations=1024)})
    return b


def _start(c: FakeClient, scram: ScramClient, cid: str = "sc") -> bytes:
    c.send(
        Connect(
            cid,
            5,
            properties=Properties(authentication_method=METHOD, authentication_data=scram.first()),
        )
    )
    (a,) = c.received()
    assert isinstance(a, Auth) and a.reason_code == 0x18
    assert a.properties.authentication_method == METHOD
    return a.properties.authentication_data


def test_scram_success_and_server_signature(make_broker, core_impl):
    """[MQTT-4.12.0-*] AUTH 0x18 continues; CONNACK 0x00 carries the method and the
    server-final message, which proves the server knows the key."""
    b = _scram_broker(make_broker)
    c = FakeClient(b, core_impl, 5)
    scram = ScramClient("alice", "s3cret")
    server_first = _start(c, scram)
    c.send(
        Auth(
            0x18,
            Properties(authentication_method=METHOD, authentication_data=scram.final(server_first)),
        )
    )
    (ack,) = c.received()
    assert isinstance(ack, Connack) and ack.reason_code == 0
    assert ack.properties.authentication_method == METHOD
    assert scram.verify(ack.properties.authentication_data)
    assert c.conn.username == "alice" and not c.closed


def test_scram_wrong_password_refused(make_broker, core_impl):
    b = _scram_broker(make_broker)
    c = FakeClient(b, core_impl, 5)
    scram = ScramClient("alice", "wrong")
    server_first = _start(c, scram)
    c.send(
        Auth(
            0x18,
            Properties(authentication_method=METHOD, authentication_data=scram.final(server_first)),
        )
    )
    (ack,) = c.received()
    assert isinstance(ack, Connack) and ack.reason_code == 0x87 and c.closed


def test_scram_unknown_user_looks_like_known_then_fails(make_broker, core_impl):
    b = _scram_broker(make_broker)
    c = FakeClient(b, core_impl, 5)
    scram = ScramClient("mallory", "x")
    server_first = _start(c, scram)
    assert b",s=" in server_first and b",i=" in server_first
    c.send(
        Auth(
            0x18,
            Properties(authentication_method=METHOD, authentication_data=scram.final(server_first)),
        )
    )
    (ack,) = c.received()
    assert ack.reason_code == 0x87


def test_scram_reauthentication(make_broker, core_impl):
    """4.12.1: AUTH 0x19 re-runs the exchange; success ends with AUTH 0x00."""
    b = _scram_broker(make_broker)
    c = FakeClient(b, core_impl, 5)
    scram = ScramClient("alice", "s3cret")
    sf = _start(c, scram)
    c.send(
        Auth(0x18, Properties(authentication_method=METHOD, authentication_data=scram.final(sf)))
    )
    assert c.received()[0].reason_code == 0
    again = ScramClient("alice", "s3cret")
    c.send(Auth(0x19, Properties(authentication_method=METHOD, authentication_data=again.first())))
    (a,) = c.received()
    assert a.reason_code == 0x18
    c.send(
        Auth(
            0x18,
            Properties(
                authentication_method=METHOD,
                authentication_data=again.final(a.properties.authentication_data),
            ),
        )
    )
    (ok,) = c.received()
    assert (
        isinstance(ok, Auth)
        and ok.reason_code == 0
        and again.verify(ok.properties.authentication_data)
    )
    # A failed re-authentication disconnects.
    bad = ScramClient("alice", "nope")
    c.send(Auth(0x19, Properties(authentication_method=METHOD, authentication_data=bad.first())))
    (a,) = c.received()
    c.send(
        Auth(
            0x18,
            Properties(
                authentication_method=METHOD,
                authentication_data=bad.final(a.properties.authentication_data),
            ),
        )
    )
    (d,) = c.received()
    assert isinstance(d, Disconnect) and d.reason_code == 0x87 and c.closed


def test_auth_with_other_method_is_protocol_error(make_broker, core_impl):
    """[MQTT-4.12.0-5]: AUTH with a different method than CONNECT's: protocol error."""
    b = _scram_broker(make_broker)
    c = FakeClient(b, core_impl, 5)
    scram = ScramClient("alice", "s3cret")
    _start(c, scram)
    c.send(Auth(0x18, Properties(authentication_method="OTHER", authentication_data=b"x")))
    assert c.closed
