#!/usr/bin/env bash
# The hospital container: Flower SuperNode running this project's ClientApp (subprocess isolation).
# Everything comes from the hospital's directory (`fedledger provision` -> <study>.secrets/hospitals/<id>/):
# node_config.toml, secrets, ca.pem (TLS) and auth_key (SuperNode authentication) when present.
# Before the SuperNode starts: a node config value still saying FILL-ME stops it (naming the key and
# the file), and on a study with a ledger the hospital consents with its own key and cohort size
# (`fedledger consent`; nothing is sent when it has consented already).
# Usage: run_hospital.sh HOSPITAL_DIR [SUPERLINK_ADDRESS] [CLIENTAPPIO_PORT]
#   SUPERLINK_ADDRESS: default $SUPERLINK_ADDRESS, else the node config's `superlink`
set -euo pipefail
HOSPITAL_DIR=${1:?usage: run_hospital.sh HOSPITAL_DIR [SUPERLINK_ADDRESS] [CLIENTAPPIO_PORT]}
NODE_CONFIG=$(python -m coordinator.provision node-config "$HOSPITAL_DIR")
SUPERLINK=${2:-${SUPERLINK_ADDRESS:-$(python -m coordinator.provision superlink "$HOSPITAL_DIR")}}
IO_PORT=${3:-${CLIENTAPPIO_PORT:-9094}}
python -m fl_client.consent --hospital-dir "$HOSPITAL_DIR"
args=(--superlink "$SUPERLINK" --host 127.0.0.1 --port "$IO_PORT" --isolation subprocess
      --node-config "$NODE_CONFIG" --max-wait-time "${MAX_WAIT_TIME:-600}")
if [ -f "$HOSPITAL_DIR/ca.pem" ]; then args+=(--root-certificates "$HOSPITAL_DIR/ca.pem"); else args+=(--insecure); fi
[ -f "$HOSPITAL_DIR/auth_key" ] && args+=(--auth-supernode-private-key "$HOSPITAL_DIR/auth_key")
[ -n "${HEALTH_ADDRESS:-}" ] && args+=(--health-server-address "$HEALTH_ADDRESS")
exec flower-supernode "${args[@]}"
