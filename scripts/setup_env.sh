#!/usr/bin/env bash
# Creates .venv with a torch build and the pack's requirements (idempotent; pip runs only when
# requirements.txt or the list below changed since the last successful install).
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
  # whatever build the pip index serves (PyPI on Linux: a CUDA build, about 2.5 GB with its CUDA libraries;
  # our machines: a local CPU build). For a CPU-only build, install it into .venv first:
  #   .venv/bin/pip install torch --index-url https://download.pytorch.org/whl/cpu
  pip_install "torch==2.13.0"
fi
# pip takes seconds even when nothing changed: skip it while the venv's stamp matches what would be installed
PACKAGES=(-r requirements.txt pytest jsonschema websocket-client requests "ruff>=0.5")
STAMP=.venv/.scalingar-requirements.sha256
want=$( { cat requirements.txt; printf '%s\n' "${PACKAGES[@]}"; } | sha256sum | cut -d' ' -f1)
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
  exit 0
fi
pip_install "${PACKAGES[@]}"
echo "$want" >"$STAMP"
