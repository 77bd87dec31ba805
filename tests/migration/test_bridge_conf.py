"""A mosquitto.conf bridge section run by mqttfast (issue 18 item 2): ``connection``,
``address``, ``topic ... out|in|both QOS LOCAL REMOTE``, ``remote_username`` /
``remote_password``, ``bridge_protocol_version``, ``cleansession``, ``remote_clientid``,
and the TLS options, against a real second broker (mosquitto with a password file; an
mqttfast TLS listener for the TLS options)."""

from __future__ import annotations

import pytest

from tests.helpers.rawclient import RawClient
from tests.listeners.support import free_port

from .support import Mosquitto, mosquitto_password_file, wait_until

pytestmark = pytest.mark.timeout(120)


def _carried(sender_port: int, topic: str, receiver: RawClient, **auth: str) -> bytes:
    """Publish on one side until the other side gets it (the bridge may still be
    connecting): the payload that arrived."""
    got: list[bytes] = []

    def once() -> bool:
        with RawClient(sender_port) as pub:
            pub.connect("", **auth)
            pub.publish(topic, b"hello", qos=1)
        try:
            got.extend(m.payload for m in receiver.recv_publishes(1, timeout=0.5))
        except (AssertionError, TimeoutError, OSError):
            return False
        return True

    wait_until(once, 20, f"{topic} carried by the bridge")
    return got[0]


@pytest.mark.parametrize("version", ["mqttv311", "mqttv50"])
def test_bridge_to_mosquitto_both_ways(start_broker, tmp_path, version) -> None:
    remote_port, local_port = free_port(), free_port()
    mosquitto_password_file(tmp_path / "remote.pw", "bridge", "s3cret")
    remote = Mosquitto(
        tmp_path,
        remote_port,
        f"allow_anonymous false\npassword_file {tmp_path / 'remote.pw'}\n",
    )
    try:
        conf = (
            f"listener {local_port} 127.0.0.1\nallow_anonymous true\n"
            f"connection hub\naddress 127.0.0.1:{remote_port}\n"
            "topic sensors/# out 1 site/ hub/\n"
            "topic cmd/# in 1 site/ hub/\n"
            "topic chat/# both 0\n"
            "remote_username bridge\nremote_password s3cret\n"
            "remote_clientid site-bridge\n"
            f"bridge_protocol_version {version}\ncleansession true\n"
            "restart_timeout 1 2\n"
        )
        b = start_broker(conf, mosquitto=True, wait=[local_port])
        # out: site/sensors/t here -> hub/sensors/t at the remote.
        with RawClient(remote_port) as sub:
            sub.connect("watch-out", username="bridge", password="s3cret")
            sub.subscribe("hub/#", qos=1)
            assert _carried(local_port, "site/sensors/t", sub) == b"hello"
        # in: hub/cmd/x at the remote -> site/cmd/x here.
        with RawClient(local_port) as sub:
            sub.connect("watch-in")
            sub.subscribe("site/#", qos=1)
            payload = _carried(remote_port, "hub/cmd/x", sub, username="bridge", password="s3cret")
            assert payload == b"hello"
        # both, no prefixes: each way.
        with RawClient(local_port) as sub:
            sub.connect("watch-both")
            sub.subscribe("chat/#", qos=1)
            _carried(remote_port, "chat/a", sub, username="bridge", password="s3cret")
        # The remote saw the bridge log in with the configured client id.
        assert "site-bridge" in remote.log_text()
        assert b.stop() == 0
    finally:
        remote.stop()


def test_bridge_tls_options(start_broker, tmp_path, pki) -> None:
    """bridge_cafile/certfile/keyfile/tls_version to an mqttfast TLS listener that
    requires client certificates; bridge_insecure false: the host name is checked."""
    remote_tls, local_port = free_port(), free_port()
    remote = (
        f'[[listener]]\nport = {remote_tls}\naddress = "127.0.0.1"\n'
        f'certfile = "{pki["server_cert"]}"\nkeyfile = "{pki["server_key"]}"\n'
        f'cafile = "{pki["ca"]}"\nrequire_certificate = true\n'
        '[persistence]\nmode = "off"\n'
    )
    remote_plain = free_port()
    remote += f'[[listener]]\nport = {remote_plain}\naddress = "127.0.0.1"\n'
    start_broker(remote, wait=[remote_tls, remote_plain])
    conf = (
        f"listener {local_port} 127.0.0.1\nallow_anonymous true\n"
        f"connection secure\naddress 127.0.0.1:{remote_tls}\n"
        "topic up/# out 1\n"
        f"bridge_cafile {pki['ca']}\nbridge_certfile {pki['client']}\n"
        f"bridge_keyfile {pki['client']}\nbridge_tls_version tlsv1.2\n"
        "bridge_insecure false\nrestart_timeout 1 2\n"
    )
    (tmp_path / "local").mkdir()
    from tests.listeners.support import ConfigBroker

    local = ConfigBroker(tmp_path / "local", conf, mosquitto=True, wait=[local_port]).start()
    try:
        with RawClient(remote_plain) as sub:
            sub.connect("watch")
            sub.subscribe("up/#", qos=1)
            assert _carried(local_port, "up/x", sub) == b"hello"
    finally:
        assert local.stop() == 0
