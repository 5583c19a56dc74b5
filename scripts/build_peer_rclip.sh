#!/usr/bin/env bash
# The peer for benchmarks/ingest.py --rclip-python: rclip 3.3 in its own virtual environment, and the
# issue's random-weight ViT-B-32-256 that both rclip and clipsearch then run. Everything lands OUTSIDE the
# repo, under the same cache as setup.sh's builds; nothing here is a dependency of clipsearch, and neither
# setup.sh nor any test runs this script. Idempotent: what is already there is kept.
#
#   scripts/build_peer_rclip.sh            # rclip venv + the model (builds a torch venv once for the export)
#   scripts/build_peer_rclip.sh --no-model # only rclip's venv
#
# Made:
#   $CACHE/peer-rclip/          rclip==3.3.0 (onnxruntime, no torch: rclip 3.3 runs ONNX exports)
#   $CACHE/peer-export/      torch, open_clip, onnx, onnxruntime, tokenizers: the export environment of
#                               scripts/make_tiny_model.py (CPU-only wheels where the index offers them;
#                               from PyPI alone torch brings its CUDA wheels, a few GB)
#   $CACHE/models/ViT-B-32-256-random/   the Immich-layout export clipsearch reads (MODEL_DIR)
# rclip's own layout of the same weights is derived from that directory by benchmarks/ingest.py
# (benchmarks/peer_rclip.py), so both run one graph with the same weights.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${CLIPSEARCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/clipsearch}"
RCLIP_VERSION="3.3.0"
PY="${PYTHON:-python3}"
mkdir -p "$CACHE"

RCLIP_ENV="$CACHE/peer-rclip"
if [[ -x "$RCLIP_ENV/bin/python" ]] \
  && "$RCLIP_ENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('rclip') != '$RCLIP_VERSION')" 2>/dev/null; then
  echo "rclip $RCLIP_VERSION already installed: $RCLIP_ENV"
else
  echo "installing rclip $RCLIP_VERSION into $RCLIP_ENV"
  "$PY" -m venv "$RCLIP_ENV"
  "$RCLIP_ENV/bin/pip" install -q --upgrade pip
  "$RCLIP_ENV/bin/pip" install -q "rclip==$RCLIP_VERSION"
fi

[[ "${1:-}" == "--no-model" ]] && exit 0

MODEL="$CACHE/models/ViT-B-32-256-random"
if [[ -f "$MODEL/visual/model.onnx" && -f "$MODEL/textual/model.onnx" && -f "$MODEL/config.json" ]]; then
  echo "model already written: $MODEL"
  exit 0
fi

REF_ENV="$CACHE/peer-export"
if ! "$REF_ENV/bin/python" -c "import torch, open_clip, onnx, onnxruntime, tokenizers" 2>/dev/null; then
  echo "installing the export environment into $REF_ENV (torch: large)"
  "$PY" -m venv "$REF_ENV"
  "$REF_ENV/bin/pip" install -q --upgrade pip
  "$REF_ENV/bin/pip" install -q torch open_clip_torch onnx onnxruntime tokenizers pillow numpy
fi
echo "exporting the random-weight ViT-B-32-256 to $MODEL"
"$REF_ENV/bin/python" scripts/make_tiny_model.py --no-tiny --vit-b32-256 "$MODEL"
