#!/usr/bin/env bash
# The control plane at scale without a real cluster: bench/fake-apiserver.py
# stands in for the API server (a registry with watches, answering at once),
# and the real binaries run against it as they would in a cluster: two
# router-controller replicas, service-discovery and a router-gateway in
# cluster mode. For each fleet size it prints how long until every VPCRoute
# is Accepted and Programmed, the controller's status writes while converging
# (per object) and in 30 idle seconds after, each component's RSS, and the
# gateway's rebuild time (min/median/max) after each of ten changes of one route.
#
# This measures the components, not an API server: convergence against a real
# one is slower (etcd, admission, watch cache). tests/tests/e2e_scale.rs on a
# real cluster is the measurement of record.
#
# Usage: bench/cluster-scale.sh [SERVICES...]   (default: 0 250 2500, i.e. 0, 1,000 and 10,000 routes)
# Needs: python3, curl; cargo build --release -p router-controller -p service-discovery -p router-gateway
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/target/release}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
API=18600
cat > "$WORK/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: fake, cluster: {server: "http://127.0.0.1:$API"}}]
users: [{name: fake, user: {token: fake}}]
contexts: [{name: fake, context: {cluster: fake, user: fake, namespace: default}}]
current-context: fake
EOF

rss() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
# The sum of the series of metric $2 on admin port $1 whose labels contain $3.
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" -v l="${3:-}" 'index($0, m) == 1 && index($0, l) {s += $NF} END {print s + 0}'; }
stat() { curl -s "http://127.0.0.1:$API/fake/stats" | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

printf '%-8s %-8s %-11s %-14s %-10s %-11s %-13s %-13s %-11s %-11s %-s\n' \
  services routes converge_s writes/object idle_30s rss_leader rss_standby rss_discovery rss_gateway gw_routes gw_rebuild_ms
for services in "${@:-0 250 2500}"; do
  python3 "$ROOT/bench/fake-apiserver.py" $API "$services" 4 >"$WORK/fake.log" 2>&1 &
  fake=$!
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$API/version" && break; sleep 0.1; done
  start=$(date +%s.%N)
  common=(--kubeconfig "$WORK/kubeconfig")
  POD_NAME=controller-0 "$BIN/router-controller" "${common[@]}" --admin-addr 127.0.0.1:18610 >"$WORK/c0.log" 2>&1 &
  c0=$!
  POD_NAME=controller-1 "$BIN/router-controller" "${common[@]}" --admin-addr 127.0.0.1:18611 >"$WORK/c1.log" 2>&1 &
  c1=$!
  POD_NAME=discovery-0 "$BIN/service-discovery" "${common[@]}" --admin-addr 127.0.0.1:18612 >"$WORK/d.log" 2>&1 &
  d=$!
  "$BIN/router-gateway" "${common[@]}" --listen 127.0.0.1:18620 --admin-addr 127.0.0.1:18621 --access-log off >"$WORK/g.log" 2>&1 &
  g=$!
  routes=$((services * 4))
  converged=timeout
  for _ in $(seq 1200); do
    if [ "$(stat routes_ready)" = "$routes" ] && [ "$(metric 18612 datum_router_discovery_status_writes_total)" != 0 -o "$services" = 0 ]; then
      converged=$(echo "$(date +%s.%N) - $start" | bc)
      break
    fi
    sleep 0.5
  done
  sleep 5
  leader=18610 standby=$c1 leader_pid=$c0
  if [ "$(metric 18611 datum_router_controller_leader)" = 1 ]; then leader=18611 standby=$c0 leader_pid=$c1; fi
  written=$(metric $leader datum_router_controller_status_writes_total 'result="applied"')
  sleep 30
  idle=$(( $(metric $leader datum_router_controller_status_writes_total 'result="applied"') - written ))
  # One route changed at a time (a PATCH gives it a new resourceVersion), ten times: the gateway's
  # rebuild after one change, from its log's ms= field (min/median/max).
  rebuild=-
  if [ "$services" -gt 0 ]; then
    builds_before=$(grep -c 'configuration from the cluster' "$WORK/g.log" || true)
    for _ in $(seq 10); do
      curl -s -o /dev/null -X PATCH -H 'Content-Type: application/merge-patch+json' -d '{"metadata":{"labels":{"touched":"yes"}}}' \
        "http://127.0.0.1:$API/apis/router.datum.net/v1alpha1/namespaces/default/vpcroutes/route-0-0"
      sleep 0.6
    done
    sleep 1
    rebuild=$(grep 'configuration from the cluster' "$WORK/g.log" | tail -n +$((builds_before + 1)) | sed 's/\x1b\[[0-9;]*m//g' | sed -n 's/.*ms=\([0-9]*\).*/\1/p' | sort -n \
      | awk '{v[NR] = $1} END {if (NR) printf "%d/%d/%d", v[1], v[int((NR + 1) / 2)], v[NR]; else printf "-"}')
  fi
  objects=$((services + routes))
  per_object=$( [ $objects -gt 0 ] && echo "scale=3; $written / $objects" | bc || echo -)
  printf '%-8s %-8s %-11.1f %-14s %-10s %-11s %-13s %-13s %-11s %-11s %-s\n' "$services" "$routes" "$converged" "$per_object" "$idle" \
    "$(rss $leader_pid)" "$(rss $standby)" "$(rss $d)" "$(rss $g)" "$(metric 18621 "datum_router_routes ")" "$rebuild"
  kill $c0 $c1 $d $g $fake 2>/dev/null || true
  wait $c0 $c1 $d $g $fake 2>/dev/null || true
done
