"""Prometheus /metrics after real traffic: the counters match what the test sent."""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt

from tests.helpers.rawclient import RawClient

from .support import sample, wait_for

PAYLOADS = {0: [b"a" * 10] * 5, 1: [b"bb" * 20] * 4, 2: [b"c" * 300] * 3}  # per QoS


def _paho(client_id: str, port: int, proto: int = mqtt.MQTTv311) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=proto)
    c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()
    return c


def _publish_size(topic: str, payload: bytes, qos: int) -> int:
    """Bytes of an MQTT 3.1.1 PUBLISH (3.3): fixed header + topic + packet id + payload."""
    body = 2 + len(topic.encode()) + (2 if qos else 0) + len(payload)
    varint = 1 if body < 128 else 2 if body < 16384 else 3
    return 1 + varint + body


def test_metrics_counters_match_traffic(ops_broker) -> None:
    b = ops_broker(["--sys-interval", "0"], admin=False)
    got: list[mqtt.MQTTMessage] = []
    done = threading.Event()
    total = sum(len(v) for v in PAYLOADS.values())
    sub = _paho("metrics-sub", b.port)
    pub = _paho("metrics-pub", b.port)
    try:

        def on_message(client, userdata, msg):  # type: ignore[no-untyped-def]
            got.append(msg)
            if len(got) == total:
                done.set()

        sub.on_message = on_message
        subscribed = threading.Event()
        sub.on_subscribe = lambda *a: subscribed.set()
        sub.subscribe("m/#", qos=2)
        assert subscribed.wait(5)
        for qos, payloads in PAYLOADS.items():
            for p in payloads:
                pub.publish("m/x", p, qos=qos).wait_for_publish(5)
        pub.publish("keep/retained", b"r" * 7, qos=1, retain=True).wait_for_publish(5)
        assert done.wait(10), f"subscriber got {len(got)} of {total}"

        def settled():  # the last acknowledgements may still be on their way
            m = b.scrape()
            return m if sample(m, "mqttfast_inflight_messages") == 0 else None

        m = wait_for(settled, what="no message in flight")
    finally:
        sub.disconnect()
        sub.loop_stop()
        pub.disconnect()
        pub.loop_stop()

    for qos, payloads in PAYLOADS.items():
        n = len(payloads) + (1 if qos == 1 else 0)  # + the retained one at QoS 1
        payload_bytes = sum(map(len, payloads)) + (7 if qos == 1 else 0)
        assert sample(m, "mqttfast_messages_received_total", qos=str(qos)) == n
        assert (
            sample(m, "mqttfast_publish_payload_bytes_received_total", qos=str(qos))
            == payload_bytes
        )
        # Delivered at the publish QoS (subscription QoS 2), one subscriber, 3.1.1 encoding.
        assert sample(m, "mqttfast_messages_sent_total", qos=str(qos)) == len(payloads)
        assert sample(m, "mqttfast_publish_bytes_sent_total", qos=str(qos)) == sum(
            _publish_size("m/x", p, qos) for p in payloads
        )
    assert sample(m, "mqttfast_connections") == 2
    assert sample(m, "mqttfast_sessions", state="online") == 2
    assert sample(m, "mqttfast_subscriptions") == 1
    assert sample(m, "mqttfast_retained_messages") == 1
    assert sample(m, "mqttfast_retained_bytes") == 7
    assert sample(m, "mqttfast_connections_accepted_total") == 2
    assert sample(m, "mqttfast_bytes_received_total") > sum(
        len(p) for v in PAYLOADS.values() for p in v
    )
    assert sample(m, "mqttfast_queued_messages") == 0
    assert sample(m, "mqttfast_auth_failures_total") == 0
    for reason in ("queue_full", "qos0_buffer_full", "too_large", "expired", "retained_store_full"):
        assert sample(m, "mqttfast_messages_dropped_total", reason=reason) == 0
    assert 0 <= sample(m, "mqttfast_event_loop_lag_seconds") < 1.0
    assert sample(m, "process_resident_memory_bytes") > 1_000_000
    assert (
        sample(
            m,
            "mqttfast_info",
            version=__import__("mqttfast").__version__,
            codec=next(k[1][0][1] for k in m if k[0] == "mqttfast_info"),
        )
        == 1
    )


def test_metrics_queued_and_dropped_queue_full(ops_broker) -> None:
    """An offline persistent session holds at most --max-queued-messages; the rest are
    dropped and counted by reason."""
    b = ops_broker(["--sys-interval", "0", "--max-queued-messages", "3"], admin=False)
    with RawClient(b.port) as sub:
        sub.connect("offline-sub", clean_start=False)
        sub.subscribe(("q/#", 1))
        sub.disconnect()
    with RawClient(b.port) as pub:
        pub.connect("q-pub")
        for i in range(5):
            pub.publish("q/t", f"m{i}", qos=1)
        m = b.scrape()
    assert sample(m, "mqttfast_queued_messages") == 3
    assert sample(m, "mqttfast_messages_dropped_total", reason="queue_full") == 2
    assert sample(m, "mqttfast_sessions", state="offline") == 1
    assert "queue full" in b.log_text()  # a limit hit is logged (rate-limited)


def test_metrics_auth_failures(ops_broker, tmp_path) -> None:
    conf = tmp_path / "mqttfast.toml"
    conf.write_text("[auth]\nallow_anonymous = false\n")
    b = ops_broker(["--config", str(conf), "--sys-interval", "0"], admin=False)
    for _ in range(2):
        with RawClient(b.port) as c:
            c.connect("anon", expect_rc=5)  # 3.1.1: not authorised
    m = b.scrape()
    assert sample(m, "mqttfast_auth_failures_total") == 2
    assert sample(m, "mqttfast_connections") == 0


def test_sys_topics_in_sync_with_metrics(ops_broker) -> None:
    """$SYS and /metrics read the same counters."""
    b = ops_broker(["--sys-interval", "1"], admin=False)
    with RawClient(b.port) as pub:
        pub.connect("sys-pub")
        for _i in range(7):
            pub.publish("s/t", b"x", qos=1)
        m = b.scrape()
        received = sum(sample(m, "mqttfast_messages_received_total", qos=q) for q in "012")
        assert received == 7
        with RawClient(b.port) as mon:
            mon.connect("sys-mon")
            mon.subscribe(
                "$SYS/broker/publish/messages/received", "$SYS/broker/retained messages/count"
            )

            def sys_value():
                pub_ = mon.recv_publish(timeout=3)
                values[pub_.topic] = pub_.payload.decode()
                return values.get("$SYS/broker/publish/messages/received") == "7"

            values: dict[str, str] = {}
            wait_for(sys_value, timeout=5, what="$SYS messages received = 7")
        m = b.scrape()
        assert sample(m, "mqttfast_retained_messages") >= 1  # the $SYS topics are retained


def test_metrics_off_by_default(ops_broker) -> None:
    b = ops_broker(metrics=False, admin=False)
    b.wait_for_log("mqttfast 0.")  # the start-up line; endpoints would be logged right after
    b.stop()
    assert "metrics on" not in b.log_text()
    assert "admin API" not in b.log_text()


def _doc_metric_rows() -> list[tuple[list[str], list[str]]]:
    """(metric names, counter names) of every row of docs/operations.md's metric table."""
    import re

    from tests.helpers.broker import REPO_ROOT

    text = (REPO_ROOT / "docs" / "operations.md").read_text()
    start = text.index("| metric | type | meaning |")
    rows = []
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        metrics = [re.sub(r"\{.*", "", m) for m in re.findall(r"`([^`]+)`", cells[0])]
        counters = re.findall(r"`([^`]+)`", cells[3]) if len(cells) > 3 else []
        rows.append((metrics, counters))
    return rows


def test_operations_doc_metric_table_is_what_metrics_serves(ops_broker) -> None:
    """Every metric /metrics serves is in docs/operations.md's table and every one there
    is served; the table's counter column names exactly the counters of /api/stats."""
    b = ops_broker(["--sys-interval", "0"])
    with RawClient(b.port) as c:  # some traffic, so every labelled family has samples
        c.connect("doc-check")
        c.publish("d/t", b"x", qos=1)
    served = {name for name, _labels in b.scrape()}
    families = set()
    for name in served:
        for suffix in ("_total", "_created", "_bucket", "_count", "_sum"):
            if name.endswith(suffix) and not name.startswith("process_"):
                name = name[: -len(suffix)] + ("_total" if suffix == "_total" else "")
                break
        families.add(name)
    rows = _doc_metric_rows()
    documented = {m for metrics, _ in rows for m in metrics if m != "..."}
    ours = {f for f in families if f.startswith("mqttfast_")}
    assert ours == {m for m in documented if m.startswith("mqttfast_")}
    assert {m for m in documented if m.startswith("process_")} <= families
    _, stats = b.api("GET", "/api/stats")
    counters = set(stats["counters"])
    in_doc = {c for _, cs in rows for c in cs}
    without_metric = {"clients_total_ever", "publish_dropped"}  # named below the table
    assert in_doc | without_metric == counters
    assert not set(stats) & counters  # one name, one meaning
