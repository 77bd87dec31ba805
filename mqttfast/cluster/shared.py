"""Shared subscriptions across nodes: a message moves to a member that can take it (4.8.2).

Each ``$share/{group}/{filter}`` is one NATS queue group (backplane._share_subscribe):
NATS hands each message to one node holding members, which gives it to one of them.
Two cases need more than that, because the single-node broker looks at every member
and a node sees only its own:

* A member leaves (its session ends, or its persistent session goes offline;
  core/broker.py): the single-node broker gives the member's shared messages not yet
  acknowledged to another member (``Router.redistribute``). Here, when the node has no
  other member online, they go to the members on the other nodes.
* NATS picks a node whose members of the group are all offline (persistent sessions
  whose clients are away) while members elsewhere are online: the single-node broker
  would give the message to an online member, not queue it for an absent one.

Both use the group's *move subject*, ``<ctl>.share.<group token>.<topic as subject>``,
to which every node holding members listens in the group's queue (on the same
connection as the group's data subjects, so an unsubscribe made before a move is
seen by nats-server first). A move is a request: the node NATS picks answers ``1`` if
it gave the message to a member, ``0`` if it has none that fits (only members online
are taken in the first round, offline persistent members too in the second; the
departed member never). A ``0`` is asked again (NATS may pick another node); after
:data:`MOVE_TRIES` answers of ``0`` a round ends, after both rounds (or no responder
at all) the message stays here as on a single node (another local member, online
or not, or nowhere). A move costs a request per message, which only departures and
absent members cause, never the common path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from nats.errors import NoRespondersError

from mqttfast.core.message import Message

from .subjects import subject_to_topic, topic_to_subject
from .wire import message_from, message_headers

log = logging.getLogger("mqttfast.cluster")

MOVE_TRIES = 16  # answers of "0" per round before the next round (NATS picks at random)
MOVE_WAIT = 1.0  # seconds a move request waits for its answer
STOP_WAIT = 3.0  # seconds a stopping node waits for its moves to finish
H_MOVED_FROM = "Mqtt-Moved-From"  # the departed member (never given the message back)
H_ANYONE = "Mqtt-Moved-Any"  # "1": an offline persistent member may take it


def move_subject(ctl: str, token: str, topic: str) -> str:
    return f"{ctl}.share.{token}.{topic_to_subject(topic, '')}"


def move_filter(ctl: str, token: str) -> str:
    return f"{ctl}.share.{token}.>"


# What the router does with a moved message: (group, filter, message, departed member,
# offline members allowed, now) -> given to a member here.
Take = Callable[[str, str, Message, str | None, bool, float], bool]
# The single-node fallback for a message no other node took: (key, message, departed).
Keep = Callable[[tuple[str, str], Message, str | None], None]


class SharedMoves:
    """Sends moves (a task per departure, messages in order) and answers them."""

    def __init__(self, ctl: str, clock: Callable[[], float]) -> None:
        self.ctl = ctl
        self.clock = clock
        self.tasks: set[asyncio.Task] = set()
        self.stats = {"shared_moved_out": 0, "shared_moved_in": 0, "shared_kept": 0}

    def send(
        self,
        nc: Any,
        token_of: Callable[[tuple[str, str]], str],
        items: list[tuple[tuple[str, str], Message]],
        departed: str | None,
        keep: Keep,
    ) -> None:
        moves = [(key, token_of(key), msg) for key, msg in items]
        task = asyncio.get_running_loop().create_task(self._send(nc, moves, departed, keep))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _send(
        self, nc: Any, moves: list[tuple[tuple[str, str], str, Message]], departed: Any, keep: Keep
    ) -> None:
        for key, token, msg in moves:
            try:
                placed = await self._place(nc, token, msg, departed)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS went away meanwhile: kept here
                log.warning("cluster: moving a shared-subscription message failed: %r", exc)
                placed = False
            if placed:
                self.stats["shared_moved_out"] += 1
            else:
                self.stats["shared_kept"] += 1
                keep(key, msg, departed)

    async def _place(self, nc: Any, token: str, msg: Message, departed: str | None) -> bool:
        subject = move_subject(self.ctl, token, msg.topic)
        for anyone in ("0", "1"):
            for _ in range(MOVE_TRIES):
                now = self.clock()
                if msg.expires_at is not None and msg.expires_at <= now:
                    return True  # expired on the way: nobody gets it [MQTT-3.3.2-5]
                headers = message_headers(msg, now) or {}
                headers[H_ANYONE] = anyone
                if departed is not None:
                    headers[H_MOVED_FROM] = departed
                try:
                    reply = await nc.request(subject, msg.payload, MOVE_WAIT, headers=headers)
                except NoRespondersError:
                    return False  # no node holds the group any more
                except TimeoutError:
                    continue  # the picked node did not answer (dying?): ask again
                if reply.data == b"1":
                    return True
        return False

    def handler(self, group: str, topic_filter: str, token: str, take: Take) -> Any:
        """The callback of this node's subscription to the group's move subject."""
        prefix = f"{self.ctl}.share.{token}"

        async def on_move(m: Any) -> None:
            try:
                topic = subject_to_topic(m.subject, prefix)
            except ValueError:
                return
            h = m.headers or {}
            now = self.clock()
            msg = message_from(topic, m.data, h, now)
            ok = take(group, topic_filter, msg, h.get(H_MOVED_FROM), h.get(H_ANYONE) == "1", now)
            if ok:
                self.stats["shared_moved_in"] += 1
            try:
                await m.respond(b"1" if ok else b"0")
            except Exception:
                pass  # the asker times out and asks again

        return on_move

    async def finish(self) -> None:
        """A stopping node: the moves its departing clients caused complete first."""
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=STOP_WAIT)
