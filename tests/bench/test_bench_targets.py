"""``mqttfast bench`` against secured and several brokers (issue 18 item 6, issue 16): user
name and password, TLS (verified, and --insecure), clients spread over several hosts:ports,
the shared-subscription IoT scenario and the broker figures taken with --pid.

Real broker processes; certificates from trustme as in tests/listeners.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mqttfast.app.security.passwords import PasswordFile
from tests.helpers.broker import BrokerProcess, free_port
from tests.listeners.support import pki, start_broker  # noqa: F401

from .test_bench_cli import bench

pytestmark = pytest.mark.timeout(90)

OFF = '[persistence]\nmode = "off"\n'


def listener(port: int) -> str:
    return f'[[listener]]\nport = {port}\naddress = "127.0.0.1"\n'


def result_of(r) -> dict:
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_username_and_password_reach_a_broker_that_requires_them(start_broker, tmp_path) -> None:
    """With the right credentials every message flows; with a wrong password the broker's
    CONNACK 4 (bad user name or password, [MQTT-3.2.2-3] table) is one line and exit 1."""
    port = free_port()
    pw = tmp_path / "passwd"
    pf = PasswordFile()
    pf.set("loader", "s3cret", iterations=1000)
    pf.save(pw)
    start_broker(listener(port) + OFF + f'[auth]\npassword_file = "{pw}"\n', wait=[port])
    base = ("pairs", "--pairs", "2", "--count", "100", "--port", str(port), "--json")
    r = bench(*base, "--username", "loader", "--password", "s3cret")
    assert r.returncode == 0, r.stdout + r.stderr
    assert result_of(r)["unique"] == 200
    r = bench(*base, "--username", "loader", "--password", "wrong")
    assert r.returncode == 1
    assert "CONNACK return code 4" in r.stderr and "Traceback" not in r.stderr
    r = bench(*base)  # anonymous: refused once a password file is configured
    assert r.returncode == 1 and "CONNACK return code 5" in r.stderr


def tls_text(pki: dict, port: int) -> str:
    return (
        listener(port)
        + f'certfile = "{pki["server_cert"]}"\nkeyfile = "{pki["server_key"]}"\n'
        + OFF
    )


def test_tls_with_cafile_and_insecure(start_broker, pki) -> None:
    """--tls --cafile verifies the broker against the CA; without the CA the handshake fails
    (one line, exit 1); --insecure skips verification."""
    port = free_port()
    start_broker(tls_text(pki, port), wait=[port])
    base = ("fanin", "--pubs", "2", "--count", "100", "--json")
    r = bench(*base, "--host", f"localhost:{port}", "--tls", "--cafile", pki["ca"])
    assert r.returncode == 0, r.stdout + r.stderr
    res = result_of(r)
    assert res["unique"] == 200 and res["targets"] == [f"localhost:{port}"]
    r = bench(*base, "--host", f"127.0.0.1:{port}", "--tls")  # system CAs only
    assert r.returncode == 1
    assert "CERTIFICATE_VERIFY_FAILED" in r.stderr and "Traceback" not in r.stderr
    r = bench(*base, "--host", f"127.0.0.1:{port}", "--tls", "--insecure")
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture
def two_brokers():
    """Two independent brokers (not bridged): a message published on one never reaches a
    subscriber of the other, which shows where the bench put each client."""
    started = [BrokerProcess(["--persistence", "off"]) for _ in range(2)]
    try:
        for b in started:
            b.start()
        yield started
    finally:
        for b in started:
            b.stop()


def test_pairs_same_host_placement_delivers(two_brokers) -> None:
    """--pub-offset 0: pair i's publisher and subscriber are both on host i mod 2."""
    a, b = two_brokers
    r = bench(
        "pairs", "--pairs", "4", "--count", "50", "--pub-offset", "0", "--drain", "1",
        "--host", f"127.0.0.1:{a.port}", "--host", f"127.0.0.1:{b.port}", "--json",
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    res = result_of(r)
    assert res["unique"] == 200 and res["targets"] == [f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"]


def test_pairs_default_placement_is_cross_host(two_brokers) -> None:
    """By default a pair's publisher and subscriber are on different hosts (the cross-node
    cell of a cluster): between two unconnected brokers nothing arrives, and the bench
    says so (loss, exit 1) instead of reporting a rate."""
    a, b = two_brokers
    r = bench(
        "pairs", "--pairs", "2", "--count", "50", "--drain", "1", "--max-ahead", "0",
        "--host", f"127.0.0.1:{a.port}", "--host", f"127.0.0.1:{b.port}", "--json",
    )  # fmt: skip
    assert r.returncode == 1
    res = result_of(r)
    assert res["sent"] == 100 and res["unique"] == 0 and res["loss"] == 100


def test_connections_spread_round_robin_over_hosts(broker) -> None:
    """Connection i goes to host i mod n: with the second host refusing, exactly half fail."""
    r = bench(
        "connections", "--conns", "20", "--hold", "0.2",
        "--host", f"127.0.0.1:{broker.port}", "--host", f"127.0.0.1:{free_port()}", "--json",
    )  # fmt: skip
    assert r.returncode == 1
    res = result_of(r)
    assert res["connack"] == 10 and res["failed"] == 10


def test_shared_subscription_scenario_delivers_each_message_once(broker) -> None:
    """The IoT cell: publishers at a fixed total rate into $share/g/telemetry/#, 4 consumers;
    each message reaches exactly one consumer of the group [MQTT-4.8.2-3], so expected ==
    sent."""
    r = bench(
        "shared", "--pubs", "20", "--subs", "4", "--rate", "400", "--duration", "1",
        "--port", str(broker.port), "--json",
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    res = result_of(r)
    assert res["pubs"] == 20 and res["subs"] == 4
    assert 300 <= res["sent"] <= 480 and res["expected"] == res["sent"] == res["unique"]
    assert res["duplicates"] == 0 and res["lat_p50_us"] <= res["lat_p99_us"]


def test_pid_gives_broker_cpu_and_rss_per_connection(broker) -> None:
    """--pid: the broker's CPU share over the run and, for connections, its RSS growth per
    connection; the load generator's own CPU share is always reported."""
    r = bench("fanin", "--count", "3000", "--port", str(broker.port), "--pid", str(broker.pid),
              "--json")  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    res = result_of(r)
    assert res["broker_cpu_pct"] > 0 and res["loadgen_cpu_pct"] > 0
    r = bench("connections", "--conns", "200", "--hold", "0.5", "--port", str(broker.port),
              "--pid", str(broker.pid), "--json")  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    res = result_of(r)
    assert res["broker_rss_kb_connected"] >= res["broker_rss_kb_before"] > 0
    assert res["rss_kb_per_conn"] is not None and res["rss_kb_per_conn"] >= 0


@pytest.mark.parametrize(
    "args",
    [
        ["fanin", "--host", "127.0.0.1:70000"],
        ["fanin", "--host", "[::1"],
        ["fanin", "--cafile", "/etc/hostname"],
        ["fanin", "--insecure"],
        ["fanin", "--tls", "--cafile", "/nonexistent/ca.pem"],
        ["fanin", "--password", "x"],
        ["pairs", "--pub-offset", "-1"],
    ],
)
def test_bad_target_flags_exit_2_with_one_line(args: list[str], tmp_path: Path) -> None:
    r = bench(*args, timeout=30)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stdout == "" and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_publishers_share_a_process_with_the_subscriber_that_holds_them_back() -> None:
    """A publisher capped by --max-ahead runs in the process of every subscriber it waits for
    (it sees their progress in the same loop turn); unconstrained publishers (a shared
    subscription, --max-ahead 0) are spread."""
    from mqttfast.app.bench.cli import assign_processes, build_parser, check, topology

    def plan(*argv: str) -> tuple[list[list[int]], list[list[int]]]:
        parser = build_parser()
        a = parser.parse_args(list(argv))
        check(parser, a)
        cfg = dict(topology(a), max_ahead=a.max_ahead)
        return assign_processes(a.procs, cfg)

    subs, pubs = plan("pairs", "--pairs", "4", "--procs", "2")
    assert subs == [[0, 2], [1, 3]] and pubs == [[0, 2], [1, 3]]
    subs, pubs = plan("fanin", "--pubs", "4", "--procs", "2")
    assert subs == [[0]] and pubs == [[0, 1, 2, 3]]  # one subscriber: one process, as the C one
    subs, pubs = plan("fanout", "--subs", "4", "--procs", "2")
    assert subs == [[0, 1, 2, 3]] and pubs == [[0]]  # the publisher waits for all four
    subs, pubs = plan("fanin", "--pubs", "4", "--procs", "2", "--max-ahead", "0")
    assert subs == [[0], []] and pubs == [[1, 3], [0, 2]]  # open loop: publishers spread
    subs, pubs = plan("shared", "--pubs", "6", "--subs", "2", "--procs", "2")
    assert subs == [[0], [1]] and sorted(pubs[0] + pubs[1]) == list(range(6)) and pubs[0]
