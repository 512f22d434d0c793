#!/usr/bin/env bash
# Start the study's run on the SuperLink and wait for it to finish (exit 0 only if it completed).
# Prints one line per round as the aggregator stores the round's manifest (STUDY_DIR/artifacts/rounds).
# Usage: run_study.sh STUDY_DIR [APP_DIR]
set -euo pipefail
STUDY_DIR=${1:?usage: run_study.sh STUDY_DIR [APP_DIR]}
APP_DIR=${2:-${APP_DIR:-$(cd "$(dirname "$0")/.." && pwd)}}
export FLWR_HOME="${FLWR_HOME:-$STUDY_DIR/flwr_home}"
out=$(flwr run "$APP_DIR" fedledger --run-config "study-spec=\"$STUDY_DIR/study.json\"" --format json)
echo "$out"
RUN_ID=$(printf '%s' "$out" | python -c 'import json,sys; print(json.load(sys.stdin)["run-id"])')
mkdir -p "$STUDY_DIR/aggregator" && echo "$RUN_ID" > "$STUDY_DIR/aggregator/run_id"
ROUNDS_DIR=$(python -c 'import json,sys; s=json.load(open(sys.argv[1])); print(s.get("run_dir") or sys.argv[2])' \
  "$STUDY_DIR/study.json" "$STUDY_DIR")/artifacts/rounds
NUM_ROUNDS=$(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["config"]["num_rounds"])' "$STUDY_DIR/study.json")
shown=0
progress() {  # one line per newly stored round manifest
  for f in $(ls "$ROUNDS_DIR"/round_*.json 2>/dev/null | sort | tail -n +$((shown + 1))); do
    python - "$f" "$NUM_ROUNDS" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
agg = m.get("aggregate") or {}
ups = m.get("updates") or []
print(f"round {m['round']}/{sys.argv[2]}: {len(ups)} hospital(s), {agg.get('total_weight')} samples, "
      f"aggregate {str(agg.get('hash', ''))[:12]}…", flush=True)
PY
    shown=$((shown + 1))
  done
}
while true; do
  progress
  status=$(flwr ls fedledger --run-id "$RUN_ID" --format json | python -c 'import json,sys; print(json.load(sys.stdin)["runs"][0]["status"])')
  case "$status" in
    finished:completed) progress; echo "run $RUN_ID $status"; exit 0;;
    finished:*) progress; echo "run $RUN_ID $status" >&2; exit 1;;
  esac
  sleep "${POLL_S:-2}"
done
