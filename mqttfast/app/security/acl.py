"""Mosquitto-compatible ACL files.

Format (mosquitto.conf(5), ``acl_file``)::

    # comment
    topic [read|write|readwrite|deny] <filter>     # before any `user`: anonymous clients
    user <username>
    topic [read|write|readwrite|deny] <filter>     # applies to <username>
    pattern [read|write|readwrite|deny] <filter>   # applies to every client; %c, %u

Without an access word the access is ``readwrite``. Decisions follow
mosquitto 2.x (``mosquitto_acl_check_default``):

* a client gets the ``topic`` rules of its user block (or the anonymous block
  when it has no username) plus every ``pattern``; nothing matches -> denied;
* a topic starting with ``$`` is only matched by rules that start with ``$``,
  so ``#`` never grants ``$SYS``;
* patterns are refused to clients whose id or username contains ``+`` or ``#``;
  a ``%u`` pattern does not apply to a client without a username.

Deliberate, stricter differences (security over bug-compatibility):

* ``deny`` wins over every grant of the client, user rules and patterns alike
  (mosquitto orders denies first only within each of the two lists);
* ids/usernames containing ``/`` are also refused by patterns (as mosquitto 1.x
  did), so client ``a/b`` cannot act inside client ``a``'s ``a/#`` space, and the
  ``$`` rule is checked on the pattern *before* substitution, so a client named
  ``$SYS`` does not get ``$SYS/#`` from ``pattern readwrite %c/#``;
* SUBSCRIBE is checked (mosquitto 2.x lets every subscription through and only
  filters deliveries): a filter is refused if a deny rule covers all of it or
  no read rule overlaps it. Messages are still checked one by one on delivery
  (:meth:`ClientAcl.can_receive`, retained messages included), so a partly
  denied wildcard subscription never leaks the denied topics.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

__all__ = ["AclFile", "AclParseError", "ClientAcl", "READ", "WRITE", "DENY"]

READ = 1
WRITE = 2
DENY = 0  # mosquitto's MOSQ_ACL_NONE: explicitly no access

_ACCESS_WORDS = {"read": READ, "write": WRITE, "readwrite": READ | WRITE, "deny": DENY}
_PATTERN_FORBIDDEN_ID_CHARS = frozenset("+#/")


class AclParseError(ValueError):
    """An invalid ACL file line; ``str()`` is ``file:line: message``."""

    def __init__(self, message: str, path: str, lineno: int) -> None:
        self.message, self.path, self.lineno = message, path, lineno
        super().__init__(f"{path}:{lineno}: {message}")


def _filter_problem(filt: str) -> str | None:
    """Why ``filt`` is not a valid MQTT topic filter (4.7.1), or None."""
    if not filt:
        return "empty topic filter"
    if "\x00" in filt:
        return "topic filter contains U+0000"
    if len(filt.encode("utf-8")) > 65535:
        return "topic filter longer than 65535 bytes"
    levels = filt.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return "'#' must be a whole level and the last one"
        if "+" in level and level != "+":
            return "'+' must be a whole level"
    return None


# --------------------------------------------------------------- matching
# Filters are handled as level lists (split once when the rule is compiled).


def _dollar_blocked(rule0: str, other0: str) -> bool:
    """[MQTT-4.7.2-1]: a leading wildcard never stands for a level starting with '$'."""
    return (rule0 in ("+", "#") and other0.startswith("$")) or (
        other0 in ("+", "#") and rule0.startswith("$")
    )


def _matches(rule: list[str], topic: list[str]) -> bool:
    """Does the filter ``rule`` match the topic name ``topic``?"""
    n = len(topic)
    for i, level in enumerate(rule):
        if level == "#":
            return True  # also matches the parent level ("a/#" matches "a")
        if i >= n or (level != "+" and level != topic[i]):
            return False
    return len(rule) == n


def _covers(rule: list[str], filt: list[str]) -> bool:
    """Is every topic matched by ``filt`` also matched by ``rule``?"""
    for i, f in enumerate(filt):
        if i >= len(rule):
            return False
        r = rule[i]
        if r == "#":
            return True
        if f == "#":
            return False
        if f == "+":
            if r != "+":
                return False
        elif r != "+" and r != f:
            return False
    rest = rule[len(filt) :]
    return not rest or rest == ["#"]


def _overlaps(rule: list[str], filt: list[str]) -> bool:
    """Is there a topic matched by both ``rule`` and ``filt``?"""
    for i in range(min(len(rule), len(filt))):
        r, f = rule[i], filt[i]
        if r == "#" or f == "#":
            return True
        if r != "+" and f != "+" and r != f:
            return False
    longer = rule if len(rule) > len(filt) else filt
    rest = longer[min(len(rule), len(filt)) :]
    return not rest or rest == ["#"]


@dataclass(frozen=True, slots=True)
class _Rule:
    access: int
    text: str
    levels: tuple[str, ...]
    lineno: int

    @property
    def is_deny(self) -> bool:
        return self.access == DENY


class ClientAcl:
    """The rules for one (client id, username), patterns already substituted.

    Decisions on topic names are cached (bounded), because :meth:`can_receive`
    runs once per delivered message.
    """

    __slots__ = ("client_id", "username", "_denies", "_grants", "_cache", "_cache_size")

    def __init__(
        self,
        client_id: str,
        username: str | None,
        rules: list[tuple[int, str, list[str]]],
        cache_size: int = 1024,
    ) -> None:
        self.client_id = client_id
        self.username = username
        # (access, unsubstituted rule text for the '$' test, levels)
        self._denies = [(t, lv) for a, t, lv in rules if a == DENY]
        self._grants = [(a, t, lv) for a, t, lv in rules if a != DENY]
        self._cache: OrderedDict[tuple[str, int], bool] = OrderedDict()
        self._cache_size = cache_size

    @staticmethod
    def _dollar_ok(rule_text: str, target: str) -> bool:
        # A '$' topic is only reachable through a rule written with a leading '$'.
        return not target.startswith("$") or rule_text.startswith("$")

    def _check_topic(self, topic: str, access: int) -> bool:
        key = (topic, access)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        levels = topic.split("/")
        result = False
        for text, rule in self._denies:
            if self._dollar_ok(text, topic) and _matches(rule, levels):
                break
        else:
            for acc, text, rule in self._grants:
                if acc & access and self._dollar_ok(text, topic) and _matches(rule, levels):
                    result = True
                    break
        self._cache[key] = result
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return result

    def can_publish(self, topic: str) -> bool:
        """Write access to the topic name ``topic``."""
        return self._check_topic(topic, WRITE)

    def can_receive(self, topic: str) -> bool:
        """Read access to ``topic``: check before delivering each message (retained too)."""
        return self._check_topic(topic, READ)

    def can_subscribe(self, filt: str) -> bool:
        """May this client subscribe to ``filt``?

        Refused when one deny rule covers the whole filter, or when no read
        rule could ever deliver a message through it. Deliveries are still
        checked per message with :meth:`can_receive`.
        """
        if _filter_problem(filt) is not None:
            return False
        levels = filt.split("/")
        for text, rule in self._denies:
            if (
                self._dollar_ok(text, filt)
                and not _dollar_blocked(rule[0], levels[0])
                and _covers(rule, levels)
            ):
                return False
        for acc, text, rule in self._grants:
            if (
                acc & READ
                and self._dollar_ok(text, filt)
                and not _dollar_blocked(rule[0], levels[0])
                and _overlaps(rule, levels)
            ):
                return True
        return False


class AclFile:
    """A parsed ACL file. ``AclFile.load(path)``; decisions via :meth:`for_client`."""

    def __init__(self, path: str = "<string>") -> None:
        self.path = path
        self.anonymous: list[_Rule] = []  # `topic` lines before any `user`
        self.users: dict[str, list[_Rule]] = {}  # `topic` lines per user block
        self.patterns: list[_Rule] = []  # `pattern` lines (everyone)
        self._clients: OrderedDict[tuple[str, str | None], ClientAcl] = OrderedDict()
        self.max_cached_clients = 4096

    # ---------------------------------------------------------------- parsing
    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> AclFile:
        """Read and parse ``path``; OSError if unreadable, AclParseError if invalid."""
        raw = Path(path).read_bytes()
        name = os.fspath(path)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise AclParseError(f"not valid UTF-8 ({exc.reason})", name, 0) from None
        return cls.parse(text, name)

    @classmethod
    def parse(cls, text: str, path: str = "<string>") -> AclFile:
        acl = cls(path)
        user: str | None = None
        for lineno, line in enumerate(text.splitlines(), start=1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            parts = stripped.split(None, 1)
            keyword = parts[0]
            rest = parts[1].strip() if len(parts) > 1 else ""
            if keyword == "user":
                if not rest:
                    raise AclParseError("missing username after 'user'", path, lineno)
                user = rest
                acl.users.setdefault(user, [])
            elif keyword in ("topic", "pattern"):
                acl._add_rule(keyword, rest, user, path, lineno)
            else:
                raise AclParseError(
                    f"unknown keyword {keyword!r} (expected user, topic or pattern)", path, lineno
                )
        return acl

    def _add_rule(self, keyword: str, rest: str, user: str | None, path: str, lineno: int) -> None:
        if not rest:
            raise AclParseError(f"missing topic after {keyword!r}", path, lineno)
        words = rest.split(None, 1)
        if len(words) == 2:
            access_word, filt = words[0], words[1].strip()
            if access_word not in _ACCESS_WORDS:
                raise AclParseError(
                    f"invalid access {access_word!r} (expected read, write, readwrite or deny)",
                    path,
                    lineno,
                )
            access = _ACCESS_WORDS[access_word]
        else:
            # mosquitto: a single word is the topic, with readwrite access.
            access, filt = READ | WRITE, words[0]
        problem = _filter_problem(filt)
        if problem is not None:
            raise AclParseError(f"invalid topic filter {filt!r}: {problem}", path, lineno)
        rule = _Rule(access, filt, tuple(filt.split("/")), lineno)
        if keyword == "pattern":
            self.patterns.append(rule)
        elif user is None:
            self.anonymous.append(rule)
        else:
            self.users[user].append(rule)

    # -------------------------------------------------------------- decisions
    def for_client(self, client_id: str, username: str | None) -> ClientAcl:
        """The compiled rules for one client (cached; cheap to call per packet)."""
        key = (client_id, username)
        cached = self._clients.get(key)
        if cached is not None:
            self._clients.move_to_end(key)
            return cached
        own = self.users.get(username, []) if username is not None else self.anonymous
        rules = [(r.access, r.text, list(r.levels)) for r in own]
        if self.patterns and self._ids_safe(client_id, username):
            for r in self.patterns:
                if "%u" in r.text and username is None:
                    continue
                text = _substitute(r.text, client_id, username)
                rules.append((r.access, r.text, text.split("/")))
        client = ClientAcl(client_id, username, rules)
        self._clients[key] = client
        if len(self._clients) > self.max_cached_clients:
            self._clients.popitem(last=False)
        return client

    @staticmethod
    def _ids_safe(client_id: str, username: str | None) -> bool:
        bad = _PATTERN_FORBIDDEN_ID_CHARS
        return not any(c in bad for c in client_id) and (
            username is None or not any(c in bad for c in username)
        )

    def can_publish(self, client_id: str, username: str | None, topic: str) -> bool:
        return self.for_client(client_id, username).can_publish(topic)

    def can_subscribe(self, client_id: str, username: str | None, filt: str) -> bool:
        return self.for_client(client_id, username).can_subscribe(filt)

    def can_receive(self, client_id: str, username: str | None, topic: str) -> bool:
        return self.for_client(client_id, username).can_receive(topic)


def _substitute(pattern: str, client_id: str, username: str | None) -> str:
    """Replace ``%c`` and ``%u`` left to right (so ``%%c`` is '%' + client id, like mosquitto)."""
    out = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "%" and i + 1 < n:
            nxt = pattern[i + 1]
            if nxt == "c":
                out.append(client_id)
                i += 2
                continue
            if nxt == "u" and username is not None:
                out.append(username)
                i += 2
                continue
        out.append(ch)
        i += 1
    return "".join(out)
