"""One configuration model: a TOML file, command-line flags, a mosquitto.conf and an
embedding program's dict all end in the same Config (issue 13); flags override the
file; the schema is the one source of keys for the loader, check-config and the docs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mqttfast.app.cli import build_parser, load_config
from mqttfast.app.loader import FLAG_KEYS, broker_settings, from_dict, load_mosquitto, load_toml
from mqttfast.app.schema import SECTIONS, Config, ConfigError


def config_of(argv: list[str]) -> Config:
    return load_config(build_parser().parse_args(argv))


def comparable(cfg: Config) -> dict:
    """The settings of a Config (what the broker uses), without bookkeeping fields."""
    data = dataclasses.asdict(cfg)
    for key in ("present", "flags", "source", "mosquitto"):
        data.pop(key)
    return data


def test_toml_flags_and_mosquitto_conf_give_the_same_config(tmp_path: Path) -> None:
    """The same settings written three ways: equal Configs and equal BrokerSettings."""
    toml = tmp_path / "a.toml"
    toml.write_text(
        '[[listener]]\nport = 1884\naddress = "127.0.0.1"\n'
        "[limits]\nmax_inflight = 7\nmax_queued_messages = 50\n"
        '[persistence]\nmode = "off"\n[sys]\ninterval = 0\n'
    )
    conf = tmp_path / "m.conf"
    conf.write_text(
        "listener 1884 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 7\n"
        "max_queued_messages 50\npersistence false\nsys_interval 0\n"
    )
    from_toml = load_toml(str(toml))
    from_flags = config_of(
        "--host 127.0.0.1 --port 1884 --max-inflight 7 --max-queued-messages 50 "
        "--persistence off --sys-interval 0".split()
    )
    from_mosquitto = load_mosquitto(str(conf), lambda w: None)
    from_mosquitto.auth.allow_anonymous = None  # mosquitto.conf must say it; TOML need not
    assert comparable(from_toml) == comparable(from_flags) == comparable(from_mosquitto)
    assert broker_settings(from_toml) == broker_settings(from_flags)
    assert broker_settings(from_toml) == broker_settings(from_mosquitto)


def test_flags_override_the_file(tmp_path: Path) -> None:
    toml = tmp_path / "a.toml"
    toml.write_text(
        '[[listener]]\nport = 1884\naddress = "127.0.0.1"\n[limits]\nmax_inflight = 3\n'
        '[logging]\nlevel = "debug"\n'
    )
    cfg = config_of(["--config", str(toml), "--max-inflight", "9", "--port", "2000"])
    assert cfg.limits.max_inflight == 9 and cfg.listener[0].port == 2000
    assert cfg.logging.level == "debug"  # from the file: no flag given
    assert broker_settings(cfg).max_inflight == 9


def test_every_flag_lands_on_a_schema_key() -> None:
    """Every argparse dest of the command is a schema key (or one of the few handled
    by hand), so nothing a flag sets can bypass the Config."""
    by_hand = {"host", "port", "config", "mosquitto_config", "worker_index", "version", "help"}
    dests = {a.dest for a in build_parser()._actions}
    assert dests - by_hand <= set(FLAG_KEYS), dests - by_hand - set(FLAG_KEYS)
    for section, name in FLAG_KEYS.values():
        assert name in {f.name for f in dataclasses.fields(SECTIONS[section])}


def test_cluster_and_server_keys() -> None:
    """CONTRACTS.md: [cluster] with the ClusterConfig field names, [server] workers and
    reuse_port; --cluster takes a comma-separated list."""
    cfg = from_dict(
        {
            "cluster": {"servers": ["nats://127.0.0.1:4222"], "replicas": 3, "token": "t"},
            "server": {"workers": 0, "reuse_port": True},
        }
    )
    assert cfg.cluster.servers == ["nats://127.0.0.1:4222"] and cfg.cluster.replicas == 3
    assert cfg.server.workers == 0 and cfg.server.reuse_port
    fields = [f.name for f in dataclasses.fields(cfg.cluster)]
    assert fields == [
        "servers",
        "node_id",
        "subject_prefix",
        "credentials",
        "user",
        "password",
        "token",
        "tls_ca",
        "tls_cert",
        "tls_key",
        "replicas",
        "ack_after_nats",
        "journal_max_age",
    ]
    cfg = config_of(
        "--cluster nats://a:4222,nats://b:4222 --node-id n1 --cluster-prefix x --workers 3 "
        "--reuse-port --worker-index 2".split()
    )
    assert cfg.cluster.servers == ["nats://a:4222", "nats://b:4222"]
    assert (cfg.cluster.node_id, cfg.cluster.subject_prefix) == ("n1", "x")
    assert cfg.server.workers == 3 and cfg.server.reuse_port and cfg.worker_index == 2
    with pytest.raises(ConfigError, match=r"cluster.servers: expected array of strings"):
        from_dict({"cluster": {"servers": [1]}})


def test_relative_paths_of_a_file_resolve_against_its_directory(tmp_path: Path) -> None:
    toml = tmp_path / "etc" / "mqttfast.toml"
    toml.parent.mkdir()
    toml.write_text(
        '[persistence]\ndata_dir = "d"\n[auth]\nacl_file = "../acl"\n'
        '[[listener]]\nport = 1\ncertfile = "/abs/cert.pem"\nunix_path = "s.sock"\n'
        '[cluster]\ncredentials = "nats.creds"\n'
    )
    cfg = load_toml(str(toml))
    assert cfg.persistence.data_dir == str(tmp_path / "etc" / "d")
    assert cfg.auth.acl_file == str(tmp_path / "acl")
    assert cfg.listener[0].certfile == "/abs/cert.pem"
    assert cfg.listener[0].unix_path == str(tmp_path / "etc" / "s.sock")
    assert cfg.cluster.credentials == str(tmp_path / "etc" / "nats.creds")
    assert load_toml(str(toml)).auth.password_file is None  # unset stays unset
    (tmp_path / "plain.toml").write_text("[sys]\ninterval = 0\n")
    assert load_toml(str(tmp_path / "plain.toml")).persistence.data_dir == "mqttfast-data"
