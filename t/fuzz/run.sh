#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) and runs each for N
# seconds (default 20) from its seed corpus in t/fuzz/corpus/<name>.  Fails
# on the first crash, leak, timeout or broken invariant; the input that did
# it is left in build/fuzz/artifacts/.
#   t/fuzz/run.sh [seconds] [target...]
# New inputs found during a run go to build/fuzz/corpus/<name> (not to the
# repository); copy the interesting ones to t/fuzz/corpus/<name> by hand
# (minimise first: <target> -merge=1 t/fuzz/corpus/<name> build/fuzz/corpus/<name>).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
SECONDS_PER_TARGET="${1:-20}"
shift || true
BUILD="${PUBSUB_FUZZ_BUILD:-build/fuzz}"

if ! command -v clang++ >/dev/null 2>&1; then
    echo "fuzz: clang++ not found (apt-get install clang libclang-rt-14-dev)" >&2
    exit 1
fi

echo "== build: fuzz targets (clang, libFuzzer + ASan + UBSan)"
cmake -S . -B "$BUILD" -DCMAKE_CXX_COMPILER=clang++ -DPUBSUB_FUZZ=ON -DPUBSUB_TESTS=OFF \
    -DPUBSUB_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j"${JOBS:-2}" >/dev/null

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    targets=()
    for f in t/fuzz/*_fuzz.cpp; do
        targets+=("$(basename "$f" .cpp)")
    done
fi

mkdir -p "$BUILD/artifacts"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:symbolize=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
status=0
for t in "${targets[@]}"; do
    name="${t%_fuzz}"
    t="${name}_fuzz"
    seeds="t/fuzz/corpus/$name"
    work="$BUILD/corpus/$name"
    mkdir -p "$work"
    log="$BUILD/$t.log"
    printf '== fuzz %-14s %ss ... ' "$name" "$SECONDS_PER_TARGET"
    if "$BUILD/$t" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=1024 \
        -max_len=8192 -print_final_stats=1 -artifact_prefix="$BUILD/artifacts/$name-" \
        "$work" "$seeds" >"$log" 2>&1; then
        runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)"
        cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)"
        echo "ok (${runs:-?} runs, ${cov:-cov ?})"
    else
        echo "FAILED (log: $log)"
        grep -E 'ERROR|invariant|SUMMARY|Test unit written' "$log" | head -5 || true
        status=1
    fi
done
exit "$status"
