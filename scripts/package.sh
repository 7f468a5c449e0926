#!/usr/bin/env bash
# Builds the Debian package libnginx-mod-pubsub with the standard tools
# (dpkg-buildpackage, debhelper and nginx-dev's dh-sequence-nginx), the way
# Debian ships its nginx modules: debian/ in this tree.
#   scripts/package.sh           -> build/package/libnginx-mod-pubsub_*.deb
#   scripts/package.sh --force   rebuild even when the sources did not change
# The build runs in a copy of the sources under build/package/, so nothing
# is written into the tree. The .deb of the same sources is reused: the
# package is rebuilt only when a file that goes into it changed.
# PUBSUB_BUILD_DIR overrides build/ (the package lands in its package/).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${PUBSUB_BUILD_DIR:-$ROOT/build}"
OUT="$BUILD/package"
JOBS="${JOBS:-$(nproc)}"
force=0
[ "${1:-}" = "--force" ] && force=1

# What the package is built from: dpkg-buildpackage and debhelper, nginx-dev
# (dh-sequence-nginx, nginx's sources and build flags) and the libraries.
pkgs=(dpkg-dev debhelper nginx nginx-dev cmake g++ make libhiredis-dev libssl-dev
      zlib1g-dev)
# shellcheck source=lib/apt.sh
. "$ROOT/scripts/lib/apt.sh"
apt_ensure package "${pkgs[@]}"

# The files that make the package: those git knows (tracked or new, not
# ignored) under these paths, or all of them outside a git checkout.
PATHS=(CMakeLists.txt config config.make README.md debian docs examples include src)
cd "$ROOT"
list_sources() {
    if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git -C "$ROOT" ls-files -z --cached --others --exclude-standard -- "${PATHS[@]}" \
            | while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done
    else
        find "${PATHS[@]}" -type f -print0
    fi
}
want="$(list_sources | sort -z | xargs -0 sha1sum | sha1sum | cut -d' ' -f1)"

version="$(dpkg-parsechangelog -l debian/changelog -S Version)"
arch="$(dpkg --print-architecture)"
deb="$OUT/libnginx-mod-pubsub_${version}_${arch}.deb"
stamp="$OUT/.sources-stamp"

if [ "$force" = 0 ] && [ -f "$deb" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    echo "package: $deb (up to date)"
    exit 0
fi

rm -rf "$OUT"
src="$OUT/src/ngx-pubsub-$version"
mkdir -p "$src"
list_sources | tar -C "$ROOT" --null -T - -cf - | tar -C "$src" -xf -

echo "package: building libnginx-mod-pubsub $version (log: $OUT/build.log)"
(
    cd "$src"
    # -b: binary only (no source tarball); unsigned; the .deb lands in the
    # parent directory, $OUT/src
    DEB_BUILD_OPTIONS="parallel=$JOBS ${DEB_BUILD_OPTIONS:-}" \
        dpkg-buildpackage -b -us -uc
) > "$OUT/build.log" 2>&1 || {
    tail -40 "$OUT/build.log" >&2
    echo "package: dpkg-buildpackage failed (full log: $OUT/build.log)" >&2
    exit 1
}

mv "$OUT"/src/*.deb "$OUT"/src/*.buildinfo "$OUT"/src/*.changes "$OUT"/
mv "$OUT"/src/*.ddeb "$OUT"/ 2>/dev/null || true
rm -rf "$OUT/src"
echo "$want" > "$stamp"
echo "package: $deb"
