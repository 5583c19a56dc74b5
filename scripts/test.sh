#!/usr/bin/env bash
# Install what is missing, then run lint, type checks, the web page's unit tests (Node) and the whole
# test suite against the real stack.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/ruff check --no-cache .
.venv/bin/mypy
# The web page's upload engine and thumbnail URLs, in Node's built-in runner (no npm package): a failing
# test fails this script.
node --test tests/web/*.test.mjs
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
