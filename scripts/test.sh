#!/usr/bin/env bash
# Install what is missing, then run lint, type checks and the whole test suite against the real stack.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/ruff check --no-cache .
.venv/bin/mypy
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
