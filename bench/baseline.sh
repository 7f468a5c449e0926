#!/usr/bin/env bash
# Builds ngx_pubsub_module.so as it was at a given commit, for a before/after
# benchmark (bench/run.sh --baseline).
#
#   bench/baseline.sh [--out DIR] COMMIT
#
# The commit's tree is exported with `git archive` into build/baseline/src
# and built there by that commit's own scripts/build.sh with
# PUBSUB_BUILD_DIR=build/baseline/build (so the current build/ is not
# touched). The module is then copied to build/baseline/ngx_pubsub_module.so
# and, with --out DIR, to DIR/ngx_pubsub_module.so as well; a file COMMIT next
# to each copy holds the full hash and subject (run.sh takes its label from it).
# Building the same commit again reuses the build tree; another commit starts
# afresh. JOBS=N is passed to scripts/build.sh (default 2).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BASE=$ROOT/build/baseline
OUT_DIR=""
COMMIT=""
while [ $# -gt 0 ]; do
    case "$1" in
    --out) OUT_DIR=${2:?--out needs a directory}; shift ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "baseline.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    *) [ -z "$COMMIT" ] || { echo "baseline.sh: one commit only" >&2; exit 2; }
       COMMIT=$1 ;;
    esac
    shift
done
[ -n "$COMMIT" ] || { echo "usage: bench/baseline.sh [--out DIR] COMMIT" >&2; exit 2; }

HASH=$(git -C "$ROOT" rev-parse --verify --quiet "$COMMIT^{commit}") \
    || { echo "baseline.sh: '$COMMIT' is not a commit of this repository" >&2; exit 2; }
SUBJECT=$(git -C "$ROOT" log -1 --format=%s "$HASH")
git -C "$ROOT" cat-file -e "$HASH:scripts/build.sh" 2>/dev/null \
    || { echo "baseline.sh: $HASH has no scripts/build.sh" >&2; exit 2; }

mkdir -p "$BASE"
# a different commit than the one built last time: start from a clean tree
if [ "$(cat "$BASE/src/.commit" 2>/dev/null)" != "$HASH" ]; then
    rm -rf "$BASE/src" "$BASE/build" "$BASE/ngx_pubsub_module.so" "$BASE/COMMIT"
    mkdir -p "$BASE/src"
    git -C "$ROOT" archive --format=tar "$HASH" | tar -x -C "$BASE/src"
    echo "$HASH" > "$BASE/src/.commit"
fi

echo "baseline.sh: building $HASH ($SUBJECT) in build/baseline (log: build/baseline/build.log)" >&2
if ! PUBSUB_BUILD_DIR=$BASE/build JOBS=${JOBS:-2} bash "$BASE/src/scripts/build.sh" \
        >"$BASE/build.log" 2>&1; then
    tail -30 "$BASE/build.log" >&2
    echo "baseline.sh: the build of $HASH failed (full log: $BASE/build.log)" >&2
    exit 1
fi

install_to() {
    mkdir -p "$1"
    cp "$BASE/build/nginx/ngx_pubsub_module.so" "$1/ngx_pubsub_module.so.tmp"
    mv "$1/ngx_pubsub_module.so.tmp" "$1/ngx_pubsub_module.so"
    printf '%s %s\n' "$HASH" "$SUBJECT" > "$1/COMMIT"
    echo "$1/ngx_pubsub_module.so"
}
install_to "$BASE"
if [ -n "$OUT_DIR" ]; then
    install_to "$(mkdir -p "$OUT_DIR" && cd "$OUT_DIR" && pwd)"
fi
