"""Who is subscribed to what: the subscription trie plus a topic -> targets cache.

Normal subscriptions live in ``mqttfast.codec.TopicTree`` (the accelerated
trie) keyed by client id. A shared subscription ``$share/{group}/{filter}``
(MQTT 5, 4.8.2) is one trie entry per (group, filter), keyed
``("$share", group)``, whose value is a :class:`SharedGroup` holding the
members; a message goes to one member per group (see ``SharedGroup.pick``).

``match(topic)`` aggregates the trie hits per client -- one copy per client at
the highest QoS, carrying every matching subscription identifier
[MQTT-3.3.5-1], [MQTT-3.3.4-3..5] -- and caches the result per topic. Any
(un)subscribe clears the cache, so it never serves a stale list.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from mqttfast.codec import TopicTree

if TYPE_CHECKING:
    from .session import Session

SHARE_PREFIX = "$share/"


class SubEntry:
    """One subscription of one client, with its options (3.8.3.1)."""

    __slots__ = (
        "client_id",
        "topic_filter",
        "qos",
        "no_local",
        "retain_as_published",
        "retain_handling",
        "sub_id",
        "group",
    )

    def __init__(
        self,
        client_id: str,
        topic_filter: str,
        qos: int,
        no_local: bool = False,
        retain_as_published: bool = False,
        retain_handling: int = 0,
        sub_id: int | None = None,
        group: str | None = None,
    ) -> None:
        self.client_id = client_id
        self.topic_filter = topic_filter  # without the $share/{group}/ prefix
        self.qos = qos
        self.no_local = no_local
        self.retain_as_published = retain_as_published
        self.retain_handling = retain_handling
        self.sub_id = sub_id
        self.group = group

    @property
    def full_filter(self) -> str:
        if self.group is None:
            return self.topic_filter
        return f"{SHARE_PREFIX}{self.group}/{self.topic_filter}"


def split_shared(full_filter: str) -> tuple[str | None, str]:
    """``$share/g/a/b`` -> ("g", "a/b"); anything else -> (None, filter).
    A malformed share name returns ("", "") for the caller to refuse."""
    if not full_filter.startswith(SHARE_PREFIX):
        return None, full_filter
    rest = full_filter[len(SHARE_PREFIX) :]
    group, sep, filt = rest.partition("/")
    # [MQTT-4.8.2-1] ShareName must not contain "/", "+" or "#"; [MQTT-4.8.2-2] a filter follows.
    if not sep or not group or not filt or "+" in group or "#" in group:
        return "", ""
    return group, filt


class Target:
    """All the subscriptions of one client that match one topic, aggregated."""

    __slots__ = ("client_id", "qos", "sub_ids", "retain_as_published", "no_local", "entries")

    def __init__(self, entries: list[SubEntry]) -> None:
        self.client_id = entries[0].client_id
        self.entries = entries
        self.qos = max(e.qos for e in entries)
        ids = tuple(e.sub_id for e in entries if e.sub_id is not None)
        self.sub_ids = ids or None
        self.retain_as_published = any(e.retain_as_published for e in entries)
        self.no_local = any(e.no_local for e in entries)

    def without_no_local(self) -> Target | None:
        """The target seen by a message this same client published (No Local, 3.8.3.1)."""
        kept = [e for e in self.entries if not e.no_local]
        return Target(kept) if kept else None


class SharedGroup:
    """The members of one ``$share/{group}/{filter}``.

    Distribution is round-robin over members, skipping members that are offline
    or whose in-flight window is full while another member has room; when no
    member is online the message goes to the next offline persistent member's
    queue (it is delivered when that client returns, or moved to another member
    if its session ends first).
    """

    __slots__ = ("group", "topic_filter", "members", "order", "rr")

    def __init__(self, group: str, topic_filter: str) -> None:
        self.group = group
        self.topic_filter = topic_filter
        self.members: dict[str, SubEntry] = {}
        self.order: list[str] = []
        self.rr = 0

    def pick(
        self, sessions: dict[str, Session], exclude: str | None = None
    ) -> tuple[Session, SubEntry] | None:
        order = self.order
        n = len(order)
        start = self.rr
        fallback = None
        for i in range(n):
            idx = (start + i) % n
            cid = order[idx]
            if cid == exclude:
                continue
            session = sessions.get(cid)
            if session is None:
                continue
            if session.conn is not None and session.has_room():
                self.rr = (idx + 1) % n
                return session, self.members[cid]
            if fallback is None or (fallback[0].conn is None and session.conn is not None):
                fallback = (session, idx)
        if fallback is None:
            return None
        session, idx = fallback
        self.rr = (idx + 1) % n
        return session, self.members[session.client_id]


class SubscriptionStore:
    def __init__(self, cache_size: int = 4096) -> None:
        self.tree = TopicTree()
        self.groups: dict[tuple[str, str], SharedGroup] = {}
        self.cache: dict[str, tuple[list[Target], list[SharedGroup]]] = {}
        self.cache_size = cache_size
        self.count = 0  # subscriptions, shared members included

    def add(self, entry: SubEntry) -> bool:
        """Add or replace; True when the subscription is new [MQTT-3.8.4-3]."""
        self.cache.clear()
        if entry.group is None:
            new: bool = self.tree.insert(entry.topic_filter, entry.client_id, entry)
        else:
            key = (entry.group, entry.topic_filter)
            group = self.groups.get(key)
            if group is None:
                group = self.groups[key] = SharedGroup(entry.group, entry.topic_filter)
                self.tree.insert(entry.topic_filter, ("$share", entry.group), group)
            new = entry.client_id not in group.members
            group.members[entry.client_id] = entry
            if new:
                group.order.append(entry.client_id)
        if new:
            self.count += 1
        return new

    def remove(self, client_id: str, topic_filter: str, group: str | None) -> bool:
        self.cache.clear()
        if group is None:
            removed: bool = self.tree.remove(topic_filter, client_id)
        else:
            key = (group, topic_filter)
            shared = self.groups.get(key)
            removed = shared is not None and shared.members.pop(client_id, None) is not None
            if shared is not None and removed:
                shared.order.remove(client_id)
                if shared.order:
                    shared.rr %= len(shared.order)
                else:
                    del self.groups[key]
                    self.tree.remove(topic_filter, ("$share", group))
        if removed:
            self.count -= 1
        return removed

    def remove_all(self, entries: Iterable[SubEntry]) -> None:
        for e in list(entries):
            self.remove(e.client_id, e.topic_filter, e.group)

    def match(self, topic: str) -> tuple[list[Target], list[SharedGroup]]:
        hit = self.cache.get(topic)
        if hit is not None:
            return hit
        per_client: dict[str, list[SubEntry]] = {}
        shared: list[SharedGroup] = []
        for key, value in self.tree.match(topic):
            if type(value) is SharedGroup:
                shared.append(value)
            else:
                lst = per_client.get(key)
                if lst is None:
                    per_client[key] = [value]
                else:
                    lst.append(value)
        result = ([Target(lst) for lst in per_client.values()], shared)
        if len(self.cache) >= self.cache_size:
            self.cache.clear()
        self.cache[topic] = result
        return result
