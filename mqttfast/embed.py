"""Run the broker inside any asyncio program (``mqttfast.Broker``), see docs/embedding.md.

::

    async with mqttfast.Broker(port=0) as broker:
        print(broker.ports)
        handle = broker.subscribe("sensors/#", lambda m: print(m.topic, m.payload))
        await broker.publish("sensors/t", b"21.5", qos=1, retain=True)
        handle.unsubscribe()

:class:`Broker` is a :class:`~mqttfast.plugins.api.BrokerAPI` (publish, Python
subscriptions, read-only views) with a life cycle. It is built by
:class:`mqttfast.app.assembly.Assembly` exactly like the ``mqttfast`` command builds
its broker: the same config gives the same listeners, security, persistence,
plug-ins, bridges, metrics, admin API and cluster.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Iterable, Mapping
from typing import Any, Union

from mqttfast.core.settings import BrokerSettings

from .app.assembly import Assembly
from .app.loader import apply_flags, from_dict, load_toml
from .app.schema import Config
from .plugins.api import (
    INTERNAL_PREFIX,
    BrokerAPI,
    ReceivedMessage,
    SessionInfo,
    Subscription,
    SubscriptionInfo,
)
from .plugins.base import Plugin

ConfigLike = Union[None, Config, Mapping[str, Any], str, "os.PathLike[str]", BrokerSettings]


class Broker(BrokerAPI):
    """A complete broker (listeners, security, persistence, plug-ins, bridges, metrics,
    admin API, cluster) in this event loop.

    ``config`` is what the config file produces (:class:`mqttfast.app.schema.Config`),
    a dict shaped like the TOML file, a path to a TOML file, a core
    :class:`~mqttfast.core.settings.BrokerSettings`, or None. Keyword overrides:
    ``host``/``port`` (as the ``--host``/``--port`` flags: without ``host`` and without
    a ``[[listener]]`` the broker listens on 127.0.0.1 and ::1 only; ``port=0`` picks a
    free port) and any BrokerSettings field (``max_inflight=10``). Persistence is off
    unless configured. ``plugins`` are :class:`Plugin` instances (or "module:Class"
    paths) run after those of the config.
    """

    def __init__(
        self, config: ConfigLike = None, *, plugins: Iterable[Plugin | str] = (), **overrides: Any
    ) -> None:
        super().__init__(None)
        self._settings_obj: BrokerSettings | None = None
        if isinstance(config, BrokerSettings):
            self._settings_obj = config
            cfg = Config()
        elif config is None:
            cfg = Config()
        elif isinstance(config, (str, os.PathLike)):
            cfg = load_toml(os.fspath(config))
        elif isinstance(config, Mapping):
            cfg = from_dict(dict(config), "<dict>")
        else:
            cfg = config
        self.config = cfg
        fields = {f.name for f in dataclasses.fields(BrokerSettings)}
        unknown = set(overrides) - fields
        if unknown:
            raise TypeError(f"unknown broker setting(s): {', '.join(sorted(unknown))}")
        self._overrides = overrides
        self._extra_plugins = list(plugins)
        self.assembly: Assembly | None = None

    # -- life cycle ---------------------------------------------------------
    async def start(self) -> Broker:
        from .app.loader import broker_settings

        if self._core is not None:
            raise RuntimeError("already started")
        cfg = self.config
        ov = dict(self._overrides)
        apply_flags(cfg, {"host": ov.pop("host", None), "port": ov.pop("port", None)})
        if self._settings_obj is not None:
            settings = dataclasses.replace(self._settings_obj)
        else:
            settings = broker_settings(cfg)
            if "persistence.mode" not in cfg.present:
                settings.persistence = "off"  # an embedded broker keeps nothing unless asked
        for key, value in ov.items():
            setattr(settings, key, value)
        assembly = Assembly(cfg, settings, self._extra_plugins)
        await assembly.start(self)  # plug-ins and bridges get this object as their BrokerAPI
        self.assembly = assembly
        return self

    async def stop(self) -> None:
        """Close listeners and clients (v5: DISCONNECT 0x8B), stop bridges and plug-ins,
        cancel every task this broker started."""
        assembly, self.assembly = self.assembly, None
        if assembly is None:
            return
        try:
            await assembly.stop()
        finally:
            self._core = None

    async def __aenter__(self) -> Broker:
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    async def serve_forever(self) -> None:
        """Start (if needed) and run until cancelled; stops cleanly on cancellation."""
        if self._core is None:
            await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    def reload(self) -> None:
        """What SIGHUP does to the ``mqttfast`` command: password/ACL files, plug-ins."""
        if self.assembly is not None:
            self.assembly.reload()

    # -- where it listens ---------------------------------------------------
    @property
    def addresses(self) -> list[tuple[Any, ...]]:
        """Socket addresses of every listener (``(host, port)``; unix: the path)."""
        return [] if self.assembly is None else self.assembly.addresses

    @property
    def ports(self) -> list[int]:
        """TCP ports of the listeners, in listener order (the real ones for port 0;
        127.0.0.1 and ::1 of the local-only default share one port, listed once)."""
        out: list[int] = []
        for a in self.addresses:
            if len(a) >= 2 and isinstance(a[1], int) and a[1] not in out:
                out.append(a[1])
        return out

    @property
    def port(self) -> int:
        """The first listener's port."""
        return self.ports[0]

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        """(host, port) of /metrics when ``[metrics]`` is enabled."""
        ops = self.assembly.ops if self.assembly is not None else None
        return None if ops is None else ops.metrics_address

    @property
    def admin_address(self) -> tuple[str, int] | None:
        """(host, port) of the admin API when ``[admin]`` is enabled."""
        ops = self.assembly.ops if self.assembly is not None else None
        return None if ops is None else ops.admin_address

    @property
    def bridges(self) -> list[Any]:
        """The running ``[[bridge]]`` connections (mqttfast.app.bridge.Bridge)."""
        return [] if self.assembly is None else self.assembly.bridges

    @property
    def extensions(self) -> Assembly | None:
        """Deprecated (before issue 13 plug-ins and bridges were "Extensions"): the
        :class:`~mqttfast.app.assembly.Assembly`, whose ``bridges`` is :attr:`bridges`."""
        return self.assembly

    @property
    def running(self) -> bool:
        return self._core is not None


__all__ = [
    "Broker",
    "BrokerAPI",
    "ReceivedMessage",
    "Subscription",
    "SessionInfo",
    "SubscriptionInfo",
    "INTERNAL_PREFIX",
]
