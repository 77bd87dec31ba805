"""Retained messages: one per topic, found by walking a topic-level trie with a filter.

[MQTT-3.3.1-5] a retained PUBLISH replaces the stored message of its topic;
[MQTT-3.3.1-10/11] a zero-length retained payload deletes it and is never
stored. Expired messages (MQTT 5 Message Expiry) are dropped when met.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from .message import Message

log = logging.getLogger("mqttfast.core")


class _Node:
    __slots__ = ("children", "msg")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.msg: Message | None = None


class RetainedStore:
    def __init__(self) -> None:
        self.root = _Node()
        self.count = 0
        self.bytes = 0
        self.storage: Any = None  # a durable core.storage.Storage, told of every change
        self.max_messages = 0  # bounds (0 = none); see BrokerSettings.max_retained_*
        self.max_bytes = 0
        self.refused = 0  # retained messages not stored because of a bound

    def store(self, msg: Message) -> None:
        """Store (or delete, for an empty payload) the retained message of msg.topic."""
        if not msg.payload:
            self.delete(msg.topic)
            return
        if (self.max_messages and self.count >= self.max_messages) or (
            self.max_bytes and self.bytes + len(msg.payload) > self.max_bytes
        ):
            old = self.get(msg.topic)  # near a bound only: replacing is always allowed
            grow = len(msg.payload) - (len(old.payload) if old is not None else 0)
            if (old is None and self.max_messages and self.count >= self.max_messages) or (
                self.max_bytes and grow > 0 and self.bytes + grow > self.max_bytes
            ):
                self.refused += 1
                if self.refused == 1 or self.refused % 1000 == 0:
                    log.warning(
                        "retained store full (%d messages, %d bytes): retained message "
                        "for %r not stored (%d refused so far)",
                        self.count,
                        self.bytes,
                        msg.topic,
                        self.refused,
                    )
                return
        node = self.root
        for level in msg.topic.split("/"):
            nxt = node.children.get(level)
            if nxt is None:
                nxt = node.children[level] = _Node()
            node = nxt
        if node.msg is None:
            self.count += 1
        else:
            self.bytes -= len(node.msg.payload)
        self.bytes += len(msg.payload)
        node.msg = msg
        if self.storage is not None:
            self.storage.retained_put(msg)

    def delete(self, topic: str) -> bool:
        path = [self.root]
        node = self.root
        levels = topic.split("/")
        for level in levels:
            child = node.children.get(level)
            if child is None:
                return False
            node = child
            path.append(node)
        if node.msg is None:
            return False
        self.bytes -= len(node.msg.payload)
        node.msg = None
        self.count -= 1
        if self.storage is not None:
            self.storage.retained_delete(topic)
        # Prune empty nodes bottom-up.
        for i in range(len(levels), 0, -1):
            n = path[i]
            if n.msg is None and not n.children:
                del path[i - 1].children[levels[i - 1]]
            else:
                break
        return True

    def get(self, topic: str) -> Message | None:
        node = self.root
        for level in topic.split("/"):
            child = node.children.get(level)
            if child is None:
                return None
            node = child
        return node.msg

    def match(self, topic_filter: str, now: float) -> list[Message]:
        """Retained messages whose topic matches the filter, expired ones removed.
        Leading wildcards do not match '$' topics [MQTT-4.7.2-1]."""
        out: list[Message] = []
        expired: list[str] = []
        for msg in self._walk(self.root, topic_filter.split("/"), 0):
            if msg.expires_at is not None and now >= msg.expires_at:
                expired.append(msg.topic)
            else:
                out.append(msg)
        for topic in expired:
            self.delete(topic)
        return out

    def _walk(self, node: _Node, levels: list[str], i: int) -> Iterator[Message]:
        # Iterative depth-first walk: (node, level index) pairs.
        stack = [(node, i)]
        while stack:
            node, i = stack.pop()
            if i == len(levels):
                if node.msg is not None:
                    yield node.msg
                continue
            level = levels[i]
            if level == "#":
                # '#' also matches the parent level itself ("a/#" matches "a").
                if node.msg is not None and i > 0:
                    yield node.msg
                sub = [
                    (c, n) for c, n in node.children.items() if not (i == 0 and c.startswith("$"))
                ]
                while sub:
                    name, n = sub.pop()
                    if n.msg is not None:
                        yield n.msg
                    sub.extend(n.children.items())
            elif level == "+":
                for name, child in node.children.items():
                    if i == 0 and name.startswith("$"):
                        continue
                    stack.append((child, i + 1))
            else:
                nxt = node.children.get(level)
                if nxt is not None:
                    stack.append((nxt, i + 1))

    def all_messages(self) -> Iterator[Message]:
        stack = [self.root]
        while stack:
            n = stack.pop()
            if n.msg is not None:
                yield n.msg
            stack.extend(n.children.values())
