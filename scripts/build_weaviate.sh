#!/usr/bin/env bash
# Build the Weaviate server from the Go module proxy and cache the binary outside the repo.
# Idempotent: does nothing when the cached binary exists.
#
# Loopback only: Weaviate v1.39 binds its HTTP API to --host and its gossip and Raft ports to
# CLUSTER_BIND_ADDR, but the public gRPC port, the internal cluster-data port and the debug and metrics
# listeners are hard-coded to ":%d" (every interface). The managed local server must never listen beyond
# loopback, so the build copies the module's source from the proxy and replaces ":%d" with "127.0.0.1:%d"
# in those four files before `go build` (Go forbids overlays of files in the module cache). Nothing else
# changes.
set -euo pipefail

VERSION="${WEAVIATE_VERSION:-1.39.3}"
CACHE="${CLIPSEARCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/clipsearch}"
BIN="$CACHE/weaviate-v$VERSION"
MODULE="github.com/weaviate/weaviate"

if [[ -x "$BIN" ]]; then
  echo "weaviate v$VERSION already built: $BIN"
  exit 0
fi
command -v go >/dev/null || { echo "go is required to build Weaviate (Go 1.24 or newer)" >&2; exit 1; }

mkdir -p "$CACHE"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"

echo "fetching $MODULE@v$VERSION from the Go module proxy"
src="$(go mod download -json "$MODULE@v$VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
[[ -d "$src" ]] || { echo "go mod download did not return a source directory for v$VERSION" >&2; exit 1; }

files=(
  adapters/handlers/grpc/server.go
  adapters/handlers/rest/clusterapi/serve.go
  adapters/handlers/rest/clusterapi/grpc/server.go
  adapters/handlers/rest/configure_api.go
)
cp -r "$src" "$work/src"
chmod -R u+w "$work/src"
for rel in "${files[@]}"; do
  before="$(md5sum <"$work/src/$rel")"
  sed -i 's/fmt\.Sprintf(":%d"/fmt.Sprintf("127.0.0.1:%d"/g' "$work/src/$rel"
  if [[ "$before" == "$(md5sum <"$work/src/$rel")" ]]; then
    echo "loopback patch: no wildcard listener found in $rel; review scripts/build_weaviate.sh" >&2
    exit 1
  fi
done

echo "building weaviate-server v$VERSION (a few minutes on 2 cores)"
start=$(date +%s)
(cd "$work/src" && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o "$BIN.tmp" ./cmd/weaviate-server)
mv "$BIN.tmp" "$BIN"
echo "built $BIN in $(( $(date +%s) - start )) s, $(du -h "$BIN" | cut -f1)"
