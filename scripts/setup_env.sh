#!/usr/bin/env bash
# Creates .venv with the CPU torch build and the pack's requirements (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

pip_install() {  # quiet, but a failure shows everything pip said
  local log
  log=$(mktemp)
  if ! .venv/bin/pip install -q "$@" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    exit 1
  fi
  grep -v "^WARNING: Location" "$log" || true  # this machine's local-index notices
  rm -f "$log"
}

if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  # a local CPU build on our machines; on your own machine install the torch build you want first
  pip_install "torch==2.13.0"
fi
pip_install -r requirements.txt pytest jsonschema websocket-client requests "ruff>=0.5"
