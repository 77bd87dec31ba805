"""What the codec fuzz targets do with one input, shared by the atheris targets,
the hypothesis fallback and tests/robustness/test_fuzz_regressions.py.

Input layout (so one byte string describes a whole decoding session):

    byte 0   mode:     low 2 bits: 0 = server-side decoder (protocol_version None),
                       1/2/3 = client-side decoder for MQTT 3.1 / 3.1.1 / 5.0;
                       bit 2: small max_packet_size (64 bytes) instead of the default
    byte 1   chunking: 0 = feed everything at once, n = feed n-byte chunks
    rest     the byte stream, as a network peer would send it

The contract checked (docs/architecture.md, codec API):
  * ``Decoder.feed`` returns packets or raises ``MQTTError``; nothing else, ever;
  * every decoded packet re-encodes (``encode``) and the encoding decodes to an
    equal packet (round trip);
  * chunking does not change the result.
The differential check adds: the Cython and pure-Python twins return equal packets
or raise the same error class with the same reason code and the same
``err.packets``, and encode every decoded packet to the same bytes.
"""

from __future__ import annotations

import types
from typing import Any

from mqttfast.codec import MQTTError
from mqttfast.codec.constants import MAX_PACKET_SIZE

VERSIONS = (None, 3, 4, 5)
SMALL_MAX = 64


class FuzzFinding(AssertionError):
    """The codec broke its contract on this input."""


def parse_input(data: bytes) -> tuple[int | None, int, int, bytes]:
    """(protocol_version, max_packet_size, chunk, stream) of one fuzz input."""
    mode = data[0] if data else 0
    chunk = data[1] if len(data) > 1 else 0
    version = VERSIONS[mode & 3]
    max_size = SMALL_MAX if mode & 4 else MAX_PACKET_SIZE
    return version, max_size, chunk, bytes(data[2:])


def make_input(
    stream: bytes, version: int | None = None, chunk: int = 0, small_max: bool = False
) -> bytes:
    return bytes([VERSIONS.index(version) | (4 if small_max else 0), chunk]) + stream


def run_decoder(
    codec: types.ModuleType, version: int | None, max_size: int, chunk: int, stream: bytes
) -> tuple[list[Any], MQTTError | None, int | None]:
    """Feed the stream; (packets, error or None, protocol version reached).
    Any exception other than MQTTError propagates: that is a finding."""
    dec = codec.Decoder(version, max_size)
    out: list[Any] = []
    err: MQTTError | None = None
    pieces = (
        [stream]
        if chunk == 0
        else [stream[i : i + chunk] for i in range(0, len(stream), chunk)] or [b""]
    )
    for piece in pieces:
        try:
            out.extend(dec.feed(piece))
        except MQTTError as e:
            out.extend(e.packets)
            err = e
            break
    return out, err, dec.protocol_version


def check_round_trip(codec: types.ModuleType, pkts: list[Any], version: int | None) -> None:
    """Every decoded packet encodes, and its encoding decodes to an equal packet."""
    for pkt in pkts:
        # A CONNECT carries its own version (a client-side decoder may read any).
        v = pkt.protocol_version if hasattr(pkt, "protocol_version") else (version or 4)
        data = codec.encode(pkt, v)
        dec = codec.Decoder(v)
        try:
            again = dec.feed(data)
        except MQTTError as e:
            raise FuzzFinding(
                f"re-encoded {pkt!r} (v{v}) does not decode: {e}; bytes {data.hex()}"
            ) from None
        if again != [pkt]:
            raise FuzzFinding(
                f"round trip changed the packet (v{v}):\n  {pkt!r}\n  {again!r}\n"
                f"  bytes {data.hex()}"
            )


def check_one(codec: types.ModuleType, data: bytes) -> None:
    """The single-twin contract (the atheris target's body)."""
    version, max_size, chunk, stream = parse_input(data)
    pkts, err, reached = run_decoder(codec, version, max_size, chunk, stream)
    if chunk:  # chunking must not matter
        pkts1, err1, _ = run_decoder(codec, version, max_size, 0, stream)
        if pkts1 != pkts or _err_key(err1) != _err_key(err):
            raise FuzzFinding(
                f"chunk size {chunk} changed the result: {pkts!r} / {err!r} vs {pkts1!r} / {err1!r}"
            )
    # A server-side decoder learns the version from the CONNECT it decoded.
    check_round_trip(codec, pkts, reached if version is None else version)


def _err_key(err: MQTTError | None) -> tuple[Any, ...] | None:
    if err is None:
        return None
    return type(err).__name__, int(err.reason_code)


def check_differential(cy: types.ModuleType, py: types.ModuleType, data: bytes) -> None:
    """Both twins: same packets, or the same error after the same packets; same bytes
    out of ``encode`` for each decoded packet."""
    version, max_size, chunk, stream = parse_input(data)
    results = []
    for codec in (cy, py):
        try:
            results.append(run_decoder(codec, version, max_size, chunk, stream))
        except Exception as exc:  # not MQTTError: a crash of that twin
            raise FuzzFinding(f"{codec.__name__} raised {exc!r}") from exc
    (p1, e1, v1), (p2, e2, v2) = results
    if p1 != p2 or _err_key(e1) != _err_key(e2) or v1 != v2:
        raise FuzzFinding(
            f"twins disagree:\n  cython: {p1!r} {e1!r} {_err_key(e1)} v{v1}\n"
            f"  python: {p2!r} {e2!r} {_err_key(e2)} v{v2}"
        )
    for pkt in p1:
        v = version if version is not None else (v1 or 4)
        outs = []
        for codec in (cy, py):
            try:
                outs.append(codec.encode(pkt, v))
            except Exception as exc:
                outs.append(f"{type(exc).__name__}")
        if outs[0] != outs[1]:
            raise FuzzFinding(f"twins encode {pkt!r} (v{v}) differently: {outs!r}")
