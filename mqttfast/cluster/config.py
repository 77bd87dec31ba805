"""Cluster configuration (the ``[cluster]`` table; see CONTRACTS.md)."""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass, field

_ID_OK = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass
class ClusterConfig:
    servers: list[str] = field(default_factory=list)  # ["nats://127.0.0.1:4222", ...]
    node_id: str | None = None  # None: a stable id generated once, kept in <data_dir>/node-id
    subject_prefix: str = "mqtt"  # several MQTT namespaces can share one NATS
    credentials: str | None = None  # NATS .creds file
    user: str | None = None
    password: str | None = None
    token: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    replicas: int = 1  # JetStream replicas of the streams / KV buckets it creates
    # QoS 1/2 acknowledgements wait until nats-server has the message (acks.py); False
    # trades that guarantee for a NATS round trip less per acknowledgement.
    ack_after_nats: bool = True
    # Seconds the journal stream (journal.py) keeps a QoS 1/2 message that a persistent
    # session may receive: what an adopter can replay after its node's death.
    journal_max_age: float = 3600.0
    data_dir: str = "."  # where node-id lives (the broker's data dir)

    def validate(self, require_servers: bool = True) -> None:
        """ValueError naming the key for a value the backplane cannot use (servers may
        come from --cluster after the table was read: require_servers=False then)."""
        if require_servers and not self.servers:
            raise ValueError("cluster.servers: at least one nats:// URL is needed")
        for url in self.servers:
            if "://" not in url:
                raise ValueError(f"cluster.servers: {url!r} is not a URL (nats://host:port)")
        if self.node_id is not None and not _ID_OK.match(self.node_id):
            raise ValueError("cluster.node_id: 1-64 characters of A-Z a-z 0-9 _ -")
        p = self.subject_prefix
        if p and (any(c in p for c in " \t\r\n*>") or p.startswith(".") or p.endswith(".")):
            raise ValueError("cluster.subject_prefix: NATS tokens without spaces or wildcards")
        if not 1 <= self.replicas <= 5:
            raise ValueError("cluster.replicas: 1 to 5")
        if not self.journal_max_age >= 1.0:
            raise ValueError("cluster.journal_max_age: at least 1 second")

    def resolve_node_id(self) -> str:
        """The configured id, else the one kept in <data_dir>/node-id (created once)."""
        if self.node_id:
            return self.node_id
        path = os.path.join(self.data_dir, "node-id")
        try:
            with open(path, encoding="utf-8") as f:
                kept = f.read().strip()
            if _ID_OK.match(kept):
                return kept
        except FileNotFoundError:
            pass
        new = "n" + secrets.token_hex(6)
        os.makedirs(self.data_dir, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(new + "\n")
        return new
