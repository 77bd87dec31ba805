"""Wills kept in JetStream, so that they fire exactly once cluster-wide.

KV bucket ``mqttfast_<hash(prefix)>_wills``: hash(client id) -> JSON {node, cid, delay,
message}, written by the node a client with a will is connected to (after CONNACK) and
deleted when the will is this node's business again (the client disconnected: the
core published it or not). When a node dies, a survivor publishes its recorded wills:
each survivor tries a revision-checked delete of each record first, and only the one
whose delete succeeds publishes, so a will is published once [MQTT-3.1.2-8].
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from nats.js.errors import KeyNotFoundError

from mqttfast.core import wills
from mqttfast.core.connection import CONNECTED
from mqttfast.core.message import Message
from mqttfast.core.wills import will_message

from .wire import message_from_record, message_record

log = logging.getLogger("mqttfast.cluster")


class WillRecords:
    def __init__(self, bp: Any, heartbeat: float) -> None:
        self.bp = bp
        self.heartbeat = heartbeat
        self.kv: Any = None
        self.revs: dict[str, int] = {}  # client id -> revision of its will record here

    async def record(self, conn: Any) -> None:
        """Keep the will in JetStream so the survivors publish it if this node dies."""
        bp = self.bp
        cid = conn.client_id
        w = conn.will
        props = w.properties
        delay = (props.will_delay_interval or 0) if props is not None else 0
        msg = will_message(conn, bp.core.clock())
        if msg is None:
            return
        record = {"node": bp.node_id, "cid": cid, "delay": delay}
        record.update(message_record(msg, bp.core.clock()))
        try:
            rev = await self.kv.put(bp.key(cid), json.dumps(record).encode())
            if conn.state == CONNECTED:
                self.revs[cid] = rev
            else:  # it went away while we were writing: no will to keep
                await self.forget(cid, rev)
        except Exception as exc:
            bp.stats["js_errors"] += 1
            log.warning("cluster: will of %r not recorded: %s", cid, exc)

    async def settle(self) -> None:
        """After an outage long enough for the others to take this node for dead, one of
        them published the wills it had recorded (publish_of). A client of those that
        is still connected here must not fire its will a second time on an unclean
        disconnect: a will is published once [MQTT-3.1.2-8], so it is dropped here. The
        wills of connections made during the outage (not recorded then) are recorded."""
        core = self.bp.core
        fired = 0
        for cid, rev in list(self.revs.items()):
            try:
                entry = await self.kv.get(self.bp.key(cid))
                kept = bool(entry.value) and entry.revision == rev
            except KeyNotFoundError:  # deleted (tombstone) by the survivor that published it
                kept = False
            except Exception as exc:  # cannot tell: keep it (the survivors may too)
                log.warning("cluster: will of %r not checked: %s", cid, exc)
                continue
            if kept:
                continue
            del self.revs[cid]
            session = core.sessions.get(cid)
            conn = session.conn if session is not None else None
            if conn is not None and conn.will is not None:
                conn.will = None
                fired += 1
        if fired:
            log.warning(
                "cluster: %d will(s) of clients still connected here were published by "
                "another node during the NATS outage; they will not be published again",
                fired,
            )
        for session in list(core.sessions.values()):
            conn = session.conn
            if (
                conn is not None
                and conn.will is not None
                and conn.state == CONNECTED
                and conn.client_id not in self.revs
            ):
                await self.record(conn)

    def disconnected(self, cid: str) -> None:
        """The client's connection ended here: its will is this node's business again."""
        rev = self.revs.pop(cid, None)
        if rev is not None and self.kv is not None:
            self.bp._spawn(self.forget(cid, rev))

    async def forget(self, cid: str, rev: int) -> None:
        try:
            await self.kv.delete(self.bp.key(cid), last=rev)
        except Exception:
            pass  # a newer record (the client is on another node now) stays

    def _fire(self, msg: Message) -> None:
        core = self.bp.core
        wills.publish_will(core, msg, core.clock())

    async def publish_of(self, node: str) -> None:
        """Publish the recorded wills of a node that died; exactly once cluster-wide,
        because only one survivor's revision-checked delete succeeds."""
        kv = self.kv
        core = self.bp.core
        try:
            keys = await kv.keys()
        except Exception:
            return  # none
        published = 0
        for key in keys:
            try:
                entry = await kv.get(key)
                if not entry.value:
                    continue
                record = json.loads(entry.value)
                if record.get("node") != node:
                    continue
                await kv.delete(key, last=entry.revision)
            except Exception:
                continue  # another survivor took it, or it changed
            now = core.clock()
            msg = message_from_record(record, now)
            delay = record.get("delay", 0)
            if delay:
                asyncio.get_running_loop().call_later(delay, self._fire, msg)
            else:
                wills.publish_will(core, msg, now)
            published += 1
        if published:
            log.warning("cluster: published %d will(s) of node %s", published, node)

    async def orphans(self) -> None:
        """Once, when this node has heard the others for a while: wills recorded by
        nodes that are not alive (died before we started, or unseen) are published."""
        bp = self.bp
        await asyncio.sleep(3 * self.heartbeat + 0.5)
        kv = self.kv
        if kv is None or not bp.connected:
            return
        try:
            keys = await kv.keys()
        except Exception:
            return
        now = time.monotonic()
        owners: set[str] = set()
        for key in keys:
            try:
                entry = await kv.get(key)
                if entry.value:
                    owners.add(json.loads(entry.value).get("node", ""))
            except Exception:
                continue
        for node in owners:
            seen = bp.nodes.get(node)
            if node and node != bp.node_id and (seen is None or now - seen > 3 * self.heartbeat):
                if node not in bp.dead_handled:
                    bp.dead_handled.add(node)
                    log.warning("cluster: wills of node %s, which is not running, found", node)
                    await self.publish_of(node)


__all__ = ["WillRecords"]
