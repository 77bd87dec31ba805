"""Every broker knob in one dataclass, with defaults that match mosquitto where it has one.

The app layer (CLI today, config file later) builds a :class:`BrokerSettings`;
the core and transport only read it.
"""

from __future__ import annotations

from dataclasses import dataclass

from mqttfast.codec.constants import MAX_PACKET_SIZE, SESSION_EXPIRY_NEVER


@dataclass(slots=True)
class BrokerSettings:
    # Listener (used by the transport/app layers).
    host: str = "0.0.0.0"
    port: int = 1883

    # Connection life.
    connect_timeout: float = 10.0  # seconds from TCP accept to a complete CONNECT
    keepalive_factor: float = 1.5  # [MQTT-3.1.2-24]
    max_keepalive: int = 65535  # v5 clients asking for more get Server Keep Alive
    server_keep_alive: int | None = None  # force this keep alive on v5 clients (CONNACK property)
    allow_zero_length_client_id: bool = True
    client_id_prefix: str = "auto-"  # prefix of assigned client identifiers

    # Packet and flow limits.
    max_packet_size: int = MAX_PACKET_SIZE  # inbound limit; told to v5 clients when lower
    max_connections: int = 0  # open sockets over all listeners; 0 = unlimited
    max_inflight: int = 20  # outbound QoS 1/2 window per client (mosquitto: 20); 0 = 65535
    max_queued_messages: int = 1000  # per session, QoS 1/2 waiting for the window or offline
    max_queued_bytes: int = 0  # payload bytes per session queue; 0 = no byte limit
    receive_maximum: int = 65535  # inbound unacknowledged QoS 2 per client (CONNACK)
    topic_alias_maximum: int = 10  # aliases a v5 client may use toward us (CONNACK)
    outgoing_topic_aliases: bool = True  # assign aliases toward v5 clients that allow them
    maximum_qos: int = 2
    # Control characters (U+0001-U+001F, U+007F-U+009F) in topic names, filters, client
    # ids, user names and will topics: the spec says SHOULD NOT (1.5.4) and lets a
    # receiver treat them as malformed, as mosquitto does; True accepts them.
    allow_control_characters: bool = False

    # Output back-pressure (bytes per connection).
    output_high_water: int = 1024 * 1024  # above: publishers feeding this client are paused
    output_hard_limit: int = 8 * 1024 * 1024  # above: QoS 0 dropped, QoS 1/2 held in the queue
    # A subscriber that keeps its publishers paused longer than this (seconds) is
    # considered stuck: publishers are resumed and no longer wait for it (its QoS 0
    # messages are dropped at the hard limit, QoS 1/2 at the queue limit, counted).
    max_publisher_pause: float = 1.0

    # Sessions.
    max_session_expiry: int = SESSION_EXPIRY_NEVER  # cap on what v5 clients may ask
    # Session expiry used for MQTT 3.1/3.1.1 clean_session=0 sessions (mosquitto's
    # persistent_client_expiration; never by default).
    persistent_session_expiry: int = SESSION_EXPIRY_NEVER

    # Features advertised in CONNACK (v5) and enforced for every version.
    retain_available: bool = True
    wildcard_subscription_available: bool = True
    subscription_identifier_available: bool = True
    shared_subscription_available: bool = True
    response_information: str | None = None  # sent when a v5 client requests it
    # Server redirection (4.11): refuse every CONNECT with 0x9C Use another server
    # (0x9D Server moved when server_moved) and this Server Reference; 3.x gets code 3.
    server_reference: str | None = None
    server_moved: bool = False

    # Retained store bounds (0 = no bound). At a bound a retained message for a NEW
    # topic (or one growing the byte total past max_retained_bytes) is not stored:
    # it is still delivered to current subscribers, the topic's previous retained
    # message stays, and RetainedStore.refused counts it. Deletes always work.
    max_retained_messages: int = 1_000_000
    max_retained_bytes: int = 1024 * 1024 * 1024

    # Durable state (read by the app layer, which builds the storage: app/persistence).
    # "strict": acks only after the state is committed; "relaxed": commit every
    # persistence_interval s; "off": nothing kept. The core itself never opens files.
    persistence: str = "strict"
    data_dir: str = "mqttfast-data"  # relative to the working directory
    persistence_interval: float = 1.0

    # $SYS.
    sys_interval: float = 10.0  # seconds; 0 disables $SYS

    # Per-client limits (0 = none, as mosquitto). A PUBLISH whose topic has more levels
    # is refused (v5 PUBACK/PUBREC 0x90, otherwise dropped), a filter with more levels
    # gets SUBACK 0x8F (3.1.1: 0x80); a SUBSCRIBE over max_subscriptions_per_client new
    # filters gets 0x97 Quota exceeded (3.1.1: 0x80) for the extra ones.
    max_topic_levels: int = 0
    max_subscriptions_per_client: int = 0
    # Topic Name / Topic Filter length in UTF-8 bytes; 0 = the protocol's 65535. A
    # PUBLISH over it: v5 QoS 1/2 PUBACK/PUBREC 0x90, v5 QoS 0 DISCONNECT 0x90, 3.x
    # connection closed; a filter over it gets SUBACK 0x8F (3.1.1: 0x80). Counted in
    # Stats.topic_too_long.
    max_topic_length: int = 0
    # PUBLISH packets per second per client; 0 = unlimited. Over it reading from that
    # client pauses until its token bucket refills (core/rate_limit.py): nothing is
    # dropped, nobody is disconnected; each pause counts in Stats.publish_throttled.
    max_publish_rate: float = 0

    # Internals.
    match_cache_size: int = 4096  # topics whose subscriber list is cached

    @property
    def inflight_window(self) -> int:
        return self.max_inflight if self.max_inflight > 0 else 65535
