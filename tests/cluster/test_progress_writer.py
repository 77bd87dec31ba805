"""The progress writer's decisions (cluster/progress.py ``Progress._due``), alone.

An adopter must read the dead node's progress record before it writes its own under the
same key. Seen: in 2 of ~25 runs of
test_failure.py::test_node_killed_while_a_nats_server_restarts[2] the adopter replayed
every journaled message (1,001) into a 3.1.1 session whose client had completed ~300 of
them on the dead node (292 and 304 QoS 2 duplicates), as if the record it read took
nothing for done. The one writer of that key besides the dead node is the adopter, whose
writer pass could run while the read was awaited; in a NATS cluster its put can overtake
the get sent before it (a JetStream API request and a stream publish reach the stream's
leader by different ways). Inferred, not caught in the act: the adoption's log line now
says whose record was read. The end-to-end case is that test; this pins the rule.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

from mqttfast.cluster.progress import Progress


def _progress() -> Progress:
    session = SimpleNamespace(
        client_id="c",
        expiry_interval=60,
        inflight={},
        awaiting_pubrel=set(),
        queue=(),
        backlog=None,
    )
    bp = SimpleNamespace(
        node_id="adopter",
        records=SimpleNamespace(owned={"c": 0}),
        core=SimpleNamespace(sessions={"c": session}),
        journal=SimpleNamespace(on=True, last={"dead-1": 361}, origin="adopter-1"),
        acks=SimpleNamespace(sent=0),
    )
    return Progress(bp, "bucket")


def test_no_record_of_an_adopted_session_before_its_dead_nodes_record_is_read() -> None:
    p = _progress()
    p.reading.add("c")  # journal.replay: the dead node's record is being read
    p.record_waits["c"] = [7]  # a held PUBREL of the session waits for its next record
    assert p._due() == []
    assert p.record_waits == {"c": [7]}  # still waiting, for the pass after the read
    p.reading.discard("c")
    p.since["c"] = 1000.0  # carried from the dead node's record (Progress.carry)
    ((cid, value, waits),) = p._due()
    assert cid == "c" and waits == [7]
    rec = json.loads(value or b"{}")
    assert rec["node"] == "adopter" and rec["since"] == 1000.0
