#!/usr/bin/env bash
# Installs what building (and, with --test, testing) needs, from Debian's
# archive and the npm registry.  Only what is missing is installed.
#   scripts/deps.sh          build + run the example
#   scripts/deps.sh --test   also what the test suite needs
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

pkgs=(nginx nginx-dev libssl-dev zlib1g-dev libhiredis-dev cmake g++ make pkg-config)
if [ "${1:-}" = "--test" ]; then
    # clang + its runtime libraries: the short libFuzzer pass (t/fuzz/run.sh)
    # clang-format: the core's formatting is checked (Debian 12: version 14)
    pkgs+=(libgtest-dev redis-server chromium curl clang libclang-rt-14-dev clang-format)
fi

# Node runs the example application's backend (examples/app/server.js) and
# the integration tests (with npm for their packages).
if ! command -v node >/dev/null 2>&1; then
    pkgs+=(nodejs)
    if [ "${1:-}" = "--test" ]; then
        pkgs+=(npm)
    fi
fi

# shellcheck source=lib/apt.sh
. "$ROOT/scripts/lib/apt.sh"
apt_ensure deps "${pkgs[@]}"

if [ "${1:-}" = "--test" ]; then
    cd "$ROOT"
    stamp=node_modules/.pubsub-lock-stamp
    want="$(sha1sum package-lock.json | cut -d' ' -f1)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        npm ci --no-audit --no-fund --loglevel=error
        echo "$want" > "$stamp"
    fi
fi
