"""``mqttfast bench``: a multi-process MQTT 3.1.1 load generator over the sans-IO codec.

Scenarios (as emqtt-bench / nanomq_cli bench and ../shared/bench/mqtt-loadgen.c):

* ``fanin``: P publishers on ``bench/{i}`` -> 1 subscriber on ``bench/#``;
* ``fanout``: 1 publisher on ``bench/fan`` -> S subscribers;
* ``pairs``: N publisher/subscriber pairs on ``bench/pair/{i}``;
* ``connections``: N idle connections opened and held.

Clients are spread over ``--procs`` processes (each an asyncio loop, uvloop when present)
so the generator is not the bottleneck. Every payload starts with the send time
(CLOCK_MONOTONIC, shared by all processes), the publisher index and a sequence number:
subscribers measure end-to-end latency and count loss and duplicates per publisher.
"""

from .cli import main

__all__ = ["main"]
