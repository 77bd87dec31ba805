"""Interop with Debian's mosquitto_pub / mosquitto_sub (mosquitto-clients), MQTT 3.1.1
and 3.1: QoS 0/1/2, retained, persistent sessions (-c), wills (--will-*)."""

from __future__ import annotations

import pytest

from ._proc import LineProcess, require_program

FORMAT = "MSG\t%t\t%q\t%r\t%x"  # topic, QoS, retain flag, payload as hex


def mosquitto_sub(port: int, *args: str, timeout_s: int = 10) -> LineProcess:
    exe = require_program("mosquitto_sub")
    # stdbuf: line-buffered stdout through the pipe, so "received SUBACK" is seen at once.
    return LineProcess(
        [
            require_program("stdbuf"),
            "-oL",
            exe,
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-d",
            "-F",
            FORMAT,
            "-W",
            str(timeout_s),
            *args,
        ]
    )


def mosquitto_pub(port: int, *args: str, stdin_data: bytes | None = None) -> LineProcess:
    exe = require_program("mosquitto_pub")
    return LineProcess([exe, "-h", "127.0.0.1", "-p", str(port), *args], stdin_data=stdin_data)


def run_pub(port: int, *args: str, stdin_data: bytes | None = None) -> None:
    with mosquitto_pub(port, *args, stdin_data=stdin_data) as p:
        rc = p.wait(10)
        assert rc == 0, f"mosquitto_pub {args} exit {rc}: {p.lines} {p.stderr()}"


def wait_subscribed(sub: LineProcess) -> None:
    sub.wait_for_line(lambda ln: "received SUBACK" in ln, timeout=5)


def messages(sub: LineProcess, timeout: float = 10) -> list[tuple[str, int, bool, bytes]]:
    """Read until mosquitto_sub exits (after -C messages); the parsed messages."""
    out = []
    while True:
        line = sub.readline(timeout)
        if line is None:
            break
        if line.startswith("MSG\t"):
            _, topic, qos, retain, hexpayload = line.split("\t")
            out.append((topic, int(qos), retain == "1", bytes.fromhex(hexpayload)))
    rc = sub.wait(5)
    assert rc == 0, f"mosquitto_sub exit {rc}: {sub.lines[-10:]} {sub.stderr()}"
    return out


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_mosquitto_pub_to_mosquitto_sub(broker, qos) -> None:
    """mosquitto_pub -q n -> mosquitto_sub -q n through the broker."""
    with mosquitto_sub(broker.port, "-t", "mq/t", "-q", str(qos), "-C", "1") as sub:
        wait_subscribed(sub)
        run_pub(broker.port, "-t", "mq/t", "-q", str(qos), "-m", f"hello-q{qos}")
        assert messages(sub) == [("mq/t", qos, False, f"hello-q{qos}".encode())]


def test_mosquitto_pub_lines_in_order(broker) -> None:
    """mosquitto_pub -l publishes each stdin line (QoS 1); mosquitto_sub gets them in order
    ([MQTT-4.6.0-6])."""
    lines = [f"line-{i}" for i in range(50)]
    with mosquitto_sub(broker.port, "-t", "mq/lines", "-q", "1", "-C", "50") as sub:
        wait_subscribed(sub)
        run_pub(
            broker.port,
            "-t",
            "mq/lines",
            "-q",
            "1",
            "-l",
            stdin_data=("\n".join(lines) + "\n").encode(),
        )
        got = messages(sub)
    assert [m[3].decode() for m in got] == lines


def test_mosquitto_sub_receives_raw_publish_binary(broker, raw) -> None:
    """Binary payload (all 256 byte values) from a raw client reaches mosquitto_sub intact."""
    payload = bytes(range(256))
    with mosquitto_sub(broker.port, "-t", "mq/bin/#", "-q", "2", "-C", "1") as sub:
        wait_subscribed(sub)
        raw(client_id="rawpub").publish("mq/bin/x", payload, qos=2)
        assert messages(sub) == [("mq/bin/x", 2, False, payload)]


def test_mosquitto_pub_retained(broker) -> None:
    """mosquitto_pub -r: a later mosquitto_sub gets it with the retain flag; -r -n clears it."""
    run_pub(broker.port, "-t", "mq/ret", "-q", "1", "-r", "-m", "kept")
    with mosquitto_sub(broker.port, "-t", "mq/ret", "-q", "1", "-C", "1") as sub:
        assert messages(sub) == [("mq/ret", 1, True, b"kept")]
    run_pub(broker.port, "-t", "mq/ret", "-q", "1", "-r", "-n")
    with mosquitto_sub(broker.port, "-t", "mq/ret", "-q", "1", "-C", "1", timeout_s=1) as sub:
        out = []
        while (line := sub.readline(5)) is not None:
            out.append(line)
        sub.wait(5)  # -W 1 ends it (exit code 27: timed out), nothing received
    assert not [ln for ln in out if ln.startswith("MSG\t")]


def test_mosquitto_sub_persistent_session(broker) -> None:
    """mosquitto_sub -c -i ID (clean session off): subscribe, leave (-E), QoS 1 and 2
    messages published meanwhile arrive on the next -c run, in order."""
    common = ("-i", "mq-persist", "-c", "-t", "mq/ps", "-q", "2")
    with mosquitto_sub(broker.port, *common, "-E") as first:
        assert messages(first) == []
    run_pub(broker.port, "-t", "mq/ps", "-q", "1", "-m", "offline-1")
    run_pub(broker.port, "-t", "mq/ps", "-q", "2", "-m", "offline-2")
    with mosquitto_sub(broker.port, *common, "-C", "2") as again:
        got = messages(again)
    assert [(m[1], m[3]) for m in got] == [(1, b"offline-1"), (2, b"offline-2")]


def test_mosquitto_sub_will_on_kill(broker, raw) -> None:
    """[MQTT-3.1.2-8] mosquitto_sub --will-topic/--will-payload killed -9: will published,
    with its QoS and retain flag ([MQTT-3.1.2-17])."""
    watcher = raw(client_id="watcher")
    watcher.subscribe(("mq/will", 2))
    with mosquitto_sub(
        broker.port,
        "-t",
        "mq/x",
        "-i",
        "mq-dying",
        "--will-topic",
        "mq/will",
        "--will-payload",
        "mq-gone",
        "--will-qos",
        "1",
        "--will-retain",
        timeout_s=30,
    ) as dying:
        wait_subscribed(dying)
        dying.kill()
    got = watcher.recv_publish(timeout=5)
    assert (got.topic, got.payload, got.qos) == ("mq/will", b"mq-gone", 1)
    with mosquitto_sub(broker.port, "-t", "mq/will", "-C", "1") as late:
        assert messages(late) == [("mq/will", 0, True, b"mq-gone")]


def test_mosquitto_sub_no_will_on_normal_exit(broker, raw) -> None:
    """[MQTT-3.14.4-3] mosquitto_sub exiting normally (-C 1) sends DISCONNECT: no will."""
    watcher = raw(client_id="watcher")
    watcher.subscribe("mq/w2")
    with mosquitto_sub(
        broker.port,
        "-t",
        "mq/trigger",
        "-C",
        "1",
        "--will-topic",
        "mq/w2",
        "--will-payload",
        "nope",
    ) as sub:
        wait_subscribed(sub)
        run_pub(broker.port, "-t", "mq/trigger", "-m", "go")
        assert len(messages(sub)) == 1
    watcher.expect_no_packet(1.0)


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_mqtt31_mosquitto_clients(broker, qos) -> None:
    """-V mqttv31: MQTT 3.1 (MQIsdp) mosquitto_pub and mosquitto_sub interoperate."""
    with mosquitto_sub(
        broker.port, "-V", "mqttv31", "-t", "mq/31", "-q", str(qos), "-C", "1"
    ) as sub:
        wait_subscribed(sub)
        run_pub(broker.port, "-V", "mqttv31", "-t", "mq/31", "-q", str(qos), "-m", "v31")
        assert messages(sub) == [("mq/31", qos, False, b"v31")]


def test_mosquitto_sub_wildcards_and_dollar(broker) -> None:
    """'#' subscriber (mosquitto_sub) does not see '$' topics [MQTT-4.7.2-1] but sees others."""
    with mosquitto_sub(broker.port, "-t", "#", "-C", "1") as sub:
        wait_subscribed(sub)
        run_pub(broker.port, "-t", "$private/x", "-m", "hidden")
        run_pub(broker.port, "-t", "public/x", "-m", "seen")
        assert messages(sub) == [("public/x", 0, False, b"seen")]
