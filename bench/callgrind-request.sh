#!/usr/bin/env bash
# Instructions the gateway spends per proxied request, counted by callgrind
# (stable on a shared machine, unlike RPS): the gateway under valgrind with
# --access-log off and one worker, `wrk -t1 -c8 -d10s GET /small` through it to
# an nginx backend on 127.0.0.1:18380, minus the instructions of the same
# gateway started and stopped with no load (its startup: schema compilation,
# CRD generation).
#
# Usage: bench/callgrind-request.sh [gateway binary, default target/release/router-gateway]
#        REQ_PATH=64k measures GET /64k (a 64 KiB file) instead of GET /small (2 bytes)
#        KEEP=DIR keeps the two callgrind outputs in DIR (idle.out, loaded.out) for
#        callgrind_annotate, e.g. --inclusive=yes loaded.out | head -60
#        ACCESS_LOG=json|common measures the gateway with that access log (default off),
#        its writer thread included
#        H2=1 drives the gateway with h2c (prior knowledge) instead: h2load -c4 -m16,
#        proxy-bench's h2c-c64 shape (the upstream side stays HTTP/1.1)
#        CONNS=N drives it with wrk -cN instead of -c8 (per-connection costs show at -c256)
#        PEER=nginx measures nginx as the proxy instead (one process, no master, upstream
#        keep-alive, access_log off): the reference the gateway's count is held against
#        PEER=haproxy measures HAProxy instead (one thread, http-reuse always, proxy-bench's
#        configuration): the h2c reference, since HAProxy is the faster peer there
# Needs: valgrind, nginx, wrk, curl (h2load for H2=1, haproxy for PEER=haproxy);
# cargo build --release -p router-gateway
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
GATEWAY=${1:-$ROOT/target/release/router-gateway}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; nginx -p "$WORK" -c "$WORK/backend.conf" -s stop 2>/dev/null || true; rm -rf "$WORK"' EXIT

cat > "$WORK/backend.conf" <<EOF
worker_processes 1;
error_log $WORK/backend-error.log;
pid $WORK/backend.pid;
events { worker_connections 4096; }
http {
  access_log off;
  server {
    listen 127.0.0.1:18380; keepalive_requests 1000000;
    location = /small { return 200 "ok"; }
    location = /64k { root $WORK/www; }
  }
}
EOF
mkdir -p "$WORK/www" && head -c 65536 /dev/zero | tr '\0' x > "$WORK/www/64k"
chmod 755 "$WORK" "$WORK/www" && chmod 644 "$WORK/www/64k"   # nginx's workers run unprivileged
nginx -p "$WORK" -c "$WORK/backend.conf"

cat > "$WORK/peer.conf" <<EOF
worker_processes 1;
master_process off;
daemon off;
error_log $WORK/peer-error.log;
pid $WORK/peer.pid;
events { worker_connections 4096; }
http {
  access_log off;
  upstream backend { server 127.0.0.1:18380; keepalive 128; }
  server {
    listen 127.0.0.1:18555; keepalive_requests 1000000;
    location = /healthz { return 200; }
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
EOF

# proto h2: HAProxy takes h2c with prior knowledge only on a bind line that says so.
cat > "$WORK/haproxy.cfg" <<EOF
global
  nbthread 1
defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 5s
  timeout client 300s
  timeout server 300s
frontend fe
  bind 127.0.0.1:18555 ${H2:+proto h2}
  http-request return status 200 if { path /healthz }
  default_backend be
backend be
  server s1 127.0.0.1:18380
EOF

# run NAME LOAD(0|1): prints the callgrind total
run() {
  local health=http://127.0.0.1:19555/healthz probe=()
  if [ "${PEER:-}" = nginx ]; then
    health=http://127.0.0.1:18555/healthz
    valgrind --tool=callgrind --callgrind-out-file="$WORK/$1.out" nginx -p "$WORK" -c "$WORK/peer.conf" >/dev/null 2>"$WORK/$1.log" &
  elif [ "${PEER:-}" = haproxy ]; then
    health=http://127.0.0.1:18555/healthz
    if [ -n "${H2:-}" ]; then probe=(--http2-prior-knowledge); fi
    valgrind --tool=callgrind --callgrind-out-file="$WORK/$1.out" haproxy -db -f "$WORK/haproxy.cfg" >/dev/null 2>"$WORK/$1.log" &
  else
    valgrind --tool=callgrind --callgrind-out-file="$WORK/$1.out" "$GATEWAY" --config "$ROOT/bench/router-gateway.yaml" \
      --listen 127.0.0.1:18555 --admin-addr 127.0.0.1:19555 --access-log "${ACCESS_LOG:-off}" --worker-threads 1 >/dev/null 2>"$WORK/$1.log" &
  fi
  local pid=$!
  for _ in $(seq 100); do curl -sf "${probe[@]}" -o /dev/null "$health" && break; sleep 0.5; done
  if [ "$2" = 1 ] && [ -n "${H2:-}" ]; then
    h2load -t1 -c4 -m16 -D 10 -H "Host: bench" http://127.0.0.1:18555/${REQ_PATH:-small} >"$WORK/h2load.txt"
  elif [ "$2" = 1 ]; then
    wrk -t1 -c"${CONNS:-8}" -d10s -H "Host: bench" http://127.0.0.1:18555/${REQ_PATH:-small} >"$WORK/wrk.txt"
  else
    sleep 10
  fi
  # nginx stops gracefully on QUIT, HAProxy on USR1, the gateway on INT.
  case "${PEER:-}" in nginx) kill -QUIT $pid ;; haproxy) kill -USR1 $pid ;; *) kill -INT $pid ;; esac
  wait $pid || true
  grep -o 'Collected : [0-9]*' "$WORK/$1.log" | awk '{print $3}'
}

idle=$(run idle 0)
loaded=$(run loaded 1)
if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$WORK/idle.out" "$WORK/loaded.out" "$KEEP/"; fi
if [ -n "${H2:-}" ]; then
  if ! grep -q "status codes: [0-9]* 2xx, 0 3xx, 0 4xx, 0 5xx" "$WORK/h2load.txt"; then
    echo "the gateway answered non-2xx or not at all:" >&2; cat "$WORK/h2load.txt" >&2; exit 1
  fi
  requests=$(awk '/^requests:/ {print $8}' "$WORK/h2load.txt")
else
  if grep -q "Non-2xx" "$WORK/wrk.txt"; then echo "the gateway answered non-2xx:" >&2; cat "$WORK/wrk.txt" >&2; exit 1; fi
  requests=$(awk '/requests in/ {print $1}' "$WORK/wrk.txt")
fi
echo "startup instructions: $idle"
echo "requests: $requests"
echo "instructions per request: $(( (loaded - idle) / requests ))"
