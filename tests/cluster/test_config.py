"""[cluster] table, --cluster flags, node id, and zero cost without a cluster."""

from __future__ import annotations

import subprocess
import sys

from mqttfast.cluster.config import ClusterConfig
from tests.helpers.broker import REPO_ROOT

from .conftest import Node


def test_without_cluster_nothing_of_it_is_imported() -> None:
    """A broker without [cluster]/--cluster never imports mqttfast.cluster nor nats."""
    code = (
        "import sys, asyncio\n"
        "from mqttfast.app import assembly, cli, loader\n"
        "cfg = cli.load_config(cli.build_parser().parse_args(['--port', '0']))\n"
        "assert assembly.make_backplane(cfg, '.') is None\n"
        "from mqttfast.core.broker import BrokerCore\n"
        "from mqttfast.app import metrics\n"
        "BrokerCore(loader.broker_settings(cfg))\n"
        "bad = [m for m in sys.modules if m.startswith(('nats', 'mqttfast.cluster'))]\n"
        "assert not bad, bad\n"
        "print('clean')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, cwd=REPO_ROOT
    )
    assert out.stdout.strip() == "clean", out.stderr


def test_node_id_generated_once_and_kept(tmp_path) -> None:
    cfg = ClusterConfig(servers=["nats://127.0.0.1:4222"], data_dir=str(tmp_path))
    first = cfg.resolve_node_id()
    assert (tmp_path / "node-id").read_text().strip() == first
    assert ClusterConfig(servers=cfg.servers, data_dir=str(tmp_path)).resolve_node_id() == first
    assert ClusterConfig(servers=cfg.servers, node_id="x1").resolve_node_id() == "x1"


def test_cluster_table_in_toml(nats_server, tmp_path) -> None:
    conf = tmp_path / "mqttfast.toml"
    conf.write_text(
        f'[cluster]\nservers = ["{nats_server.url}"]\nnode_id = "tomlnode"\n'
        'subject_prefix = "tomlns"\nreplicas = 1\n'
    )
    node = Node(nats_server.url, "ignored", "ignored")
    node.extra_args = ["--config", str(conf), "--persistence", "off", "--data-dir", node.data.name]
    try:
        node.start()
        assert "cluster: node tomlnode, subject prefix 'tomlns'" in node.log_text()
    finally:
        node.cleanup()


def test_bad_cluster_config_exits_2_naming_the_key(tmp_path) -> None:
    conf = tmp_path / "bad.toml"
    conf.write_text('[cluster]\nservers = ["nats://127.0.0.1:1"]\nreplica = 3\n')
    out = subprocess.run(
        [sys.executable, "-m", "mqttfast", "--config", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO_ROOT,
    )
    assert out.returncode == 2
    assert "cluster.replica: unknown key" in out.stderr
    out = subprocess.run(
        [sys.executable, "-m", "mqttfast", "--cluster", "nats://x:1", "--node-id", "has space"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO_ROOT,
    )
    assert out.returncode == 2 and "cluster.node_id" in out.stderr


def test_check_config_validates_the_cluster_table(tmp_path) -> None:
    """`mqttfast check-config` reads [cluster] too: exit 2 naming the key, 0 when valid."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[cluster]\nservers = ["nats://127.0.0.1:4222"]\nnode_id = "a b"\n')
    out = subprocess.run(
        [sys.executable, "-m", "mqttfast", "check-config", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO_ROOT,
    )
    assert out.returncode == 2 and "cluster.node_id" in out.stdout + out.stderr
    good = tmp_path / "good.toml"
    good.write_text('[cluster]\nservers = ["nats://127.0.0.1:4222"]\nreplicas = 3\n')
    out = subprocess.run(
        [sys.executable, "-m", "mqttfast", "check-config", str(good)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO_ROOT,
    )
    assert out.returncode == 0, out.stdout + out.stderr
