#!/usr/bin/env bash
# A profile-guided (PGO) release build of router-gateway, the build the
# container image ships (Dockerfile.gateway): the gateway is built with
# instrumentation, trained on loopback traffic, and built again with LLVM
# told which branches and calls that traffic took, so the request path is
# laid out and inlined for them (docs/performance.md, "Profile-guided build":
# 13–16% fewer instructions per request than `cargo build --release`).
#
# The training is the README's standalone mode (examples/standalone with its
# demo backends on 127.0.0.11 and 127.0.0.12) driven by h2load for about
# half a minute: HTTP/1.1 at 64 and 256 connections, h2c, a route's header
# match, unrouted paths, with the default JSON access log and without it.
# Nothing leaves 127.0.0.0/8 and every load step is bounded by a request count.
#
# Usage: bench/pgo-build.sh [OUT]  (default target/pgo/router-gateway)
# Needs: the Rust toolchain (rustup adds its llvm-tools component for
# llvm-profdata if it is missing), h2load (Debian: nghttp2-client), curl.
# The two builds use their own target directories (target/pgo/generate and
# target/pgo/use), so neither invalidates the other or `target/release`.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$ROOT/target/pgo/router-gateway}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}/pgo
HOST=$(rustc -vV | sed -n 's/^host: //p')
PROFDATA=$(rustc --print sysroot)/lib/rustlib/$HOST/bin/llvm-profdata
PORT=${PGO_PORT:-18655}
ADMIN=${PGO_ADMIN_PORT:-19655}

for tool in h2load curl; do
  command -v "$tool" >/dev/null || { echo "pgo-build: needs $tool (Debian: apt-get install nghttp2-client curl)" >&2; exit 1; }
done
[ -x "$PROFDATA" ] || rustup component add llvm-tools
[ -x "$PROFDATA" ] || { echo "pgo-build: no llvm-profdata at $PROFDATA" >&2; exit 1; }

WORK=$(mktemp -d)
gateway_pid=
trap '[ -n "$gateway_pid" ] && kill "$gateway_pid" 2>/dev/null; rm -rf "$WORK"' EXIT

# --target, even though it is the host's: RUSTFLAGS then reach the gateway's
# code and its dependencies but not build scripts and proc macros, which would
# otherwise be instrumented too and write profiles of their own while building.
build() {
  local dir=$1 flags=$2
  RUSTFLAGS="${RUSTFLAGS:-} $flags" cargo build --release --locked -p router-gateway \
    --manifest-path "$ROOT/Cargo.toml" --target "$HOST" --target-dir "$TARGET_DIR/$dir"
}

echo "== 1/3 instrumented build"
build generate "-Cprofile-generate=$WORK/raw"

# train ACCESS_LOG REQUESTS: the gateway on the standalone example, then loads
# bounded by REQUESTS (the smaller steps by a fraction of it).
train() {
  LLVM_PROFILE_FILE="$WORK/raw/gateway-%p.profraw" \
    "$TARGET_DIR/generate/$HOST/release/router-gateway" --config "$ROOT/examples/standalone" --demo-backends \
    --listen "127.0.0.1:$PORT" --admin-addr "127.0.0.1:$ADMIN" --access-log "$1" --worker-threads 1 \
    >"$WORK/gateway-$1.log" 2>&1 &
  gateway_pid=$!
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$ADMIN/healthz" && break; sleep 0.2; done
  curl -sf -o /dev/null "http://127.0.0.1:$PORT/api/hello" || { echo "pgo-build: the instrumented gateway does not answer:" >&2; cat "$WORK/gateway-$1.log" >&2; exit 1; }
  local url=http://127.0.0.1:$PORT
  h2load --h1 -c64 -n "$2" "$url/api/hello" | grep -E '^requests:'
  h2load --h1 -c256 -n "$(( $2 / 2 ))" "$url/api/hello" | grep -E '^requests:'
  h2load -c4 -m16 -n "$2" "$url/api/hello" | grep -E '^requests:'
  h2load --h1 -c16 -n "$(( $2 / 4 ))" -H 'x-canary: true' "$url/api/hello" | grep -E '^requests:'
  h2load --h1 -c16 -n "$(( $2 / 20 ))" "$url/other" | grep -E '^requests:'
  curl -s -o /dev/null "http://127.0.0.1:$ADMIN/metrics"
  kill -INT "$gateway_pid"
  wait "$gateway_pid"
  gateway_pid=
}

echo "== 2/3 training (loopback only)"
train off 200000
train json 50000

echo "== 3/3 optimised build"
"$PROFDATA" merge -o "$WORK/gateway.profdata" "$WORK"/raw/gateway-*.profraw
build use "-Cprofile-use=$WORK/gateway.profdata"
install -D "$TARGET_DIR/use/$HOST/release/router-gateway" "$OUT"
echo "pgo-build: $OUT"
