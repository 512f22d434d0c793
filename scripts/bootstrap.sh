#!/usr/bin/env bash
# Idempotent set-up from the repo's own files: Python venv (CPU torch first), the project, npm tools.
#   scripts/bootstrap.sh             everything: the project with its test tools, and the npm tools (anvil, solc)
#   scripts/bootstrap.sh --hospital  a hospital node: the project only; no Node.js, no npm, no test tools
set -euo pipefail
HOSPITAL=0
[ "${1:-}" = "--hospital" ] && HOSPITAL=1
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.fedledger-installed
want=$( (cat pyproject.toml package-lock.json; echo "hospital=$HOSPITAL") | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # CPU build of torch first, so nothing pulls a multi-GB CUDA build.
  .venv/bin/python -m pip install -q "torch==2.13.0"
  if [ "$HOSPITAL" = 1 ]; then
    .venv/bin/python -m pip install -q -e .
  else
    .venv/bin/python -m pip install -q -e ".[test]"
  fi
  echo "$want" > "$stamp"
fi
[ "$HOSPITAL" = 1 ] && exit 0  # a hospital never runs the chain or the compiler
if [ ! -x node_modules/.bin/anvil ] || [ ! -x node_modules/.bin/solcjs ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
