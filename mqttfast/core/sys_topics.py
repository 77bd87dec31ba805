"""$SYS topics with mosquitto's names, published retained every ``sys_interval`` seconds.

Load figures follow mosquitto: an exponentially smoothed rate per minute over
1, 5 and 15 minutes (``$SYS/broker/load/messages/received/1min`` ...).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from mqttfast import __version__

from .message import Message

if TYPE_CHECKING:
    from .broker import BrokerCore

_LOAD_METRICS = {
    "messages/received": "publish_received",
    "messages/sent": "publish_sent",
    "publish/received": "publish_received",
    "publish/sent": "publish_sent",
    "bytes/received": "bytes_received",
    "bytes/sent": "bytes_sent",
    "connections": "connections_accepted",
}
_WINDOWS = (("1min", 60.0), ("5min", 300.0), ("15min", 900.0))


class SysTopics:
    def __init__(self, broker: BrokerCore) -> None:
        self.broker = broker
        self.started = broker.clock()
        self.next_at = self.started  # first publication on the first tick
        self.last_at: float | None = None
        self.last_values: dict[str, int] = {}
        self.loads: dict[tuple[str, str], float] = {}
        self.last_published: dict[str, bytes] = {}

    def due(self, now: float) -> bool:
        interval = self.broker.settings.sys_interval
        return interval > 0 and now >= self.next_at

    def publish(self, now: float) -> None:
        broker = self.broker
        self.next_at = now + broker.settings.sys_interval
        stats = broker.stats
        values: dict[str, object] = {}
        online = len(broker.connections)
        total = len(broker.sessions)
        values["version"] = f"mqttfast version {__version__}"
        values["uptime"] = f"{int(now - self.started)} seconds"
        values["clients/connected"] = online
        values["clients/active"] = online
        values["clients/disconnected"] = total - sum(1 for s in broker.sessions.values() if s.conn)
        values["clients/inactive"] = values["clients/disconnected"]
        values["clients/total"] = total
        values["clients/maximum"] = stats.clients_maximum
        values["clients/expired"] = stats.sessions_expired
        values["messages/received"] = stats.publish_received
        values["messages/sent"] = stats.publish_sent
        values["publish/messages/received"] = stats.publish_received
        values["publish/messages/sent"] = stats.publish_sent
        values["publish/messages/dropped"] = (
            stats.dropped_queue_full + stats.dropped_qos0_buffer_full + stats.dropped_too_large
        )
        values["publish/throttled"] = stats.publish_throttled
        values["publish/topic too long"] = stats.topic_too_long
        values["publish/topic levels refused"] = stats.topic_levels_refused
        values["subscriptions/refused"] = stats.subscriptions_refused
        values["clients/connect timeouts"] = stats.connect_timeouts
        values["clients/refused"] = stats.connections_refused
        values["publish/bytes/received"] = stats.bytes_received
        values["publish/bytes/sent"] = stats.bytes_sent
        values["bytes/received"] = stats.bytes_received
        values["bytes/sent"] = stats.bytes_sent
        values["subscriptions/count"] = broker.subscriptions.count
        values["retained messages/count"] = broker.retained.count
        values["store/messages/count"] = sum(
            len(s.queue) + len(s.inflight) for s in broker.sessions.values()
        )
        values["messages/stored"] = values["store/messages/count"]
        self._update_loads(now)
        for (metric, window), load in self.loads.items():
            values[f"load/{metric}/{window}"] = f"{load:.2f}"
        for name, value in values.items():
            payload = str(value).encode()
            topic = "$SYS/broker/" + name
            # Only changed values go out, like mosquitto (uptime changes every time).
            if self.last_published.get(topic) == payload:
                continue
            self.last_published[topic] = payload
            broker.router.publish(Message(topic, payload, 0, True), now, None)

    def _update_loads(self, now: float) -> None:
        stats = self.broker.stats
        if self.last_at is None:
            self.last_at = now
            self.last_values = {m: getattr(stats, a) for m, a in _LOAD_METRICS.items()}
            for metric in _LOAD_METRICS:
                for window, _ in _WINDOWS:
                    self.loads[(metric, window)] = 0.0
            return
        dt = now - self.last_at
        if dt <= 0:
            return
        self.last_at = now
        for metric, attr in _LOAD_METRICS.items():
            value = getattr(stats, attr)
            rate = (value - self.last_values[metric]) / dt * 60.0  # per minute
            self.last_values[metric] = value
            for window, seconds in _WINDOWS:
                k = math.exp(-dt / seconds)
                key = (metric, window)
                self.loads[key] = rate + k * (self.loads[key] - rate)
