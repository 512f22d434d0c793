#!/usr/bin/env bash
# The study's chain (anvil container): serve the chain `fedledger provision --ledger anvil`
# wrote to <study>/chain/anvil_state.json (contract deployed, study registered, consents),
# and keep saving it there. Usage: run_chain.sh STUDY_DIR [HOST] [PORT]
# Listens on 127.0.0.1 unless HOST (or $CHAIN_HOST) says otherwise: anvil answers its cheat
# RPCs (anvil_impersonateAccount, anvil_setBalance, ...) to anyone who reaches it, so open it
# only to a network you trust (deploy/compose.yaml: the compose network, no published port).
# The development accounts it funds hold no role in the study: admin and aggregator are the
# study's own keys (<study>.secrets/keys/).
set -euo pipefail
STUDY_DIR=${1:?usage: run_chain.sh STUDY_DIR [HOST] [PORT]}
HOST=${2:-${CHAIN_HOST:-127.0.0.1}}
PORT=${3:-${CHAIN_PORT:-8545}}
STATE="$STUDY_DIR/chain/anvil_state.json"
[ -f "$STATE" ] || { echo "no chain state at $STATE: provision with --ledger anvil first" >&2; exit 2; }
set -- --chain-id 31337 --accounts 20 \
  --mnemonic "test test test test test test test test test test test junk" \
  --state "$STATE" --state-interval 5 --preserve-historical-states --quiet
# Cheat RPCs (anvil_*, evm_*, hardhat_*, eth_sendTransaction) stop at the guard: anvil listens on
# 127.0.0.1:$CHAIN_UPSTREAM_PORT (default PORT+1) and `python -m ledger.rpc_guard` serves HOST:PORT with
# standard eth_/net_/web3_ methods only. RPC_GUARD=off serves anvil itself on HOST:PORT (deploy/compose.yaml
# runs the guard as its own container in anvil's network namespace: the foundry image has no python).
if [ "${RPC_GUARD:-on}" = off ]; then
  exec "${ANVIL:-anvil}" --host "$HOST" --port "$PORT" "$@"
fi
UPSTREAM_PORT=${CHAIN_UPSTREAM_PORT:-$((PORT + 1))}
"${PYTHON:-python}" -c "import ledger.rpc_guard" || { echo "no python with ledger.rpc_guard: RPC_GUARD=off serves anvil unguarded (not evidence)" >&2; exit 2; }
"${ANVIL:-anvil}" --host 127.0.0.1 --port "$UPSTREAM_PORT" "$@" &
ANVIL_PID=$!
"${PYTHON:-python}" -m ledger.rpc_guard --upstream "http://127.0.0.1:$UPSTREAM_PORT" --listen "$HOST:$PORT" &
GUARD_PID=$!
trap 'kill -TERM "$GUARD_PID" "$ANVIL_PID" 2>/dev/null || true' INT TERM
wait "$GUARD_PID" || true
kill -TERM "$ANVIL_PID" 2>/dev/null || true  # anvil writes its state on SIGTERM
wait "$ANVIL_PID" || true
