#!/usr/bin/env bash
# Build ngx_pubsub_module.so against Debian's nginx (package nginx-dev).
#   scripts/build.sh            -> build/nginx/ngx_pubsub_module.so
# PUBSUB_BUILD_DIR overrides build/.  The nginx source tree shipped by
# nginx-dev is copied into the build directory so nothing is written into
# /usr/share/nginx/src.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${PUBSUB_BUILD_DIR:-$ROOT/build}"
NGX_SRC_SYS=/usr/share/nginx/src
JOBS="${JOBS:-$(nproc)}"

if [ ! -x "$NGX_SRC_SYS/configure" ]; then
    echo "build: $NGX_SRC_SYS/configure is missing: apt-get install nginx-dev" >&2
    exit 1
fi

mkdir -p "$BUILD"
NGX_SRC="$BUILD/nginx-src"
if [ ! -x "$NGX_SRC/configure" ] || [ "$NGX_SRC_SYS/conf_flags" -nt "$NGX_SRC/conf_flags" ]; then
    rm -rf "$NGX_SRC"
    cp -r "$NGX_SRC_SYS" "$NGX_SRC"
fi

# Re-run configure when the module's file list or build files changed.
stamp="$BUILD/nginx/.pubsub-config-stamp"
want="$( (cd "$ROOT" && find src/nginx src/redis include -type f | sort && cat config config.make) | sha1sum)"
if [ ! -f "$BUILD/nginx/Makefile" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    (
        cd "$NGX_SRC"
        env -u CFLAGS bash -c '. ./conf_flags; ./configure "${NGX_CONF_FLAGS[@]}" \
            --with-cc-opt="-g -O2 -fPIC" --with-ld-opt="-fPIC" \
            --add-dynamic-module="$0" --builddir="$1"' "$ROOT" "$BUILD/nginx"
    ) > "$BUILD/configure.log" 2>&1 || {
        tail -30 "$BUILD/configure.log" >&2
        echo "build: nginx configure failed (full log: $BUILD/configure.log)" >&2
        exit 1
    }
    echo "$want" > "$stamp"
fi

env -u CFLAGS -u CXXFLAGS make -s -j"$JOBS" -f "$BUILD/nginx/Makefile" -C "$NGX_SRC" modules
echo "build: $BUILD/nginx/ngx_pubsub_module.so"
