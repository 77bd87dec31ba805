"""Listener tests: real mqttfast processes configured by TOML files, real clients."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest
import trustme

from tests.helpers.fixtures import apply_collection_rules, register_markers

from .support import ConfigBroker


def pytest_configure(config: pytest.Config) -> None:
    register_markers(config)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    apply_collection_rules(items, config, Path(__file__).parent)
    for item in items:
        if Path(str(item.fspath)).resolve().is_relative_to(Path(__file__).parent.resolve()):
            item.add_marker(pytest.mark.mqttfast_only("mqttfast listeners and config"))


@pytest.fixture
def start_broker(tmp_path: Path) -> Iterator[Callable[..., ConfigBroker]]:
    """``start_broker(toml_text, wait=[ports...])`` -> a running ConfigBroker, stopped
    (and its log checked for tracebacks) at teardown."""
    started: list[ConfigBroker] = []

    def start(text: str, wait=(), args=(), mosquitto: bool = False) -> ConfigBroker:
        b = ConfigBroker(tmp_path, text, args=args, mosquitto=mosquitto, wait=wait)
        started.append(b)
        return b.start()

    yield start
    for b in started:
        alive = b.running()
        b.stop()
        assert alive or b.proc.returncode is not None


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, str]:
    """A CA, a server certificate for localhost/127.0.0.1/::1, a client certificate
    (CN sensor-9) and a client certificate from another CA, as PEM files."""
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1", "::1")
    client = ca.issue_cert("sensor-9.example", common_name="sensor-9")
    rogue = trustme.CA().issue_cert("rogue.example", common_name="sensor-9")
    files: dict[str, str] = {}
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    files["ca"] = str(tmp_path / "ca.pem")
    for name, leaf in (("server", server), ("client", client), ("rogue", rogue)):
        leaf.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / f"{name}.pem"))
        files[name] = str(tmp_path / f"{name}.pem")
    leaf = server
    leaf.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    with open(tmp_path / "server.crt", "wb") as fh:
        for blob in server.cert_chain_pems:
            fh.write(blob.bytes())
    files["server_cert"] = str(tmp_path / "server.crt")
    files["server_key"] = str(tmp_path / "server.key")
    return files
