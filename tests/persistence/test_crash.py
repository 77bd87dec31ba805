"""Crash test: ``kill -9`` under QoS 1/2 load, several bounded rounds.

A publisher pipelines QoS 1 and QoS 2 messages; subscriber A (MQTT 5, QoS 2,
persistent, online the whole time) and subscriber B (MQTT 3.1.1, QoS 1,
persistent, offline during the load) hold sessions. At a random moment the
broker is SIGKILLed, then restarted on the same data directory. Checked:

* the database opens cleanly every time (the broker starts);
* every message the broker acknowledged to the publisher (PUBACK for QoS 1,
  PUBCOMP for QoS 2) is delivered to A and to B after the restarts
  (strict durability: an acknowledgement leaves only after the commit);
* no QoS 2 duplicate at A [MQTT-4.3.3-*]: A is a correct QoS 2 receiver
  (method B: it delivers on PUBLISH and ignores a re-sent PUBLISH whose packet
  id awaits PUBREL), so any duplicate would be the broker's.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import pytest

from mqttfast.codec.packets import Properties, Puback, Pubcomp, Publish, Pubrec, Pubrel
from tests.helpers.rawclient import ConnectionClosed, NoPacket, RawClient

from .helpers import DurableBroker

ROUNDS = 4
TOPIC = "crash/load"


class Receiver:
    """A persistent subscriber whose QoS 2 receiver state outlives its connections."""

    def __init__(self, name: str, port: int, version: int, qos: int) -> None:
        self.name, self.port, self.version, self.qos = name, port, version, qos
        self.counts: Counter[int] = Counter()
        self.awaiting: set[int] = set()  # QoS 2 ids between PUBREC and PUBREL
        self.client: RawClient | None = None
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def connect(self, first: bool = False) -> None:
        c = RawClient(self.port, self.version)
        props = Properties(session_expiry_interval=3600) if self.version == 5 else None
        connack = c.connect(self.name, clean_start=False, properties=props)
        if first:
            c.subscribe((TOPIC, self.qos))
        else:
            assert connack.session_present, f"{self.name}: session lost"
        self.client = c

    def handle(self, pkt: object) -> None:
        c = self.client
        if isinstance(pkt, Publish):
            n = int(pkt.payload)
            if pkt.qos == 2:
                if pkt.packet_id not in self.awaiting:
                    self.counts[n] += 1
                    self.awaiting.add(pkt.packet_id)
                c.send_packet(Pubrec(packet_id=pkt.packet_id))
            else:
                self.counts[n] += 1
                if pkt.qos == 1:
                    c.send_packet(Puback(packet_id=pkt.packet_id))
        elif isinstance(pkt, Pubrel):
            self.awaiting.discard(pkt.packet_id)
            c.send_packet(Pubcomp(packet_id=pkt.packet_id))

    def run(self, idle: float | None = None) -> None:
        """Handle packets until stopped, the connection drops, or ``idle`` s of quiet."""
        while not self.stop.is_set():
            try:
                pkt = self.client.recv_packet(timeout=idle if idle is not None else 0.2)
            except NoPacket:
                if idle is not None:
                    return
                continue
            except (ConnectionClosed, OSError):
                return
            try:
                self.handle(pkt)
            except OSError:
                return

    def start_thread(self) -> None:
        self.stop.clear()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def join(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(10)
            assert not self.thread.is_alive()
        self.stop.clear()  # run(idle=...) is used again after the restart
        if self.client is not None:
            self.client.close()


class Publisher(threading.Thread):
    """Pipelines batches of QoS 1/2 PUBLISHes; records what the broker acknowledged."""

    def __init__(self, port: int, first_n: int, acked: set[int]) -> None:
        super().__init__(daemon=True)
        self.port, self.n, self.acked = port, first_n, acked
        self.sent = 0

    def run(self) -> None:
        try:
            c = RawClient(self.port, 5)
            c.connect(f"crash-pub-{self.n}")
        except (OSError, AssertionError, ConnectionClosed, NoPacket):
            return
        try:
            while True:
                batch: dict[int, int] = {}
                for _ in range(25):
                    n = self.n
                    self.n += 1
                    pid = n % 60000 + 1
                    qos = 1 if n % 2 else 2
                    c.send_packet(Publish(TOPIC, str(n).encode(), qos=qos, packet_id=pid))
                    batch[pid] = n
                    self.sent += 1
                while batch:
                    pkt = c.recv_packet(timeout=5.0)
                    if isinstance(pkt, Puback) and pkt.packet_id in batch:
                        assert pkt.reason_code == 0
                        self.acked.add(batch.pop(pkt.packet_id))
                    elif isinstance(pkt, Pubrec) and pkt.packet_id in batch:
                        assert pkt.reason_code == 0
                        c.send_packet(Pubrel(packet_id=pkt.packet_id))
                    elif isinstance(pkt, Pubcomp) and pkt.packet_id in batch:
                        self.acked.add(batch.pop(pkt.packet_id))
        except (TimeoutError, ConnectionClosed, NoPacket, OSError):
            return  # the broker was killed
        finally:
            c.close()


@pytest.mark.timeout(180)
def test_kill_9_under_load_loses_no_acknowledged_message(tmp_path) -> None:
    rng = random.Random(0x5EED)
    b = DurableBroker(tmp_path / "data", ["--max-queued-messages", "0", "--log-level", "info"])
    b.start()
    try:
        a = Receiver("crash-sub-a", b.port, 5, 2)
        a.connect(first=True)
        bsub = Receiver("crash-sub-b", b.port, 4, 1)
        bsub.connect(first=True)
        bsub.client.disconnect()
        acked: set[int] = set()
        n = 0
        for _ in range(ROUNDS):
            a.start_thread()
            pub = Publisher(b.port, n, acked)
            pub.start()
            time.sleep(rng.uniform(0.4, 1.5))
            b.crash()
            pub.join(15)
            assert not pub.is_alive()
            a.join()
            n = pub.n
            b.start()  # the database must open cleanly after every crash
            a.connect()
            a.run(idle=1.0)
            bsub.connect()
            bsub.run(idle=1.0)
            bsub.client.disconnect()
        assert len(acked) > 200, f"too little load to mean anything: {len(acked)} acknowledged"
        missing_a = sorted(acked - set(a.counts))
        missing_b = sorted(acked - set(bsub.counts))
        assert not missing_a, f"A lost {len(missing_a)} acknowledged messages: {missing_a[:20]}"
        assert not missing_b, f"B lost {len(missing_b)} acknowledged messages: {missing_b[:20]}"
        dups = {k: v for k, v in a.counts.items() if k % 2 == 0 and v > 1}
        assert not dups, f"QoS 2 duplicates at A: {dups}"
        assert not (set(a.counts) - set(range(n))), "A received messages never sent"
        a.client.disconnect()
    finally:
        log = b.log_text()
        b.close()
    assert "Traceback" not in log, log[-4000:]
