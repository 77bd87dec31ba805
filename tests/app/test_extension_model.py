"""One extension model (issue 13): authentication plug-ins are Plugins, the deprecated
[[auth.plugin]] table still loads old AuthPlugin classes (with a WARNING), and plug-ins
act on clients only through BrokerAPI (pause/resume of a client's reading)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from mqttfast.codec import encode
from mqttfast.codec.packets import Publish
from tests.helpers.broker import BrokerProcess, free_port
from tests.helpers.rawclient import RawClient

from .support import EmbeddedBroker, wait_until

pytestmark = pytest.mark.timeout(60)


def connack(port: int, **kw: Any) -> int:
    with RawClient(port) as c:
        return int(c.connect("who", expect_rc=None, timeout=5.0, **kw).reason_code)


def test_auth_plugin_table_is_a_deprecated_alias(tmp_path: Path) -> None:
    """[[auth.plugin]] with an old AuthPlugin class: loaded through the one loader and run
    by the one dispatcher; a WARNING says the table is deprecated."""
    port = free_port()
    b = BrokerProcess(
        config=f'[[listener]]\nport = {port}\naddress = "127.0.0.1"\n'
        '[persistence]\nmode = "off"\n[[auth.plugin]]\n'
        'class = "tests.config.plugin_example:OnlyNamedUser"\noptions = { user = "bob" }\n',
        workdir=tmp_path,
        wait=[port],
    ).start()
    try:
        log = b.wait_for_log("deprecated")
        assert "[[plugin]]" in next(ln for ln in log.splitlines() if "deprecated" in ln)
        assert connack(port, username="bob", password=b"x") == 0
        assert connack(port, username="eve", password=b"x") == 4  # 0x86 -> 3.1.1 code 4
    finally:
        b.stop()
        b.assert_no_traceback()
        b.cleanup()


def test_authenticating_plugin_counts_as_authentication(tmp_path: Path) -> None:
    """A [[plugin]] with an authenticate hook on a listener reachable from other hosts:
    no "anonymous clients are refused" (the plug-in decides), and it does decide."""
    port = free_port()
    b = BrokerProcess(
        config=f'[[listener]]\nport = {port}\naddress = "0.0.0.0"\n'
        '[persistence]\nmode = "off"\n[[plugin]]\n'
        'class = "tests.app.plugins:TokenAuth"\noptions = { token = "s3cret" }\n',
        workdir=tmp_path,
        wait=[port],
    ).start()
    try:
        b.wait_for_log("listening on")
        assert "anonymous clients are refused" not in b.log_text()
        assert connack(port, username="u", password=b"s3cret") == 0
        assert connack(port, username="u", password=b"wrong") == 4
    finally:
        b.stop()
        b.assert_no_traceback()
        b.cleanup()


def test_pause_and_resume_reading_through_broker_api() -> None:
    """BrokerAPI.pause_reading(client_id) holds a client's input (nothing lost),
    resume_reading lets it through: the plug-ins' one way to throttle a client."""
    emb = EmbeddedBroker({"listener": [{"address": "127.0.0.1", "port": 0}]}).start()
    got: list[bytes] = []
    try:
        broker = emb.broker

        async def subscribe() -> None:
            broker.subscribe("p/#", lambda m: got.append(m.payload))

        emb._call(subscribe())
        with RawClient(broker.port) as c:
            c.connect("held")

            async def pause() -> bool:
                return bool(broker.pause_reading("held"))

            assert emb._call(pause())
            c.send(encode(Publish("p/1", b"while paused", 0), 4))
            time.sleep(0.5)
            assert got == []  # not read yet

            async def resume() -> bool:
                return bool(broker.resume_reading("held"))

            assert emb._call(resume())
            wait_until(lambda: got == [b"while paused"], what="the held message")

            async def unknown() -> tuple[bool, bool]:
                return broker.pause_reading("nobody"), broker.resume_reading("held")

            assert emb._call(unknown()) == (False, False)
    finally:
        emb.stop()
