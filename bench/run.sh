#!/usr/bin/env bash
# Side-by-side benchmark: ngx_pubsub vs nchan vs nginx `return 200`.
#
#   bench/run.sh [--quick] [--only S1,S2] [--reps N] [--results FILE] [--skip-build]
#                [--wait-idle SECONDS] [--nice N] [--baseline SO [--baseline-label TEXT]]
#
# Builds the load client (build/bench/pubsub-load) and, when missing, the
# module (scripts/build.sh), then runs every scenario against each server,
# alternating servers run by run, each run on a fresh nginx in its own temp
# prefix, and writes bench/RESULTS.md (medians over the repetitions).
# --baseline SO adds "ngx_pubsub (before)": that module (e.g. built by
# bench/baseline.sh COMMIT) with the same configs, run right after ngx_pubsub.
# Raw results: bench/out/results.jsonl, client logs: bench/out/*.log.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$ROOT/bench
OUT=$BENCH/out
CLIENT=$ROOT/build/bench/pubsub-load
OURS_SO=$ROOT/build/nginx/ngx_pubsub_module.so
NCHAN_SO=${NCHAN_SO:-/usr/lib/nginx/modules/ngx_nchan_module.so}
NGINX=${NGINX:-/usr/sbin/nginx}
ALL_SCENARIOS="publish-1w publish-2w fanout-ws-10k fanout-ws-1000ch idle-ws idle-sse idle-chunked idle-multipart idle-raw idle-longpoll longpoll-rtt-1 longpoll-rtt-20"
# Presence on vs off (server "ourspres" = ours with pubsub_presence on); not in
# the default run: bench/run.sh --only presence (or a list of these names).
PRESENCE_SCENARIOS="presence-idle-ws presence-churn-ws presence-churn-sse presence-fanout-ws-10k"
# Redis engine: ngx_pubsub with pubsub_redis_pass (server "oursredis") vs nchan
# with nchan_redis_pass ("nchanredis"), each run on its own fresh redis-server;
# the memory scenarios' counterparts plus presence in Redis mode ("oursredispres");
# not in the default run: bench/run.sh --only redis (or a list of these names).
REDIS_SCENARIOS="redis-publish-1w redis-publish-2w redis-fanout-ws-1k redis-fanout-ws-1000ch
    redis-idle-ws redis-idle-sse redis-longpoll-rtt-1 redis-longpoll-rtt-20
    redis-presence-churn-ws redis-presence-churn-sse"
REDIS_SCENARIOS=$(echo $REDIS_SCENARIOS)
# Pusher protocol 7 (server "ourspusher": ours plus pubsub_pusher_app and a
# pubsub_pusher location) side by side with the nchan-protocol counterpart
# on ours (and nchan where it applies); not in the default run:
# bench/run.sh --only pusher (or a list of these names).
PUSHER_SCENARIOS="pusher-fanout-10k pusher-idle pusher-presence-churn-2w"
PUSHER_SECRET=bench-secret-0123456789abcdef
# Paced latency: fan-out to one channel at a fixed offered rate both servers
# sustain (subscribers x messages/s), latency compared without queueing; in
# the default run, also alone: bench/run.sh --only paced.
PACED_SCENARIOS="paced-ws-1k-20 paced-ws-10k-5"
REDIS_SERVER=${REDIS_SERVER:-redis-server}

QUICK=0
ONLY=""
REPS=""
RESULTS=$BENCH/RESULTS.md
SKIP_BUILD=0
WAIT_IDLE=0
NICE=0
BASE_SO=""
BASE_LABEL=""
ORIG_ARGS="$*"
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) QUICK=1 ;;
    --only) ONLY=${2:?--only needs a scenario list}; shift ;;
    --reps) REPS=${2:?--reps needs a number}; shift ;;
    --results) RESULTS=${2:?--results needs a file}; shift ;;
    --skip-build) SKIP_BUILD=1 ;;
    --wait-idle) WAIT_IDLE=${2:?--wait-idle needs seconds}; shift ;;
    --nice) NICE=${2:?--nice needs a niceness}; shift ;;
    --baseline) BASE_SO=${2:?--baseline needs a module path}; shift ;;
    --baseline-label) BASE_LABEL=${2:?--baseline-label needs a text}; shift ;;
    -h|--help)
        sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
        echo "scenarios: $ALL_SCENARIOS $PACED_SCENARIOS"
        echo "paced scenarios (--only paced): $PACED_SCENARIOS"
        echo "presence scenarios (--only presence): $PRESENCE_SCENARIOS"
        echo "redis scenarios (--only redis): $REDIS_SCENARIOS"
        echo "pusher scenarios (--only pusher): $PUSHER_SCENARIOS"
        exit 0 ;;
    *) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if [ -z "$REPS" ]; then
    if [ $QUICK = 1 ]; then REPS=1; else REPS=3; fi
fi
case "$REPS" in ''|*[!0-9]*|0) echo "run.sh: --reps needs a positive integer" >&2; exit 2 ;; esac
if [ -n "$BASE_SO" ]; then
    [ -f "$BASE_SO" ] || { echo "run.sh: --baseline: $BASE_SO does not exist (bench/baseline.sh COMMIT builds one)" >&2; exit 2; }
    BASE_SO=$(cd "$(dirname "$BASE_SO")" && pwd)/$(basename "$BASE_SO")
    # bench/baseline.sh leaves the commit's hash and subject in COMMIT
    if [ -z "$BASE_LABEL" ] && [ -f "$(dirname "$BASE_SO")/COMMIT" ]; then
        BASE_LABEL=$(head -c 7 "$(dirname "$BASE_SO")/COMMIT")
    fi
    BASE_LABEL=${BASE_LABEL:-$BASE_SO}
elif [ -n "$BASE_LABEL" ]; then
    echo "run.sh: --baseline-label needs --baseline" >&2; exit 2
fi
SCENARIOS="$ALL_SCENARIOS $PACED_SCENARIOS"
if [ -n "$ONLY" ]; then
    SCENARIOS=""
    only=""
    for s in ${ONLY//,/ }; do
        if [ "$s" = presence ]; then only="$only $PRESENCE_SCENARIOS"
        elif [ "$s" = redis ]; then only="$only $REDIS_SCENARIOS"
        elif [ "$s" = pusher ]; then only="$only $PUSHER_SCENARIOS"
        elif [ "$s" = paced ]; then only="$only $PACED_SCENARIOS"
        else only="$only $s"; fi
    done
    for s in $only; do
        case " $ALL_SCENARIOS $PACED_SCENARIOS $PRESENCE_SCENARIOS $REDIS_SCENARIOS $PUSHER_SCENARIOS " in
        *" $s "*) SCENARIOS="$SCENARIOS $s" ;;
        *) echo "run.sh: unknown scenario '$s' (known: $ALL_SCENARIOS $PACED_SCENARIOS $PRESENCE_SCENARIOS $REDIS_SCENARIOS $PUSHER_SCENARIOS)" >&2; exit 2 ;;
        esac
    done
fi

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

for tool in cmake jq python3 curl "$NGINX"; do
    command -v "$tool" >/dev/null 2>&1 || { echo "run.sh: '$tool' not found" >&2; exit 2; }
done
[ -f "$NCHAN_SO" ] || { echo "run.sh: nchan module not found at $NCHAN_SO" >&2; exit 2; }
case " $SCENARIOS " in
*" redis-"*)
    for tool in "$REDIS_SERVER" redis-cli; do
        command -v "$tool" >/dev/null 2>&1 || { echo "run.sh: '$tool' not found (redis scenarios)" >&2; exit 2; }
    done ;;
esac

mkdir -p "$OUT"
: > "$OUT/results.jsonl"
: > "$OUT/notes.txt"
note() { echo "$*" >> "$OUT/notes.txt"; log "$*"; }

# ------------------------------------------------------------------ build
if [ $SKIP_BUILD = 0 ]; then
    log "building the load client into build/bench"
    cmake -S "$BENCH" -B "$ROOT/build/bench" -DCMAKE_BUILD_TYPE=Release >"$OUT/build-client.log" 2>&1 \
        && cmake --build "$ROOT/build/bench" -j2 >>"$OUT/build-client.log" 2>&1 \
        || { cat "$OUT/build-client.log" >&2; echo "run.sh: client build failed" >&2; exit 1; }
    if [ ! -f "$OURS_SO" ] && [ -x "$ROOT/scripts/build.sh" ]; then
        log "building ngx_pubsub with scripts/build.sh (log: bench/out/build-module.log)"
        if ! (cd "$ROOT" && scripts/build.sh) >"$OUT/build-module.log" 2>&1; then
            note "scripts/build.sh failed (see bench/out/build-module.log)"
        fi
    fi
fi
[ -x "$CLIENT" ] || { echo "run.sh: $CLIENT missing (drop --skip-build)" >&2; exit 1; }

NOFILE=$(ulimit -Hn)
[ "$NOFILE" = unlimited ] && NOFILE=65536
[ "$NOFILE" -gt 65536 ] && NOFILE=65536
ulimit -n "$NOFILE"
WORKER_CONNS=$((NOFILE - 100))
if [ "$NOFILE" -lt 10500 ]; then
    note "hard RLIMIT_NOFILE is $NOFILE: 10,000-subscriber scenarios need about 10,100"
fi

# Percent of all CPUs busy over 0.3 s (other engineers' jobs skew results).
cpu_busy() {
    local a b
    a=($(head -1 /proc/stat)); sleep 0.3; b=($(head -1 /proc/stat))
    local ta=0 tb=0 i
    for i in 1 2 3 4 5 6 7 8; do ta=$((ta + a[i])); tb=$((tb + b[i])); done
    local idle=$(( (b[4] + b[5]) - (a[4] + a[5]) )) tot=$((tb - ta))
    [ $tot -gt 0 ] && echo $(( 100 * (tot - idle) / tot )) || echo 0
}

# Busy and total jiffies of all CPUs.
stat_totals() {
    local cpu u n sy i w q sq st rest
    read -r cpu u n sy i w q sq st rest < /proc/stat
    echo "$((u + n + sy + q + sq + st)) $((u + n + sy + i + w + q + sq + st))"
}
# utime+stime jiffies of the given pids.
proc_jiffies() {
    local t=0 p f
    for p in "$@"; do
        f=$(cut -d')' -f2- "/proc/$p/stat" 2>/dev/null) || continue
        set -- $f
        t=$((t + ${12} + ${13}))
    done
    echo $t
}
# Waits (up to WAIT_IDLE s) until other jobs leave the CPUs mostly idle.
wait_idle() {
    local deadline=$(( $(date +%s) + WAIT_IDLE ))
    while [ "$WAIT_IDLE" -gt 0 ] && [ "$(date +%s)" -lt $deadline ]; do
        [ "$(cpu_busy)" -lt 20 ] && return 0
        sleep 1
    done
}
CLK_TCK=$(getconf CLK_TCK)

# With scheduler autogroups, nice only ranks processes within one session:
# give this session's autogroup the same niceness so --nice holds against
# other sessions' jobs.
if [ "$NICE" != 0 ] && [ -w /proc/self/autogroup ]; then
    echo "$NICE" > /proc/self/autogroup 2>/dev/null || note "could not set autogroup niceness"
fi

NPROC=$(nproc)
PIN=1
if [ "$NPROC" -lt 2 ]; then
    PIN=0
    note "fewer than 2 CPUs: no taskset pinning"
fi

WORK=$(mktemp -d /tmp/pubsub-bench.XXXXXX)
chmod 755 "$WORK"
MASTER_PID=""
REDIS_PID=""
cleanup() {
    if [ -n "$MASTER_PID" ] && kill -0 "$MASTER_PID" 2>/dev/null; then
        kill -TERM "$MASTER_PID" 2>/dev/null || true
    fi
    if [ -n "$REDIS_PID" ] && kill -0 "$REDIS_PID" 2>/dev/null; then
        kill -TERM "$REDIS_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

NEXT_PORT=$((20000 + ($$ % 500) * 20))
free_port() {
    local p=$NEXT_PORT
    while ss -Htan "( sport = :$p )" 2>/dev/null | grep -q .; do p=$((p + 1)); done
    NEXT_PORT=$((p + 1))
    [ $NEXT_PORT -lt 32000 ] || NEXT_PORT=20000
    PORT=$p
}

# start_redis DIR: a fresh redis-server (no persistence) on a free loopback
# port in DIR; sets REDIS_PORT and REDIS_PID (keeps PORT)
start_redis() {
    local dir=$1 i nginx_port=$PORT
    free_port
    REDIS_PORT=$PORT
    PORT=$nginx_port
    mkdir -p "$dir"
    nice -n "$NICE" "$REDIS_SERVER" --bind 127.0.0.1 --port "$REDIS_PORT" --save '' \
        --appendonly no --dir "$dir" --logfile "$dir/redis.log" --daemonize no \
        --maxclients 10000 >/dev/null 2>&1 &
    REDIS_PID=$!
    for i in $(seq 1 100); do
        [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] && return 0
        kill -0 "$REDIS_PID" 2>/dev/null || break
        sleep 0.05
    done
    echo "redis-server did not start on port $REDIS_PORT:" >&2
    tail -5 "$dir/redis.log" >&2 2>/dev/null || true
    stop_redis
    return 1
}

stop_redis() {
    local i
    [ -n "$REDIS_PID" ] || return 0
    kill -TERM "$REDIS_PID" 2>/dev/null || true
    for i in $(seq 1 100); do
        kill -0 "$REDIS_PID" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
    REDIS_PID=""
}

# write_config SERVER WORKERS PREFIX PORT (redis servers: REDIS_PORT set);
# SERVER-before is SERVER's config with the --baseline module
write_config() {
    local server=$1 workers=$2 prefix=$3 port=$4 load="" locs="" user="" ups="" so=$OURS_SO
    [ "$(id -u)" = 0 ] && user="user root;"
    case $server in *-before) server=${server%-before}; so=$BASE_SO ;; esac
    case $server in
    ours)
        load="load_module $so;"
        locs="location = /pub { pubsub_publisher; pubsub_channel_id \$arg_id; pubsub_message_buffer_length 10; }
        location = /sub { pubsub_subscriber; pubsub_channel_id \$arg_id; }
        location = /raw { pubsub_subscriber rawstream; pubsub_channel_id \$arg_id; }" ;;
    nchan)
        load="load_module $NCHAN_SO;"
        locs="location = /pub { nchan_publisher; nchan_channel_id \$arg_id; nchan_message_buffer_length 10; }
        location = /sub { nchan_subscriber; nchan_channel_id \$arg_id; }
        location = /raw { nchan_subscriber http-raw-stream; nchan_channel_id \$arg_id; }" ;;
    ret200)
        locs="location = /pub { return 200; }" ;;
    ourspres)
        # as ours, the subscriber location with presence: one member per
        # distinct ?user= (the client's {sub}); leave delay 1s so that leaves
        # happen inside a churn run's window too
        load="load_module $so;"
        locs="location = /pub { pubsub_publisher; pubsub_channel_id \$arg_id; pubsub_message_buffer_length 10; }
        location = /sub { pubsub_subscriber; pubsub_channel_id \$arg_id; pubsub_presence on; pubsub_presence_id \$arg_user; pubsub_presence_leave_delay 1s; }
        location = /presence { pubsub_presence_api; pubsub_channel_id \$arg_id; }" ;;
    oursredis)
        # as ours, with the channels in Redis (docs/redis.md)
        load="load_module $so;"
        ups="upstream r { pubsub_redis_server redis://127.0.0.1:${REDIS_PORT:-6379}; }"
        locs="location = /pub { pubsub_publisher; pubsub_channel_id \$arg_id; pubsub_message_buffer_length 10; pubsub_redis_pass r; }
        location = /sub { pubsub_subscriber; pubsub_channel_id \$arg_id; pubsub_redis_pass r; }" ;;
    oursredispres)
        # as oursredis with presence on the subscriber location, as ourspres:
        # in a Redis location presence is cluster-wide (docs/redis.md)
        load="load_module $so;"
        ups="upstream r { pubsub_redis_server redis://127.0.0.1:${REDIS_PORT:-6379}; }"
        locs="location = /pub { pubsub_publisher; pubsub_channel_id \$arg_id; pubsub_message_buffer_length 10; pubsub_redis_pass r; }
        location = /sub { pubsub_subscriber; pubsub_channel_id \$arg_id; pubsub_redis_pass r; pubsub_presence on; pubsub_presence_id \$arg_user; pubsub_presence_leave_delay 1s; }
        location = /presence { pubsub_presence_api; pubsub_channel_id \$arg_id; pubsub_redis_pass r; }" ;;
    ourspusher)
        # as ours, with a Pusher app: the Pusher endpoint /app/<key> and the
        # publisher location in the app's group (Pusher channel <name> =
        # channel <name> of group pusher:1, docs/pusher.md); presence leave
        # delay 1s as ourspres
        load="load_module $so;"
        locs="pubsub_pusher_app id=1 key=app-key secret=$PUSHER_SECRET max_presence_members=100000;
        location = /pub { pubsub_publisher; pubsub_channel_group pusher:1; pubsub_channel_id \$arg_id; pubsub_message_buffer_length 10; }
        location /app/ { pubsub_pusher; pubsub_presence_leave_delay 1s; }" ;;
    nchanredis)
        # as nchan, in nchan's (default, "distributed") Redis mode
        load="load_module $NCHAN_SO;"
        ups="upstream r { nchan_redis_server redis://127.0.0.1:${REDIS_PORT:-6379}; }"
        locs="location = /pub { nchan_publisher; nchan_channel_id \$arg_id; nchan_message_buffer_length 10; nchan_redis_pass r; }
        location = /sub { nchan_subscriber; nchan_channel_id \$arg_id; nchan_redis_pass r; }" ;;
    esac
    case $server in
    ours|ourspres|oursredis|oursredispres|ourspusher) locs="$locs
        location = /status { pubsub_status; }" ;;
    esac
    mkdir -p "$prefix/logs" "$prefix/tmp"
    cat > "$prefix/nginx.conf" <<EOF
$load
$user
worker_processes $workers;
worker_rlimit_nofile $NOFILE;
pid $prefix/nginx.pid;
error_log $prefix/logs/error.log warn;
events { worker_connections $WORKER_CONNS; }
http {
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    client_body_temp_path $prefix/tmp/body;
    proxy_temp_path $prefix/tmp/proxy;
    fastcgi_temp_path $prefix/tmp/fastcgi;
    uwsgi_temp_path $prefix/tmp/uwsgi;
    scgi_temp_path $prefix/tmp/scgi;
    $ups
    server {
        listen 127.0.0.1:$port backlog=4096;
        $locs
        location = /health { return 204; }
    }
}
EOF
}

# start_server SERVER WORKERS: sets PORT, MASTER_PID, WORKER_PID, PREFIX
start_server() {
    local server=$1 workers=$2 i
    free_port
    PREFIX=$WORK/$server-$workers-$PORT
    case $server in
    *redis*) start_redis "$PREFIX/redis" || return 1 ;;
    esac
    write_config "$server" "$workers" "$PREFIX" "$PORT"
    local pin=(nice -n "$NICE")
    if [ "$workers" = 1 ] && [ $PIN = 1 ]; then pin+=(taskset -c 0); fi
    if ! "${pin[@]}" "$NGINX" -p "$PREFIX" -c "$PREFIX/nginx.conf" 2>"$PREFIX/start.err"; then
        cat "$PREFIX/start.err" >&2
        stop_redis
        return 1
    fi
    for i in $(seq 1 100); do
        [ -s "$PREFIX/nginx.pid" ] && curl -s -o /dev/null "http://127.0.0.1:$PORT/health" && break
        sleep 0.05
    done
    MASTER_PID=$(cat "$PREFIX/nginx.pid")
    # the daemonized master is in a session (autogroup) of its own
    if [ "$NICE" != 0 ] && [ -w "/proc/$MASTER_PID/autogroup" ]; then
        echo "$NICE" > "/proc/$MASTER_PID/autogroup" 2>/dev/null || true
    fi
    WORKER_PID=""
    for i in $(seq 1 50); do
        WORKER_PID=$(pgrep -P "$MASTER_PID" | head -1 || true)
        [ -n "$WORKER_PID" ] && break
        sleep 0.05
    done
}

stop_server() {
    local i
    [ -n "$MASTER_PID" ] || return 0
    kill -QUIT "$MASTER_PID" 2>/dev/null || true
    for i in $(seq 1 100); do
        kill -0 "$MASTER_PID" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$MASTER_PID" 2>/dev/null; then
        kill -TERM "$MASTER_PID" 2>/dev/null || true
        sleep 0.5
    fi
    if grep -qE '\[(alert|crit|emerg)\]' "$PREFIX/logs/error.log" 2>/dev/null; then
        note "$CUR_SERVER/$CUR_SCENARIO rep $CUR_REP: error.log has alert/crit/emerg lines:"
        grep -E '\[(alert|crit|emerg)\]' "$PREFIX/logs/error.log" | head -3 >> "$OUT/notes.txt"
    fi
    MASTER_PID=""
    stop_redis
}

# ------------------------------------------------------------------ servers
SERVERS_ALL="ours ourspres nchan ret200 oursredis oursredispres nchanredis ourspusher"
OURS_OK=0
BASE_OK=0
if [ -n "$BASE_SO" ]; then
    t=$WORK/check-ours-before
    write_config ours-before 1 "$t" 1
    if "$NGINX" -t -p "$t" -c "$t/nginx.conf" >"$OUT/ours-before-config-test.log" 2>&1; then
        BASE_OK=1
    else
        note "ngx_pubsub (before): SKIPPED - $BASE_SO does not pass nginx -t: $(grep -m1 emerg "$OUT/ours-before-config-test.log" || true)"
    fi
fi
if [ -f "$OURS_SO" ]; then
    t=$WORK/check-ours
    write_config ours 1 "$t" 1
    if "$NGINX" -t -p "$t" -c "$t/nginx.conf" >"$OUT/ours-config-test.log" 2>&1; then
        OURS_OK=1
    else
        note "ngx_pubsub: SKIPPED - $OURS_SO does not pass nginx -t: $(grep -m1 emerg "$OUT/ours-config-test.log" || true)"
    fi
else
    note "ngx_pubsub: SKIPPED - $OURS_SO does not exist (build it with scripts/build.sh)"
fi

# scenario parameters
if [ $QUICK = 1 ]; then
    PUB_DUR=2; PUB_WARM=0.5; FAN_MSGS=10; MC_MSGS=5000; RTT_DUR=1.5; HOLD=0.2; PACED_DUR=3
else
    PUB_DUR=5; PUB_WARM=1; FAN_MSGS=50; MC_MSGS=20000; RTT_DUR=3; HOLD=0.5; PACED_DUR=10
fi

# the servers of a scenario in run order; with --baseline every ngx_pubsub
# server X is followed by X-before
scenario_servers() {
    local s
    for s in $(scenario_servers_plain "$1"); do
        echo "$s"
        case $s in ours*) [ -z "$BASE_SO" ] || echo "$s-before" ;; esac
    done
}
scenario_servers_plain() {
    case $1 in
    presence-*) echo "ours ourspres nchan" ;;
    # Pusher and its nchan-protocol counterpart (nchan cannot speak Pusher)
    pusher-fanout-*) echo "ourspusher ours" ;;
    pusher-idle) echo "ourspusher ours nchan" ;;
    pusher-presence-churn-*) echo "ourspusher ourspres" ;;
    redis-presence-*) echo "oursredis oursredispres nchanredis" ;;
    # return 200 (no Redis) as the ceiling of nginx itself, as in publish-*
    redis-publish-*) echo "oursredis nchanredis ret200" ;;
    redis-*) echo "oursredis nchanredis" ;;
    publish-*) echo "ours nchan ret200" ;;
    *) echo "ours nchan" ;;
    esac
}
scenario_workers() {
    case $1 in
    publish-2w|redis-publish-2w|pusher-presence-churn-2w) echo 2 ;;
    *) echo 1 ;;
    esac
}
# client arguments of SCENARIO [SERVER]; the URLs use @PORT@ (filled per run)
scenario_args() {
    local base=http://127.0.0.1:@PORT@
    case $1 in
    pusher-*) pusher_args "$1" "${2:-ourspusher}"; return ;;
    esac
    case $1 in
    publish-*) echo "publish --url $base/pub?id={ch} --conns 50 --duration $PUB_DUR --warmup $PUB_WARM --size 100" ;;
    fanout-ws-10k) echo "fanout --transport ws --sub-url $base/sub?id={ch} --pub-url $base/pub?id={ch} --subs 10000 --channels 1 --messages $FAN_MSGS --size 100" ;;
    fanout-ws-1000ch) echo "fanout --transport ws --sub-url $base/sub?id={ch} --pub-url $base/pub?id={ch} --subs 5000 --channels 1000 --messages $MC_MSGS --pub-conns 50 --size 100" ;;
    idle-ws) echo "idle --transport ws --sub-url $base/sub?id={ch} --pub-url $base/pub?id={ch} --subs 10000 --hold $HOLD --measure-pid @WORKER@" ;;
    idle-sse) echo "idle --transport sse --sub-url $base/sub?id={ch} --pub-url $base/pub?id={ch} --subs 10000 --hold $HOLD --measure-pid @WORKER@" ;;
    # the other streams (raw: its own location) and waiting long-polls
    idle-chunked|idle-multipart|idle-longpoll) echo "idle --transport ${1#idle-} --sub-url $base/sub?id={ch} --pub-url $base/pub?id={ch} --subs 10000 --hold $HOLD --measure-pid @WORKER@" ;;
    idle-raw) echo "idle --transport raw --sub-url $base/raw?id={ch} --pub-url $base/pub?id={ch} --subs 10000 --hold $HOLD --measure-pid @WORKER@" ;;
    # paced-ws-<subs>-<msgs/s>: one channel, messages evenly spaced for PACED_DUR s
    paced-ws-1k-20) echo "paced --transport ws --sub-url $base/sub?id={ch} --pub-url $base/pub?id={ch} --subs 1000 --rate 20 --duration $PACED_DUR --size 100" ;;
    paced-ws-10k-5) echo "paced --transport ws --sub-url $base/sub?id={ch} --pub-url $base/pub?id={ch} --subs 10000 --rate 5 --duration $PACED_DUR --size 100" ;;
    longpoll-rtt-1) echo "longpoll-rtt --sub-url $base/sub?id={ch} --pub-url $base/pub?id={ch} --pairs 1 --duration $RTT_DUR --warmup 0.5 --size 100" ;;
    longpoll-rtt-20) echo "longpoll-rtt --sub-url $base/sub?id={ch} --pub-url $base/pub?id={ch} --pairs 20 --duration $RTT_DUR --warmup 0.5 --size 100" ;;
    # presence: every subscriber URL carries a distinct user (ignored without presence)
    presence-idle-ws) echo "idle --transport ws --sub-url $base/sub?id={ch}&user=u{sub} --pub-url $base/pub?id={ch} --subs 10000 --hold $HOLD --measure-pid @WORKER@ @STATUS@" ;;
    presence-churn-ws) echo "churn --transport ws --sub-url $base/sub?id={ch}&user=u{sub} --conns 50 --duration $PUB_DUR --warmup $PUB_WARM" ;;
    presence-churn-sse) echo "churn --transport sse --sub-url $base/sub?id={ch}&user=u{sub} --conns 50 --duration $PUB_DUR --warmup $PUB_WARM" ;;
    # Redis engine: the memory scenarios through Redis; fan-out with 1,000 subscribers
    redis-publish-*) scenario_args "${1#redis-}" ;;
    redis-idle-*|redis-longpoll-rtt-*|redis-presence-churn-*) scenario_args "${1#redis-}" ;;
    redis-fanout-ws-1k) echo "fanout --transport ws --sub-url $base/sub?id={ch} --pub-url $base/pub?id={ch} --subs 1000 --channels 1 --messages $((FAN_MSGS * 4)) --size 100" ;;
    redis-fanout-ws-1000ch) echo "fanout --transport ws --sub-url $base/sub?id={ch} --pub-url $base/pub?id={ch} --subs 5000 --channels 1000 --messages $MC_MSGS --pub-conns 50 --size 100" ;;
    presence-fanout-ws-10k) echo "fanout --transport ws --sub-url $base/sub?id={ch}&user=u{sub} --pub-url $base/pub?id={ch} --subs 10000 --channels 1 --messages $FAN_MSGS --size 100" ;;
    esac
}
# Pusher scenarios: the Pusher client on ourspusher, the nchan-protocol
# counterpart on the other servers
pusher_args() {
    local base=http://127.0.0.1:@PORT@ app="http://127.0.0.1:@PORT@/app/app-key?protocol=7"
    case $1:${2%-before} in
    pusher-fanout-10k:ourspusher) echo "fanout --transport pusher --sub-url $app --pub-url $base/pub?id={ch} --subs 10000 --channels 1 --messages $FAN_MSGS --size 100" ;;
    pusher-fanout-10k:*) scenario_args fanout-ws-10k ;;
    pusher-idle:ourspusher) echo "idle --transport pusher --sub-url $app --pub-url $base/pub?id={ch} --subs 10000 --hold $HOLD --measure-pid @WORKER@" ;;
    pusher-idle:*) scenario_args idle-ws ;;
    # 50 connections each join and leave a presence channel of its own as a
    # new member, 2 more members per channel count member_added/removed
    pusher-presence-churn-2w:ourspusher) echo "churn --transport pusher --sub-url $app --pusher-secret $PUSHER_SECRET --pusher-channel presence-{ch} --conns 50 --channels 50 --watchers 2 --duration $PUB_DUR --warmup $PUB_WARM" ;;
    # presence-churn-ws over the same 50 channels
    pusher-presence-churn-2w:*) echo "churn --transport ws --sub-url $base/sub?id={ch}&user=u{sub} --conns 50 --channels 50 --duration $PUB_DUR --warmup $PUB_WARM" ;;
    esac
}

: > "$OUT/commands.tsv"
START=$(date +%s)
log "scenarios:$SCENARIOS; reps $REPS; work dir $WORK"
for sc in $SCENARIOS; do
    workers=$(scenario_workers "$sc")
    printf '%s\t%s\t%s\n' "$sc" "$workers" "$(scenario_args "$sc")" >> "$OUT/commands.tsv"
    case $sc in pusher-*)
        # one command per server: SCENARIO@SERVER
        for server in $(scenario_servers_plain "$sc"); do
            printf '%s@%s\t%s\t%s\n' "$sc" "$server" "$workers" "$(scenario_args "$sc" "$server")" >> "$OUT/commands.tsv"
        done ;;
    esac
    for rep in $(seq 1 "$REPS"); do
        for server in $(scenario_servers "$sc"); do
            case $server in
            *-before) [ $BASE_OK = 1 ] || continue ;;
            ours*) [ $OURS_OK = 1 ] || continue ;;
            esac
            CUR_SERVER=$server; CUR_SCENARIO=$sc; CUR_REP=$rep
            wait_idle
            busy=$(cpu_busy)
            if ! start_server "$server" "$workers"; then
                note "$server/$sc rep $rep: nginx failed to start"
                continue
            fi
            args=$(scenario_args "$sc" "$server")
            args=${args//@PORT@/$PORT}
            args=${args//@WORKER@/$WORKER_PID}
            case $server in
            ours|ourspres|ours-before|ourspres-before) args=${args//@STATUS@/--status-url http://127.0.0.1:$PORT/status} ;;
            *) args=${args//@STATUS@/} ;;
            esac
            cpin=(nice -n "$NICE")
            if [ "$workers" = 1 ] && [ $PIN = 1 ]; then cpin+=(taskset -c 1); fi
            logf=$OUT/$sc-$server-$rep.log
            spids=("$MASTER_PID" $(pgrep -P "$MASTER_PID" || true))
            read -r b0 t0 < <(stat_totals)
            s0=$(proc_jiffies "${spids[@]}")
            rj0=0; [ -n "$REDIS_PID" ] && rj0=$(proc_jiffies "$REDIS_PID")
            w0=$(date +%s%N)
            # shellcheck disable=SC2086
            json=$(timeout 180 "${cpin[@]}" "$CLIENT" $args --label "$server" 2>"$logf" | tail -1) || true
            w1=$(date +%s%N)
            s1=$(proc_jiffies "${spids[@]}")
            rj1=0; [ -n "$REDIS_PID" ] && rj1=$(proc_jiffies "$REDIS_PID")
            read -r b1 t1 < <(stat_totals)
            # presence through Redis: once the leave delay (1 s) has passed,
            # every member must have left (members left in the channels'
            # :pz sets, users left as {user:*} keys; both should be 0)
            pres_json='{}'
            if [ "${server%-before}" = oursredispres ] && [ -n "$REDIS_PID" ]; then
                sleep 2.5
                rc=(redis-cli -h 127.0.0.1 -p "$REDIS_PORT")
                left=0
                for k in $("${rc[@]}" --scan --pattern '*:pz' 2>/dev/null); do
                    left=$((left + $("${rc[@]}" zcard "$k" 2>/dev/null || echo 0)))
                done
                users=$("${rc[@]}" --scan --pattern '{user:*' 2>/dev/null | wc -l)
                pres_json="{\"presence_members_after\":$left,\"presence_user_keys_after\":$users}"
                if [ "$left" != 0 ] || [ "$users" != 0 ]; then
                    note "$server/$sc rep $rep: $left member(s) and $users user key(s) still in Redis 2.5 s after the run (leave delay 1 s)"
                fi
            fi
            stop_server
            # server CPU as % of one core; other processes' CPU as % of all CPUs
            wall_j=$(( (w1 - w0) * CLK_TCK / 1000000000 ))
            [ $wall_j -gt 0 ] || wall_j=1
            server_pct=$(( 100 * (s1 - s0) / wall_j ))
            ccpu=$(echo "$json" | jq -r '.client_cpu_s // 0' 2>/dev/null || echo 0)
            client_j=$(awk -v c="$ccpu" -v k="$CLK_TCK" 'BEGIN { printf "%d", c * k }')
            tot=$((t1 - t0)); [ $tot -gt 0 ] || tot=1
            other=$(( b1 - b0 - (s1 - s0) - client_j - (rj1 - rj0) ))
            redis_pct=$(( 100 * (rj1 - rj0) / wall_j ))
            [ $other -ge 0 ] || other=0
            other_pct=$(( 100 * other / tot ))
            client_pct=$(( 100 * client_j / wall_j ))
            if [ -z "$json" ] || ! echo "$json" | jq -e . >/dev/null 2>&1; then
                note "$server/$sc rep $rep: client produced no result (see bench/out/$(basename "$logf"))"
                json='{"error":"no result"}'
            else
                # faults the client counted: worth a line in the notes
                faults=$(echo "$json" | jq -r 'to_entries | map(select((.key | IN("lost", "duplicates",
                    "reorders", "wrong_channel", "stalls", "out_of_order", "non_2xx", "failures",
                    "sub_failed", "member_events_missing", "member_events_extra", "pusher_errors",
                    "setup_failures")) and (.value | type == "number") and .value > 0)
                    | "\(.key) \(.value)") | join(", ")' 2>/dev/null || true)
                [ -z "$faults" ] || note "$server/$sc rep $rep: the client counted $faults"
                # paced: the offered rate was not sustained (queueing, not latency)
                behind=$(echo "$json" | jq -r 'select(.behind == 1) | .behind_reason' 2>/dev/null || true)
                [ -z "$behind" ] || note "$server/$sc rep $rep: paced run fell behind: $behind"
            fi
            echo "$json" | jq -c --arg sc "$sc" --arg sv "$server" --argjson rep "$rep" \
                --argjson w "$workers" --argjson busy "$busy" --argjson spct "$server_pct" \
                --argjson opct "$other_pct" --argjson cpct "$client_pct" --argjson rpct "$redis_pct" \
                --argjson scpu "$(( s1 - s0 ))" --argjson tck "$CLK_TCK" \
                --argjson rcpu "$(( rj1 - rj0 ))" --argjson pres "$pres_json" \
                '. + {scenario:$sc, server:$sv, rep:$rep, workers:$w, busy_before_pct:$busy,
                      server_cpu_pct:$spct, client_cpu_pct:$cpct, other_cpu_pct:$opct,
                      server_cpu_s:($scpu / $tck)}
                   + (if $sv | contains("redis") then {redis_cpu_pct:$rpct, redis_cpu_s:($rcpu / $tck)} else {} end)
                   + $pres' \
                >> "$OUT/results.jsonl"
            log "$sc $server rep $rep (server ${server_pct}% of a core, client ${client_pct}%, redis ${redis_pct}%, others ${other_pct}% of all CPUs): $(head -c 300 "$logf" | tr '\n' ' ' | cut -c1-200)"
        done
    done
done
ELAPSED=$(( $(date +%s) - START ))
# Only presence scenarios: update the "Presence" section of RESULTS.md and
# leave the rest of the file as it is.
PRESENCE_ONLY=1
REDIS_ONLY=1
PUSHER_ONLY=1
PACED_ONLY=1
for sc in $SCENARIOS; do
    case $sc in paced-*) ;; *) PACED_ONLY=0 ;; esac
    case $sc in presence-*) ;; *) PRESENCE_ONLY=0 ;; esac
    case $sc in redis-*) ;; *) REDIS_ONLY=0 ;; esac
    case $sc in pusher-*) ;; *) PUSHER_ONLY=0 ;; esac
done

CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
python3 "$BENCH/report.py" \
    --results "$OUT/results.jsonl" --commands "$OUT/commands.tsv" --notes "$OUT/notes.txt" \
    --out "$RESULTS" --command "bench/run.sh${ORIG_ARGS:+ $ORIG_ARGS}" --date "$(date -u '+%Y-%m-%d %H:%M UTC')" \
    --nproc "$NPROC" --cpu "$CPU" --kernel "$(uname -r)" \
    --nginx "$("$NGINX" -v 2>&1 | sed 's/^nginx version: //')" \
    --loadavg "$(cut -d' ' -f1-3 /proc/loadavg)" --elapsed "$ELAPSED" --reps "$REPS" \
    --ours-ok "$OURS_OK" --client "$CLIENT" --nofile "$NOFILE" --worker-conns "$WORKER_CONNS" --nice "$NICE" \
    --presence-only "$PRESENCE_ONLY" --redis-only "$REDIS_ONLY" --pusher-only "$PUSHER_ONLY" \
    --paced-only "$PACED_ONLY" \
    --baseline "$BASE_LABEL" --baseline-so "$BASE_SO" --baseline-ok "$BASE_OK" \
    --redis-version "$("$REDIS_SERVER" --version 2>/dev/null | sed -n 's/.* v=\([^ ]*\).*/\1/p' || true)"
log "wrote $RESULTS in ${ELAPSED}s"
