#!/usr/bin/env bash
# The ComfyUI tiers of the test suite, from a clean clone: build ComfyUI (cached), then
#   1. fast tier   tests/comfy/test_nodes_fast.py   nodes called in-process inside ComfyUI's modules
#   2. server tier tests/comfy/test_server.py       a real ComfyUI server over HTTP + websocket
# each timed. Extra arguments go to pytest (e.g. -x, -k name).
#
#   bash scripts/comfyui/run_tests.sh
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"

t0=$(date +%s)
bash scripts/comfyui/setup.sh > /dev/null
t1=$(date +%s)
PY="${COMFYUI_HOME:-$REPO/.scratch/comfyui}/venv/bin/python"

status=0
nice -n 5 "$PY" -m pytest tests/comfy/test_nodes_fast.py -q -p no:cacheprovider "$@" || status=$?
t2=$(date +%s)
nice -n 5 "$PY" -m pytest tests/comfy/test_server.py -q -p no:cacheprovider "$@" || status=$?
t3=$(date +%s)

echo "comfyui tiers: setup $((t1 - t0)) s, fast tier $((t2 - t1)) s, server tier $((t3 - t2)) s"
exit $status
