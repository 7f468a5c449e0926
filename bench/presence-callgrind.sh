#!/usr/bin/env bash
# Instructions per subscribe/unsubscribe with presence off and on, counted
# by callgrind in the nginx worker (independent of other jobs on the machine).
#
#   bench/presence-callgrind.sh [--transport ws|sse] [--duration 5] [--conns 10]
#   bench/presence-callgrind.sh --fanout [--subs 1000] [--messages 20]
#
# For each mode, nginx (`master_process off`: one process, the bench's config, plus
# `pubsub_presence on; pubsub_presence_id $arg_user; pubsub_presence_leave_delay 1s;`
# for "on") runs under valgrind --tool=callgrind; a short churn warms it up, the
# worker's counters are zeroed, `pubsub-load churn` (every connection a new
# ?user=, so every subscribe is a join and every close a leave) runs for
# --duration, then, once the leave delay has run out, the counters are dumped.
# Prints Ir per subscription (connect + upgrade + subscribe + close +
# unsubscribe + leave) and the presence functions' share.
# --fanout instead counts the whole of a `pubsub-load fanout` run (--subs
# WebSocket members of one channel connect, then --messages messages reach
# all of them): Ir per delivery, connects included.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CLIENT=$ROOT/build/bench/pubsub-load
SO=$ROOT/build/nginx/ngx_pubsub_module.so
NGINX=${NGINX:-/usr/sbin/nginx}
TRANSPORT=ws
DURATION=5
CONNS=10
FANOUT=0
SUBS=1000
MESSAGES=20
while [ $# -gt 0 ]; do
    case "$1" in
    --fanout) FANOUT=1 ;;
    --subs) SUBS=${2:?}; shift ;;
    --messages) MESSAGES=${2:?}; shift ;;
    --transport) TRANSPORT=${2:?}; shift ;;
    --duration) DURATION=${2:?}; shift ;;
    --conns) CONNS=${2:?}; shift ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "presence-callgrind.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
    shift
done
for f in "$CLIENT" "$SO"; do
    [ -e "$f" ] || { echo "presence-callgrind.sh: $f missing (scripts/build.sh; cmake -S bench -B build/bench)" >&2; exit 2; }
done
command -v valgrind >/dev/null && command -v callgrind_control >/dev/null \
    || { echo "presence-callgrind.sh: valgrind (callgrind) not installed" >&2; exit 2; }

WORK=$(mktemp -d /tmp/pubsub-cg.XXXXXX)
chmod 755 "$WORK"
VG_PID=""
cleanup() {
    if [ -n "$VG_PID" ] && kill -0 "$VG_PID" 2>/dev/null; then
        kill -TERM "$VG_PID" 2>/dev/null || true
        wait "$VG_PID" 2>/dev/null || true
    fi
    [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# run MODE -> prints "subs ir"
run() {
    local mode=$1 p=$WORK/$1 port pres="" user="" i master worker json subs dump
    port=$(free_port)
    mkdir -p "$p/logs" "$p/tmp"
    [ "$mode" = on ] && pres='pubsub_presence on; pubsub_presence_id $arg_user; pubsub_presence_leave_delay 1s;'
    [ "$(id -u)" = 0 ] && user="user root;"
    cat > "$p/nginx.conf" <<EOF
load_module $SO;
$user
daemon off;
master_process off;
pid $p/nginx.pid;
error_log $p/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $p/tmp/body;
    proxy_temp_path $p/tmp/proxy;
    fastcgi_temp_path $p/tmp/fastcgi;
    uwsgi_temp_path $p/tmp/uwsgi;
    scgi_temp_path $p/tmp/scgi;
    server {
        listen 127.0.0.1:$port backlog=4096;
        location = /sub { pubsub_subscriber; pubsub_channel_id \$arg_id; $pres }
        location = /pub { pubsub_publisher; pubsub_channel_id \$arg_id; pubsub_message_buffer_length 10; }
        location = /health { return 204; }
    }
}
EOF
    valgrind --tool=callgrind --callgrind-out-file="$p/cg.%p" \
        "$NGINX" -p "$p" -c "$p/nginx.conf" >"$p/valgrind.log" 2>&1 &
    VG_PID=$!
    for i in $(seq 1 200); do
        curl -s -o /dev/null "http://127.0.0.1:$port/health" && break
        sleep 0.1
    done
    # master_process off: one process, the one valgrind started
    worker=$VG_PID
    local url="http://127.0.0.1:$port/sub?id=room&user=u{sub}"
    "$CLIENT" churn --transport "$TRANSPORT" --sub-url "$url" --conns "$CONNS" --duration 1 \
        --warmup 0 --run-id warm >/dev/null 2>&1
    sleep 2  # warm-up leaves expire
    callgrind_control -z "$worker" >/dev/null
    if [ $FANOUT = 1 ]; then
        json=$("$CLIENT" fanout --transport ws --sub-url "http://127.0.0.1:$port/sub?id={ch}&user=u{sub}" \
            --pub-url "http://127.0.0.1:$port/pub?id={ch}" --subs "$SUBS" --messages "$MESSAGES" \
            --connect-timeout 120 --drain-timeout 60 2>"$p/churn.log" | tail -1)
        json=$(echo "$json" | jq -c '.subscriptions_total = .deliveries')
    else
    json=$("$CLIENT" churn --transport "$TRANSPORT" --sub-url "$url" --conns "$CONNS" \
        --duration "$DURATION" --warmup 0 2>"$p/churn.log" | tail -1)
    fi
    sleep 2  # leave delay (1 s) + expiry tick
    callgrind_control -d "$worker" >"$p/dump.log" 2>&1 || true
    dump=""
    for i in $(seq 1 50); do
        dump=$(ls -t "$p"/cg."$worker"* 2>/dev/null | head -1)
        [ -n "$dump" ] && grep -q '^summary:\|^totals:' "$dump" && break
        curl -s -o /dev/null "http://127.0.0.1:$port/health" || true
        sleep 0.2
    done
    subs=$(echo "$json" | jq -r .subscriptions_total)
    [ -n "$dump" ] || { echo "no callgrind dump in $p: $(ls "$p") $(cat "$p/dump.log")" >&2; exit 1; }
    ir=$(grep -m1 '^summary:\|^totals:' "$dump" | awk '{print $2}')
    echo "$mode: $(head -1 "$p/churn.log")" >&2
    callgrind_annotate --inclusive=yes "$dump" 2>/dev/null \
        | grep -E 'presence|PresenceRegistry' | grep -F '.so]' | head -6 > "$WORK/$mode.top" || true
    kill -QUIT "$worker" 2>/dev/null || true
    wait "$VG_PID" 2>/dev/null || true
    VG_PID=""
    echo "$subs $ir"
}

read -r s_off ir_off < <(run off)
read -r s_on ir_on < <(run on)
echo
if [ $FANOUT = 1 ]; then
    echo "fan-out: $SUBS WebSocket members of one channel, $MESSAGES messages, under callgrind"
    op=delivery
else
    echo "transport $TRANSPORT, $CONNS parallel connections, ${DURATION}s under callgrind"
    op=subscription
fi
awk -v so="$s_off" -v io="$ir_off" -v sn="$s_on" -v in_="$ir_on" -v op="$op" 'BEGIN {
    a = io / so; b = in_ / sn;
    printf "presence off: %d %ss, %.0f Ir/%s\n", so, op, a, op;
    printf "presence on:  %d %ss, %.0f Ir/%s\n", sn, op, b, op;
    printf "presence on costs %+.1f%% instructions per %s\n", 100 * (b / a - 1), op;
}'
echo "presence functions (inclusive Ir over the measured churn, presence on):"
sed 's/^/  /' "$WORK/on.top"
