#!/usr/bin/env bash
# Start the study's run on the SuperLink and wait for it to finish (exit 0 only if it completed).
# Usage: run_study.sh STUDY_DIR [APP_DIR]
set -euo pipefail
STUDY_DIR=${1:?usage: run_study.sh STUDY_DIR [APP_DIR]}
APP_DIR=${2:-${APP_DIR:-$(cd "$(dirname "$0")/.." && pwd)}}
export FLWR_HOME="${FLWR_HOME:-$STUDY_DIR/flwr_home}"
out=$(flwr run "$APP_DIR" fedledger --run-config "study-spec=\"$STUDY_DIR/study.json\"" --format json)
echo "$out"
RUN_ID=$(printf '%s' "$out" | python -c 'import json,sys; print(json.load(sys.stdin)["run-id"])')
mkdir -p "$STUDY_DIR/aggregator" && echo "$RUN_ID" > "$STUDY_DIR/aggregator/run_id"
while true; do
  status=$(flwr ls fedledger --run-id "$RUN_ID" --format json | python -c 'import json,sys; print(json.load(sys.stdin)["runs"][0]["status"])')
  case "$status" in
    finished:completed) echo "run $RUN_ID $status"; exit 0;;
    finished:*) echo "run $RUN_ID $status" >&2; exit 1;;
  esac
  sleep "${POLL_S:-2}"
done
