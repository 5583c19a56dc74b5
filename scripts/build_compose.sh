#!/usr/bin/env bash
# The tests validate docker-compose.yml with `docker compose config`, which needs the compose CLI plugin
# but no engine. When the docker client is here without the plugin, build the plugin from the Go module
# proxy (its go.mod has replace directives, so `go install pkg@version` is refused: build a copy) and
# cache it outside the repo. Idempotent; does nothing when `docker compose` already works.
set -euo pipefail

VERSION="${COMPOSE_VERSION:-2.40.3}"
CACHE="${CLIPSEARCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/clipsearch}"
BIN="$CACHE/docker-compose-v$VERSION"
PLUGIN_DIR="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"

command -v docker >/dev/null 2>&1 || { echo "no docker client: skipping the compose plugin"; exit 0; }
if docker compose version >/dev/null 2>&1; then
  exit 0
fi
if [[ ! -x "$BIN" ]]; then
  command -v go >/dev/null || { echo "go is required to build the compose plugin" >&2; exit 1; }
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  cd "$work"
  src="$(go mod download -json "github.com/docker/compose/v2@v$VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
  cp -r "$src" "$work/src"
  chmod -R u+w "$work/src"
  echo "building the docker compose plugin v$VERSION"
  (cd "$work/src" && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o "$BIN.tmp" ./cmd)
  mv "$BIN.tmp" "$BIN"
fi
mkdir -p "$PLUGIN_DIR"
ln -sf "$BIN" "$PLUGIN_DIR/docker-compose"
docker compose version
