"""MQTT topic <-> NATS subject mapping.

Every topic level becomes one NATS token, so ``+`` is ``*`` and ``#`` is ``>``:

* an empty level is the token ``/`` (as nats-server's MQTT listener writes it);
* a level nats-server accepts is written as nats-server writes it: ``.`` becomes ``//``;
* any other level (white space, DEL, or exactly ``*`` / ``>``, which NATS would read
  as wildcards) becomes ``/~`` + the hex of its UTF-8 bytes. nats-server never
  produces a token that starts with one ``/`` followed by anything but ``/``, so the
  escape cannot collide with its subjects: the mapping is injective and reversible
  for every legal MQTT topic, and equal to nats-server's wherever nats-server has one.

A subject is ``<prefix>.<tokens>``; with an empty prefix it is nats-server's subject.
``a/#`` needs two NATS subjects (``a.>`` and ``a``) because ``#`` also matches the
parent level [MQTT-4.7.1-2]. Filters starting with a wildcard must not match topics
starting with ``$`` [MQTT-4.7.2-1]: NATS does not know that rule, so the receiving
node's own subscription tree applies it (``delivers``).
"""

from __future__ import annotations

_NATS_UNSAFE = frozenset(" \t\n\r\f\x7f")
_ESCAPE = "/~"


def level_token(level: str) -> str:
    if not level:
        return "/"
    if level in ("*", ">") or not _NATS_UNSAFE.isdisjoint(level):
        return _ESCAPE + level.encode("utf-8").hex()
    return level.replace(".", "//")


def token_level(token: str) -> str:
    if token == "/":
        return ""
    if token.startswith(_ESCAPE):
        return bytes.fromhex(token[2:]).decode("utf-8")
    return token.replace("//", ".")


def topic_to_subject(topic: str, prefix: str = "mqtt") -> str:
    body = ".".join([level_token(level) for level in topic.split("/")])
    return f"{prefix}.{body}" if prefix else body


def subject_to_topic(subject: str, prefix: str = "mqtt") -> str:
    """The inverse of :func:`topic_to_subject`; ValueError for a subject outside the
    prefix or with a malformed escape (a NATS-native publisher's mistake)."""
    if prefix:
        if not subject.startswith(prefix + "."):
            raise ValueError(f"subject {subject!r} outside prefix {prefix!r}")
        subject = subject[len(prefix) + 1 :]
    return "/".join([token_level(token) for token in subject.split(".")])


def filter_to_subjects(topic_filter: str, prefix: str = "mqtt") -> list[str]:
    """The NATS subjects whose union covers an MQTT filter (without $share)."""
    tokens = []
    for level in topic_filter.split("/"):
        if level == "+":
            tokens.append("*")
        elif level == "#":
            tokens.append(">")
        else:
            tokens.append(level_token(level))
    head = f"{prefix}." if prefix else ""
    subjects = [head + ".".join(tokens)]
    if len(tokens) > 1 and tokens[-1] == ">":
        subjects.append(head + ".".join(tokens[:-1]))  # '#' matches the parent level too
    return subjects


def nats_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching (``*`` one token, ``>`` one or more trailing tokens)."""
    ptoks = pattern.split(".")
    stoks = subject.split(".")
    for i, p in enumerate(ptoks):
        if p == ">":
            return len(stoks) > i
        if i >= len(stoks):
            return False
        if p != "*" and p != stoks[i]:
            return False
    return len(ptoks) == len(stoks)


def delivers(topic_filter: str, topic: str, prefix: str = "mqtt") -> bool:
    """Would a node holding ``topic_filter`` deliver ``topic`` published on another node?
    NATS matching of the mapped subjects, then the node's own [MQTT-4.7.2-1] check."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    subject = topic_to_subject(topic, prefix)
    return any(nats_matches(p, subject) for p in filter_to_subjects(topic_filter, prefix))
