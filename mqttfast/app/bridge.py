"""Bridges: this broker connects out to a remote MQTT broker and forwards topics
(mosquitto's ``connection``), configured by ``[[bridge]]`` tables (docs/plugins.md).

The bridge is an MQTT client written over the sans-IO codec
(``mqttfast.codec.Decoder`` / ``encode``) and asyncio streams, over TCP or TLS,
speaking MQTT 3.1.1 or 5.0 to the remote:

* ``out`` topics: a Python subscription on the local broker
  (:meth:`mqttfast.embed.BrokerAPI.subscribe`) feeds a bounded queue; queued
  messages are published to the remote with QoS 1/2 flow control. While the
  remote is down the queue keeps the newest ``queue_size`` messages' worth
  (further ones are dropped and counted); messages in flight when the link
  broke are sent again (DUP) after the reconnect.
* ``in`` topics: subscribed on the remote, published locally as the broker.
* Topic remapping as mosquitto: ``topic = "pattern"``, local topic
  ``local_prefix + X`` <-> remote topic ``remote_prefix + X``.
* No loops: messages the bridge published locally are not forwarded back out
  (their origin is the bridge), and the bridge's remote subscriptions use
  No Local (MQTT 5), or, for MQTT 3.1.1, mosquitto's ``try_private`` (protocol
  level 0x84, which tells a mosquitto remote that this client is a bridge;
  a remote that refuses it is retried without). Every carried message gets the
  user property ``mqttfast-bridge-hops``; one that has crossed ``max_hops``
  bridges is not carried again, so even a ring of bridges cannot loop forever.
* Reconnect with exponential back-off (``reconnect_min`` doubling up to
  ``reconnect_max``, with jitter); the remote session is kept
  (clean start off, v5 ``session_expiry``) so the remote queues QoS 1/2
  messages for the ``in`` direction meanwhile.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import random
import ssl
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from mqttfast.codec import Decoder, encode, topic_matches, validate_topic_filter
from mqttfast.codec.errors import MQTTError
from mqttfast.codec.packets import (
    Connack,
    Connect,
    Disconnect,
    Pingreq,
    Pingresp,
    Properties,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Subscription,
)

log = logging.getLogger("mqttfast.bridge")

DIRECTIONS = ("in", "out", "both")


@dataclass
class BridgeTopic:
    pattern: str = "#"
    direction: str = "out"
    qos: int = 0
    local_prefix: str = ""
    remote_prefix: str = ""

    @property
    def local_filter(self) -> str:
        return self.local_prefix + self.pattern

    @property
    def remote_filter(self) -> str:
        return self.remote_prefix + self.pattern


@dataclass
class BridgeConfig:
    name: str = ""
    address: str = "127.0.0.1"
    port: int = 1883
    protocol_version: int = 5  # 4 = MQTT 3.1.1, 5 = MQTT 5.0
    client_id: str = ""  # default "mqttfast-bridge-<name>"
    username: str | None = None
    password: str | None = None
    keepalive: int = 60
    clean_start: bool = False  # keep the remote session across reconnects
    session_expiry: int = 3600  # v5: seconds the remote keeps the session
    try_private: bool = True  # 3.1.1: announce a bridge (protocol level 0x84)
    # TLS: on with tls = true or any file below.
    tls: bool = False
    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    insecure: bool = False  # do not verify the remote's certificate
    # Check the certificate names the remote host (mosquitto's bridge_insecure false);
    # with false the chain is still verified (unlike insecure).
    verify_hostname: bool = True
    tls_version: str = "TLSv1.2"  # minimum TLS version: TLSv1.2 or TLSv1.3
    server_hostname: str | None = None
    reconnect_min: float = 0.5
    reconnect_max: float = 60.0
    connect_timeout: float = 10.0
    queue_size: int = 10000  # local -> remote messages kept while the remote is down
    # Where the queue (and what was in flight) is saved at stop and reloaded at start, so a
    # restart of this broker keeps it (not a crash: it is written on stop only). None = off.
    queue_file: str | None = None
    max_inflight: int = 20
    # Bridges a message may have crossed and still be carried (either way) by this one
    # (user property mqttfast-bridge-hops). 2 lets edge -> hub -> edge work and bounds
    # any loop of bridges to a few duplicates.
    max_hops: int = 2
    topic: list[BridgeTopic] = field(default_factory=list)


_KEYS: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "address": str,
    "port": int,
    "protocol_version": int,
    "client_id": str,
    "username": str,
    "password": str,
    "keepalive": int,
    "clean_start": bool,
    "session_expiry": int,
    "try_private": bool,
    "tls": bool,
    "cafile": str,
    "certfile": str,
    "keyfile": str,
    "insecure": bool,
    "verify_hostname": bool,
    "tls_version": str,
    "server_hostname": str,
    "reconnect_min": (int, float),
    "reconnect_max": (int, float),
    "connect_timeout": (int, float),
    "queue_size": int,
    "max_inflight": int,
    "queue_file": str,
    "max_hops": int,
}
_TOPIC_KEYS: dict[str, type | tuple[type, ...]] = {
    "pattern": str,
    "direction": str,
    "qos": int,
    "local_prefix": str,
    "remote_prefix": str,
}


def _typed(path: str, value: Any, typ: Any, errors: list[str]) -> bool:
    if isinstance(value, bool) and typ is not bool:
        errors.append(f"{path}: expected {getattr(typ, '__name__', 'number')}, got boolean")
        return False
    if not isinstance(value, typ):
        errors.append(
            f"{path}: expected {getattr(typ, '__name__', 'number')}, got {type(value).__name__}"
        )
        return False
    return True


def parse_bridge_tables(value: Any, errors: list[str]) -> list[BridgeConfig]:
    """Validate ``[[bridge]]`` tables (each with ``[[bridge.topic]]`` tables)."""
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        errors.append("bridge: expected array of tables ([[bridge]])")
        return []
    out: list[BridgeConfig] = []
    names: set[str] = set()
    for i, table in enumerate(value):
        p = f"bridge[{i}]"
        if not isinstance(table, dict):
            errors.append(f"{p}: expected table")
            continue
        bc = BridgeConfig()
        for key, v in table.items():
            if key == "topic":
                topics = [v] if isinstance(v, dict) else v
                if not isinstance(topics, list):
                    errors.append(f"{p}.topic: expected array of tables ([[bridge.topic]])")
                    continue
                for j, t in enumerate(topics):
                    bt = _parse_topic(f"{p}.topic[{j}]", t, errors)
                    if bt is not None:
                        bc.topic.append(bt)
                continue
            typ = _KEYS.get(key)
            if typ is None:
                errors.append(f"{p}.{key}: unknown key")
                continue
            if _typed(f"{p}.{key}", v, typ, errors):
                setattr(bc, key, float(v) if typ == (int, float) else v)
        if not bc.name:
            errors.append(f"{p}.name: required")
        elif bc.name in names:
            errors.append(f"{p}.name: duplicate bridge name {bc.name!r}")
        names.add(bc.name)
        if bc.protocol_version not in (4, 5):
            errors.append(f"{p}.protocol_version: must be 4 (MQTT 3.1.1) or 5")
        if not 0 < bc.port <= 65535:
            errors.append(f"{p}.port: must be 1..65535")
        if bc.reconnect_min <= 0 or bc.reconnect_max < bc.reconnect_min:
            errors.append(f"{p}.reconnect_max: need 0 < reconnect_min <= reconnect_max")
        if (
            bc.queue_size < 0
            or bc.max_inflight < 1
            or not 0 <= bc.keepalive <= 65535
            or bc.max_hops < 1
        ):
            errors.append(
                f"{p}: queue_size >= 0, max_inflight >= 1, keepalive 0..65535, max_hops >= 1"
            )
        if not bc.topic:
            errors.append(f"{p}.topic: at least one [[bridge.topic]] is required")
        if bc.tls_version not in ("TLSv1.2", "TLSv1.3"):
            errors.append(f"{p}.tls_version: must be TLSv1.2 or TLSv1.3")
        out.append(bc)
    return out


def _parse_topic(p: str, t: Any, errors: list[str]) -> BridgeTopic | None:
    if not isinstance(t, dict):
        errors.append(f"{p}: expected table")
        return None
    bt = BridgeTopic()
    for key, v in t.items():
        typ = _TOPIC_KEYS.get(key)
        if typ is None:
            errors.append(f"{p}.{key}: unknown key")
        elif _typed(f"{p}.{key}", v, typ, errors):
            setattr(bt, key, v)
    if bt.direction not in DIRECTIONS:
        errors.append(f"{p}.direction: must be one of in, out, both")
    if bt.qos not in (0, 1, 2):
        errors.append(f"{p}.qos: must be 0, 1 or 2")
    for f in (bt.local_filter, bt.remote_filter):
        try:
            validate_topic_filter(f)
        except MQTTError:
            errors.append(f"{p}: invalid topic filter {f!r}")
            return None
    return bt


class BridgeError(Exception):
    pass


# User property a bridge adds to what it carries (both ways): how many bridges the
# message has crossed. A bridge does not carry a message that has crossed max_hops
# already, so no arrangement of bridges can make a message circle forever.
HOPS_PROPERTY = "mqttfast-bridge-hops"


def _hops(props: Properties | None) -> int:
    """Bridges the message has crossed (0: none). Everything a bridge publishes locally
    carries the property, whatever the remote's protocol version."""
    if props is not None and props.user_property:
        for key, value in props.user_property:
            if key == HOPS_PROPERTY:
                try:
                    return int(value)
                except ValueError:
                    return 1 << 30
    return 0


def _with_hops(props: Properties | None, hops: int) -> Properties:
    new = props.copy() if props is not None else Properties()
    ups = [kv for kv in (new.user_property or []) if kv[0] != HOPS_PROPERTY]
    new.user_property = ups + [(HOPS_PROPERTY, str(hops))]
    return new


class _Out:
    """A message on its way to the remote."""

    __slots__ = ("topic", "payload", "qos", "retain", "properties", "state")

    def __init__(
        self, topic: str, payload: bytes, qos: int, retain: bool, properties: Properties | None
    ) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties = properties
        self.state = 0  # 0 PUBLISH sent (or to send), 1 PUBREL sent (QoS 2)


class Bridge:
    """One ``[[bridge]]``: ``start()``, ``await stop()``; ``connected`` is an Event."""

    def __init__(self, api: Any, cfg: BridgeConfig) -> None:
        self.api = api
        self.cfg = cfg
        self.client_id = cfg.client_id or f"mqttfast-bridge-{cfg.name}"
        # The origin of what this bridge publishes locally, as plug-ins and embedded
        # subscribers see it: the bridge's name (never an internal id). A client may
        # have the same id, so "ours" is this origin *and* the hops property.
        self.origin = cfg.name
        self.queue: deque[_Out] = deque()
        self.inflight: dict[int, _Out] = {}
        self.awaiting_pubrel: set[int] = set()
        self.next_pid = 0
        self.window = max(1, cfg.max_inflight)
        self.private = cfg.protocol_version == 4 and cfg.try_private
        self.connected = asyncio.Event()
        self.wake = asyncio.Event()
        self.subs: list[Any] = []
        self.task: asyncio.Task | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.stopping = False
        # Counters.
        self.sent = 0
        self.received = 0
        self.dropped = 0
        self.skipped = 0  # not forwarded: max_hops reached
        self.connects = 0

    # -- local side -----------------------------------------------------------
    def start(self) -> None:
        if self.cfg.queue_file:
            self._load_queue(self.cfg.queue_file)
        for t in self.cfg.topic:
            if t.direction in ("out", "both"):
                self.subs.append(
                    self.api.subscribe(t.local_filter, lambda m, t=t: self._local(m, t), qos=t.qos)
                )
        self.task = asyncio.get_running_loop().create_task(self._run())

    def _local(self, m: Any, t: BridgeTopic) -> None:
        hops = _hops(m.properties)
        if hops and m.origin == self.origin:
            return  # came from the remote through this bridge: never back out
        if hops >= self.cfg.max_hops:
            self.skipped += 1  # crossed enough bridges already: a loop stops here
            return
        if self.cfg.queue_size and len(self.queue) >= self.cfg.queue_size:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning(
                    "bridge %s: queue full (%d); message dropped (%d so far)",
                    self.cfg.name,
                    len(self.queue),
                    self.dropped,
                )
            return
        remote_topic = t.remote_prefix + m.topic[len(t.local_prefix) :]
        props = _with_hops(m.properties, hops + 1) if self.cfg.protocol_version == 5 else None
        self.queue.append(_Out(remote_topic, m.payload, m.qos, m.retain, props))
        self.wake.set()

    def _remote_message(self, pkt: Publish) -> None:
        topic = pkt.topic
        for t in self.cfg.topic:
            if (
                t.direction in ("in", "both")
                and topic.startswith(t.remote_prefix)
                and topic_matches(t.remote_filter, topic)
            ):
                local = t.local_prefix + topic[len(t.remote_prefix) :]
                hops = _hops(pkt.properties)
                if hops >= self.cfg.max_hops:
                    self.skipped += 1
                    return
                props = _with_hops(pkt.properties, hops + 1)
                props.topic_alias = None
                try:
                    self.api.publish_nowait(
                        local,
                        pkt.payload,
                        min(pkt.qos, t.qos) if t.qos else pkt.qos,
                        pkt.retain,
                        props,
                        origin=self.origin,
                    )
                except Exception as exc:
                    log.warning(
                        "bridge %s: cannot publish %r locally: %r", self.cfg.name, local, exc
                    )
                self.received += 1
                return

    # -- connection loop --------------------------------------------------------
    async def _run(self) -> None:
        cfg = self.cfg
        delay = cfg.reconnect_min
        while not self.stopping:
            try:
                await self._session()
                delay = cfg.reconnect_min
            except asyncio.CancelledError:
                raise
            except (
                TimeoutError,
                OSError,
                EOFError,
                MQTTError,
                BridgeError,
                asyncio.IncompleteReadError,
            ) as exc:
                log.warning(
                    "bridge %s: %s:%d: %s",
                    cfg.name,
                    cfg.address,
                    cfg.port,
                    exc or type(exc).__name__,
                )
            except Exception:
                log.exception("bridge %s: unexpected error", cfg.name)
            finally:
                self.connected.clear()
                w, self.writer = self.writer, None
                if w is not None:
                    w.close()
            if self.stopping:
                break
            await asyncio.sleep(delay * (0.75 + random.random() / 2))
            delay = min(delay * 2, cfg.reconnect_max)

    def _ssl(self) -> ssl.SSLContext | None:
        cfg = self.cfg
        if not (cfg.tls or cfg.cafile or cfg.certfile):
            return None
        ctx = ssl.create_default_context(cafile=cfg.cafile)
        if cfg.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif not cfg.verify_hostname:
            ctx.check_hostname = False
        ctx.minimum_version = (
            ssl.TLSVersion.TLSv1_3 if cfg.tls_version == "TLSv1.3" else ssl.TLSVersion.TLSv1_2
        )
        if cfg.certfile:
            ctx.load_cert_chain(cfg.certfile, cfg.keyfile)
        return ctx

    def _write(self, pkt: Any) -> None:
        assert self.writer is not None
        self.writer.write(encode(pkt, self.cfg.protocol_version))

    def _alloc_pid(self) -> int:
        pid = self.next_pid
        while True:
            pid = pid + 1 if pid < 65535 else 1
            if pid not in self.inflight:
                self.next_pid = pid
                return pid

    async def _session(self) -> None:
        cfg = self.cfg
        v5 = cfg.protocol_version == 5
        ctx = self._ssl()
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                cfg.address,
                cfg.port,
                ssl=ctx,
                server_hostname=(cfg.server_hostname or cfg.address) if ctx else None,
            ),
            cfg.connect_timeout,
        )
        self.writer = writer
        props = None
        if v5:
            props = Properties(
                session_expiry_interval=0 if cfg.clean_start else cfg.session_expiry,
                receive_maximum=min(65535, max(1, cfg.max_inflight * 5)),
            )
        connect = Connect(
            self.client_id,
            cfg.protocol_version,
            cfg.clean_start,
            cfg.keepalive,
            cfg.username,
            cfg.password.encode() if cfg.password else None,
            None,
            props,
        )
        data = encode(connect, cfg.protocol_version)
        private = self.private
        if private:  # mosquitto's try_private: protocol level 0x80 | 4
            data = data.replace(b"\x00\x04MQTT\x04", b"\x00\x04MQTT\x84", 1)
        writer.write(data)
        dec = Decoder(cfg.protocol_version)
        connack = None
        pending: list[Any] = []
        while connack is None:
            chunk = await asyncio.wait_for(reader.read(65536), cfg.connect_timeout)
            if not chunk:
                if private:
                    self.private = False  # a remote that does not know bridges: plain 3.1.1
                    raise BridgeError("closed before CONNACK; retrying without try_private")
                raise BridgeError("closed before CONNACK")
            pkts = dec.feed(chunk)
            if pkts:
                connack, pending = pkts[0], pkts[1:]
        if not isinstance(connack, Connack):
            raise BridgeError(f"expected CONNACK, got {type(connack).__name__}")
        if connack.reason_code != 0:
            if private and connack.reason_code == 1:
                self.private = False
            raise BridgeError(f"refused: CONNACK code 0x{connack.reason_code:02X}")
        if v5 and connack.properties is not None and connack.properties.receive_maximum:
            self.window = min(max(1, cfg.max_inflight), connack.properties.receive_maximum)
        self.connects += 1
        log.info(
            "bridge %s connected to %s:%d (%s, session present: %s)",
            cfg.name,
            cfg.address,
            cfg.port,
            "v5" if v5 else ("3.1.1 bridge" if private else "3.1.1"),
            connack.session_present,
        )
        # In flight when the link broke: again with DUP when the session is still there,
        # otherwise as new messages at the head of the queue.
        if connack.session_present:
            for pid, item in list(self.inflight.items()):
                if item.state == 1:
                    self._write(Pubrel(pid))
                else:
                    self._send_publish(item, pid, dup=True)
        else:
            self.queue.extendleft(reversed([i for i in self.inflight.values()]))
            for item in self.inflight.values():
                item.state = 0
            self.inflight.clear()
            self.awaiting_pubrel.clear()
        subs = [
            Subscription(t.remote_filter, t.qos, no_local=v5, retain_as_published=v5)
            for t in cfg.topic
            if t.direction in ("in", "both")
        ]
        if subs:
            self._write(Subscribe(self._alloc_pid_sub(), subs))
        self.connected.set()
        self.wake.set()
        sender = asyncio.get_running_loop().create_task(self._sender(writer))
        pinger = asyncio.get_running_loop().create_task(self._pinger()) if cfg.keepalive else None
        try:
            for pkt in pending:
                self._handle(pkt)
            while True:
                timeout = cfg.keepalive * 1.5 if cfg.keepalive else None
                chunk = await asyncio.wait_for(reader.read(65536), timeout)
                if not chunk:
                    raise BridgeError("connection closed by the remote")
                for pkt in dec.feed(chunk):
                    self._handle(pkt)
                if sender.done():
                    sender.result()  # re-raise a write error
        finally:
            sender.cancel()
            if pinger is not None:
                pinger.cancel()
            await asyncio.gather(sender, *(p for p in (pinger,) if p), return_exceptions=True)

    def _alloc_pid_sub(self) -> int:
        return self._alloc_pid()  # SUBSCRIBE ids come from the same space; never in flight

    async def _pinger(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.keepalive / 2)
            if self.writer is not None:
                self._write(Pingreq())

    async def _sender(self, writer: asyncio.StreamWriter) -> None:
        while True:
            self.wake.clear()
            while self.queue and len(self.inflight) < self.window:
                item = self.queue.popleft()
                pid = 0
                if item.qos:
                    pid = self._alloc_pid()
                    self.inflight[pid] = item
                self._send_publish(item, pid)
            await writer.drain()
            if self.queue and len(self.inflight) < self.window:
                continue
            await self.wake.wait()

    def _send_publish(self, item: _Out, pid: int, dup: bool = False) -> None:
        self._write(
            Publish(item.topic, item.payload, item.qos, item.retain, dup, pid, item.properties)
        )
        self.sent += 1

    def _handle(self, pkt: Any) -> None:
        t = type(pkt)
        if t is Publish:
            pid = pkt.packet_id
            if pkt.qos == 2:
                if pid not in self.awaiting_pubrel:  # a re-sent QoS 2 is not forwarded twice
                    self._remote_message(pkt)
                    self.awaiting_pubrel.add(pid)
                self._write(Pubrec(pid))
            else:
                self._remote_message(pkt)
                if pkt.qos == 1:
                    self._write(Puback(pid))
        elif t is Puback:
            item = self.inflight.get(pkt.packet_id)
            if item is not None and item.qos == 1:
                del self.inflight[pkt.packet_id]
                self.wake.set()
        elif t is Pubrec:
            item = self.inflight.get(pkt.packet_id)
            if item is not None and item.qos == 2:
                if pkt.reason_code >= 0x80:
                    del self.inflight[pkt.packet_id]
                    self.wake.set()
                else:
                    item.state = 1
                    self._write(Pubrel(pkt.packet_id))
        elif t is Pubcomp:
            if self.inflight.pop(pkt.packet_id, None) is not None:
                self.wake.set()
        elif t is Pubrel:
            self.awaiting_pubrel.discard(pkt.packet_id)
            self._write(Pubcomp(pkt.packet_id))
        elif t is Suback:
            bad = [c for c in pkt.reason_codes if c >= 0x80]
            if bad:
                log.warning(
                    "bridge %s: remote refused subscriptions: %s",
                    self.cfg.name,
                    ", ".join(f"0x{c:02X}" for c in bad),
                )
        elif t is Disconnect:
            raise BridgeError(f"remote sent DISCONNECT 0x{pkt.reason_code:02X}")
        elif t is Pingresp:
            pass

    # -- queue file ------------------------------------------------------------
    _PROPS = (
        "payload_format_indicator",
        "content_type",
        "response_topic",
        "correlation_data",
        "user_property",
    )

    def _save_queue(self, path: str) -> None:
        items = [i for _, i in sorted(self.inflight.items())] + list(self.queue)
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            for it in items:
                rec: dict[str, Any] = {
                    "topic": it.topic,
                    "qos": it.qos,
                    "retain": it.retain,
                    "payload": base64.b64encode(it.payload).decode(),
                }
                p = it.properties
                if p is not None:
                    props = {k: getattr(p, k) for k in self._PROPS if getattr(p, k) is not None}
                    if "correlation_data" in props:
                        props["correlation_data"] = base64.b64encode(
                            props["correlation_data"]
                        ).decode()
                    rec["properties"] = props
                fh.write(json.dumps(rec) + "\n")
        os.replace(tmp, path)
        log.info("bridge %s: %d queued messages saved to %s", self.cfg.name, len(items), path)

    def _load_queue(self, path: str) -> None:
        try:
            with open(path, encoding="utf-8") as fh:
                lines = fh.read().splitlines()
        except FileNotFoundError:
            return
        except OSError as err:
            log.error("bridge %s: cannot read %s: %s", self.cfg.name, path, err)
            return
        loaded = 0
        for line in lines:
            try:
                rec = json.loads(line)
                props = None
                if rec.get("properties"):
                    pd = dict(rec["properties"])
                    if "correlation_data" in pd:
                        pd["correlation_data"] = base64.b64decode(pd["correlation_data"])
                    if "user_property" in pd:
                        pd["user_property"] = [tuple(x) for x in pd["user_property"]]
                    props = Properties(**{k: v for k, v in pd.items() if k in self._PROPS})
                self.queue.append(
                    _Out(
                        rec["topic"],
                        base64.b64decode(rec["payload"]),
                        int(rec["qos"]),
                        bool(rec["retain"]),
                        props,
                    )
                )
                loaded += 1
            except (ValueError, KeyError, TypeError) as err:
                log.error("bridge %s: bad line in %s skipped: %s", self.cfg.name, path, err)
        os.unlink(path)
        log.info("bridge %s: %d queued messages reloaded from %s", self.cfg.name, loaded, path)

    async def stop(self) -> None:
        self.stopping = True
        for sub in self.subs:
            sub.unsubscribe()
        self.subs.clear()
        w = self.writer
        if w is not None and not w.is_closing():
            try:
                self._write(Disconnect(0))
                await asyncio.wait_for(w.drain(), 1.0)
            except Exception:
                pass
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.cfg.queue_file and (self.queue or self.inflight):
            try:
                self._save_queue(self.cfg.queue_file)
            except OSError as err:
                log.error("bridge %s: cannot save the queue: %s", self.cfg.name, err)


__all__ = ["Bridge", "BridgeConfig", "BridgeTopic", "parse_bridge_tables"]
