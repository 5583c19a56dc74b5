#!/usr/bin/env bash
# Install everything clipsearch needs on a fresh Debian machine, idempotently:
#   - redis-server (Debian's package) when missing
#   - chromium and its driver (the web page's end-to-end test) and nodejs (its unit tests) when missing
#   - a virtual environment at .venv with the package and its dev tools
#   - the Weaviate server binary, built from the Go module proxy and cached outside the repo
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
  echo "installing redis-server"
  SUDO=""
  [[ "$(id -u)" == 0 ]] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
  # Debian starts a system-wide instance on 6379; clipsearch runs its own on a free loopback port.
fi

# The openssl command line: the TLS-pinning unit test makes its self-signed certificate with it (under
# CI=true a missing precondition fails that test instead of skipping it).
if ! command -v openssl >/dev/null 2>&1; then
  echo "installing openssl"
  SUDO=""
  [[ "$(id -u)" == 0 ]] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq openssl >/dev/null
fi

# Headless Chromium and its driver for the web page's end-to-end test (Debian's packages; nothing is
# downloaded by the test itself).
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  echo "installing chromium and chromium-driver"
  SUDO=""
  [[ "$(id -u)" == 0 ]] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi

# Node (18 or newer) runs the web page's unit tests (`node --test tests/web/`, no npm package).
if ! command -v node >/dev/null 2>&1; then
  echo "installing nodejs"
  SUDO=""
  [[ "$(id -u)" == 0 ]] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs >/dev/null
fi

PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3
if [[ ! -x .venv/bin/python ]]; then
  echo "creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [[ ! -f "$stamp" ]]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi

# The builds share one cache outside the repo: two checkouts running setup at once (worktrees, parallel CI
# jobs) take turns on a lock there, and the second finds the binaries built.
CACHE="${CLIPSEARCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/clipsearch}"
mkdir -p "$CACHE"
(
  flock 9
  ./scripts/build_weaviate.sh
  ./scripts/build_object_store.sh  # rclone serve s3 (MIT): `clipsearch up --object-store` and the scale-out tests
  ./scripts/build_compose.sh
) 9>"$CACHE/.build.lock"
