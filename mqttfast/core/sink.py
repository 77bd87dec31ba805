"""The transport -> core seam: what a transport hands the core for one connection."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol


class Sink(Protocol):
    """Implemented by the transport (``mqttfast.transport.tcp.BatchedSink``, the WebSocket
    sink, test sinks). Writes may be batched; the core never waits on them."""

    def write(self, data: bytes) -> None:
        """Queue bytes for the peer."""

    def writelines(self, parts: Iterable[bytes]) -> None:
        """Queue several byte strings (empty ones may be skipped)."""

    def close(self) -> None:
        """Flush what is queued, then close."""

    def pause_reading(self) -> None:
        """Stop delivering input (back-pressure on a publisher)."""

    def resume_reading(self) -> None:
        """Deliver input again."""

    def get_write_buffer_size(self) -> int:
        """Bytes written but not yet handed to the kernel."""
