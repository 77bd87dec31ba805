"""The pipe pair between a ``--workers`` worker and its supervisor: ``$SYS`` totals.

``$SYS`` is per node in a cluster (mqttfast/cluster routes no ``$SYS/`` topic), but a
``--workers`` group is one broker to its users, so its ``$SYS`` figures must be the
group's. Each worker publishes its ``$SYS`` as usual, with every countable figure
(clients, messages, bytes, subscriptions, stored messages, load rates) replaced by the
group's total:

1. every ``sys_interval`` the worker writes its own figures, one JSON line, to the
   supervisor (``report`` pipe);
2. the supervisor answers each worker with the sum of the *other* workers' latest
   figures (``others`` pipe);
3. the worker publishes ``own + others``.

So the totals lag by at most one interval. Not summed: ``version``, ``uptime`` (the
worker's), ``retained messages/count`` (the cluster mirrors every retained message into
every worker). ``clients/maximum`` is the sum of the workers' maxima (an upper bound).

The worker's first line, ``{"__ready__": 1}`` at its first tick (ticks start with the
first listener), tells the supervisor that it accepts connections.

The supervisor passes the two pipe ends with ``pass_fds`` and names them in
``MQTTFAST_WORKER_LINK=<read fd>,<write fd>``; nothing else reads or writes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Callable
from typing import Any

from mqttfast.core.message import Message
from mqttfast.core.sys_topics import SysTopics

log = logging.getLogger("mqttfast")

LINK_ENV = "MQTTFAST_WORKER_LINK"
SYS_PREFIX = "$SYS/broker/"
READY_KEY = "__ready__"  # the worker's first line: its listeners are open
NOT_SUMMED = frozenset({"version", "uptime", "retained messages/count"})


def from_env() -> WorkerLink | None:
    text = os.environ.get(LINK_ENV, "")
    if not text:
        return None
    read_fd, _, write_fd = text.partition(",")
    return WorkerLink(int(read_fd), int(write_fd))


def _number(payload: bytes) -> float | int | None:
    text = payload.decode("ascii", "replace")
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return None


def _format(value: float | int, like: bytes) -> bytes:
    if b"." in like:
        return f"{value:.2f}".encode()
    return str(int(value)).encode()


class GroupSysTopics(SysTopics):
    """SysTopics whose countable figures are the group's totals (see the module doc)."""

    def __init__(self, broker: Any, link: WorkerLink) -> None:
        super().__init__(broker)
        self.link = link
        self.group_published: dict[str, bytes] = {}

    def due(self, now: float) -> bool:
        # Asked on every tick, and the ticks start with the first listener: the first
        # call tells the supervisor that this worker accepts connections.
        if not self.link.ready_sent:
            self.link.ready_sent = True
            self.link.send_line({READY_KEY: 1})
        return super().due(now)

    def publish(self, now: float) -> None:
        router = self.broker.router
        own_attr = vars(router).get("publish")  # a wrapper installed by someone else
        inner: Callable[..., int] = router.publish
        mine: dict[str, float | int] = {}
        others = self.link.others

        def adjusted(msg: Message, when: float, publisher: Any = None) -> int:
            name = msg.topic[len(SYS_PREFIX) :]
            payload = msg.payload
            value = _number(payload) if name not in NOT_SUMMED else None
            if value is not None:
                mine[name] = value
                extra = others.get(name)
                if extra:
                    payload = _format(value + extra, payload)
            if self.group_published.get(msg.topic) == payload:
                return 0  # unchanged: like mosquitto, only changes go out
            self.group_published[msg.topic] = payload
            return inner(Message(msg.topic, payload, msg.qos, msg.retain), when, publisher)

        self.last_published = {}  # every figure through `adjusted`, which deduplicates
        router.publish = adjusted  # type: ignore[method-assign,assignment]
        try:
            super().publish(now)
        finally:
            if own_attr is None:
                del router.publish
            else:
                router.publish = own_attr  # type: ignore[method-assign]
        self.link.report(mine)


class WorkerLink:
    def __init__(self, read_fd: int, write_fd: int) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd
        self.others: dict[str, float] = {}
        self.ready_sent = False
        self._task: asyncio.Task[None] | None = None

    async def start(self, broker: Any) -> None:
        """Publish group totals in $SYS from now on, and listen to the supervisor."""
        broker.sys = GroupSysTopics(broker, self)
        os.set_blocking(self.write_fd, False)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(self.read_fd, "rb", 0)
        )
        self._task = asyncio.ensure_future(self._listen(reader))

    async def _listen(self, reader: asyncio.StreamReader) -> None:
        while True:
            line = await reader.readline()
            if not line:
                return  # the supervisor is gone; keep the last figures
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if isinstance(data, dict):
                self.others = {k: v for k, v in data.items() if isinstance(v, (int, float))}

    def report(self, figures: dict[str, float | int]) -> None:
        self.send_line(figures)

    def send_line(self, figures: dict[str, float | int]) -> None:
        line = (json.dumps(figures, separators=(",", ":")) + "\n").encode()
        with contextlib.suppress(BlockingIOError, BrokenPipeError, OSError):
            os.write(self.write_fd, line)  # a full pipe drops one report, never blocks


def sum_others(reports: dict[int, dict[str, float]], me: int) -> dict[str, float]:
    """The supervisor's side: the sum of every other worker's latest figures."""
    total: dict[str, float] = {}
    for index, figures in reports.items():
        if index == me:
            continue
        for name, value in figures.items():
            total[name] = total.get(name, 0) + value
    return total


__all__ = ["GroupSysTopics", "WorkerLink", "from_env", "sum_others", "LINK_ENV", "READY_KEY"]
