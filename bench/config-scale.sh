#!/usr/bin/env bash
# How the gateway copes with large standalone configurations: for N routes over
# N/10 services (each service its own VPCAttachment; routes spread over N/10
# hostnames, ten path prefixes per hostname), in one file and split over a
# directory of 10 files:
#
#   load_s      time from start until the gateway answers the last route
#   rss_mib     the gateway's RSS once it serves the configuration (idle)
#   reload_s    time from replacing the configuration (one route's path
#               changed; written aside, then renamed into place, as editors
#               and kubectl cp do) until the new path answers
#   failed      non-2xx answers (and socket errors) a steady wrk load (-c8) on
#               the last route saw during the 4 s around the reload, of `served`
#
# N = 0 is one service and no route: load_s is until /readyz answers, and
# there is no reload to measure.
#
# Usage: bench/config-scale.sh [N ...]       (default: 0 100 1000 10000)
# Needs: nginx, wrk, curl, python3; cargo build --release -p router-gateway
set -euo pipefail

SIZES=${*:-0 100 1000 10000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
GATEWAY=${GATEWAY:-$ROOT/target/release/router-gateway}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; nginx -p "$WORK" -c "$WORK/origin.conf" -s stop 2>/dev/null; rm -rf "$WORK"' EXIT

cat > "$WORK/origin.conf" <<EOF
worker_processes 1;
error_log $WORK/origin-error.log;
pid $WORK/origin.pid;
events { worker_connections 4096; }
http {
  access_log off;
  server { listen 127.0.0.1:18390 reuseport; location / { return 200 "ok"; } }
}
EOF
nginx -p "$WORK" -c "$WORK/origin.conf"

# gen N OUT CHANGED: N routes over max(N/10,1) services; with CHANGED=1 route 0's
# first prefix becomes /changed. OUT ending in / writes 10 files there.
gen() {
  python3 - "$@" <<'PY'
import sys, os
n, out, changed = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
services = max(n // 10, 1)
docs = ["""apiVersion: galactic.datumapis.com/v1alpha
kind: VPC
metadata: {name: bench}
spec: {networks: [127.0.0.0/8]}
status: {ready: true, identifier: 0a1b2c3d4e5f}"""]
for s in range(services):
    docs.append(f"""apiVersion: galactic.datumapis.com/v1alpha
kind: VPCAttachment
metadata: {{name: a{s}}}
spec: {{vpc: {{name: bench}}, interface: {{name: galactic0, addresses: [127.0.0.1/8]}}}}
status: {{ready: true, identifier: "{s + 1:04x}"}}
---
apiVersion: router.datum.net/v1alpha1
kind: VPCService
metadata: {{name: s{s}}}
spec: {{vpcAttachmentRef: {{name: a{s}}}, port: 18390, protocol: HTTP}}""")
for r in range(n):
    s = r % services
    path = "/changed" if changed and r == 0 else f"/p{r}"
    docs.append(f"""apiVersion: router.datum.net/v1alpha1
kind: VPCRoute
metadata: {{name: r{r}}}
spec:
  hostnames: [h{s}.bench]
  matches: [{{pathPrefix: {path}}}]
  destinations: [{{vpcServiceRef: {{name: s{s}}}}}]""")
if out.endswith("/"):
    os.makedirs(out, exist_ok=True)
    for i in range(10):
        tmp = os.path.join(out, f".part{i}.tmp")
        open(tmp, "w").write("\n---\n".join(docs[i::10]) + "\n")
        os.replace(tmp, os.path.join(out, f"part{i}.yaml"))
else:
    tmp = out + ".tmp"
    open(tmp, "w").write("\n---\n".join(docs) + "\n")
    os.replace(tmp, out)
PY
}

now() { date +%s.%N; }
cat > "$WORK/count.lua" <<'LUA'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("non2xx=%d total=%d\n", e.status + e.connect + e.read + e.write + e.timeout, summary.requests))
end
LUA

wait_for() { # URL HOST: until 200, max 120 s
  for _ in $(seq 1200); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $2" "$1")" = 200 ] && return 0
    sleep 0.1
  done
  echo "no answer from $1 (Host: $2); the gateway said:" >&2
  tail -5 "$WORK/gw.log" >&2
  return 1
}

printf '%-8s %-6s %8s %8s %9s %7s %8s\n' routes layout load_s rss_mib reload_s failed served
for n in $SIZES; do
  for layout in file dir; do
    cfg="$WORK/cfg-$n.yaml"; [ $layout = dir ] && cfg="$WORK/cfg-$n/"
    gen "$n" "$cfg" 0
    last=$(( n > 0 ? n - 1 : 0 )); services=$(( n / 10 > 0 ? n / 10 : 1 ))
    start=$(now)
    "$GATEWAY" --config "${cfg%/}" --listen 127.0.0.1:18391 --admin-addr 127.0.0.1:18392 --access-log off --worker-threads 1 >"$WORK/gw.log" 2>&1 &
    gw=$!
    if [ "$n" = 0 ]; then
      wait_for "http://127.0.0.1:18392/readyz" x
    else
      wait_for "http://127.0.0.1:18391/p$last" "h$(( last % services )).bench"
    fi
    load=$(echo "$(now) - $start" | bc)
    sleep 1
    rss=$(awk '/VmRSS/ {printf "%.1f", $2/1024}' /proc/$gw/status)
    reload=- failed=- total=-
    if [ "$n" -gt 1 ]; then
      wrk -t1 -c8 -d4s -H "Host: h$(( last % services )).bench" -s "$WORK/count.lua" "http://127.0.0.1:18391/p$last" >"$WORK/wrk.txt" 2>&1 &
      wrkpid=$!
      next="$WORK/next-$n"; [ $layout = dir ] && next="$WORK/next-$n/"
      gen "$n" "$next" 1
      sleep 1
      start=$(now)
      if [ $layout = dir ]; then for f in "$next"*; do mv "$f" "$cfg"; done; else mv "$next" "$cfg"; fi
      wait_for "http://127.0.0.1:18391/changed" "h0.bench"
      reload=$(printf '%.2f' "$(echo "$(now) - $start" | bc)")
      wait $wrkpid || true
      failed=$(grep -o 'non2xx=[0-9]*' "$WORK/wrk.txt" | cut -d= -f2); total=$(grep -o 'total=[0-9]*' "$WORK/wrk.txt" | cut -d= -f2)
    fi
    kill -INT $gw; wait $gw 2>/dev/null || true
    printf '%-8s %-6s %8.2f %8s %9s %7s %8s\n' "$n" "$layout" "$load" "$rss" "$reload" "${failed:-?}" "${total:-?}"
  done
done
