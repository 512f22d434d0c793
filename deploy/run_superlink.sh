#!/usr/bin/env bash
# The aggregator container: Flower SuperLink (+ the ServerApp it runs per study run).
# TLS when <study>/aggregator/tls exists; SuperNode authentication when
# <study>/aggregator/supernode_keys exists (every <id>.pub there is registered: the allow-list).
# The TLS key is a secret: <study>.secrets/aggregator/tls/server.key (or $TLS_KEY), never in <study>/.
# Usage: run_superlink.sh STUDY_DIR [HOST] [PORT]
set -euo pipefail
STUDY_DIR=${1:?usage: run_superlink.sh STUDY_DIR [HOST] [PORT]}
STUDY_DIR=${STUDY_DIR%/}
TLS_KEY=${TLS_KEY:-$STUDY_DIR.secrets/aggregator/tls/server.key}
HOST=${2:-${SUPERLINK_HOST:-0.0.0.0}}
PORT=${3:-${SUPERLINK_PORT:-9093}}
export FLWR_HOME="${FLWR_HOME:-$STUDY_DIR/flwr_home}"
TLS_DIR="$STUDY_DIR/aggregator/tls"
KEYS_DIR="$STUDY_DIR/aggregator/supernode_keys"
args=(--host "$HOST" --port "$PORT" --database "$STUDY_DIR/aggregator/superlink.db"
      --disable-runtime-dependency-installation)
if [ -f "$TLS_DIR/server.pem" ]; then
  args+=(--ssl-ca-certfile "$TLS_DIR/ca.pem" --ssl-certfile "$TLS_DIR/server.pem" --ssl-keyfile "$TLS_KEY")
else
  args+=(--insecure)
fi
[ -d "$KEYS_DIR" ] && args+=(--enable-supernode-auth)
mkdir -p "$STUDY_DIR/aggregator"
flower-superlink "${args[@]}" &
SUPERLINK_PID=$!
trap 'kill -TERM $SUPERLINK_PID 2>/dev/null; wait $SUPERLINK_PID' TERM INT
if [ -d "$KEYS_DIR" ]; then
  for pub in "$KEYS_DIR"/*.pub; do
    name=$(basename "$pub" .pub)
    for _ in $(seq 1 60); do   # the Control API answers once the SuperLink is up
      out=$(flwr supernode register "$pub" fedledger --name "$name" 2>&1) && { echo "registered SuperNode key $name"; break; }
      case "$out" in *"already"*) echo "SuperNode key $name already registered"; break;; esac
      kill -0 $SUPERLINK_PID 2>/dev/null || exit 1
      sleep 1
    done
  done
fi
wait $SUPERLINK_PID
