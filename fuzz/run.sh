#!/usr/bin/env bash
# Runs each fuzz target for a bounded time (FUZZ_SECONDS each, default 60),
# starting from the checked-in corpus under fuzz/corpus/<target>. Inputs the
# fuzzer finds go to fuzz/work/<target> (not checked in); MERGE=1 folds the
# ones that add coverage back into the checked-in corpus, minimised. A crash
# leaves its input in fuzz/artifacts/<target>/ and stops the run: turn it
# into a regression test where the code it broke is tested, then fix it.
#
#   fuzz/run.sh                          # every target, 60 s each
#   FUZZ_SECONDS=3600 fuzz/run.sh route_table
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-60}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(config_load route_table traceparent egress_policy http1_requests http2_connection)
for target in "${targets[@]}"; do
    mkdir -p "fuzz/work/$target"
    echo "== $target: ${seconds}s"
    cargo +nightly fuzz run "$target" "fuzz/work/$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1
    if [ "${MERGE:-0}" = 1 ]; then
        cargo +nightly fuzz run "$target" "fuzz/corpus/$target" "fuzz/work/$target" -- -merge=1
    fi
done
