"""Row formats shared by the writer (store.py) and the loader (recovery.py).

Kept apart so that neither imports the other: the store runs recovery, and
recovery only needs to know how rows look (no import cycle, issue 13).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mqttfast.codec import Decoder, encode_publish

if TYPE_CHECKING:
    from mqttfast.core.session import Session

# s: an idle broker still commits meta.alive this often (recovery bounds a crash by it)
ALIVE_EVERY = 10.0

SESSION_COLUMNS = (
    "client_id, expiry_interval, expires, will_topic, will_payload, will_qos, "
    "will_retain, will_props, will_expires, will_at, username"
)
SESSION_INSERT = (
    f"INSERT OR REPLACE INTO sessions ({SESSION_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
)


def encode_props(props: Any) -> bytes | None:
    """MQTT 5 properties -> bytes, as the properties of a tiny v5 PUBLISH."""
    if props is None:
        return None
    return encode_publish("p", b"", 0, False, False, 0, props, 5)


def decode_props(blob: bytes | None) -> Any:
    if blob is None:
        return None
    return Decoder(protocol_version=5).feed(blob)[0].properties


def session_row(s: Session, off: float) -> tuple[Any, ...]:
    """The ``sessions`` row of ``s``; ``off`` converts monotonic times to wall clock."""
    expires = None
    if s.conn is None and s.expires_at is not None:
        expires = s.expires_at + off
    username = getattr(s, "username", None)
    will = s.pending_will
    if will is None:
        return (s.client_id, s.expiry_interval, expires) + (None,) * 7 + (username,)
    return (
        s.client_id,
        s.expiry_interval,
        expires,
        will.topic,
        will.payload,
        will.qos,
        int(will.retain),
        encode_props(will.properties),
        None if will.expires_at is None else will.expires_at + off,
        None if s.will_at is None else s.will_at + off,
        username,
    )


__all__ = [
    "ALIVE_EVERY",
    "SESSION_COLUMNS",
    "SESSION_INSERT",
    "encode_props",
    "decode_props",
    "session_row",
]
