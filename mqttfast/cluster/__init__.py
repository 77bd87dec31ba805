"""mqttfast cluster backplane on NATS + JetStream (docs/cluster.md).

Importing this package imports nats-py; nothing outside it does, and a broker
without ``[cluster]`` / ``--cluster`` never imports it.
"""

from .backplane import Backplane, ClusterRouter
from .config import ClusterConfig

__all__ = ["Backplane", "ClusterConfig", "ClusterRouter"]
