"""The packet handler table: one static mapping from packet class to handler (what
mosquitto's one ``switch`` in read_handle.c is). ``BrokerCore`` hands it to its
connections; nothing fills it at import time. Server-to-client packets (CONNACK,
SUBACK, ...) are not listed: from a client they are protocol errors."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mqttfast.codec import packets as p

from .connection import Connection
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

Handler = Callable[[Connection, Any], None]

HANDLERS: Mapping[type, Handler] = {
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
}
