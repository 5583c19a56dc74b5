#!/usr/bin/env bash
# Build the S3-compatible object store used by `clipsearch up --object-store` and the scale-out tests:
# rclone's `serve s3` (MIT), from the Go module proxy, cached outside the repo. Idempotent: does nothing
# when the cached binary exists.
#
# Only what `serve s3` over a local directory needs is compiled: a two-import main (the local backend and
# the serve s3 command) inside a copy of rclone's module, so its go.sum pins every dependency. That builds
# in a fraction of the time of the full rclone binary (every backend and command). The server binds where
# --addr says (the supervisor passes 127.0.0.1:<port>) and has no telemetry.
set -euo pipefail

VERSION="${RCLONE_VERSION:-1.76.0}"
CACHE="${CLIPSEARCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/clipsearch}"
BIN="$CACHE/rclone-s3-v$VERSION"
MODULE="github.com/rclone/rclone"

if [[ -x "$BIN" ]]; then
  echo "rclone serve s3 v$VERSION already built: $BIN"
  exit 0
fi
command -v go >/dev/null || { echo "go is required to build the object store (Go 1.24 or newer)" >&2; exit 1; }

mkdir -p "$CACHE"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "fetching $MODULE@v$VERSION from the Go module proxy"
src="$(cd "$work" && go mod download -json "$MODULE@v$VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
[[ -d "$src" ]] || { echo "go mod download did not return a source directory for v$VERSION" >&2; exit 1; }
cp -r "$src" "$work/src"
chmod -R u+w "$work/src"
mkdir -p "$work/src/cmd/clipsearch-s3"
cat >"$work/src/cmd/clipsearch-s3/main.go" <<'GO'
// rclone with only the local backend and `serve s3`: the object store of clipsearch's local stack.
package main

import (
	_ "github.com/rclone/rclone/backend/local"
	"github.com/rclone/rclone/cmd"
	_ "github.com/rclone/rclone/cmd/serve/s3"
)

func main() {
	cmd.Main()
}
GO

echo "building rclone serve s3 v$VERSION"
start=$(date +%s)
(cd "$work/src" && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o "$BIN.tmp" ./cmd/clipsearch-s3)
mv "$BIN.tmp" "$BIN"
echo "built $BIN in $(( $(date +%s) - start )) s, $(du -h "$BIN" | cut -f1)"
