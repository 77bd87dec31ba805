"""Rarely used Connection/Session fields live in a side object created on first use
(core/rare.py, issue 17: memory per idle connection). These tests pin both halves: an idle
MQTT 3.1.1 client creates no side object, and a client that does use such a field reads
back what it set."""

from __future__ import annotations

from mqttfast.codec.packets import Pingreq, Pingresp

from .conftest import Properties, Will


def test_idle_311_client_has_no_side_objects(client, broker):
    """A clean-session 3.1.1 client with a keep alive: every rarely used field is at its
    default, so neither the connection nor the session holds a side object."""
    c = client(4)
    assert c.connect("dev-1", clean=True, keep_alive=60).reason_code == 0
    assert c.conn._rare is None
    session = broker.sessions["dev-1"]
    assert session._rare is None
    # The defaults read through the descriptors.
    assert c.conn.will is None and c.conn.problem_info is True and c.conn.stuck is False
    assert c.conn.alias_out_max == 0 and c.conn.aliases_in is None
    assert session.expires_at is None and session.dropped == 0 and session.backlog is None
    assert session.expiry_interval == 0
    c.send(Pingreq())
    assert isinstance(c.received()[0], Pingresp)
    assert c.conn._rare is None


def test_keepalive_limit_float_shared_between_connections(client):
    """Equal keep alives share one float object (24 bytes per connection otherwise)."""
    a, b = client(4), client(4)
    a.connect("ka-a", keep_alive=60)
    b.connect("ka-b", keep_alive=60)
    assert a.conn.keepalive_limit == 90
    assert a.conn.keepalive_limit is b.conn.keepalive_limit


def test_v5_client_fields_kept_once_set(client, broker):
    """A v5 client with a will delay, a session expiry and topic aliases: the values are
    stored (side objects created) and read back."""
    c = client(5)
    will = Will("w/t", b"bye", 1, False, Properties(will_delay_interval=30))
    ack = c.connect(
        "v5-rare",
        clean=True,
        will=will,
        properties=Properties(session_expiry_interval=120, topic_alias_maximum=5),
    )
    assert ack.reason_code == 0
    conn = c.conn
    assert conn._rare is not None
    assert conn.will is not None and conn.will.topic == "w/t"
    assert conn.will_delay == 30 and conn.alias_out_max == 5 and conn.connect_expiry == 120
    session = broker.sessions["v5-rare"]
    assert session.expiry_interval == 120 and session._rare is not None


def test_writing_default_creates_nothing_and_values_read_back(client):
    """Setting a field to its default on an object without a side object allocates none;
    a non-default value creates it, and a later default is stored, not dropped."""
    conn = client(4).conn
    conn.stuck = False
    conn.blocking_since = 0.0
    conn.held = None
    assert conn._rare is None
    conn.stuck = True
    assert conn._rare is not None and conn.stuck is True
    conn.stuck = False
    assert conn.stuck is False
    conn.next_alias = 0  # not the default (1), and falsy: still stored
    assert conn.next_alias == 0
