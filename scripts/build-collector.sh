#!/usr/bin/env bash
# Build the OpenTelemetry Collector described by collector/builder-config.yaml with the
# OpenTelemetry Collector Builder, once: the binary is cached under a directory named after
# the manifest's sha256, so a second run only prints the path. Go's own caches live under
# the same root, so a changed manifest rebuilds from cached modules and objects.
#
# stdout: ONLY the absolute path of the binary (CI does BIN="$(scripts/build-collector.sh)").
# stderr: progress. Exit status non-zero on any failure.
#
# Environment:
#   MCP_OTEL_CACHE_DIR          cache root      (default ${XDG_CACHE_HOME:-$HOME/.cache}/mcp-otel)
#   MCP_OTEL_COLLECTOR_MANIFEST builder manifest (default <repo>/collector/builder-config.yaml)
#   GO                          go executable   (default: go on PATH)
set -euo pipefail

log() { printf 'build-collector: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
manifest="${MCP_OTEL_COLLECTOR_MANIFEST:-$repo/collector/builder-config.yaml}"
[ -f "$manifest" ] || die "manifest not found: $manifest"
manifest="$(cd "$(dirname "$manifest")" && pwd)/$(basename "$manifest")"

root="${MCP_OTEL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mcp-otel}/collector"
hash="$(sha256sum "$manifest" | cut -c1-64)"
out="$root/$hash"
name="$(sed -n 's/^  name: *//p' "$manifest" | head -n1)"
version="$(sed -n 's/^  version: *//p' "$manifest" | head -n1)"
[ -n "$name" ] && [ -n "$version" ] || die "manifest lacks dist.name or dist.version: $manifest"
bin="$out/$name"

if [ -x "$bin" ]; then
    log "cached: $bin"
    printf '%s\n' "$bin"
    exit 0
fi

GO="${GO:-go}"
command -v "$GO" >/dev/null 2>&1 || die "Go is required to build the collector (https://go.dev/dl/)"

mkdir -p "$root"
# One build at a time per cache root; a waiter finds the finished binary afterwards.
exec 9>"$root/.lock"
flock 9
if [ -x "$bin" ]; then
    printf '%s\n' "$bin"
    exit 0
fi

export GOPATH="$root/go/path" GOMODCACHE="$root/go/mod" GOCACHE="$root/go/build"
export GOBIN="$root/go/bin" GOFLAGS="${GOFLAGS:-} -modcacherw"
builder="$GOBIN/builder-v$version"
start=$(date +%s)

if [ ! -x "$builder" ]; then
    log "installing go.opentelemetry.io/collector/cmd/builder@v$version"
    "$GO" install "go.opentelemetry.io/collector/cmd/builder@v$version" >&2
    mv "$GOBIN/builder" "$builder"
fi

work="$out/work"
rm -rf "$work"
mkdir -p "$work"
cd "$work"

# 1. Generate sources and go.mod. The builder then runs `go mod tidy`, which also resolves
#    the test-only imports of every component; when one of those is unavailable from the
#    module proxy (seen: contrib's otlpencodingextension@v0.165.0, a fileexporter test
#    dependency) tidy fails although the collector itself does not need it.
log "generating sources for $name $version (manifest sha256 $hash)"
if ! "$builder" --config "$manifest" --skip-compilation >&2; then
    [ -f build/go.mod ] || die "the builder failed before writing go.mod"
    log "builder's go mod tidy failed (see above); retrying tolerantly with go mod tidy -e"
fi
# 2. Resolve the modules, tolerating missing test-only dependencies; the build step below
#    fails loudly if anything the binary needs is missing.
(cd build && "$GO" mod tidy -e >&2)
# 3. Compile with the builder's own flags.
log "compiling (several minutes on 2 cores when the Go build cache is cold)"
"$builder" --config "$manifest" --skip-generate --skip-get-modules >&2
[ -x "build/$name" ] || die "the builder reported success but build/$name is missing"
"build/$name" --version >&2 || die "the built collector does not run"

mv "build/$name" "$bin.tmp"
mv "$bin.tmp" "$bin"
rm -rf "$work"
log "built $bin in $(( $(date +%s) - start ))s"
printf '%s\n' "$bin"
