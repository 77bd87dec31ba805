"""One load-generating process: an asyncio loop driving its share of the clients.

Publishers and subscribers speak MQTT 3.1.1 through ``mqttfast.codec``: the constant
part of each PUBLISH (fixed header + topic) is encoded once by the codec, each message
only adds its 16-byte stamp and padding, and a batch goes out in one ``writelines``.
Incoming bytes go through one ``Decoder`` per client; acknowledgements produced by one
read are written together.

Coordination with the parent and the other workers uses shared arrays (no locks, one
writer per slot): ``sent[p]`` and ``done[p]`` by publisher ``p``, ``recv[s * npubs + p]``
(unique messages of ``p`` seen by subscriber ``s``) by subscriber ``s``. A publisher keeps
at most ``max_ahead`` messages in flight end to end (sent minus the slowest of its
subscribers), so the measured rate is sustainable rather than a queue filling up.
"""

from __future__ import annotations

import asyncio
import resource
import ssl
import struct
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from mqttfast.codec import (
    Connack,
    Connect,
    Decoder,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Subscription,
    encode,
    encode_publish,
)

from ..heap import MiB, steady_heap
from . import hist

C = TypeVar("C", bound="Client")
MIN_SLEEP_S = 0.001  # the event loop's timer resolution (uvloop: milliseconds)
SPINS_BEFORE_SLEEP = 2000  # loop turns a capped publisher yields before it sleeps
STAMP = struct.Struct(">qII")  # send time (ns, CLOCK_MONOTONIC), publisher index, sequence
STAMP_SIZE = STAMP.size
monotonic_ns = time.monotonic_ns


class Client(asyncio.Protocol):
    """One MQTT connection; subclasses handle PUBLISH / acknowledgements."""

    def __init__(self, loop: asyncio.AbstractEventLoop, client_id: str) -> None:
        self.loop = loop
        self.client_id = client_id
        self.decoder = Decoder(protocol_version=4)
        self.transport: Any = None
        self.connack: asyncio.Future = loop.create_future()
        self.suback: asyncio.Future = loop.create_future()
        self.writable = asyncio.Event()
        self.writable.set()
        self.closed = False
        self.error: str | None = None
        self.expect_close = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.writable.set()
        if not self.expect_close and self.error is None:
            self.error = f"{self.client_id}: connection lost ({exc or 'closed by broker'})"
        for fut in (self.connack, self.suback):
            if not fut.done():
                fut.set_exception(ConnectionError(self.error or "connection lost"))
                fut.exception()  # retrieved: an awaiter still gets it, nobody else warns

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def data_received(self, data: bytes) -> None:
        try:
            pkts = self.decoder.feed(data)
        except Exception as err:  # a broken broker answer: this client stops
            self.error = f"{self.client_id}: bad packet from broker: {err}"
            self.transport.close()
            return
        self.handle(pkts)

    def handle(self, pkts: Sequence[Any]) -> None:
        for pkt in pkts:
            t = type(pkt)
            if t is Connack:
                if pkt.reason_code:
                    self.error = f"{self.client_id}: CONNACK return code {pkt.reason_code}"
                    self.connack.set_exception(ConnectionError(self.error))
                elif not self.connack.done():
                    self.connack.set_result(True)
            elif t is Suback:
                if not self.suback.done():
                    self.suback.set_result(pkt)


class Publisher(Client):
    def __init__(self, loop: asyncio.AbstractEventLoop, client_id: str) -> None:
        super().__init__(loop, client_id)
        self.inflight = 0
        self.acked = asyncio.Event()

    def handle(self, pkts: Sequence[Any]) -> None:
        released = 0
        out = []
        for pkt in pkts:
            t = type(pkt)
            if t is Puback or t is Pubcomp:
                released += 1
            elif t is Pubrec:
                out.append(b"\x62\x02" + pkt.packet_id.to_bytes(2, "big"))
            else:
                super().handle((pkt,))
        if out:
            self.transport.writelines(out)
        if released:
            self.inflight -= released
            self.acked.set()


class Subscriber(Client):
    def __init__(
        self, loop: asyncio.AbstractEventLoop, client_id: str, sidx: int, npubs: int, recv: Any
    ) -> None:
        super().__init__(loop, client_id)
        self.base = sidx * npubs
        self.recv = recv
        self.unique = [0] * npubs
        self.next_seq = [1] * npubs
        self.received = 0
        self.dups = 0
        self.hist = hist.new()
        self.last_at = 0
        self.progressed: asyncio.Event | None = None  # set after each read that counted messages

    def handle(self, pkts: Sequence[Any]) -> None:
        now = monotonic_ns()
        out = []
        unique = self.unique
        next_seq = self.next_seq
        h = self.hist
        bucket = hist.bucket
        unpack = STAMP.unpack_from
        got = 0
        for pkt in pkts:
            t = type(pkt)
            if t is Publish:
                ts, p, seq = unpack(pkt.payload)
                got += 1
                h[bucket((now - ts) // 1000)] += 1
                if seq < next_seq[p]:
                    self.dups += 1
                else:
                    next_seq[p] = seq + 1
                    unique[p] += 1
                q = pkt.qos
                if q == 1:
                    out.append(b"\x40\x02" + pkt.packet_id.to_bytes(2, "big"))
                elif q == 2:
                    out.append(b"\x50\x02" + pkt.packet_id.to_bytes(2, "big"))
            elif t is Pubrel:
                out.append(b"\x70\x02" + pkt.packet_id.to_bytes(2, "big"))
            else:
                super().handle((pkt,))
        if out:
            self.transport.writelines(out)
        if got:
            self.received += got
            self.last_at = now
            recv = self.recv
            base = self.base
            for p, n in enumerate(unique):
                if n:
                    recv[base + p] = n
            if self.progressed is not None:
                self.progressed.set()


def client_tls(cfg: dict) -> ssl.SSLContext | None:
    if not cfg["tls"]:
        return None
    ctx = ssl.create_default_context(cafile=cfg["cafile"])
    if cfg["insecure"]:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Worker:
    def __init__(self, cfg: dict, shared: dict, pubs: list[int], subs: list[int]) -> None:
        self.progressed: asyncio.Event | None = None
        self.cfg = cfg
        self.shared = shared
        self.pub_idx = pubs
        self.sub_idx = subs
        self.errors: list[str] = []
        self.tls = client_tls(cfg)
        password = cfg["password"]
        self.password = password.encode() if password is not None else None

    async def open(self, factory: Callable[[], C], target: int = 0) -> C:
        loop = asyncio.get_running_loop()
        cfg = self.cfg
        host, port = cfg["targets"][target]
        _, client = await asyncio.wait_for(
            loop.create_connection(
                factory,
                host,
                port,
                ssl=self.tls,
                server_hostname=(None if self.tls is None else ("" if cfg["insecure"] else host)),
            ),
            cfg["connect_timeout"],
        )
        client.transport.write(
            encode(
                Connect(
                    client_id=client.client_id,
                    keep_alive=cfg["keepalive"],
                    clean_start=not cfg.get("persistent", False),
                    username=cfg["username"],
                    password=self.password,
                ),
                4,
            )
        )
        await asyncio.wait_for(client.connack, cfg["connect_timeout"])
        return client

    async def run(self, ready: Any, start_event: Any) -> dict:
        loop = asyncio.get_running_loop()
        cfg = self.cfg
        if cfg["scenario"] == "connections":
            return await self.run_connections(ready, start_event)
        npubs = cfg["npubs"]
        recv = self.shared["recv"]
        tag = cfg["tag"]
        subs: list[Subscriber] = []
        pubs: list[Publisher] = []
        self.progressed = asyncio.Event()
        for s in self.sub_idx:

            def new_sub(s: int = s) -> Subscriber:
                return Subscriber(loop, f"{tag}-s{s}", s, npubs, recv)

            c = await self.open(new_sub, cfg["sub_target"][s])
            c.progressed = self.progressed
            c.transport.write(
                encode(Subscribe(1, [Subscription(cfg["sub_filter"](s), cfg["qos"])]), 4)
            )
            suback = await asyncio.wait_for(c.suback, cfg["connect_timeout"])
            if any(rc >= 0x80 for rc in suback.reason_codes):
                raise ConnectionError(f"subscription refused: {suback.reason_codes}")
            subs.append(c)
        for p in self.pub_idx:

            def new_pub(p: int = p) -> Publisher:
                return Publisher(loop, f"{tag}-p{p}")

            pubs.append(await self.open(new_pub, cfg["pub_target"][p]))
        ready()
        await loop.run_in_executor(None, start_event.wait)
        start_ns = self.shared["start_ns"].value
        delay = (start_ns - monotonic_ns()) / 1e9
        if delay > 0:
            await asyncio.sleep(delay)
        cpu0 = cpu_seconds()
        tasks = [
            asyncio.ensure_future(self.publish(c, p, start_ns)) for c, p in zip(pubs, self.pub_idx)
        ]
        tasks += [asyncio.ensure_future(self.drain(c, s)) for c, s in zip(subs, self.sub_idx)]
        await asyncio.gather(*tasks)
        cpu = cpu_seconds() - cpu0
        every: list[Client] = [*subs, *pubs]
        for client in every:
            self.errors.append(client.error) if client.error else None
            client.expect_close = True
            if not client.closed:
                client.transport.write(b"\xe0\x00")  # DISCONNECT
                client.transport.close()
        h = hist.new()
        for c in subs:
            hist.merge(h, c.hist)
        return {
            "received": sum(c.received for c in subs),
            "unique": sum(sum(c.unique) for c in subs),
            "dups": sum(c.dups for c in subs),
            "last_ns": max([c.last_at for c in subs], default=0),
            "hist": h,
            "errors": [e for e in self.errors if e],
            "cpu_s": cpu,
        }

    async def publish(self, c: Publisher, p: int, start_ns: int) -> None:
        cfg = self.cfg
        shared = self.shared
        sent_arr, recv, done = shared["sent"], shared["recv"], shared["done"]
        qos, size, batch = cfg["qos"], cfg["size"], cfg["batch"]
        window, max_ahead = cfg["window"], cfg["max_ahead"]
        count = cfg["count"]
        end_ns = start_ns + int(cfg["duration"] * 1e9) if cfg["duration"] else None
        rate = cfg["rate_per_pub"]
        # At a fixed rate the publishers take turns (publisher p starts p/npubs of a period
        # late) instead of all sending at the same instant, which would measure a burst.
        paced_from = start_ns + (int(1e9 * p / cfg["npubs"] / rate) if rate else 0)
        watch = [s * cfg["npubs"] + p for s in cfg["subs_of"](p)]
        # A shared subscription delivers each message to one consumer: progress is the sum.
        progress = sum if cfg.get("shared") else min
        # Subscribers in this process wake a capped publisher the moment they count a message;
        # those in other processes are polled (see below).
        local = set(self.sub_idx).issuperset(cfg["subs_of"](p))
        progressed = self.progressed
        assert progressed is not None
        topic = cfg["pub_topic"](p)
        # The codec encodes the constant part once: the packet for a zero-filled payload
        # minus that payload (and minus the packet id for QoS 1/2).
        template = encode_publish(topic, bytes(size), qos, False, False, 1 if qos else 0, None, 4)
        prefix = template[: len(template) - size - (2 if qos else 0)]
        pad = bytes(size - STAMP_SIZE)
        pack = STAMP.pack
        transport = c.transport
        seq = 0
        pid = 0
        capped = 0
        while not c.closed:
            now = monotonic_ns()
            if end_ns is not None and now >= end_ns:
                break
            n = batch if not count else min(batch, count - seq)
            if n <= 0:
                break
            if rate:
                due = int((now - paced_from) * rate / 1e9) + 1 - seq if now >= paced_from else 0
                if due <= 0:
                    # At least a millisecond: uvloop's timers have that resolution, and a
                    # shorter sleep returns at once, so the publisher would spin on the CPU
                    # the broker needs. The stamp is taken after waking: no latency is added.
                    wait = (seq / rate) - (now - paced_from) / 1e9
                    await asyncio.sleep(max(wait, MIN_SLEEP_S))
                    continue
                n = min(n, due)
            if qos:
                n = min(n, window - c.inflight)
                if n <= 0:
                    c.acked.clear()
                    try:
                        await asyncio.wait_for(c.acked.wait(), 0.05)
                    except TimeoutError:
                        pass
                    continue
            if max_ahead:
                ahead = seq - progress([recv[i] for i in watch])
                if ahead + n > max_ahead:
                    n = max_ahead - ahead
                    if n <= 0:
                        if local:
                            progressed.clear()
                            try:
                                await asyncio.wait_for(progressed.wait(), 0.05)
                            except TimeoutError:
                                pass
                            continue
                        # Subscribers in another process: poll their counters by yielding to
                        # the loop (its I/O keeps running) before sleeping, since a timer
                        # sleep lasts a whole millisecond under uvloop and would leave the
                        # broker idle (the C loadgen polls the same way).
                        capped += 1
                        await asyncio.sleep(0 if capped < SPINS_BEFORE_SLEEP else 0.0002)
                        continue
                capped = 0
            if not c.writable.is_set():
                await c.writable.wait()
                continue
            frames = []
            for _ in range(n):
                seq += 1
                stamp = pack(now, p, seq)
                if qos:
                    pid = pid + 1 if pid < 65535 else 1
                    frames.append(b"".join((prefix, pid.to_bytes(2, "big"), stamp, pad)))
                else:
                    frames.append(b"".join((prefix, stamp, pad)))
            if qos:
                c.inflight += n
            transport.writelines(frames)
            sent_arr[p] = seq
            await asyncio.sleep(0)
        sent_arr[p] = seq
        done[p] = 1
        # QoS 1/2: wait for the last acknowledgements (bounded) so nothing is cut short.
        limit = monotonic_ns() + int(cfg["drain"] * 1e9)
        while qos and c.inflight > 0 and not c.closed and monotonic_ns() < limit:
            c.acked.clear()
            try:
                await asyncio.wait_for(c.acked.wait(), 0.05)
            except TimeoutError:
                pass

    async def drain(self, c: Subscriber, s: int) -> None:
        """Until every message of this subscriber's publishers arrived, or the drain time."""
        cfg = self.cfg
        sent_arr, done = self.shared["sent"], self.shared["done"]
        mine = cfg["pubs_of"](s)
        recv, npubs, nsubs = self.shared["recv"], cfg["npubs"], cfg["nsubs"]
        shared = cfg.get("shared")
        all_done_at = None
        while not c.closed:
            await asyncio.sleep(0.02)
            if all(done[p] for p in mine):
                if shared:  # the whole group together has everything
                    arrived = all(
                        sum(recv[g * npubs + p] for g in range(nsubs)) >= sent_arr[p] for p in mine
                    )
                else:
                    arrived = all(c.unique[p] >= sent_arr[p] for p in mine)
                if arrived:
                    return
                now = time.monotonic()
                if all_done_at is None:
                    all_done_at = now
                elif now - all_done_at > cfg["drain"]:
                    return

    async def run_connections(self, ready: Any, start_event: Any) -> dict:
        loop = asyncio.get_running_loop()
        cfg = self.cfg
        sem = asyncio.Semaphore(cfg["connect_concurrency"])
        clients: list[Client] = []
        failed = 0
        t0 = monotonic_ns()

        async def one(i: int) -> None:
            nonlocal failed
            async with sem:
                try:
                    clients.append(
                        await self.open(
                            lambda: Client(loop, f"{cfg['tag']}-c{i}"), i % len(cfg["targets"])
                        )
                    )
                except (TimeoutError, OSError, ConnectionError) as err:
                    failed += 1
                    if len(self.errors) < 5:
                        self.errors.append(f"connection {i}: {err!r}")

        await asyncio.gather(*(one(i) for i in self.sub_idx))
        connect_s = (monotonic_ns() - t0) / 1e9
        ready()
        await loop.run_in_executor(None, start_event.wait)
        await asyncio.sleep(cfg["hold"])
        still_open = sum(1 for c in clients if not c.closed)
        for c in clients:
            c.expect_close = True
            if not c.closed:
                c.transport.write(b"\xe0\x00")
                c.transport.close()
        return {
            "connack": len(clients),
            "failed": failed,
            "open_at_end": still_open,
            "connect_s": connect_s,
            "errors": self.errors,
        }


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def worker_main(
    widx: int,
    cfg: dict,
    shared: dict,
    pubs: list[int],
    subs: list[int],
    results: Any,
    start_event: Any,
) -> None:
    """Process entry point: run the clients, put ("ready", i) then ("result", i, dict)."""
    raise_fd_limit()
    # A load generator that spends its CPU on page faults measures the machine's
    # page-fault cost rather than the broker (mqttfast/app/heap.py).
    steady_heap(trim=64 * MiB)
    try:
        import uvloop  # the event loop the broker uses too, when installed

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    worker = Worker(cfg, shared, pubs, subs)
    try:
        out = runner(worker.run(lambda: results.put(("ready", widx)), start_event))
        results.put(("result", widx, out))
    except Exception as err:  # reported by the parent as one line
        results.put(("error", widx, f"{type(err).__name__}: {err}"))
