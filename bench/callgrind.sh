#!/usr/bin/env bash
# Instructions per operation, deterministic: runs one nginx (no master, one
# worker) under valgrind --tool=callgrind with the same locations as
# run.sh, drives it with pubsub-load, and divides the instructions by the
# number of operations after subtracting a run with fewer operations.
#
#   bench/callgrind.sh publish ours|nchan|ret200   instructions per publish
#   bench/callgrind.sh fanout  ours|nchan          instructions per delivery
#
# publish: (instructions of a 3 s publish run - those of an idle run) /
#          requests nginx freed (counted by callgrind).
# fanout:  2,000 WebSocket subscribers of one channel; (run with 50
#          messages - run with 10 messages) / (40 x 2,000) deliveries.
# Profiles stay in $CG_DIR (default /tmp/pubsub-callgrind); look at them
# with callgrind_annotate.  Needs valgrind, jq, curl and the built client.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NGINX=${NGINX:-/usr/sbin/nginx}
NCHAN_SO=${NCHAN_SO:-/usr/lib/nginx/modules/ngx_nchan_module.so}
OURS_SO=${OURS_SO:-$ROOT/build/nginx/ngx_pubsub_module.so}
CLIENT=${CLIENT:-$ROOT/build/bench/pubsub-load}
CG_DIR=${CG_DIR:-/tmp/pubsub-callgrind}

what=${1:?usage: callgrind.sh publish|fanout ours|nchan|ret200}
server=${2:?usage: callgrind.sh publish|fanout ours|nchan|ret200}
command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind missing" >&2; exit 2; }
[ -x "$CLIENT" ] || { echo "callgrind.sh: $CLIENT missing (run bench/run.sh once)" >&2; exit 2; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# run <label> <client args...>: prints the instructions of that run
run() {
    local label=$1; shift
    local d=$CG_DIR/$server-$what-$label port lm p pub
    port=$(free_port)
    rm -rf "$d"; mkdir -p "$d/logs" "$d/conf"; chmod 755 "$d"
    case $server in
    ours) lm="load_module $OURS_SO;"; p=pubsub ;;
    nchan) lm="load_module $NCHAN_SO;"; p=nchan ;;
    ret200) lm=""; p=none ;;
    *) echo "callgrind.sh: unknown server $server" >&2; exit 2 ;;
    esac
    pub="${p}_publisher; ${p}_channel_id \$arg_id; ${p}_message_buffer_length 10;"
    local sub="location = /sub { ${p}_subscriber; ${p}_channel_id \$arg_id; }"
    if [ "$server" = ret200 ]; then pub="return 200;"; sub=""; fi
    cat > "$d/conf/nginx.conf" <<EOC
$lm
user root; daemon off; master_process off; worker_processes 1;
worker_rlimit_nofile 20000;
error_log $d/logs/error.log warn; pid $d/logs/nginx.pid;
events { worker_connections 19000; }
http {
    access_log off; keepalive_requests 10000000; keepalive_timeout 300s;
    client_body_temp_path $d/b; proxy_temp_path $d/p; fastcgi_temp_path $d/f;
    uwsgi_temp_path $d/u; scgi_temp_path $d/s;
    server {
        listen 127.0.0.1:$port backlog=4096;
        location = /pub { $pub }
        $sub
        location = /health { return 200; }
    }
}
EOC
    ulimit -n 20000
    valgrind --tool=callgrind --callgrind-out-file="$d/cg.out" \
        "$NGINX" -p "$d" -c conf/nginx.conf > "$d/valgrind.log" 2>&1 &
    local vpid=$!
    for _ in $(seq 1 150); do
        curl -s -o /dev/null "http://127.0.0.1:$port/health" && break
        sleep 0.2
    done
    if [ $# -gt 0 ]; then
        "$CLIENT" "${@//@PORT@/$port}" 2> "$d/client.log" | tail -1 > "$d/client.json"
    fi
    kill -QUIT $vpid; wait $vpid || true
    grep -m1 'Collected' "$d/valgrind.log" | awk '{print $4}'
}

# calls of a function in a callgrind profile
calls() {
    python3 - "$1" "$2" <<'EOP'
import re, sys
names, cur, total = {}, None, 0
for line in open(sys.argv[1]):
    m = re.match(r'(c?)fn=\((\d+)\)(?: (.*))?', line.rstrip('\n'))
    if m:
        if m.group(3):
            names[m.group(2)] = m.group(3)
        cur = names.get(m.group(2)) if m.group(1) else None
    elif line.startswith('calls=') and cur is not None:
        if cur == sys.argv[2]:
            total += int(line[6:].split()[0])
        cur = None
print(total)
EOP
}

url="http://127.0.0.1:@PORT@"
case $what in
publish)
    idle=$(run idle)
    busy=$(run busy publish --url "$url/pub?id={ch}" --conns 10 --duration 3 \
               --warmup 0.5 --size 100)
    reqs=$(calls "$CG_DIR/$server-$what-busy/cg.out" ngx_http_free_request)
    echo "$server publish: $(( (busy - idle) / (reqs > 0 ? reqs : 1) )) instructions per request" \
         "($reqs requests; run $busy, idle $idle)"
    ;;
fanout)
    [ "$server" = ret200 ] && { echo "callgrind.sh: no fan-out for ret200" >&2; exit 2; }
    args=(fanout --transport ws --sub-url "$url/sub?id={ch}" --pub-url "$url/pub?id={ch}"
          --subs 2000 --channels 1 --size 100 --connect-timeout 120)
    small=$(run m10 "${args[@]}" --messages 10)
    big=$(run m50 "${args[@]}" --messages 50)
    echo "$server fanout: $(( (big - small) / 80000 )) instructions per delivery" \
         "(50 msgs $big, 10 msgs $small, 2,000 subscribers)"
    ;;
*) echo "callgrind.sh: publish or fanout" >&2; exit 2 ;;
esac
