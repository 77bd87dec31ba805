"""Connection states, one enum used by the core, the transport and the plug-ins."""

from __future__ import annotations

import enum


class ConnState(enum.IntEnum):
    """Where a connection is in its life (an IntEnum: compared on the hot path as an int).

    AWAIT_CONNECT -> (AUTHENTICATING ->) CONNECTED -> CLOSED; AUTH_WAIT sits between
    AWAIT_CONNECT and CONNECTED while a deferred authentication decides (reading paused,
    packets behind the CONNECT held [MQTT-3.1.4-5]). AUTH_WAIT is above CLOSED so the
    dispatch loop tests one comparison (``state >= CLOSED``) for "do not handle now".
    """

    AWAIT_CONNECT = 0
    AUTHENTICATING = 1
    CONNECTED = 2
    CLOSED = 3
    AUTH_WAIT = 4


AWAIT_CONNECT = ConnState.AWAIT_CONNECT
AUTHENTICATING = ConnState.AUTHENTICATING
CONNECTED = ConnState.CONNECTED
CLOSED = ConnState.CLOSED
AUTH_WAIT = ConnState.AUTH_WAIT
