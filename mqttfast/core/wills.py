"""Will messages (3.1.2.5, 3.1.3.2): published when a connection ends without DISCONNECT.

MQTT 5 adds the Will Delay Interval: the will is published at the earlier of
the delay expiring and the session ending, and is cancelled if the session
is resumed first (3.1.3.2.2). Sessions with a pending will are kept in
``BrokerCore.pending_wills`` and checked on every tick.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .message import Message, forwardable_properties

if TYPE_CHECKING:
    from .broker import BrokerCore
    from .connection import Connection
    from .session import Session


def will_message(conn: Connection, now: float) -> Message | None:
    will = conn.will
    if will is None:
        return None
    props = will.properties
    expires_at = None
    if props is not None:
        if props.message_expiry_interval is not None:
            expires_at = now + props.message_expiry_interval
        if props.will_delay_interval is not None:
            props = props.copy()
            props.will_delay_interval = None
        props = forwardable_properties(props)
    return Message(
        will.topic, will.payload, will.qos, will.retain, props, expires_at, conn.client_id
    )


def schedule_will(broker: BrokerCore, session: Session, conn: Connection, now: float) -> None:
    """Publish now, or remember for later when a Will Delay applies."""
    msg = will_message(conn, now)
    conn.will = None
    if msg is None:
        return
    delay = conn.will_delay
    if delay <= 0 or session.expiry_interval == 0:
        publish_will(broker, msg, now)
        return
    session.pending_will = msg
    session.will_at = now + delay
    broker.pending_wills.add(session)


def publish_will(broker: BrokerCore, msg: Message, now: float) -> None:
    if msg.expires_at is not None and now >= msg.expires_at:
        return
    if msg.retain and not broker.settings.retain_available:
        msg.retain = False
    broker.router.publish(msg, now, None)


def fire_pending(broker: BrokerCore, session: Session, now: float) -> None:
    msg = session.pending_will
    session.pending_will = None
    session.will_at = None
    broker.pending_wills.discard(session)
    if session.persisted:
        broker.storage.session_put(session)  # the stored will is gone too
    if msg is not None:
        publish_will(broker, msg, now)


def cancel_pending(broker: BrokerCore, session: Session) -> None:
    session.pending_will = None
    session.will_at = None
    broker.pending_wills.discard(session)
