#!/usr/bin/env bash
# Set up and run the main job: ScalingAR on the bundled toy model, offline, CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
HF_HUB_OFFLINE=1 .venv/bin/python -m scalingar_core generate --prompt "${PROMPT:-a yellow circle and a blue square}" --out "${OUT:-out/}" "$@"
