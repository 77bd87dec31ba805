"""The floor of a Python + uvloop broker's latency (issue 17): not a broker, a yardstick.

    python3 benchmarks/brokers/uvloop_floor.py PORT

Just enough MQTT 3.1.1 for ``mqttfast bench pairs`` (CONNACK, SUBACK for exact topic
filters, PINGRESP, QoS 0 PUBLISH forwarded byte for byte to the exact-topic subscribers),
no checks, no sessions, no statistics: one ``asyncio.Protocol.data_received`` per read
and one ``transport.write`` per subscriber, on uvloop as mqttfast runs. Whatever latency
it has at low load (``compare_brokers.py --brokers uvloop_floor --cells latency_2000``) is
the event loop's and the interpreter's, not mqttfast's: what is left to mqttfast is its
distance to this, and this one's distance to mosquitto is not reachable by changing
mqttfast's Python code.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import uvloop

SUBS: dict[bytes, list[Any]] = {}  # exact topic -> subscribers' transports


def remaining_length(buf: bytes, i: int) -> tuple[int, int]:
    """(value, index after it) of the variable byte integer at ``buf[i]``."""
    value, mult = 0, 1
    while True:
        byte = buf[i]
        i += 1
        value += (byte & 127) * mult
        mult *= 128
        if not byte & 128:
            return value, i


class Floor(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: Any = None
        self.pending = b""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.pending + data if self.pending else data
        i, n = 0, len(buf)
        while i + 2 <= n:
            if i + 5 > n and buf[n - 1] & 128:
                break  # the remaining length itself is incomplete
            length, j = remaining_length(buf, i + 1)
            if j + length > n:
                break
            kind = buf[i] >> 4
            if kind == 3:  # PUBLISH (QoS 0): the same bytes to each subscriber
                tlen = buf[j] << 8 | buf[j + 1]
                packet = buf[i : j + length]
                for transport in SUBS.get(buf[j + 2 : j + 2 + tlen], ()):
                    transport.write(packet)
            elif kind == 1:  # CONNECT
                self.transport.write(b"\x20\x02\x00\x00")
            elif kind == 8:  # SUBSCRIBE: the first filter, granted QoS 0
                tlen = buf[j + 2] << 8 | buf[j + 3]
                SUBS.setdefault(buf[j + 4 : j + 4 + tlen], []).append(self.transport)
                self.transport.write(b"\x90\x03" + buf[j : j + 2] + b"\x00")
            elif kind == 12:  # PINGREQ
                self.transport.write(b"\xd0\x00")
            elif kind == 14:  # DISCONNECT
                self.transport.close()
            i = j + length
        self.pending = buf[i:]

    def connection_lost(self, exc: Exception | None) -> None:
        for subscribers in SUBS.values():
            if self.transport in subscribers:
                subscribers.remove(self.transport)


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Floor, "127.0.0.1", port)
    await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1])))
