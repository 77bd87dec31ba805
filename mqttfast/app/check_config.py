"""``mqttfast check-config [--mosquitto] FILE``: the file read by the broker's own
loader and schema, then everything it points at loaded (certificates, password and
ACL files, plug-ins, the admin token): every problem on one line each, exit code 2;
otherwise "ok" and 0."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence

from .loader import load_file
from .schema import Config, ConfigError


def deep_check(cfg: Config) -> list[str]:
    """Load what the config points at; each error names the key (and the file)."""
    from mqttfast.plugins.loader import PluginError, load_tables

    from .admin import check_ops
    from .security.policy import build_authenticator
    from .security.tls import build_server_context

    errors: list[str] = []
    for i, lc in enumerate(cfg.listener):
        if lc.certfile is not None:
            try:
                build_server_context(
                    lc.certfile,
                    lc.keyfile,
                    lc.cafile,
                    require_certificate=lc.require_certificate,
                    min_version=lc.tls_version,
                    ciphers=lc.ciphers,
                )
            except (OSError, ValueError) as err:  # ssl.SSLError is an OSError
                errors.append(f"listener[{i}].certfile: cannot set up TLS ({lc.certfile}): {err}")
    try:
        build_authenticator(cfg, cfg.auth.allow_anonymous)
    except ConfigError as err:
        errors.extend(err.errors)
    for where, tables in (("plugin", cfg.plugin), ("auth.plugin", cfg.auth.plugin)):
        try:
            load_tables(tables, where)
        except PluginError as err:
            errors.append(str(err))
    errors.extend(check_ops(cfg))
    errors.extend(_check_cluster(cfg))
    return errors


def _check_cluster(cfg: Config) -> list[str]:
    """[cluster] checked by the backplane's own rules (only when one is configured)."""
    c = cfg.cluster
    if not (c.servers or c.node_id):
        return []
    try:
        from mqttfast.cluster import ClusterConfig  # type: ignore[import-not-found,unused-ignore]
    except ImportError as err:
        return [f"cluster.servers: the cluster backplane is not installed ({err})"]
    fields = {f.name: getattr(c, f.name) for f in dataclasses.fields(c)}
    try:
        ClusterConfig(**fields).validate(require_servers=False)
    except ValueError as err:
        return [str(err)]
    return []


def main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(
        prog="mqttfast check-config", description="Validate a configuration file."
    )
    p.add_argument("--mosquitto", action="store_true", help="FILE is a mosquitto.conf")
    p.add_argument("file")
    try:
        ns = p.parse_args(list(argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    warnings: list[str] = []
    try:
        cfg = load_file(ns.file, ns.mosquitto, warnings.append)
        errors = deep_check(cfg)
    except ConfigError as err:
        errors = list(err.errors)
        if err.partial is not None:
            errors += [e for e in deep_check(err.partial) if e not in errors]
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    if errors:
        for line in errors:
            print(line)
        print(f"{ns.file}: {len(errors)} error{'s' if len(errors) != 1 else ''}")
        return 2
    print("ok")
    return 0


check_config_main = main

__all__ = ["deep_check", "main", "check_config_main"]
