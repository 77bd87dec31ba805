"""Prometheus metrics: a custom collector that reads the core's ``Stats`` at scrape time.

Nothing is counted for Prometheus on the message path: the core keeps plain integer
counters (``mqttfast.core.stats.Stats``, also the source of ``$SYS``), and this
collector turns them into metric families only when ``/metrics`` is scraped. So the
numbers in ``$SYS`` and in ``/metrics`` are the same counters.

Served by the tiny asyncio HTTP server (``mqttfast.app.admin.httpd``) on the broker's
event loop, so the collector can walk sessions without locks (see that module for why
not ``prometheus_client.start_http_server``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector

from mqttfast import __version__

from .admin.httpd import HTTPServer, Request, Response, error

if TYPE_CHECKING:
    from mqttfast.core.broker import BrokerCore

log = logging.getLogger("mqttfast.metrics")

QOS_LABELS = ("0", "1", "2")

# Stats attribute -> the ``reason`` label of mqttfast_messages_dropped_total.
DROP_REASONS = {
    "queue_full": "dropped_queue_full",
    "qos0_buffer_full": "dropped_qos0_buffer_full",
    "too_large": "dropped_too_large",
    "expired": "dropped_expired",
}

# Plain counters read straight from ``Stats``: (metric name, help, Stats attribute).
STAT_COUNTERS: tuple[tuple[str, str, str], ...] = (
    (
        "mqttfast_auth_failures",
        "CONNECTs refused for credentials or authorisation",
        "auth_failures",
    ),
    ("mqttfast_protocol_errors", "Connections closed for a protocol violation", "protocol_errors"),
    (
        "mqttfast_publish_throttled",
        "Times reading from a client paused for max_publish_rate",
        "publish_throttled",
    ),
    (
        "mqttfast_topic_too_long",
        "Topics and filters refused for max_topic_length",
        "topic_too_long",
    ),
    (
        "mqttfast_topic_levels_refused",
        "Topics and filters refused for max_topic_levels",
        "topic_levels_refused",
    ),
    (
        "mqttfast_subscriptions_refused",
        "Filters refused for max_subscriptions_per_client",
        "subscriptions_refused",
    ),
    (
        "mqttfast_connections_refused",
        "Sockets closed at accept for max_connections",
        "connections_refused",
    ),
    (
        "mqttfast_connect_timeouts",
        "Connections closed for no CONNECT within connect_timeout",
        "connect_timeouts",
    ),
    ("mqttfast_persistence_commits", "Storage transactions committed", "persistence_commits"),
    (
        "mqttfast_persistence_errors",
        "Storage commits that failed (disk error); nothing they held was acknowledged",
        "persistence_errors",
    ),
    (
        "mqttfast_persistence_degraded",
        "1 once persistence was switched off after a disk error (on_error = degrade): "
        "new messages are acknowledged without being stored",
        "persistence_degraded",
    ),
)


class LoopLagMonitor:
    """Event-loop lag: how late a timer of ``interval`` seconds fires. One wake-up
    per interval; keeps the last lag and the worst since the previous scrape."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.last = 0.0
        self.worst = 0.0
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(self.interval)
            lag = max(0.0, loop.time() - start - self.interval)
            self.last = lag
            if lag > self.worst:
                self.worst = lag

    def take_worst(self) -> float:
        worst, self.worst = max(self.worst, self.last), 0.0
        return worst


class BrokerCollector:
    """Metric families from one BrokerCore, built at scrape time."""

    def __init__(
        self, broker: BrokerCore, lag: LoopLagMonitor | None = None, codec: str = ""
    ) -> None:
        self.broker = broker
        self.lag = lag
        self.codec = codec

    def describe(self) -> list[Metric]:
        return []  # no duplicate-name check at registration: names are ours alone

    def collect(self) -> Iterator[Metric]:
        broker = self.broker
        st: Any = broker.stats  # counters are set by Stats.__init__ from __slots__
        sessions = broker.sessions

        info = GaugeMetricFamily(
            "mqttfast_info", "Broker version and codec implementation", labels=["version", "codec"]
        )
        info.add_metric([__version__, self.codec], 1)
        yield info

        yield GaugeMetricFamily(
            "mqttfast_connections",
            "Connected MQTT clients (CONNACK sent)",
            value=len(broker.connections),
        )
        yield GaugeMetricFamily(
            "mqttfast_connections_pending",
            "Open connections without an accepted CONNECT yet",
            value=len(broker.pending),
        )
        yield CounterMetricFamily(
            "mqttfast_connections_accepted",
            "Connections accepted (CONNACK 0) since start",
            value=st.connections_accepted,
        )
        yield GaugeMetricFamily(
            "mqttfast_connections_maximum",
            "Most clients connected at once since start",
            value=st.clients_maximum,
        )

        online = sum(1 for s in sessions.values() if s.conn is not None)
        sess = GaugeMetricFamily("mqttfast_sessions", "Sessions by state", labels=["state"])
        sess.add_metric(["online"], online)
        sess.add_metric(["offline"], len(sessions) - online)
        yield sess
        yield CounterMetricFamily(
            "mqttfast_sessions_expired", "Sessions expired since start", value=st.sessions_expired
        )
        yield GaugeMetricFamily(
            "mqttfast_subscriptions",
            "Subscriptions (shared members included)",
            value=broker.subscriptions.count,
        )
        yield GaugeMetricFamily(
            "mqttfast_retained_messages", "Retained messages stored", value=broker.retained.count
        )
        yield GaugeMetricFamily(
            "mqttfast_retained_bytes",
            "Payload bytes of retained messages",
            value=broker.retained.bytes,
        )

        for name, doc, values in (
            (
                "mqttfast_messages_received",
                "PUBLISH packets received from clients, by QoS",
                st.publish_received_qos,
            ),
            (
                "mqttfast_messages_sent",
                "PUBLISH packets sent to clients, by QoS",
                st.publish_sent_qos,
            ),
            (
                "mqttfast_publish_payload_bytes_received",
                "Payload bytes of PUBLISH packets received, by QoS",
                st.payload_bytes_received_qos,
            ),
            (
                "mqttfast_publish_bytes_sent",
                "Bytes of PUBLISH packets sent (whole packets), by QoS",
                st.publish_bytes_sent_qos,
            ),
        ):
            fam = CounterMetricFamily(name, doc, labels=["qos"])
            for q, v in zip(QOS_LABELS, values):
                fam.add_metric([q], v)
            yield fam
        yield CounterMetricFamily(
            "mqttfast_bytes_received", "Bytes received on MQTT connections", value=st.bytes_received
        )
        yield CounterMetricFamily(
            "mqttfast_bytes_sent", "Bytes sent on MQTT connections", value=st.bytes_sent
        )

        dropped = CounterMetricFamily(
            "mqttfast_messages_dropped", "Messages not delivered, by reason", labels=["reason"]
        )
        for reason, attr in DROP_REASONS.items():
            dropped.add_metric([reason], getattr(st, attr))
        dropped.add_metric(["retained_store_full"], broker.retained.refused)
        yield dropped

        inflight = queued = queued_bytes = 0
        for s in sessions.values():
            inflight += len(s.inflight)
            queued += len(s.queue)
            queued_bytes += s.queued_bytes
        yield GaugeMetricFamily(
            "mqttfast_inflight_messages",
            "Outgoing QoS 1/2 messages awaiting acknowledgement",
            value=inflight,
        )
        yield GaugeMetricFamily(
            "mqttfast_queued_messages", "QoS 1/2 messages queued in sessions", value=queued
        )
        yield GaugeMetricFamily(
            "mqttfast_queued_bytes", "Payload bytes queued in sessions", value=queued_bytes
        )

        for name, doc, attr in STAT_COUNTERS:
            yield CounterMetricFamily(name, doc, value=getattr(st, attr))
        if self.lag is not None:
            yield GaugeMetricFamily(
                "mqttfast_event_loop_lag_seconds",
                "Worst event-loop timer lateness since the last scrape",
                value=self.lag.take_worst(),
            )
        cluster = getattr(self.broker, "cluster", None)
        if cluster is not None:  # issue 15: only a cluster node has one
            yield from cluster_metrics(cluster.status())


def cluster_metrics(status: dict) -> Iterator[Metric]:
    """Cluster figures (issue 15) from ``Backplane.status()``; only with [cluster]."""
    node = str(status.get("node_id", ""))
    up = GaugeMetricFamily(
        "mqttfast_cluster_connected", "1 while the NATS connection is up", labels=["node"]
    )
    up.add_metric([node], 1 if status.get("connected") else 0)
    yield up
    for key, doc in (
        ("nodes_seen", "Cluster nodes seen (heartbeats), this one included"),
        ("interest_subjects", "NATS subjects this node subscribes to for its clients"),
        ("remote_filters", "Filters other nodes announced (interest sharing)"),
        ("session_records", "Persistent sessions of this node recorded in JetStream"),
        ("journal_filters", "Distinct filters of persistent sessions whose messages are journaled"),
        ("acks_waiting", "Client outputs held until nats-server confirms their messages"),
        ("publishers_paused_by_others", "Local publishers paused for subscribers elsewhere"),
    ):
        yield GaugeMetricFamily(f"mqttfast_cluster_{key}", doc, value=status.get(key, 0))
    for key, doc in (
        ("msgs_out", "Messages published to the cluster"),
        ("bytes_out", "Payload bytes published to the cluster"),
        ("msgs_in", "Messages received from the cluster"),
        ("bytes_in", "Payload bytes received from the cluster"),
        ("takeovers", "Client sessions taken over between nodes"),
        ("js_errors", "JetStream errors"),
        ("msgs_local_only", "Messages not published to NATS: no other node wanted them"),
        ("sessions_adopted", "Persistent sessions of dead nodes adopted by this node"),
        (
            "sessions_reconciled",
            "Sessions settled after a NATS outage (reclaimed, closed, dropped here)",
        ),
        ("ack_timeouts", "Publishers disconnected: nats-server did not confirm in time"),
        ("remote_pauses_sent", "Publishers on other nodes paused for a subscriber here"),
        ("remote_pauses_applied", "Local publishers paused on another node's request"),
        ("shared_moved_out", "Shared-subscription messages given to a member on another node"),
        ("shared_moved_in", "Shared-subscription messages taken from another node"),
        ("shared_kept", "Shared-subscription messages no other node took (kept here)"),
        ("journal_writes", "QoS 1/2 messages written to the JetStream journal"),
        ("journal_errors", "Journal or progress writes refused or unanswered (publishers dropped)"),
        ("journal_replayed", "Journaled messages replayed into adopted sessions"),
        (
            "qos2_copies_dropped",
            "Re-sent QoS 2 copies recognised after a node's death (not delivered)",
        ),
        (
            "qos2_forwarded_again",
            "Re-sent QoS 2 PUBLISHes forwarded again: the first forward may have been lost",
        ),
        ("progress_writes", "Progress records of persistent sessions written to JetStream"),
    ):
        yield CounterMetricFamily(f"mqttfast_cluster_{key}", doc, value=status.get(key, 0))


def make_registry(
    broker: BrokerCore, lag: LoopLagMonitor | None = None, codec: str = ""
) -> CollectorRegistry:
    """A private registry: our collector plus process metrics (resident memory,
    CPU, open files) as ``process_*``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BrokerCollector(broker, lag, codec))
    try:
        ProcessCollector(registry=registry)
    except Exception:  # pragma: no cover - platforms without /proc
        pass
    return registry


class MetricsServer:
    """``GET /metrics`` (Prometheus text format) on its own port."""

    def __init__(self, broker: BrokerCore, codec: str = "") -> None:
        self.lag = LoopLagMonitor()
        self.registry = make_registry(broker, self.lag, codec)
        self.http = HTTPServer(self.handle, "metrics")

    def handle(self, req: Request) -> Response:
        if req.path not in ("/metrics", "/"):
            return error(404, "not found; try /metrics")
        if req.method not in ("GET", "HEAD"):
            return error(405, "GET only")
        return Response(200, generate_latest(self.registry), CONTENT_TYPE_LATEST)

    async def start(self, host: str, port: int) -> tuple[str, int]:
        where = await self.http.start(host, port)
        self.lag.start()
        return where

    async def stop(self) -> None:
        self.lag.stop()
        await self.http.stop()


__all__ = ["BrokerCollector", "LoopLagMonitor", "MetricsServer", "make_registry"]
