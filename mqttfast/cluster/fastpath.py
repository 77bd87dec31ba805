"""The cheap cross-node data path of the backplane (issue 16).

* **Interest sharing** (``Interest``): every node announces the deduplicated filters
  its clients hold (plain and ``$share`` filter parts) on ``<ctl>.int.d``: its full
  set when it (re)connects, deltas after, one NATS message per loop turn at most. Each
  node keeps the others' filters in a codec ``TopicTree`` and publishes a message to
  NATS only when some other node (or a local ``$share`` member, whose messages come
  from NATS) has a matching filter; a topic's answer is cached until interest changes.
  A node that says goodbye or whose heartbeat stops has its interest dropped.

  Guarantee: a SUBSCRIBE that adds interest is acknowledged (SUBACK) only once every
  node this node knows has confirmed the announcement (each applies it, then replies),
  or after ``ANNOUNCE_TIMEOUT`` for a node that does not answer (logged). The node's
  NATS SUB for the filter is written before the announcement on the same connection,
  so nats-server has it before any other node can learn the interest. Hence a publish
  that starts on another node after the SUBACK is sent to NATS and reaches the
  subscriber. A node that has not heard everybody yet (its first 1.5 heartbeat
  intervals after connecting, after a reconnect, or while a node it heard of has not
  sent its filters) publishes everything, as the backplane did before interest sharing.

* **Send** (``Encoder`` + ``write_raw``): one loop turn's messages become raw
  ``PUB``/``HPUB`` protocol lines joined into one write on nats-py's connection
  (behind anything it has pending, so a SUB written before stays before), with the
  subject and the header block cached per topic / per header shape. A small client
  read's messages are written at the end of that read (Backplane.flush_direct), not by
  the sender task a loop turn later; larger reads keep the one write per loop turn.

* **Receive** (``Inbound``): messages of the node's interest subscriptions are cut out
  of the socket's reads in its data_received callback (``take_reads``), without
  nats-py's StreamReader/read-loop hop, its ``Msg`` object and subscription-queue task
  per message; every other unit goes on to nats-py's parser; subject -> topic and
  header blocks are cached.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable
from typing import Any

from nats.protocol.parser import AWAITING_CONTROL_LINE

from mqttfast.codec import TopicTree
from mqttfast.core.message import Message

from .subjects import subject_to_topic, topic_to_subject
from .wire import (
    H_EXPIRY,
    H_ORIGIN,
    H_PROPS,
    H_QOS,
    H_RETAIN,
    message_headers,
    props_from_json,
)

log = logging.getLogger("mqttfast.cluster")

ANNOUNCE_TIMEOUT = 2.0  # seconds a SUBACK waits for a node that does not confirm
CACHE_MAX = 65536  # entries of each per-topic / per-subject cache before it is reset
_LOCAL = "\x00local"  # tree key of this node's own $share filters
_MAX_LINE = 1 << 16  # a "line" longer than this without CRLF is not NATS protocol
HEADS_MAX = 4096  # cached MSG lines (one per subject and size)
# A read from NATS at most this large (a few messages: low load) has what it wrote to
# clients flushed at once (Inbound.flusher); larger ones leave in the loop turn's batch.
SMALL_NATS_READ = 4096
ID_HEAD = b"NATS/1.0\r\nMqtt-Id: "  # a journaled message's header block starts so (journal.py)
# An announced filter with this prefix (never in an MQTT filter [MQTT-1.5.4-2]) says a
# persistent session here holds the filter with QoS >= 1: the others journal what
# matches it (journal.py). Announced like interest, so a SUBACK waits until every
# node knows, instead of for their watch of the sessions bucket.
DURABLE = "\x00durable:"


class Interest:
    """What the other nodes want, and what this node announces to them."""

    def __init__(self, node_id: str, ctl: str) -> None:
        self.node_id = node_id
        self.incarnation = os.urandom(6).hex()  # a restarted node id starts its seqs anew
        self.ctl = ctl
        self.tree = TopicTree()
        self.cache: dict[str, bool] = {}
        # node -> (incarnation, {filter: (present, seq)}): per-filter seqs let a snapshot
        # and deltas arrive in any order without undoing a newer change.
        self.remote: dict[str, tuple[str, dict[str, tuple[bool, int]]]] = {}
        self.local: dict[str, int] = {}  # filter -> local subscriptions/share groups on it
        self.local_shares: dict[str, int] = {}
        self.adds: set[str] = set()  # not announced yet
        self.dels: set[str] = set()
        self.seq = 0  # last announcement sent
        self.forced = 0  # announcements given up waiting for (timeout)
        self.peers: dict[str, int] = {}  # node -> last seq of ours it confirmed
        self.waiters: list[tuple[int, Callable[[], None]]] = []  # (seq, finish) in order
        self.send_all = True  # not sure yet what the others want: publish everything
        self.unsure_until = 0.0
        self.pending_snapshots: set[str] = set()  # nodes heard of, filters not received
        self.connected = False
        # (node, filter, present): another node's durable filters (journal.remote_durable)
        self.on_durable: Callable[[str, str, bool], None] | None = None

    # -- the publisher's question ---------------------------------------------

    def wanted(self, topic: str) -> bool:
        hit = self.cache.get(topic)
        if hit is None:
            hit = bool(self.tree.match(topic))
            cache = self.cache
            if len(cache) >= CACHE_MAX:
                cache.clear()
            cache[topic] = hit
        return hit

    def remote_filters(self) -> int:
        return sum(
            1
            for _inc, state in self.remote.values()
            for f, (p, _s) in state.items()
            if p and not f.startswith(DURABLE)
        )

    # -- this node's own filters (called synchronously by the router) ----------

    def local_add(self, topic_filter: str, shared: bool = False) -> None:
        n = self.local.get(topic_filter, 0)
        self.local[topic_filter] = n + 1
        if n == 0:
            self.dels.discard(topic_filter)
            self.adds.add(topic_filter)
        if shared:
            m = self.local_shares.get(topic_filter, 0)
            self.local_shares[topic_filter] = m + 1
            if m == 0:
                self.tree.insert(topic_filter, _LOCAL, None)
                self.cache.clear()

    def local_remove(self, topic_filter: str, shared: bool = False) -> None:
        n = self.local.get(topic_filter, 0) - 1
        if n <= 0:
            self.local.pop(topic_filter, None)
            self.adds.discard(topic_filter)
            self.dels.add(topic_filter)
        else:
            self.local[topic_filter] = n
        if shared:
            m = self.local_shares.get(topic_filter, 0) - 1
            if m <= 0:
                self.local_shares.pop(topic_filter, None)
                self.tree.remove(topic_filter, _LOCAL)
                self.cache.clear()
            else:
                self.local_shares[topic_filter] = m

    def dirty(self) -> bool:
        return bool(self.adds or self.dels)

    # -- SUBACK after the others know -----------------------------------------

    def confirmed(self) -> int:
        """The highest seq every known node has confirmed (or been given up on)."""
        if not self.peers:
            return self.seq
        low = min(self.peers.values())
        return low if low > self.forced else self.forced

    def hold(self, finish: Callable[[], None]) -> bool:
        if not self.connected or not self.peers:
            return False
        need = self.seq + 1 if self.dirty() else self.seq
        if need <= self.confirmed():
            return False
        self.waiters.append((need, finish))
        return True

    def release(self) -> None:
        done = self.confirmed()
        waiters = self.waiters
        i = 0
        while i < len(waiters) and waiters[i][0] <= done:
            i += 1
        if not i:
            return
        ready, self.waiters = waiters[:i], waiters[i:]
        for _seq, finish in ready:
            try:
                finish()
            except Exception:  # one client's trouble must not stop the others' SUBACKs
                log.exception("cluster: SUBACK after interest confirmation failed")

    def give_up(self, seq: int) -> None:
        if self.confirmed() >= seq:
            return
        late = sorted(n for n, s in self.peers.items() if s < seq)
        log.warning(
            "cluster: node(s) %s did not confirm interest within %.0f s; SUBACK sent anyway",
            ",".join(late),
            ANNOUNCE_TIMEOUT,
        )
        self.forced = max(self.forced, seq)
        self.release()

    def peer_seen(self, node: str) -> None:
        if node != self.node_id and node not in self.peers:
            # It gets (or got) our full set in answer to its query, and publishes
            # everything until it has it: nothing older to wait for.
            self.peers[node] = self.seq

    # -- messages -------------------------------------------------------------

    def next_announcement(self, full: bool) -> bytes:
        """The payload of the next announcement (consumes the pending changes)."""
        self.seq += 1
        body: dict[str, Any] = {"n": self.node_id, "i": self.incarnation, "s": self.seq}
        if full:
            body["f"] = sorted(self.local)
        else:
            body["a"] = sorted(self.adds)
            body["d"] = sorted(self.dels)
        self.adds.clear()
        self.dels.clear()
        return json.dumps(body, separators=(",", ":")).encode()

    def snapshot(self) -> bytes:
        body = {"n": self.node_id, "i": self.incarnation, "s": self.seq, "f": sorted(self.local)}
        return json.dumps(body, separators=(",", ":")).encode()

    def apply(self, data: bytes) -> tuple[str, int]:
        """An announcement or a snapshot of another node; returns (node, seq)."""
        body = json.loads(data)
        node: str = body["n"]
        seq: int = body["s"]
        if node == self.node_id:
            return node, seq
        inc, state = self.remote.get(node, ("", {}))
        if inc != body["i"]:
            self._forget(node)  # a new run of that node: its old filters are gone
            inc, state = body["i"], {}
            self.remote[node] = (inc, state)
        changed = False
        if "f" in body:
            full = set(body["f"])
            for f in full:
                changed |= self._set(node, state, f, True, seq)
            for f in [f for f in state if f not in full]:
                changed |= self._set(node, state, f, False, seq)
        else:
            for f in body.get("a", ()):
                changed |= self._set(node, state, f, True, seq)
            for f in body.get("d", ()):
                changed |= self._set(node, state, f, False, seq)
        if changed:
            self.cache.clear()
        self.pending_snapshots.discard(node)
        self.peer_seen(node)
        return node, seq

    def _set(
        self, node: str, state: dict[str, tuple[bool, int]], f: str, present: bool, seq: int
    ) -> bool:
        was, at = state.get(f, (False, -1))
        if at >= seq:
            return False  # a newer word about this filter came first
        state[f] = (present, seq)
        if was == present:
            return False
        if f.startswith(DURABLE):
            if self.on_durable is not None:
                self.on_durable(node, f[len(DURABLE) :], present)
            return False  # not interest: the tree and its cache stay
        if present:
            self.tree.insert(f, node, None)
        else:
            self.tree.remove(f, node)
        return True

    def _forget(self, node: str) -> None:
        entry = self.remote.pop(node, None)
        if entry is None:
            return
        for f, (present, _seq) in entry[1].items():
            if not present:
                continue
            if f.startswith(DURABLE):
                if self.on_durable is not None:
                    self.on_durable(node, f[len(DURABLE) :], False)
            else:
                self.tree.remove(f, node)
        self.cache.clear()

    def drop_node(self, node: str) -> None:
        """A node that left or went silent: its interest and confirmations go."""
        self._forget(node)
        self.pending_snapshots.discard(node)
        if self.peers.pop(node, None) is not None:
            self.release()

    def reset_view(self, now: float, window: float) -> None:
        """(Re)connected: until everybody's filters are in, publish everything."""
        self.send_all = True
        self.unsure_until = now + window
        self.cache.clear()

    def tick(self, now: float) -> None:
        if self.send_all and now >= self.unsure_until and not self.pending_snapshots:
            self.send_all = False
            self.cache.clear()

    def heard_of(self, node: str) -> bool:
        """A heartbeat: True if that node's filters are missing (ask for them)."""
        if node == self.node_id:
            return False
        self.peer_seen(node)
        if node in self.remote:
            return False
        self.pending_snapshots.add(node)
        self.send_all = True
        return True


class Encoder:
    """MQTT messages -> NATS ``PUB``/``HPUB`` lines, encoded once per shape."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.subjects: dict[str, bytes] = {}
        self.headers: dict[tuple[int, bool, str | None], bytes] = {}

    def subject(self, topic: str) -> bytes:
        s = self.subjects.get(topic)
        if s is None:
            s = topic_to_subject(topic, self.prefix).encode()
            if len(self.subjects) >= CACHE_MAX:
                self.subjects.clear()
            self.subjects[topic] = s
        return s

    def line(self, msg: Message, now: float) -> bytes:
        subject = self.subject(msg.topic)
        payload = msg.payload
        if msg.expires_at is None and msg.properties is None:
            qos = msg.qos
            retain = msg.retain
            origin = msg.origin
            if not qos and not retain and origin is None:
                return b"PUB %s %d\r\n%s\r\n" % (subject, len(payload), payload)
            key = (qos, retain, origin)
            hdr = self.headers.get(key)
            if hdr is None:
                hdr = encode_headers(message_headers(msg, now))
                if len(self.headers) >= CACHE_MAX:
                    self.headers.clear()
                self.headers[key] = hdr
        else:
            hdr = encode_headers(message_headers(msg, now))
        n = len(hdr)
        return b"HPUB %s %d %d\r\n%s%s\r\n" % (subject, n, n + len(payload), hdr, payload)


def encode_headers(h: dict[str, str] | None) -> bytes:
    if not h:
        return b"NATS/1.0\r\n\r\n"
    return ("NATS/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n").encode()


def parse_headers(raw: bytes) -> dict[str, str]:
    h: dict[str, str] = {}
    for line in raw.decode().split("\r\n")[1:]:
        key, sep, value = line.partition(":")
        if sep:
            h[key.strip()] = value.strip()
    return h


async def write_raw(nc: Any, data: bytes, pong: Any = None) -> None:
    """One write of protocol lines on nats-py's connection. Directly on its transport
    when nothing of its own is pending (the order of what it wrote before is kept);
    otherwise behind its pending commands, flushed by its flusher (also how it buffers
    while reconnecting). ``pong``: a PING follows the lines (see write_ping)."""
    if nc.is_connected and not nc._pending:
        transport = nc._transport
        if pong is not None:
            nc._pongs.append(pong)
            data += b"PING\r\n"
        transport.write(data)
        await transport.drain()
        return
    nc._pending.append(data)
    nc._pending_data_size += len(data)
    await nc._flush_pending()
    if pong is not None:
        await write_ping(nc, pong)


async def write_ping(nc: Any, pong: Any) -> None:
    """A PING behind everything written so far; ``pong.set_result`` runs on its PONG.
    nats-py's own flush() writes its PING straight to the socket, possibly ahead of
    commands still in its pending buffer: here that buffer is flushed first."""
    if not nc.is_connected:
        return
    if nc._pending:
        await nc._flush_pending(force_flush=True)
        if not nc.is_connected:
            return
    nc._pongs.append(pong)
    nc._transport.write(b"PING\r\n")


# Decoded header fields of an MQTT message: (qos, retain, properties, expiry, origin).
Fields = tuple[int, bool, Any, "int | None", "str | None"]


def decode_fields(raw: bytes) -> Fields:
    h = parse_headers(raw)
    expiry = h.get(H_EXPIRY)
    origin = h.get(H_ORIGIN)
    props = h.get(H_PROPS)
    return (
        int(h.get(H_QOS, "0")),
        h.get(H_RETAIN) == "1",
        props_from_json(props) if props else None,
        int(expiry) if expiry is not None else None,
        json.loads(origin) if origin is not None else None,
    )


class Inbound:
    """Messages of the node's interest subscriptions, taken out of the byte stream
    before nats-py's parser sees them: ``MSG``/``HMSG`` frames of those sids are cut
    out of each read and handed over as (subject, payload, header bytes); every other
    unit (PING, INFO, -ERR, JetStream and control messages) is given whole to nats-py's
    own parser, so its state never holds half of one. Saves nats-py's regex per
    control line, its ``del buf[:n]`` (a memmove of the rest of the read per message),
    the ``Msg`` object and the subscription-queue task hop."""

    def __init__(
        self,
        prefix: str,
        deliver: Callable[[Message, float], None],
        clock: Any,
        after: Callable[[], None] | None = None,
    ):
        self.prefix = prefix
        self.deliver = deliver
        self.clock = clock
        self.after = after  # once per read that delivered something (durable commit)
        self.sids: set[int] = set()
        self.topics: dict[bytes, str | None] = {}
        self.fields: dict[bytes, Fields] = {}
        # MSG/HMSG control line -> (subject, sid, header bytes or -1, total bytes): a
        # stream of similar messages repeats its lines (no split and int() per message).
        self.heads: dict[bytes, tuple[bytes, int, int, int]] = {}
        self.rest = b""  # an incomplete unit at the end of the last read
        self.errors = 0
        self.msgs = 0  # messages handed to deliver, and their payload bytes
        self.bytes = 0
        self.busy = False  # nats-py's read loop is inside parse (it may await)
        # Reads taken in the socket's callback (take_reads): on once the stream is at a
        # unit boundary; the incomplete unit at the end of the last such read.
        self.inline = False
        self.inline_rest = b""
        # The transport's output flusher (transport/tcp.py), or None: when set, what the
        # messages of a small read from NATS wrote to clients is flushed at the end of
        # that read (as a small MQTT read's output), not one loop turn later.
        self.flusher: Any = None
        # Called with the id of a journaled message (journal.py) before it is delivered.
        # journal.seen: False drops the message (a re-sent copy of a QoS 2 message).
        self.seen_id: Callable[[str, Any], bool] | None = None

    def install(self, nc: Any) -> None:
        ps = nc._ps
        original_parse = ps.parse
        original_reset = ps.reset
        original_process = nc._process_msg
        sids = self.sids
        on_data = self.on_data

        def reset() -> None:  # nats-py reconnected: nothing of the old stream is valid
            self.rest = b""
            self.inline = False
            self.inline_rest = b""
            original_reset()

        async def process_msg(
            sid: int, subject: bytes, reply: bytes, data: bytes, hdr: Any
        ) -> None:
            # Only reached for frames nats-py's parser got (before our first read).
            if sid in sids:
                on_data(subject, data, hdr, self.clock())
            else:
                await original_process(sid, subject, reply, data, hdr)

        async def parse(data: bytes = b"") -> None:
            if ps.state != AWAITING_CONTROL_LINE:  # it holds a started payload: finish it
                k = ps.needed + 2 - len(ps.buf)
                if k > len(data):
                    await original_parse(data)
                    return
                await original_parse(data[:k])
                data = data[k:]
            if ps.buf:  # a started control line
                data = bytes(ps.buf) + data
                ps.buf.clear()
            if self.rest:
                data = self.rest + data
                self.rest = b""
            self.busy = True
            try:
                others: list[bytes] = []
                pos = self.scan(data, others)
                if pos < len(data):
                    self.rest = data[pos:]
                for unit in others:
                    await original_parse(unit)
            finally:
                self.busy = False

        ps.reset = reset
        ps.parse = parse
        nc._process_msg = process_msg

    def take_reads(self, nc: Any) -> bool:
        """Handle the socket's reads in its data_received callback (after install, on
        every (re)connection): saves the hop through nats-py's StreamReader and its read
        loop task (a loop turn per read, issue 16). Only TCP/TLS connections of nats-py."""
        transport = getattr(nc._transport, "_io_writer", None)
        reader = getattr(nc._transport, "_io_reader", None)
        if transport is None or reader is None:
            return False
        sock = transport.transport
        proto = sock.get_protocol()
        if isinstance(proto, _InlineReads):
            return True
        if not isinstance(proto, asyncio.StreamReaderProtocol):
            return False
        self.inline = False
        self.inline_rest = b""
        sock.set_protocol(_InlineReads(self, proto, reader, nc._ps))
        return True

    def scan(self, data: bytes, others: list[bytes]) -> int:
        """Deliver the messages of the interest sids in ``data`` (whole units from its
        start); every other whole unit is appended to ``others``, in order, for nats-py's
        parser. Returns where an incomplete unit at the end starts (``len(data)``: none)."""
        sids = self.sids
        n = len(data)
        pos = 0
        delivered = False
        now = 0.0
        find = data.find
        startswith = data.startswith
        heads = self.heads
        topics = self.topics
        fields = self.fields
        deliver = self.deliver
        count = 0
        nbytes = 0
        while pos < n:
            eol = find(b"\r\n", pos)
            if eol < 0:
                if n - pos > _MAX_LINE:  # not a protocol line: let nats-py say so
                    others.append(data[pos:])
                    pos = n
                break
            line = data[pos:eol]
            head = heads.get(line)
            if head is None:
                if not (startswith(b"MSG ", pos) or startswith(b"HMSG ", pos)):
                    others.append(data[pos : eol + 2])
                    pos = eol + 2
                    continue
                args = line.split()
                head = (
                    args[1],
                    int(args[2]),
                    int(args[-2]) if args[0] == b"HMSG" else -1,
                    int(args[-1]),
                )
                if head[1] in sids:  # (not JetStream's, each with its own reply)
                    if len(heads) >= HEADS_MAX:
                        heads.clear()
                    heads[line] = head
            subject, sid, hsize, size = head
            start = eol + 2
            end = start + size
            if end + 2 > n:
                break  # the payload is not all here yet
            if sid in sids:
                if not delivered:
                    delivered = True
                    now = self.clock()  # one clock reading per read
                # on_data, inlined (a call less per message on the hot path)
                topic = topics.get(subject, "")
                if topic == "":
                    topic = self.topic_of(subject)
                try:
                    if topic is None:
                        pass
                    elif hsize < 0:
                        count += 1
                        nbytes += size
                        deliver(Message(topic, data[start:end]), now)
                    elif startswith(ID_HEAD, start):
                        count += 1
                        nbytes += end - start - hsize
                        self.journaled(topic, data, start, start + hsize, end, now)
                    else:
                        split = start + hsize
                        f = fields.get(data[start:split])
                        if f is None:
                            f = self.fields_of(data[start:split])
                        if f is not None:
                            qos, retain, props, expiry, origin = f
                            count += 1
                            nbytes += end - split
                            deliver(
                                Message(
                                    topic,
                                    data[split:end],
                                    qos,
                                    retain,
                                    props,
                                    now + expiry if expiry is not None else None,
                                    origin,
                                ),
                                now,
                            )
                except Exception:  # never into nats-py's read loop
                    self.errors += 1
                    if self.errors in (1, 1000):
                        log.exception("cluster: message from NATS not delivered")
            else:
                others.append(data[pos : end + 2])
            pos = end + 2
        if count:
            self.msgs += count
            self.bytes += nbytes
        if delivered:
            if self.after is not None:
                self.after()
            flusher = self.flusher
            if flusher is not None and n <= SMALL_NATS_READ:
                flusher.flush_now()
        return pos

    def topic_of(self, subject: bytes) -> str | None:
        """The MQTT topic of a subject not in the cache (cached now), or None."""
        try:  # (MQTT topics are never empty [MQTT-4.7.3-1]: "" marks a cache miss)
            topic: str | None = subject_to_topic(subject.decode(), self.prefix)
        except (ValueError, UnicodeDecodeError):
            topic = None  # a NATS-native subject we cannot read as a topic
        if len(self.topics) >= CACHE_MAX:
            self.topics.clear()
        self.topics[subject] = topic
        return topic

    def fields_of(self, hdr: bytes) -> Fields | None:
        """The decoded fields of a header block not in the cache (cached now), or None."""
        try:
            f = decode_fields(hdr)
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            return None  # headers of a NATS-native publisher we cannot read as MQTT
        if len(self.fields) >= CACHE_MAX:
            self.fields.clear()
        self.fields[hdr] = f
        return f

    def journaled(
        self, topic: str, data: bytes, start: int, split: int, end: int, now: float
    ) -> None:
        """A journaled message (journal.py): its id is the first header; the rest of the
        block is decoded (and cached) as any other."""
        eol = data.find(b"\r\n", start + len(ID_HEAD), split)
        if eol < 0:
            return
        mid = data[start + len(ID_HEAD) : eol].decode()
        msg = self._with_headers(
            topic, data[split:end], b"NATS/1.0\r\n" + data[eol + 2 : split], now
        )
        if msg is None:
            return
        msg.mid = mid
        if self.seen_id is not None and not self.seen_id(mid, msg.origin):
            return
        self.deliver(msg, now)

    def on_data(self, subject: bytes, data: bytes, hdr: bytes | None, now: float) -> None:
        """One message nats-py's own parser got (the read loop inlines the same)."""
        topic = self.topics.get(subject, "")
        if topic == "":
            topic = self.topic_of(subject)
        if topic is None:
            return
        if hdr and hdr.startswith(ID_HEAD):
            self.msgs += 1
            self.bytes += len(data)
            self.journaled(topic, hdr + data, 0, len(hdr), len(hdr) + len(data), now)
            return
        msg = self._with_headers(topic, data, hdr, now) if hdr else Message(topic, data)
        if msg is None:
            return
        self.msgs += 1
        self.bytes += len(data)
        self.deliver(msg, now)

    def _with_headers(self, topic: str, payload: bytes, hdr: bytes, now: float) -> Message | None:
        """The message of a header block (its decoded fields cached); None if malformed."""
        f = self.fields.get(hdr)
        if f is None:
            f = self.fields_of(hdr)
            if f is None:
                return None
        qos, retain, props, expiry, origin = f
        return Message(
            topic, payload, qos, retain, props, now + expiry if expiry is not None else None, origin
        )


class _InlineReads(asyncio.Protocol):
    """The protocol of nats-py's socket while Inbound takes its reads: the messages of
    the interest sids are delivered inside data_received (with a small read's client
    output flushed there too, Inbound.scan); every other unit goes on, whole and in
    order, to nats-py's StreamReader and read loop as before. The switch waits for a
    read that starts at a unit boundary (nothing of the stream held by the read loop)."""

    def __init__(self, inbound: Inbound, proto: Any, reader: Any, ps: Any) -> None:
        self.inbound = inbound
        self.proto = proto  # nats-py's StreamReaderProtocol: everything else goes there
        self.reader = reader
        self.ps = ps

    def connection_made(self, transport: Any) -> None:
        self.proto.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.proto.connection_lost(exc)

    def pause_writing(self) -> None:
        self.proto.pause_writing()

    def resume_writing(self) -> None:
        self.proto.resume_writing()

    def eof_received(self) -> bool | None:
        return self.proto.eof_received()

    def data_received(self, data: bytes) -> None:
        ib = self.inbound
        if not ib.inline:
            ps = self.ps
            if (
                self.reader._buffer
                or ib.busy
                or ib.rest
                or ps.buf
                or ps.state != AWAITING_CONTROL_LINE
            ):
                self.proto.data_received(data)  # the read loop holds part of the stream
                return
            ib.inline = True
        if ib.inline_rest:
            data = ib.inline_rest + data
            ib.inline_rest = b""
        others: list[bytes] = []
        pos = ib.scan(data, others)
        if pos < len(data):
            ib.inline_rest = data[pos:]
        if others:
            self.proto.data_received(b"".join(others))
