"""TopicTree: the subscription trie, pure-Python twin of ``_matcher.pyx``.

One node per filter level, with the wildcard levels held in dedicated slots
(``plus`` for ``+``, ``hash`` for ``#``) instead of in the children dict, as in
paho's matcher.py and NanoMQ. Matching walks the topic's levels once, keeping a
frontier of nodes whose filter prefix matches the topic prefix; at each node it
looks up the exact level and the ``+`` slot and collects the ``#`` slot. The
cost is the number of levels times the size of that frontier, and the frontier
only holds nodes that really match, whatever the number of filters.

Both twins visit nodes in the same order, so ``match`` returns the same list.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

__all__ = ["TopicTree"]


class _Node:
    __slots__ = ("children", "plus", "hash", "subs", "items")

    def __init__(self) -> None:
        self.children: dict[str, _Node] | None = None  # exact levels, created lazily
        self.plus: _Node | None = None  # the "+" level
        self.hash: _Node | None = None  # the "#" level (only its subs are used)
        self.subs: dict[Hashable, Any] | None = None  # key -> value of filters ending here
        # subs as a list of (key, value), built on first match and dropped on
        # change: match() then extends its result without allocating tuples.
        self.items: list[tuple[Hashable, Any]] | None = None

    def entries(self) -> list[tuple[Hashable, Any]]:
        items = self.items
        if items is None:
            items = self.items = list(self.subs.items()) if self.subs else []
        return items

    def is_empty(self) -> bool:
        return not self.subs and not self.children and self.plus is None and self.hash is None


class TopicTree:
    """Maps (topic filter, key) to a value and finds every filter matching a topic.

    ``match`` obeys [MQTT-4.7.2-1]: a filter starting with ``+`` or ``#`` does
    not match a topic starting with ``$``. Filters are not validated here; the
    caller validates them (``validate_topic_filter``) before inserting.
    """

    __slots__ = ("_root", "_count")

    def __init__(self) -> None:
        self._root = _Node()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def insert(self, filt: str, key: Hashable, value: Any) -> bool:
        """Store value for (filt, key). True if the pair was new."""
        node = self._root
        for level in filt.split("/"):
            if level == "+":
                nxt = node.plus
                if nxt is None:
                    nxt = node.plus = _Node()
            elif level == "#":
                nxt = node.hash
                if nxt is None:
                    nxt = node.hash = _Node()
            else:
                children = node.children
                if children is None:
                    children = node.children = {}
                nxt = children.get(level)
                if nxt is None:
                    nxt = children[level] = _Node()
            node = nxt
        subs = node.subs
        if subs is None:
            subs = node.subs = {}
        is_new = key not in subs
        subs[key] = value
        node.items = None
        if is_new:
            self._count += 1
        return is_new

    def _find(self, filt: str) -> _Node | None:
        node = self._root
        for level in filt.split("/"):
            found: _Node | None
            if level == "+":
                found = node.plus
            elif level == "#":
                found = node.hash
            else:
                found = node.children.get(level) if node.children else None
            if found is None:
                return None
            node = found
        return node

    def get(self, filt: str, key: Hashable, default: Any = None) -> Any:
        """The value stored for (filt, key), or default."""
        node = self._find(filt)
        if node is None or not node.subs:
            return default
        return node.subs.get(key, default)

    def remove(self, filt: str, key: Hashable) -> bool:
        """Forget (filt, key). True if it existed. Empty nodes are pruned."""
        path: list[tuple[_Node, str]] = []
        node = self._root
        for level in filt.split("/"):
            path.append((node, level))
            if level == "+":
                nxt = node.plus
            elif level == "#":
                nxt = node.hash
            else:
                nxt = node.children.get(level) if node.children else None
            if nxt is None:
                return False
            node = nxt
        if not node.subs or key not in node.subs:
            return False
        del node.subs[key]
        node.items = None
        self._count -= 1
        if not node.subs:
            node.subs = None
        # Walk back up, unlinking nodes that no longer lead to any filter.
        for parent, level in reversed(path):
            if not node.is_empty():
                break
            if level == "+":
                parent.plus = None
            elif level == "#":
                parent.hash = None
            else:
                del parent.children[level]  # type: ignore[union-attr]
                if not parent.children:
                    parent.children = None
            node = parent
        return True

    def match(self, topic: str) -> list[tuple[Hashable, Any]]:
        """(key, value) for every stored (filter, key) whose filter matches topic.

        One entry per (filter, key): a key subscribed with two matching filters
        appears twice (the caller merges, e.g. taking the highest QoS).
        """
        result: list[tuple[Hashable, Any]] = []
        levels = topic.split("/")
        root = self._root
        frontier = [root]
        # [MQTT-4.7.2-1]: no leading wildcard for "$" topics.
        wild = topic[:1] != "$"
        for level in levels:
            nxt: list[_Node] = []
            for node in frontier:
                if wild or node is not root:
                    h = node.hash
                    if h is not None and h.subs:
                        result.extend(h.entries())
                    p = node.plus
                    if p is not None:
                        nxt.append(p)
                children = node.children
                if children is not None:
                    child = children.get(level)
                    if child is not None:
                        nxt.append(child)
            if not nxt:
                return result
            frontier = nxt
        for node in frontier:
            if node.subs:
                result.extend(node.entries())
            h = node.hash  # "a/#" also matches "a"
            if h is not None and h.subs:
                result.extend(h.entries())
        return result
