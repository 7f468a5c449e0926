#!/usr/bin/env bash
# Builds everything and runs every test: the C++ unit tests (plain and under
# AddressSanitizer + UBSan), a short libFuzzer pass over the core parsers
# (t/fuzz), the Debian package (scripts/package.sh) and the integration
# tests in t/ against real nginx, Redis and Chromium processes that the
# tests start on 127.0.0.1 (t/package.test.js installs the package into a
# scratch root).
#   scripts/test.sh                 everything
#   scripts/test.sh t/foo.test.js   unit tests + only these integration files
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
JOBS="${JOBS:-$(nproc)}"

bash scripts/deps.sh --test

# The core's formatting is part of the build (.clang-format; the nginx glue
# follows nginx's own style and is not reformatted).
echo "== clang-format: core"
find src/core include -name '*.cpp' -o -name '*.h' | sort \
    | xargs clang-format --dry-run -Werror

echo "== build: module"
bash scripts/build.sh

echo "== build: unit tests"
cmake -S . -B build/unit -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPUBSUB_BENCH=OFF >/dev/null
cmake --build build/unit -j"$JOBS"
echo "== build: unit tests with ASan + UBSan"
cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=Debug -DPUBSUB_SANITIZE=ON -DPUBSUB_BENCH=OFF >/dev/null
cmake --build build/asan -j"$JOBS"

echo "== unit tests"
build/unit/unit_tests --gtest_brief=1
echo "== unit tests (ASan + UBSan)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    build/asan/unit_tests --gtest_brief=1

# A short libFuzzer pass over the core parsers (t/fuzz); PUBSUB_FUZZ_SECONDS=0
# skips it, a larger value fuzzes longer (seconds per target).
FUZZ_SECONDS="${PUBSUB_FUZZ_SECONDS:-8}"
if [ "$FUZZ_SECONDS" != 0 ] && command -v clang++ >/dev/null 2>&1; then
    echo "== fuzz (${FUZZ_SECONDS}s per target)"
    JOBS="$JOBS" t/fuzz/run.sh "$FUZZ_SECONDS"
else
    echo "== fuzz: skipped (no clang++ or PUBSUB_FUZZ_SECONDS=0)"
fi

export PUBSUB_MODULE="$ROOT/build/nginx/ngx_pubsub_module.so"
if [ "$#" -gt 0 ]; then
    files=("$@")
else
    files=(t/*.test.js)
fi

# The Debian package, which t/package.test.js installs into a scratch root
# and runs (built here rather than inside the test run, which runs two test
# files at a time; rebuilt only when its sources changed).
if printf '%s\n' "${files[@]}" | grep -q 'package\.test\.js$'; then
    echo "== package: libnginx-mod-pubsub"
    JOBS="$JOBS" bash scripts/package.sh
fi

echo "== integration tests"
node --test --test-concurrency=2 "${files[@]}"
