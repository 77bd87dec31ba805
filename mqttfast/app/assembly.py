"""The one place a broker is put together: a validated :class:`~mqttfast.app.schema.Config`
becomes a running broker. ``mqttfast`` (:mod:`mqttfast.app.cli`) and
``mqttfast.Broker`` (:mod:`mqttfast.embed`) both use :class:`Assembly`; nothing else
builds one, so whatever a config file can do works embedded, and the other way round.

Start order (:meth:`Assembly.start`), each step before what depends on it:

1. security (:mod:`mqttfast.app.security.policy`): the Authenticator (password/ACL
   files, failed-login limiter) as the core's hooks, and the anonymous-access policy
   of issue 18;
2. storage (``open_storage``, which also wires the group-commit window);
3. the core broker; the cluster backplane attaches to its router (``[cluster]``);
4. storage recovery; plug-ins (``[[plugin]]``, the deprecated ``[[auth.plugin]]``
   and the embedding program's) installed as the one hook dispatcher, so they see
   the first client;
5. the backplane connects; listeners open (none configured: 127.0.0.1 and ::1 only);
6. /metrics and the admin API; plug-ins' ``start()``; bridges connect out.

:meth:`Assembly.stop` undoes it: ops endpoints, bridges, listeners and clients
(v5 DISCONNECT 0x8B), the backplane, plug-ins, storage.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable
from typing import Any

from mqttfast import __version__
from mqttfast.codec import IMPLEMENTATION
from mqttfast.core.broker import BrokerCore as CoreBroker
from mqttfast.core.settings import BrokerSettings
from mqttfast.plugins.api import BrokerAPI
from mqttfast.plugins.base import Plugin
from mqttfast.transport.listeners import ListenerConfig
from mqttfast.transport.server import MQTTServer

from .loader import LOCAL_ONLY, broker_settings
from .schema import Config
from .security.policy import anonymous_policy, build_authenticator, make_security_hooks

log = logging.getLogger("mqttfast")

CLUSTER_EXTRA = "pip install mqttfast[cluster]"


class StartError(Exception):
    """The broker cannot start; ``exit_code`` 2 for configuration problems (a message
    naming the key or file), 1 for the environment (a port in use ...)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# ---------------------------------------------------------------------------- cluster
def make_backplane(cfg: Config, data_dir: str) -> Any:
    """The NATS backplane of ``[cluster]`` (None without servers). mqttfast.cluster and
    nats are imported here only, so a broker without a cluster never loads them."""
    c = cfg.cluster
    if not c.servers:
        return None
    try:
        from mqttfast.cluster import Backplane, ClusterConfig  # type: ignore[import-not-found,unused-ignore]
    except ImportError as err:
        raise StartError(
            f"cluster.servers: the cluster backplane is not installed ({err}); "
            f"install it with: {CLUSTER_EXTRA}",
            2,
        ) from None
    fields = {f.name: getattr(c, f.name) for f in dataclasses.fields(c)}
    cluster = ClusterConfig(**fields, data_dir=data_dir)
    if cfg.worker_index is not None:  # a --workers worker: the supervisor's nats-server
        from .local_nats import cluster_credentials

        cluster_credentials(cluster)
    try:
        cluster.validate()
    except ValueError as err:
        raise StartError(str(err), 2) from None
    return Backplane(cluster)


# ---------------------------------------------------------------------------- assembly
class Assembly:
    """The parts of one running broker, built from a Config (see the module docstring).

    ``settings`` replaces the BrokerSettings mapped from the config (embedding
    programs may pass their own); ``plugins`` run after those of the config.
    """

    def __init__(
        self,
        cfg: Config,
        settings: BrokerSettings | None = None,
        plugins: Iterable[Plugin | str] = (),
    ) -> None:
        self.cfg = cfg
        self.settings = settings if settings is not None else broker_settings(cfg)
        self.extra_plugins = list(plugins)
        self.core: CoreBroker | None = None
        self.storage: Any = None
        self.server: MQTTServer | None = None
        self.listeners: list[Any] = []
        self.authenticator: Any = None
        self.plugin_hooks: Any = None  # mqttfast.plugins.manager.PluginHooks
        self.backplane: Any = None
        self.worker_link: Any = None  # mqttfast.app.worker_link (a --workers worker)
        self.bridges: list[Any] = []
        self.ops: Any = None
        self.api: BrokerAPI | None = None

    # -- start ----------------------------------------------------------------
    async def start(self, api: BrokerAPI | None = None) -> None:
        """Build and start everything; raises StartError (nothing left running)."""
        try:
            await self._start(api)
        except BaseException:
            await self.stop()
            raise

    async def _start(self, api: BrokerAPI | None) -> None:
        from mqttfast.plugins.loader import load_plugin, load_tables

        from .persistence import PersistenceError, open_storage

        cfg, settings = self.cfg, self.settings
        settings.data_dir = os.path.abspath(settings.data_dir)
        # PluginError (a ValueError naming the table) propagates: a configuration error.
        plugins = load_tables(cfg.plugin)
        if cfg.auth.plugin:
            log.warning(
                "[[auth.plugin]] is deprecated: write [[plugin]] (same keys); "
                "authentication plug-ins are Plugins with an authenticate hook"
            )
            plugins += load_tables(cfg.auth.plugin, "auth.plugin")
        plugins += [load_plugin(p) if isinstance(p, str) else p for p in self.extra_plugins]
        hooks = self._security(plugins)
        try:
            self.storage = open_storage(
                settings.persistence,
                settings.data_dir,
                settings.persistence_interval,
                on_error=cfg.persistence.on_error,
            )
        except PersistenceError as err:
            raise StartError(f"persistence.data_dir: {settings.data_dir}: {err}", 2) from None
        core = self.core = CoreBroker(settings, hooks=hooks, storage=self.storage)
        self.backplane = make_backplane(cfg, settings.data_dir)
        if self.backplane is not None:
            self.backplane.attach(core)  # before recovery: it wraps the core's router
            core.cluster = self.backplane  # type: ignore[attr-defined]  # status() for $SYS, /metrics, admin
        try:
            restored = self.storage.recover(core)  # before accepting connections
        except PersistenceError as err:
            raise StartError(f"persistence.data_dir: {settings.data_dir}: {err}", 2) from None
        if self.storage.durable:
            log.info(
                "persistence %s in %s: restored %s",
                settings.persistence,
                settings.data_dir,
                ", ".join(f"{v} {k}" for k, v in restored.items()),
            )
        else:
            log.info("persistence off: nothing is kept across restarts")
        warn_if_pure_python()
        if plugins:
            from mqttfast.plugins.manager import PluginHooks

            self.plugin_hooks = PluginHooks(core.hooks, plugins)  # PluginError: bad hooks
            self.plugin_hooks.install(core)
        self.api = api if api is not None else BrokerAPI()
        self.api.bind(core)
        if self.backplane is not None:
            await self.backplane.start()
        if cfg.worker_index is not None:  # a --workers worker: $SYS figures are the group's
            from .worker_link import from_env

            self.worker_link = from_env()
            if self.worker_link is not None:
                await self.worker_link.start(core)
        self.server = MQTTServer(core)
        await self._open_listeners()
        log.info(
            "mqttfast %s listening on %s (codec: %s)",
            __version__,
            ", ".join(_where(lst) for lst in self.listeners) or "nothing",
            IMPLEMENTATION,
        )
        from .admin import start_ops

        try:
            self.ops = await start_ops(core, cfg, IMPLEMENTATION)
        except OSError as err:
            raise StartError(f"cannot serve metrics/admin: {err.strerror or err}") from None
        if self.plugin_hooks is not None:
            await self.plugin_hooks.start(self.api)
            log.info("plug-ins: %s", ", ".join(p.name for p in self.plugin_hooks.plugins))
        if cfg.bridge:
            from .bridge import Bridge

            for bc in cfg.bridge:
                bridge = Bridge(self.api, bc)
                bridge.start()
                self.bridges.append(bridge)

    def _security(self, plugins: list[Plugin]) -> Any:
        """The core's hooks for [auth] (None: allow everything, no per-packet cost)."""
        allow = anonymous_policy(self.cfg, plugins)
        a = self.cfg.auth
        if not (a.password_file or a.acl_file) and allow is not False:
            return None
        self.authenticator = build_authenticator(self.cfg, allow)
        return make_security_hooks(self.authenticator)

    async def _open_listeners(self) -> None:
        from .security.tls import build_server_context, identity_from_peercert

        server = self.server
        assert server is not None
        configured = self.cfg.listener
        reuse = self.cfg.server.reuse_port
        if reuse:  # --workers: every worker binds the same ports (SO_REUSEPORT)
            from mqttfast.transport import listeners as transport_listeners

            transport_listeners.reuse_port = True
        if not configured:
            await self._open_local_only(server)
            return
        for i, lc in enumerate(configured):
            ctx = None
            identity = None
            if reuse and hasattr(lc, "reuse_port"):
                reuse_opt: dict[str, Any] = {"reuse_port": True}  # once transport supports it
                lc = dataclasses.replace(lc, **reuse_opt)
            if lc.certfile is not None:
                try:
                    ctx = build_server_context(
                        lc.certfile,
                        lc.keyfile,
                        lc.cafile,
                        require_certificate=lc.require_certificate,
                        min_version=lc.tls_version,
                        ciphers=lc.ciphers,
                    )
                except (OSError, ValueError) as err:
                    raise StartError(
                        f"listener[{i}].certfile: cannot set up TLS ({lc.certfile}): {err}", 2
                    ) from None
                if lc.use_identity_as_username:
                    source = lc.identity_source

                    def identity(transport: Any, source: str = source) -> str | None:
                        return identity_from_peercert(transport.get_extra_info("peercert"), source)

            try:
                listener = await server.start_listener(lc, ctx, identity)
            except (OSError, ValueError) as err:
                what = getattr(err, "strerror", None) or err
                raise StartError(f"listener[{i}] ({lc.label()}): cannot listen: {what}") from None
            self.listeners.append(listener)
            log.info("listening on %s", _where(listener))

    async def _open_local_only(self, server: MQTTServer) -> None:
        """No listener configured: 127.0.0.1 and ::1 (mosquitto 2's local only mode)."""
        port = self.cfg.local_port
        for address in LOCAL_ONLY:
            lc = ListenerConfig(port=port, address=address)
            try:
                listener = await server.start_listener(lc)
            except OSError as err:
                if address != LOCAL_ONLY[0] and not self._in_use(err):
                    log.info("%s is not available here (%s); IPv4 loopback only", address, err)
                    continue
                raise StartError(f"{lc.label()}: cannot listen: {err.strerror or err}") from None
            self.listeners.append(listener)
            addrs = listener.addresses()
            port = addrs[0][1] if addrs else port  # port 0: the same port on ::1
        log.info(
            "no listener configured: local only mode, listening on %s port %d; to accept "
            "clients from other hosts give --host 0.0.0.0 (or a [[listener]]) and a password "
            "file, or --allow-anonymous",
            " and ".join(LOCAL_ONLY),
            port,
        )

    @staticmethod
    def _in_use(err: OSError) -> bool:
        import errno

        return err.errno == errno.EADDRINUSE

    # -- run time -------------------------------------------------------------
    def reload(self) -> None:
        """SIGHUP: password and ACL files and plug-ins (connections stay)."""
        log.info("SIGHUP: reloading")
        if self.authenticator is not None:
            self.authenticator.reload()
        if self.plugin_hooks is not None:
            self.plugin_hooks.reload()

    @property
    def addresses(self) -> list[tuple[Any, ...]]:
        out: list[tuple[Any, ...]] = []
        for lst in self.listeners:
            for a in lst.addresses():
                out.append(a if isinstance(a, tuple) else (a,))
        return out

    # -- stop -----------------------------------------------------------------
    async def stop(self) -> None:
        """Stop everything started (safe to call after a failed start)."""
        if self.ops is not None:
            await self.ops.stop()
            self.ops = None
        for bridge in self.bridges:
            await bridge.stop()
        self.bridges.clear()
        if self.server is not None:
            await self.server.stop()  # v5 clients get DISCONNECT 0x8B, wills go out
            self.server = None
        elif self.core is not None:
            self.core.shutdown()
        if self.backplane is not None:
            try:
                await self.backplane.stop()
            except Exception as err:  # the broker stops anyway; the storage must close
                log.error("cluster backplane stop failed: %r", err)
            self.backplane = None
        if self.plugin_hooks is not None:
            await self.plugin_hooks.stop()
        api = self.api
        if api is not None:
            await api._close_subscriptions()
            api.bind(None)
        if self.storage is not None:
            self.storage.close()
            self.storage = None
        self.listeners = []


def warn_if_pure_python() -> None:
    """Issue 18: a pure-Python codec is visible at start-up."""
    if IMPLEMENTATION != "python":
        return
    from mqttfast._impl import NO_EXTENSIONS

    why = (
        "MQTTFAST_NO_EXTENSIONS is set"
        if NO_EXTENSIONS
        else "the compiled extension is not installed"
    )
    log.warning(
        "the MQTT codec runs in pure Python (%s): several times slower; for the compiled "
        "one unset MQTTFAST_NO_EXTENSIONS, install a binary wheel (pip install mqttfast) "
        "or build it (a C compiler and Cython: pip install --no-binary mqttfast mqttfast)",
        why,
    )


def _where(listener: Any) -> str:
    """HOST:PORT for a plain TCP listener (the real port for port 0), else its label."""
    cfg = listener.cfg
    if cfg.protocol == "mqtt" and not cfg.tls and not cfg.unix_path and not cfg.name:
        addrs = listener.addresses()
        port = addrs[0][1] if addrs else cfg.port
        host = f"[{cfg.address}]" if ":" in cfg.address else cfg.address
        return f"{host}:{port}"
    return str(cfg.label())


__all__ = ["Assembly", "StartError", "make_backplane", "warn_if_pure_python", "CLUSTER_EXTRA"]
