#!/usr/bin/env bash
# Creates .venv with the CPU torch build and the pack's requirements (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  # a local CPU build on our machines; on your own machine install the torch build you want first
  .venv/bin/pip install -q "torch==2.13.0"
fi
.venv/bin/pip install -q -r requirements.txt pytest jsonschema websocket-client requests
