#!/usr/bin/env bash
# What the tunnel costs, measured in one run with one load generator:
#
#   small-direct   wrk -c64 GET /small: router-gateway -> origin
#   small-tunnel   wrk -c64 GET /small: router-gateway -> tunnel-gateway serve -> QUIC -> connect -> origin
#   copy-direct    one 256 MiB download: curl -> origin
#   copy-tunnel    one 256 MiB download: curl -> tunnel-gateway serve -> QUIC -> connect -> origin
#
# The origin is nginx ("ok" on /small, a 256 MiB file on /big). router-gateway,
# both tunnel-gateway processes and nginx share CPU 1; wrk and curl run on CPU 0.
# Everything listens on 127.0.0.0/8; relays are off, so nothing leaves the machine.
#
# Usage: bench/tunnel-bench.sh [seconds per wrk run, default 10] [runs, default 3]
# Needs: nginx, wrk, curl, taskset; release builds:
#   cargo build --release -p router-gateway -p tunnel-gateway
set -euo pipefail

SECS=${1:-10}
RUNS=${2:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
GATEWAY=${GATEWAY:-$ROOT/target/release/router-gateway}
TUNNEL=${TUNNEL:-$ROOT/target/release/tunnel-gateway}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; nginx -p "$WORK" -c "$WORK/origin.conf" -s stop 2>/dev/null; rm -rf "$WORK"' EXIT

chmod 755 "$WORK"
head -c $((256 * 1024 * 1024)) /dev/urandom > "$WORK/big"
chmod 644 "$WORK/big"
cat > "$WORK/origin.conf" <<EOF
worker_processes 1;
error_log $WORK/origin-error.log;
pid $WORK/origin.pid;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  server {
    listen 127.0.0.1:18380;
    location = /small { return 200 "ok"; }
    location = /big { root $WORK; try_files /big =404; }
  }
}
EOF
taskset -c 1 nginx -p "$WORK" -c "$WORK/origin.conf"

GW_ID=$("$TUNNEL" id --secret-key-file "$WORK/gateway.key")
C_ID=$("$TUNNEL" id --secret-key-file "$WORK/connector.key")
mkdir "$WORK/config"
cat > "$WORK/config/bench.yaml" <<EOF
apiVersion: galactic.datumapis.com/v1alpha
kind: VPC
metadata: {name: bench}
spec: {networks: [127.0.0.0/8]}
status: {ready: true, identifier: 0a1b2c3d4e5f}
---
apiVersion: galactic.datumapis.com/v1alpha
kind: VPCAttachment
metadata: {name: origin, labels: {app: origin}}
spec: {vpc: {name: bench}, interface: {name: galactic0, addresses: [127.0.0.1/8]}}
status: {ready: true, identifier: 1f2e}
---
apiVersion: galactic.datumapis.com/v1alpha
kind: VPCAttachment
metadata: {name: serve-0, labels: {app: tunnel}}
spec: {vpc: {name: bench}, interface: {name: galactic0, addresses: [127.0.0.31/8]}}
status: {ready: true, identifier: 1f2f}
---
apiVersion: router.datum.net/v1alpha1
kind: VPCService
metadata: {name: origin}
spec: {vpcAttachmentSelector: {matchLabels: {app: origin}}, port: 18380}
---
apiVersion: router.datum.net/v1alpha1
kind: VPCService
metadata: {name: tunneled}
spec: {vpcAttachmentSelector: {matchLabels: {app: tunnel}}, port: 18390}
---
apiVersion: router.datum.net/v1alpha1
kind: TunnelBinding
metadata: {name: tunneled}
spec:
  vpcServiceRef: {name: tunneled}
  target: {host: 127.0.0.1, port: 18380}
  connectors: [{endpointId: "$C_ID", addresses: ["127.0.0.32:18395"]}]
---
apiVersion: router.datum.net/v1alpha1
kind: VPCRoute
metadata: {name: direct}
spec: {hostnames: [direct.bench], destinations: [{vpcServiceRef: {name: origin}}]}
---
apiVersion: router.datum.net/v1alpha1
kind: VPCRoute
metadata: {name: tunnel}
spec: {hostnames: [tunnel.bench], destinations: [{vpcServiceRef: {name: tunneled}}]}
EOF

export TOKIO_WORKER_THREADS=1
taskset -c 1 "$TUNNEL" connect --secret-key-file "$WORK/connector.key" --bind 127.0.0.32:18395 \
  --allow-gateway "$GW_ID" --target 127.0.0.1:18380 --admin-addr 127.0.0.32:19090 2>"$WORK/connect.log" &
taskset -c 1 "$TUNNEL" serve --config "$WORK/config" --secret-key-file "$WORK/gateway.key" --bind 127.0.0.31:0 \
  --listen-address 127.0.0.31 --admin-addr 127.0.0.31:19090 2>"$WORK/serve.log" &
taskset -c 1 "$GATEWAY" --config "$WORK/config" --listen 127.0.0.1:18080 --admin-addr 127.0.0.1:19091 --access-log off 2>"$WORK/gateway.log" &

for _ in $(seq 100); do
  if curl -sf -H 'host: tunnel.bench' http://127.0.0.1:18080/small >/dev/null 2>&1; then break; fi
  sleep 0.2
done
for host in direct tunnel; do
  curl -sf -H "host: $host.bench" http://127.0.0.1:18080/small >/dev/null || { curl -si -H "host: $host.bench" http://127.0.0.1:18080/small; cat "$WORK"/*.log; exit 1; }
done

# wrk's Lua hook prints requests/s and p99 (ms) from its exact histogram.
cat > "$WORK/report.lua" <<'EOF'
done = function(summary, latency, requests)
  io.write(string.format("RESULT %.0f %.3f %d\n", summary.requests / (summary.duration / 1e6), latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout + summary.errors.status))
  io.write(string.format("ERRORS connect=%d read=%d write=%d timeout=%d status=%d\n", summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout, summary.errors.status))
end
EOF

echo "# tunnel-bench: ${RUNS} runs of ${SECS} s, wrk -t1 -c64 on CPU 0, everything else on CPU 1"
printf "%-14s %10s %10s %8s\n" scenario "RPS" "p99 ms" errors
for host in direct tunnel; do
  for run in $(seq "$RUNS"); do
    taskset -c 0 wrk -t1 -c64 -d2s -H "Host: $host.bench" http://127.0.0.1:18080/small >/dev/null
    read -r rps p99 errors < <(taskset -c 0 wrk -t1 -c64 -d"${SECS}s" -H "Host: $host.bench" -s "$WORK/report.lua" http://127.0.0.1:18080/small | tee -a "$WORK/wrk.out" | awk '/^RESULT/ {print $2, $3, $4}')
    printf "%-14s %10s %10s %8s\n" "small-$host" "$rps" "$p99" "$errors"
  done
done

grep ERRORS "$WORK/wrk.out" >&2 || true
for run in $(seq "$RUNS"); do
  for target in direct:http://127.0.0.1:18380/big tunnel:http://127.0.0.31:18390/big; do
    name=${target%%:*}
    url=${target#*:}
    speed=$(taskset -c 0 curl -s -o /dev/null -w '%{speed_download} %{size_download}' "$url")
    read -r bps size <<<"$speed"
    [ "$size" = $((256 * 1024 * 1024)) ] || { echo "copy-$name: got $size bytes"; exit 1; }
    awk -v n="copy-$name" -v b="$bps" 'BEGIN { printf "%-14s %10.0f MiB/s\n", n, b / 1048576 }'
  done
done
