#!/usr/bin/env bash
# The study's chain (anvil container): serve the chain `fedledger provision --ledger anvil`
# wrote to <study>/chain/anvil_state.json (contract deployed, study registered, consents),
# and keep saving it there. Usage: run_chain.sh STUDY_DIR [HOST] [PORT]
set -euo pipefail
STUDY_DIR=${1:?usage: run_chain.sh STUDY_DIR [HOST] [PORT]}
HOST=${2:-${CHAIN_HOST:-0.0.0.0}}
PORT=${3:-${CHAIN_PORT:-8545}}
STATE="$STUDY_DIR/chain/anvil_state.json"
[ -f "$STATE" ] || { echo "no chain state at $STATE: provision with --ledger anvil first" >&2; exit 2; }
exec "${ANVIL:-anvil}" --host "$HOST" --port "$PORT" --chain-id 31337 --accounts 20 \
  --mnemonic "test test test test test test test test test test test junk" \
  --state "$STATE" --state-interval 5 --preserve-historical-states --quiet
