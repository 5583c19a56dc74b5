#!/usr/bin/env bash
# Install what is missing, then start the whole service in the foreground (Ctrl-C stops it all).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/clipsearch up --demo "$@"
