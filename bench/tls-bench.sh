#!/usr/bin/env bash
# TLS termination side by side: router-gateway (a VPCIngress HTTPS listener)
# and nginx, with the same ECDSA P-256 certificate, the same backend (nginx
# on 127.0.0.1:18380 answering "ok"), one worker each, pinned to CPU 0 with
# the load generators on CPU 1.
#
#   new        openssl s_time -new: full handshakes per second (no request)
#   new+req    s_time -new -www /small: a full handshake and one request per connection
#   resumed    s_time -reuse -www /small: a resumed session and one request per connection
#   keepalive  wrk -c64 over HTTPS keep-alive: requests per second once connected
#
# s_time is single-threaded and tends to be the bottleneck of the connection
# rates, so each of those cells also gives the server's CPU time per connection.
#
# Usage: bench/tls-bench.sh [seconds per run, default 10] [TLS version flag for s_time, default -tls1_3]
# Needs: openssl, nginx, wrk, taskset; a release build (cargo build --release -p router-gateway).
set -euo pipefail

SECS=${1:-10}
VERSION=${2:--tls1_3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
GATEWAY=${GATEWAY:-$ROOT/target/release/router-gateway}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; for c in nginx backend; do nginx -p "$WORK" -c "$WORK/$c.conf" -s stop 2>/dev/null; done; rm -rf "$WORK"' EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=bench.example.com \
  -addext "subjectAltName=DNS:bench.example.com,IP:127.0.0.1" -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null

# The backend is an nginx of its own (on the load generators' CPU), so that the
# front nginx's CPU time is its TLS and proxying only, like the gateway's.
cat > "$WORK/backend.conf" <<EOF
worker_processes 1;
error_log $WORK/backend-error.log;
pid $WORK/backend.pid;
events { worker_connections 4096; }
http { access_log off; server { listen 127.0.0.1:18380; location / { return 200 "ok"; } } }
EOF
taskset -c 1 nginx -p "$WORK" -c "$WORK/backend.conf"
cat > "$WORK/nginx.conf" <<EOF
worker_processes 1;
error_log $WORK/nginx-error.log;
pid $WORK/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  upstream backend { server 127.0.0.1:18380; keepalive 64; }
  server {
    listen 127.0.0.1:18445 ssl;
    ssl_certificate $WORK/cert.pem;
    ssl_certificate_key $WORK/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;
    ssl_session_tickets on;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
EOF
taskset -c 0 nginx -p "$WORK" -c "$WORK/nginx.conf"

indent() { sed 's/^/    /' "$1"; }
mkdir -p "$WORK/config"
cp "$ROOT/bench/router-gateway.yaml" "$WORK/config/base.yaml"
cat > "$WORK/config/tls.yaml" <<EOF
apiVersion: v1
kind: Secret
metadata: {name: bench-cert, namespace: default}
type: kubernetes.io/tls
stringData:
  tls.crt: |
$(indent "$WORK/cert.pem")
  tls.key: |
$(indent "$WORK/key.pem")
---
apiVersion: router.datum.net/v1alpha1
kind: VPCIngress
metadata: {name: bench, namespace: default}
spec:
  vpcRef: {name: bench}
  listeners: [{name: https, port: 18444, protocol: HTTPS, tls: {certificateRefs: [{name: bench-cert}]}}]
---
apiVersion: router.datum.net/v1alpha1
kind: VPCRoute
metadata: {name: all-external, namespace: default}
spec:
  ingressRefs: [{name: bench}]
  destinations: [{vpcServiceRef: {name: backend}}]
EOF
taskset -c 0 "$GATEWAY" --config "$WORK/config" --listen 127.0.0.1:18081 --admin-addr 127.0.0.1:19091 \
  --ingress-bind 127.0.0.1 --worker-threads 1 --access-log off 2> "$WORK/gateway.log" &
for _ in $(seq 100); do curl -sfk https://127.0.0.1:18444/small > /dev/null && break; sleep 0.1; done
curl -sfk https://127.0.0.1:18444/small > /dev/null || { cat "$WORK/gateway.log"; exit 1; }

# CPU time (user+system, clock ticks) of the server's processes: the gateway, or nginx's master and worker.
GATEWAY_PID=$!
NGINX_PIDS="$(cat "$WORK/nginx.pid") $(pgrep -P "$(cat "$WORK/nginx.pid")" | tr '\n' ' ')"
ticks() { for p in $1; do awk '{ print $14 + $15 }' "/proc/$p/stat"; done | awk '{ t += $1 } END { print t }'; }
HZ=$(getconf CLK_TCK)

# "N connections in T real seconds" → "connections/s (server CPU µs per connection)".
s_time() {
  local before out
  before=$(ticks "$PIDS")
  out=$(taskset -c 1 openssl s_time -connect "$1" "$VERSION" -time "$SECS" "${@:2}" 2>/dev/null | grep 'connections in .* real seconds' || true)
  [ -n "$out" ] || { printf "n/a"; return; }
  echo "$out" | awk -v cpu=$(( $(ticks "$PIDS") - before )) -v hz="$HZ" '{ printf "%.0f (%.0fus)", $1 / $4, cpu * 1e6 / hz / $1 }'
}
wrk_rps() {
  taskset -c 1 wrk -t1 -c64 -d"${SECS}s" "https://$1/small" 2>/dev/null | awk '/Requests\/sec/ { printf "%.0f", $2 }'
}

printf "%-8s %18s %18s %18s %16s\n" target "new/s" "new+req/s" "resumed+req/s" "keepalive req/s"
for target in gateway:127.0.0.1:18444 nginx:127.0.0.1:18445; do
  name=${target%%:*}; addr=${target#*:}
  if [ "$name" = gateway ]; then PIDS=$GATEWAY_PID; else PIDS=$NGINX_PIDS; fi
  printf "%-8s %18s %18s %18s %16s\n" "$name" "$(s_time "$addr" -new)" "$(s_time "$addr" -new -www /small)" \
    "$(s_time "$addr" -reuse -www /small)" "$(wrk_rps "$addr")"
done
echo "($(nproc) CPUs; $SECS s per cell; s_time $VERSION; ECDSA P-256; one worker each;"
echo " (Nus) = server CPU time per connection, user+system, from /proc at ${HZ} Hz; the backend runs apart)"
