"""Log output: JSON lines (--log-format json) with structured fields, readable text by
default; connects, disconnects with reason, auth failures, protocol errors are logged;
payloads are not."""

from __future__ import annotations

import json
import re

from mqttfast.app.logging_setup import JsonFormatter
from tests.helpers.rawclient import RawClient

from .support import wait_for

SECRET = b"SECRET-PAYLOAD-7d1e"


def _json_lines(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)  # every line is one JSON object
        assert {"ts", "level", "logger", "msg"} <= set(rec), rec
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", rec["ts"]), rec["ts"]
        out.append(rec)
    return out


def test_json_log_lines_parse_with_structured_fields(ops_broker) -> None:
    b = ops_broker(["--log-format", "json", "--sys-interval", "0"])
    with RawClient(b.port, version=5) as c:
        c.connect("json-client")
        c.subscribe("j/t")
        c.publish("j/t", SECRET, qos=1)
        assert c.recv_publish().payload == SECRET
        c.disconnect(reason_code=0x04)  # with will message: a reason worth logging
    with RawClient(b.port, version=5) as bad:
        bad.connect("json-bad")
        bad.send(b"\x36\x02\x00\x00")  # PUBLISH with QoS 3 [MQTT-3.3.1-4]
        assert bad.expect_closed() == 0x81  # malformed packet
    recs = wait_for(
        lambda: [
            r
            for r in _json_lines(b.log_text())
            if r.get("client_id") == "json-bad" and "reason" in r
        ],
        what="the protocol error line",
    )
    records = _json_lines(b.log_text())
    connect = [
        r for r in records if r.get("client_id") == "json-client" and "connected" in r["msg"]
    ]
    assert connect and connect[0]["peer"].startswith("127.0.0.1:") and connect[0]["protocol"] == 5
    assert connect[0]["level"] == "info" and connect[0]["logger"] == "mqttfast.core"
    disc = [r for r in records if r.get("client_id") == "json-client" and "reason_code" in r]
    assert disc and disc[0]["reason_code"] == 0x04 and disc[0]["reason"] == "client disconnect"
    assert recs[0]["reason_code"] == 0x81
    assert SECRET.decode() not in b.log_text()  # even at debug level


def test_auth_failure_logged(ops_broker, tmp_path) -> None:
    conf = tmp_path / "mqttfast.toml"
    conf.write_text('[auth]\nallow_anonymous = false\n[logging]\nformat = "json"\n')
    b = ops_broker(["--config", str(conf), "--sys-interval", "0"], admin=False, metrics=False)
    with RawClient(b.port, version=5) as c:
        c.connect("intruder", expect_rc=0x87)
    recs = wait_for(
        lambda: [r for r in _json_lines(b.log_text()) if r.get("client_id") == "intruder"],
        what="the refusal line",
    )
    assert recs[0]["reason_code"] == 0x87 and recs[0]["peer"].startswith("127.0.0.1:")
    assert "refused" in recs[0]["msg"]


def test_text_log_is_human_readable_by_default(ops_broker) -> None:
    b = ops_broker(["--sys-interval", "0"], admin=False, metrics=False)
    with RawClient(b.port) as c:
        c.connect("text-client")
        c.disconnect()
    text = b.wait_for_log("text-client disconnected")
    line = next(ln for ln in text.splitlines() if "text-client connected" in ln)
    assert re.match(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO mqttfast\.core: client "
        r"text-client connected from 127\.0\.0\.1:\d+",
        line,
    ), line
    assert not line.startswith("{")


def test_json_formatter_keeps_extra_fields_and_exceptions() -> None:
    import logging

    rec = logging.LogRecord("mqttfast.x", logging.WARNING, __file__, 1, "hello %s", ("you",), None)
    rec.client_id = "c1"
    rec.reason = "queue full"
    out = json.loads(JsonFormatter().format(rec))
    assert out["msg"] == "hello you" and out["level"] == "warning"
    assert out["client_id"] == "c1" and out["reason"] == "queue full"
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        rec.exc_info = sys.exc_info()
    assert "ValueError: boom" in json.loads(JsonFormatter().format(rec))["exc"]
