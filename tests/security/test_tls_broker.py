"""build_server_context under the real mqttfast transport, with real TLS MQTT clients
(mosquitto_pub/mosquitto_sub from Debian) and the client certificate's CN read back."""

from __future__ import annotations

import asyncio
import subprocess
import threading
from pathlib import Path

import pytest
import trustme

from mqttfast.app.security.tls import build_server_context, identity_from_peercert

pytestmark = [pytest.mark.timeout(60), pytest.mark.interop]

WAIT = 10.0


class TlsBroker:
    """The real BrokerCore and MQTTProtocol on a TLS listener (loop in a background thread)."""

    def __init__(self, ctx) -> None:
        from mqttfast.core.broker import BrokerCore
        from mqttfast.transport.tcp import Flusher, MQTTProtocol

        self.identities: list[str | None] = []
        identities = self.identities

        class RecordingProtocol(MQTTProtocol):
            # Records what the transport would hand to use_identity_as_username.
            def connection_made(self, transport) -> None:
                identities.append(identity_from_peercert(transport.get_extra_info("peercert")))
                super().connection_made(transport)

        self.loop = asyncio.new_event_loop()
        self.broker = BrokerCore()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def start():
            flusher = Flusher(asyncio.get_running_loop())
            return await asyncio.get_running_loop().create_server(
                lambda: RecordingProtocol(self.broker, flusher), "127.0.0.1", 0, ssl=ctx
            )

        self.server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(WAIT)
        self.port = self.server.sockets[0].getsockname()[1]

    def close(self) -> None:
        async def stop():
            self.server.close()
            self.broker.shutdown()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(WAIT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)
        self.loop.close()


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, str]:
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    client = ca.issue_cert("sensor-9.example", common_name="sensor-9")
    files = {}
    for name, blob in [
        ("ca", ca.cert_pem),
        ("server_key", server.private_key_pem),
        ("client_key", client.private_key_pem),
    ]:
        files[name] = str(tmp_path / f"{name}.pem")
        blob.write_to_path(files[name])
    for name, leaf in [("server_cert", server), ("client_cert", client)]:
        files[name] = str(tmp_path / f"{name}.pem")
        with open(files[name], "wb") as fh:
            for blob in leaf.cert_chain_pems:
                fh.write(blob.bytes())
    rogue = trustme.CA().issue_cert("x", common_name="rogue")
    files["rogue"] = str(tmp_path / "rogue.pem")
    rogue.private_key_and_cert_chain_pem.write_to_path(files["rogue"])
    return files


def pub(port: int, pki: dict[str, str], *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            "mosquitto_pub",
            "-h",
            "localhost",
            "-p",
            str(port),
            "--cafile",
            pki["ca"],
            "-t",
            "tls/t",
            "-m",
            "hi",
            "-q",
            "1",
            *extra,
        ],
        capture_output=True,
        timeout=20,
        text=True,
    )


def test_mosquitto_clients_over_tls_with_client_certificates(pki) -> None:
    ctx = build_server_context(
        pki["server_cert"], pki["server_key"], cafile=pki["ca"], require_certificate=True
    )
    b = TlsBroker(ctx)
    try:
        sub = subprocess.Popen(
            [
                "mosquitto_sub",
                "-h",
                "localhost",
                "-p",
                str(b.port),
                "--cafile",
                pki["ca"],
                "--cert",
                pki["client_cert"],
                "--key",
                pki["client_key"],
                "-t",
                "tls/#",
                "-C",
                "1",
                "-W",
                "15",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            # Publish until the subscriber is up and has received one message.
            for _ in range(50):
                done = pub(b.port, pki, "--cert", pki["client_cert"], "--key", pki["client_key"])
                assert done.returncode == 0, done.stderr
                try:
                    out, _ = sub.communicate(timeout=0.2)
                    break
                except subprocess.TimeoutExpired:
                    continue
            else:
                raise AssertionError("subscriber never received the message")
        finally:
            if sub.poll() is None:
                sub.kill()
                sub.communicate(timeout=5)
        assert out.strip() == "hi"
        assert "sensor-9" in b.identities
        # No client certificate, or one from another CA: refused, never connected.
        assert pub(b.port, pki).returncode != 0
        assert pub(b.port, pki, "--cert", pki["rogue"], "--key", pki["rogue"]).returncode != 0
        # Plain MQTT on the TLS port: refused.
        plain = subprocess.run(
            ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(b.port), "-t", "t", "-m", "m"],
            capture_output=True,
            timeout=20,
        )
        assert plain.returncode != 0
    finally:
        b.close()
