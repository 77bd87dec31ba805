"""Operations endpoints: the Prometheus ``/metrics`` listener and the admin API +
dashboard listener. Both are off by default and bind to loopback by default.

``[metrics]``/``[admin]`` come from the config (the loader applies
``--metrics-port``/``--admin-port``/``--admin-token``; a port flag turns its endpoint
on); ``start_ops(broker, cfg)`` starts them on the running loop (mqttfast.app.assembly).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..loader import ADMIN_TOKEN_ENV

if TYPE_CHECKING:
    from mqttfast.core.broker import BrokerCore

    from ..schema import Config

log = logging.getLogger("mqttfast")


def check_ops(cfg: Config) -> list[str]:
    """Errors that must stop the start (exit 2)."""
    if cfg.admin.enabled and not cfg.admin.token:
        return [
            "admin.token: the admin API is enabled without a token: set admin.token, "
            f"--admin-token or {ADMIN_TOKEN_ENV}"
        ]
    return []


class OpsServers:
    def __init__(self) -> None:
        self.metrics: Any = None
        self.admin: Any = None
        self.metrics_address: tuple[str, int] | None = None
        self.admin_address: tuple[str, int] | None = None

    async def stop(self) -> None:
        for server in (self.admin, self.metrics):
            if server is not None:
                await server.stop()
        self.admin = self.metrics = None


async def start_ops(broker: BrokerCore, cfg: Config, codec: str = "") -> OpsServers:
    """Start what ``cfg.metrics``/``cfg.admin`` enable; raises OSError (port in use ...)
    after closing whatever already started."""
    ops = OpsServers()
    m, a = cfg.metrics, cfg.admin
    try:
        if m.enabled:
            from mqttfast.app.metrics import MetricsServer

            ops.metrics = MetricsServer(broker, codec)
            host, port = ops.metrics_address = await ops.metrics.start(m.address, m.port)
            log.info("metrics on http://%s:%d/metrics", _host(host), port)
        if a.enabled:
            from .api import AdminAPI

            ops.admin = AdminAPI(broker, a.token or "")
            host, port = ops.admin_address = await ops.admin.start(a.address, a.port)
            log.info("admin API and dashboard on http://%s:%d/", _host(host), port)
    except BaseException:
        await ops.stop()
        raise
    return ops


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


__all__ = ["OpsServers", "check_ops", "start_ops", "ADMIN_TOKEN_ENV"]
