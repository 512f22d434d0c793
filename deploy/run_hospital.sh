#!/usr/bin/env bash
# The hospital container: Flower SuperNode running this project's ClientApp (subprocess isolation).
# Everything comes from the hospital's directory (`fedledger provision` -> <study>.secrets/hospitals/<id>/):
# node_config.toml, secrets, ca.pem (TLS) and auth_key (SuperNode authentication) when present.
# Usage: run_hospital.sh HOSPITAL_DIR SUPERLINK_ADDRESS [CLIENTAPPIO_PORT]
set -euo pipefail
HOSPITAL_DIR=${1:?usage: run_hospital.sh HOSPITAL_DIR SUPERLINK_ADDRESS [CLIENTAPPIO_PORT]}
SUPERLINK=${2:-${SUPERLINK_ADDRESS:?}}
IO_PORT=${3:-${CLIENTAPPIO_PORT:-9094}}
NODE_CONFIG=$(python -m coordinator.provision node-config "$HOSPITAL_DIR")
args=(--superlink "$SUPERLINK" --host 127.0.0.1 --port "$IO_PORT" --isolation subprocess
      --node-config "$NODE_CONFIG" --max-wait-time "${MAX_WAIT_TIME:-600}")
if [ -f "$HOSPITAL_DIR/ca.pem" ]; then args+=(--root-certificates "$HOSPITAL_DIR/ca.pem"); else args+=(--insecure); fi
[ -f "$HOSPITAL_DIR/auth_key" ] && args+=(--auth-supernode-private-key "$HOSPITAL_DIR/auth_key")
[ -n "${HEALTH_ADDRESS:-}" ] && args+=(--health-server-address "$HEALTH_ADDRESS")
exec flower-supernode "${args[@]}"
