"""Operations endpoints: the Prometheus ``/metrics`` listener and the admin API +
dashboard listener. Both are off by default and bind to loopback by default.

``ops_options(cfg, args, explicit)`` merges ``[metrics]``/``[admin]`` from the config
file with ``--metrics-port``/``--admin-port``/``--admin-token`` (a port flag turns
its endpoint on); ``start_ops(broker, options)`` starts them on the running loop.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mqttfast.core.broker import BrokerCore

log = logging.getLogger("mqttfast")

ADMIN_TOKEN_ENV = "MQTTFAST_ADMIN_TOKEN"


@dataclass
class OpsOptions:
    metrics_enabled: bool = False
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9883
    admin_enabled: bool = False
    admin_host: str = "127.0.0.1"
    admin_port: int = 18083
    admin_token: str | None = None


def ops_options(
    cfg: Any, args: Any, explicit: set[str] | frozenset[str] = frozenset()
) -> OpsOptions:
    """Flags over the file: ``--metrics-port N`` / ``--admin-port N`` enable the endpoint."""
    opts = OpsOptions()
    m = getattr(cfg, "metrics", None)
    if m is not None:
        opts.metrics_enabled, opts.metrics_host, opts.metrics_port = m.enabled, m.address, m.port
    a = getattr(cfg, "admin", None)
    if a is not None:
        opts.admin_enabled, opts.admin_host, opts.admin_port = a.enabled, a.address, a.port
        opts.admin_token = a.token
    if getattr(args, "metrics_port", None) is not None:
        opts.metrics_enabled, opts.metrics_port = True, args.metrics_port
    if getattr(args, "admin_port", None) is not None:
        opts.admin_enabled, opts.admin_port = True, args.admin_port
    if getattr(args, "admin_token", None):
        opts.admin_token = args.admin_token
    elif not opts.admin_token and os.environ.get(ADMIN_TOKEN_ENV):
        opts.admin_token = os.environ[ADMIN_TOKEN_ENV]  # keeps the secret off `ps`
    return opts


def check_ops(opts: OpsOptions) -> list[str]:
    """Errors that must stop the start (exit 2)."""
    if opts.admin_enabled and not opts.admin_token:
        return [
            "admin API enabled without a token: set admin.token, --admin-token or "
            f"{ADMIN_TOKEN_ENV}"
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


async def start_ops(broker: BrokerCore, opts: OpsOptions | None, codec: str = "") -> OpsServers:
    """Start what ``opts`` enables; raises OSError (port in use ...) after closing
    whatever already started."""
    ops = OpsServers()
    if opts is None:
        return ops
    try:
        if opts.metrics_enabled:
            from mqttfast.app.metrics import MetricsServer

            ops.metrics = MetricsServer(broker, codec)
            host, port = ops.metrics_address = await ops.metrics.start(
                opts.metrics_host, opts.metrics_port
            )
            log.info("metrics on http://%s:%d/metrics", _host(host), port)
        if opts.admin_enabled:
            from .api import AdminAPI

            ops.admin = AdminAPI(broker, opts.admin_token or "")
            host, port = ops.admin_address = await ops.admin.start(opts.admin_host, opts.admin_port)
            log.info("admin API and dashboard on http://%s:%d/", _host(host), port)
    except BaseException:
        await ops.stop()
        raise
    return ops


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


__all__ = ["OpsOptions", "OpsServers", "check_ops", "ops_options", "start_ops", "ADMIN_TOKEN_ENV"]
