# Sourced by the scripts: installs the Debian packages among "$@" that are
# not installed yet (as root; otherwise says which and fails).  $1 names
# the caller in messages.
apt_ensure() {
    local who="$1"
    shift
    local missing=() p
    for p in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$p")
        fi
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then
        echo "$who: missing packages: ${missing[*]} (run as root, or install them)" >&2
        exit 1
    fi
    echo "$who: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # Debian's nginx package starts a system nginx on port 80; the project
    # never uses it.
    if [ -d /run/systemd/system ]; then
        systemctl disable --now nginx >/dev/null 2>&1 || true
    fi
}
