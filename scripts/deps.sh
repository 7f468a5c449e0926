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

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
# Node runs the example application's backend (examples/app/server.js) and
# the integration tests (with npm for their packages).
if ! command -v node >/dev/null 2>&1; then
    missing+=(nodejs)
    if [ "${1:-}" = "--test" ]; then
        missing+=(npm)
    fi
fi

if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "deps: missing packages: ${missing[*]} (run as root, or install them)" >&2
        exit 1
    fi
    echo "deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # Debian's nginx package starts a system nginx on port 80; the project
    # never uses it.
    if [ -d /run/systemd/system ]; then
        systemctl disable --now nginx >/dev/null 2>&1 || true
    fi
fi

if [ "${1:-}" = "--test" ]; then
    cd "$ROOT"
    stamp=node_modules/.pubsub-lock-stamp
    want="$(sha1sum package-lock.json | cut -d' ' -f1)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        npm ci --no-audit --no-fund --loglevel=error
        echo "$want" > "$stamp"
    fi
fi
