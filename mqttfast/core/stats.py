"""Broker-wide counters, read by $SYS (and later metrics)."""

from __future__ import annotations


class Stats:
    __slots__ = (
        "publish_received",
        "publish_sent",
        "bytes_received",
        "bytes_sent",
        "publish_dropped",
        "dropped_qos0_buffer_full",
        "dropped_queue_full",
        "dropped_too_large",
        "dropped_expired",
        "clients_total_ever",
        "clients_maximum",
        "sessions_expired",
        "protocol_errors",
        "connections_accepted",
        "auth_failures",
        # Limits: publish rate pauses, topics/filters refused for their length.
        "publish_throttled",
        "topic_too_long",
        # Limits: topics/filters over max_topic_levels, filters over
        # max_subscriptions_per_client, sockets closed for connect_timeout.
        "topic_levels_refused",
        "subscriptions_refused",
        "connect_timeouts",
        # Sockets closed at accept for max_connections (global or per listener).
        "connections_refused",
        # Durable storage: commits done, commits failed (disk errors), and times it
        # gave up persisting after a failure (persistence.on_error = "degrade").
        "persistence_commits",
        "persistence_errors",
        "persistence_degraded",
        # Per QoS (index 0..2): PUBLISH received (payload bytes) and sent (packet bytes).
        "publish_received_qos",
        "payload_bytes_received_qos",
        "publish_sent_qos",
        "publish_bytes_sent_qos",
    )

    messages_received: int
    messages_sent: int
    publish_received: int
    publish_sent: int
    bytes_received: int
    bytes_sent: int
    publish_dropped: int
    dropped_qos0_buffer_full: int
    dropped_queue_full: int
    dropped_too_large: int
    dropped_expired: int
    clients_total_ever: int
    clients_maximum: int
    sessions_expired: int
    protocol_errors: int
    connections_accepted: int
    auth_failures: int
    publish_throttled: int
    topic_too_long: int
    topic_levels_refused: int
    subscriptions_refused: int
    connect_timeouts: int
    connections_refused: int
    publish_received_qos: list[int]
    payload_bytes_received_qos: list[int]
    publish_sent_qos: list[int]
    publish_bytes_sent_qos: list[int]

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)
        for name in (
            "publish_received_qos",
            "payload_bytes_received_qos",
            "publish_sent_qos",
            "publish_bytes_sent_qos",
        ):
            setattr(self, name, [0, 0, 0])

    def qos0_sent(self, packets: int, nbytes: int) -> None:
        """Count QoS 0 PUBLISH packets written (one place for Connection.send_qos0 and the
        router's batched fast path, so the two cannot drift apart)."""
        self.publish_sent += packets
        self.bytes_sent += nbytes
        self.publish_sent_qos[0] += packets
        self.publish_bytes_sent_qos[0] += nbytes

    def as_dict(self) -> dict[str, int | list[int]]:
        return {
            name: (list(v) if isinstance(v := getattr(self, name), list) else v)
            for name in self.__slots__
        }
