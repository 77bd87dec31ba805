"""Packet class -> handler table used by Connection.packets_received."""

from __future__ import annotations

from mqttfast.codec import packets as p

from .connection import HANDLERS
from .handle_connect import handle_auth, handle_connect, handle_disconnect
from .handle_publish import (
    handle_pingreq,
    handle_puback,
    handle_pubcomp,
    handle_publish,
    handle_pubrec,
    handle_pubrel,
)
from .handle_subscribe import handle_subscribe, handle_unsubscribe


def install_handlers() -> None:
    HANDLERS.update(
        {
            p.Connect: handle_connect,
            p.Publish: handle_publish,
            p.Puback: handle_puback,
            p.Pubrec: handle_pubrec,
            p.Pubrel: handle_pubrel,
            p.Pubcomp: handle_pubcomp,
            p.Subscribe: handle_subscribe,
            p.Unsubscribe: handle_unsubscribe,
            p.Pingreq: handle_pingreq,
            p.Disconnect: handle_disconnect,
            p.Auth: handle_auth,
            # Server-to-client packets from a client are protocol errors: not listed.
        }
    )
