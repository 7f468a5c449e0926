#!/usr/bin/env bash
# Builds the module and starts nginx with examples/nginx.conf on
# 127.0.0.1:8080 (memory store; no Redis needed), and the example
# application's backend (examples/app/server.js) on 127.0.0.1:8090.
#   scripts/example.sh          start (stops a running example first)
#   scripts/example.sh stop     stop it
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="$ROOT/build/example"
NGINX="${NGINX_BIN:-/usr/sbin/nginx}"

APP_PID="$PREFIX/app.pid"

# the backend, if the pid file names our server.js
app_pid() {
    local pid
    pid="$(cat "$APP_PID" 2>/dev/null)" || return 1
    [ -n "$pid" ] && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null \
        | grep -q "examples/app/server.js" && echo "$pid"
}

# nginx first: its graceful exit sends the unsubscribe hooks to the app
stop() {
    local pid
    if [ -f "$PREFIX/logs/nginx.pid" ]; then
        run_nginx -s quit 2>/dev/null || true
        for _ in $(seq 50); do
            [ -f "$PREFIX/logs/nginx.pid" ] || break
            sleep 0.1
        done
    fi
    if pid="$(app_pid)"; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    rm -f "$APP_PID"
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

# The example app's Echo page serves laravel-echo's and pusher-js's browser
# builds from the repository's node_modules (versions pinned in package.json)
if [ ! -f "$ROOT/node_modules/laravel-echo/dist/echo.iife.js" ] \
    || [ ! -f "$ROOT/node_modules/pusher-js/dist/web/pusher.min.js" ]; then
    if command -v npm >/dev/null 2>&1; then
        (cd "$ROOT" && npm ci --no-audit --no-fund --loglevel=error) \
            || echo "example: npm ci failed; the Echo page (/app/echo.html) will not load" >&2
    else
        echo "example: no npm; the Echo page (/app/echo.html) needs npm ci" >&2
    fi
fi

mkdir -p "$PREFIX/logs" "$PREFIX/modules" "$PREFIX/temp"
ln -sfn "$ROOT/build/nginx/ngx_pubsub_module.so" "$PREFIX/modules/ngx_pubsub_module.so"
ln -sfn "$ROOT/examples/html" "$PREFIX/html"
ln -sfn "$ROOT/examples/chat" "$PREFIX/chat"

stop
run_nginx -t -q

# the app's backend, detached, logging to logs/app.log
setsid nohup node "$ROOT/examples/app/server.js" >> "$PREFIX/logs/app.log" 2>&1 < /dev/null &
echo $! > "$APP_PID"

run_nginx

for _ in $(seq 50); do
    curl -fs -o /dev/null http://127.0.0.1:8080/ 2>/dev/null \
        && curl -fs -o /dev/null http://127.0.0.1:8080/app/ 2>/dev/null && break
    sleep 0.1
done
if ! app_pid >/dev/null; then
    tail -5 "$PREFIX/logs/app.log" >&2
    echo "example: the app's backend did not start (build/example/logs/app.log)" >&2
    exit 1
fi

cat <<'MSG'
ngx_pubsub example running on http://127.0.0.1:8080/  (open it in a browser)
  the example app:          http://127.0.0.1:8080/app/   (log in as two users, in two
                            browsers or a private window; password: demo)
    the same with Echo:     http://127.0.0.1:8080/app/echo.html  (laravel-echo + pusher-js)
  chat room, no backend:    http://127.0.0.1:8080/chat/  (open it in two tabs)

  subscribe (EventSource):  curl -N -H 'Accept: text/event-stream' http://127.0.0.1:8080/sub/demo
  subscribe (long-poll):    curl -i http://127.0.0.1:8080/sub/demo
  publish:                  curl -X POST -d 'hello' http://127.0.0.1:8080/pub/demo
  channel info:             curl -H 'Accept: application/json' http://127.0.0.1:8080/pub/demo
  who is in the chat room:  curl http://127.0.0.1:8080/chat/presence/lobby
  metrics (Prometheus):     curl 'http://127.0.0.1:8081/pubsub_status?format=prometheus'

  logs: build/example/logs/error.log, app.log (the app's hooks)
  stop: scripts/example.sh stop
MSG
