"""Exactly once for QoS 2 when a PUBLISH is forwarded twice (journal.q2_copy).

A persistent publisher's QoS 2 PUBLISH is forwarded with the id "origin.counter/P". When
its first forward may be lost (the NATS connection broke, progress.resent) or its node
died (an adopter), the re-sent PUBLISH is forwarded again as a copy
"origin.counter/P/base/first-origin". Each receiving node delivers exactly one of the
two, whichever comes first: the copy after the original (the usual order) or the
original after the copy (its core NATS copy was lost with the connection while the
journal had it; a replay pass reads it later: seen in
test_failure.py::test_node_killed_while_a_nats_server_restarts[2], 1 duplicate in ~15
runs). The decision logic alone, no NATS: the end-to-end cases are in test_failure.py
and test_qos2_nats_break.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from mqttfast.cluster import journal as journal_mod
from mqttfast.cluster.journal import Journal


class _Backplane:
    ctl = "t.ctl"


def _journal() -> Journal:
    return Journal(_Backplane(), "x", 3600.0)


def _delivered(j: Journal, mids: list[str], publisher: Any = "pub") -> list[str]:
    return [mid for mid in mids if not j.q2_copy(mid, publisher)]


@pytest.mark.parametrize(
    "original, copy",
    [
        ("nodeA-1.41/7", "nodeA-1.43/7/40/nodeA-1"),  # forwarded again by its own node
        ("dead-1.41/7", "adopter-1.5/7/40/dead-1"),  # re-sent to an adopter
    ],
)
def test_one_of_original_and_copy_is_delivered_in_either_order(original: str, copy: str) -> None:
    assert _delivered(_journal(), [original, copy]) == [original]
    assert _delivered(_journal(), [copy, original]) == [copy]  # fails without q2_covered


def test_a_new_message_reusing_the_packet_id_is_not_taken_for_the_original() -> None:
    j = _journal()
    # Copy first; then the original; then the publisher's next message with packet id
    # 7 (after PUBCOMP), a later counter of its own node: delivered.
    assert _delivered(j, ["nodeA-1.43/7/40/nodeA-1", "nodeA-1.41/7", "nodeA-1.50/7"]) == [
        "nodeA-1.43/7/40/nodeA-1",
        "nodeA-1.50/7",
    ]
    # An older original read again by a replay (counter not above base): not dropped,
    # and it does not use up the recognition of the real one.
    j = _journal()
    assert _delivered(j, ["nodeA-1.43/7/40/nodeA-1", "nodeA-1.12/7", "nodeA-1.41/7"]) == [
        "nodeA-1.43/7/40/nodeA-1",
        "nodeA-1.12/7",
    ]
    # Another publisher's message with the same packet id: delivered.
    j = _journal()
    assert _delivered(j, ["nodeA-1.43/7/40/nodeA-1"]) == ["nodeA-1.43/7/40/nodeA-1"]
    assert _delivered(j, ["nodeA-1.41/7"], publisher="other") == ["nodeA-1.41/7"]


def test_a_dead_nodes_original_is_recognised_for_a_while_only(monkeypatch) -> None:
    j = _journal()
    assert _delivered(j, ["adopter-1.5/7/40/dead-1"]) == ["adopter-1.5/7/40/dead-1"]
    now = journal_mod.time.monotonic()
    monkeypatch.setattr(journal_mod.time, "monotonic", lambda: now + journal_mod.COVER_KEEP)
    # Its node came back (a stall, not a death) and the client, connected there again,
    # reused the packet id: a new message.
    assert _delivered(j, ["dead-1.90/7"]) == ["dead-1.90/7"]
