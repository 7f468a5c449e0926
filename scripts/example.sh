#!/usr/bin/env bash
# Builds the module and starts nginx with examples/nginx.conf on
# 127.0.0.1:8080 (memory store; no Redis needed).
#   scripts/example.sh          start (stops a running example first)
#   scripts/example.sh stop     stop it
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="$ROOT/build/example"
NGINX="${NGINX_BIN:-/usr/sbin/nginx}"

stop() {
    if [ -f "$PREFIX/logs/nginx.pid" ]; then
        run_nginx -s quit 2>/dev/null || true
        for _ in $(seq 50); do
            [ -f "$PREFIX/logs/nginx.pid" ] || break
            sleep 0.1
        done
    fi
}

# As root, workers run as root too so that they can read the example page
# wherever the repository is checked out.
run_nginx() {
    if [ "$(id -u)" = 0 ]; then
        "$NGINX" -p "$PREFIX" -c "$ROOT/examples/nginx.conf" -g "user root;" "$@"
    else
        "$NGINX" -p "$PREFIX" -c "$ROOT/examples/nginx.conf" "$@"
    fi
}

if [ "${1:-}" = "stop" ]; then
    stop
    echo "example: stopped"
    exit 0
fi

bash "$ROOT/scripts/deps.sh"
bash "$ROOT/scripts/build.sh"

mkdir -p "$PREFIX/logs" "$PREFIX/modules" "$PREFIX/temp"
ln -sfn "$ROOT/build/nginx/ngx_pubsub_module.so" "$PREFIX/modules/ngx_pubsub_module.so"
ln -sfn "$ROOT/examples/html" "$PREFIX/html"
ln -sfn "$ROOT/examples/chat" "$PREFIX/chat"

stop
run_nginx -t -q
run_nginx

for _ in $(seq 50); do
    curl -fs -o /dev/null http://127.0.0.1:8080/ 2>/dev/null && break
    sleep 0.1
done

cat <<'MSG'
ngx_pubsub example running on http://127.0.0.1:8080/  (open it in a browser)
  chat room with presence:  http://127.0.0.1:8080/chat/  (open it in two tabs)

  subscribe (EventSource):  curl -N -H 'Accept: text/event-stream' http://127.0.0.1:8080/sub/demo
  subscribe (long-poll):    curl -i http://127.0.0.1:8080/sub/demo
  publish:                  curl -X POST -d 'hello' http://127.0.0.1:8080/pub/demo
  channel info:             curl -H 'Accept: application/json' http://127.0.0.1:8080/pub/demo
  who is in the chat room:  curl http://127.0.0.1:8080/chat/presence/lobby
  metrics (Prometheus):     curl 'http://127.0.0.1:8081/pubsub_status?format=prometheus'

  logs: build/example/logs/error.log     stop: scripts/example.sh stop
MSG
