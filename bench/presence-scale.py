#!/usr/bin/env python3
"""Presence at scale with real connections (issue 7, part 6).

    bench/presence-scale.py [--workers 4] [--members 10000] [--channels 1000]
                            [--per-channel 10] [--transport ws|sse] [--json FILE]

Starts its own nginx (temp prefix, free port, `worker_processes 4` by
default) with `pubsub_presence on; pubsub_presence_id $arg_user;` and uses
the load client (build/bench/pubsub-load, idle mode) to hold real
subscribers, each with its own presence id:

1. one channel, 10,000 members: `?stats` must say members == connections ==
   10,000; a full paged listing (limit 1000, then limit 100) must return
   every id exactly once; time per page is reported; the zone's growth per
   member (`shm_used` of pubsub_status); after the client exits, every member
   must leave (members == 0) once the leave delay (1 s) has run out.
2. 1,000 channels x 10 members: every channel's `?stats` says 10 and its
   listing has exactly its 10 ids; a user's state names its one channel;
   all leave after the client exits.

Exit status 0 when every check passed, 1 otherwise. Takes ~30-60 s on a
2-core machine. Needs nginx, build/nginx/ngx_pubsub_module.so (scripts/build.sh)
and the client (cmake -S bench -B build/bench && cmake --build build/bench).
"""
import argparse
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULE = (os.environ.get("PUBSUB_MODULE")
          or os.path.join(ROOT, "build/nginx/ngx_pubsub_module.so"))
CLIENT = os.path.join(ROOT, "build/bench/pubsub-load")
NGINX = os.environ.get("NGINX", "/usr/sbin/nginx")

failures = []


def check(ok, what):
    print(("  ok   " if ok else "  FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)
    return ok


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def get(port, path, timeout=10):
    url = "http://127.0.0.1:{}{}".format(port, path)
    t = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            body = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        body, status = e.read(), e.code
    dt = time.perf_counter() - t
    try:
        return status, json.loads(body), dt
    except ValueError:
        return status, body, dt


def stats(port, ch):
    _, j, _ = get(port, "/presence?id={}&stats".format(urllib.parse.quote(ch)))
    return j if isinstance(j, dict) else {}


def wait_for(pred, timeout, step=0.2):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def list_all(port, ch, limit):
    """Pages through a channel's members; returns (ids, page times, pages, error)."""
    ids, times, cursor = [], [], None
    for _ in range(100000):
        q = "/presence?id={}&limit={}".format(urllib.parse.quote(ch), limit)
        if cursor is not None:
            q += "&cursor=" + urllib.parse.quote(cursor, safe="")
        st, j, dt = get(port, q)
        if st != 200 or not isinstance(j, dict):
            return ids, times, "status {} body {!r}".format(st, j)[:200]
        times.append(dt)
        ids += [m.get("id") for m in j.get("members", [])]
        cursor = j.get("next_cursor")
        if cursor is None:
            return ids, times, None
    return ids, times, "too many pages"


def write_config(prefix, port, workers, nofile):
    os.makedirs(os.path.join(prefix, "logs"))
    os.makedirs(os.path.join(prefix, "tmp"))
    user = "user root;" if os.geteuid() == 0 else ""
    conf = """load_module {mod};
{user}
worker_processes {workers};
worker_rlimit_nofile {nofile};
pid {p}/nginx.pid;
error_log {p}/logs/error.log warn;
events {{ worker_connections {wc}; }}
http {{
    access_log off;
    client_body_temp_path {p}/tmp/body;
    proxy_temp_path {p}/tmp/proxy;
    fastcgi_temp_path {p}/tmp/fastcgi;
    uwsgi_temp_path {p}/tmp/uwsgi;
    scgi_temp_path {p}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = /sub {{
            pubsub_subscriber;
            pubsub_channel_id $arg_id;
            pubsub_presence on;
            pubsub_presence_id $arg_user;
            pubsub_presence_leave_delay 1s;
        }}
        location = /presence {{ pubsub_presence_api; pubsub_channel_id $arg_id; }}
        location = /user {{ pubsub_presence_api; }}
        location = /status {{ pubsub_status; }}
    }}
}}
""".format(mod=MODULE, user=user, workers=workers, nofile=nofile, p=prefix,
           wc=nofile - 100, port=port)
    with open(os.path.join(prefix, "nginx.conf"), "w") as fh:
        fh.write(conf)


def shm_used(port):
    _, j, _ = get(port, "/status")
    return j.get("shm_used") if isinstance(j, dict) else None


def hold(port, subs, channels, run_id, transport):
    """Starts the idle client holding `subs` subscribers; returns the process."""
    if channels > 1:
        url = "http://127.0.0.1:{}/sub?id={{ch}}&user=u{{sub}}".format(port)
    else:
        url = "http://127.0.0.1:{}/sub?id={}-0&user=u{{sub}}".format(port, run_id)
    args = [CLIENT, "idle", "--transport", transport, "--sub-url", url, "--subs", str(subs),
            "--channels", str(channels), "--run-id", run_id, "--settle", "0", "--hold", "600",
            "--connect-timeout", "60"]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def release(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return out, err


def one_channel(port, n, transport, res):
    print("== one channel, {:,} members".format(n), flush=True)
    ch = "big-0"
    shm0 = shm_used(port)
    t0 = time.time()
    proc = hold(port, n, 1, "big", transport)
    s = wait_for(lambda: stats(port, ch).get("members") == n and stats(port, ch), 90)
    t_up = time.time() - t0
    s = stats(port, ch)
    check(s.get("members") == n and s.get("connections") == n,
          "stats: members {} connections {} (want {:,}) after {:.1f} s".format(
              s.get("members"), s.get("connections"), n, t_up))
    res["one_channel"] = {"members": s.get("members"), "connections": s.get("connections"),
                          "subscribe_s": round(t_up, 2)}
    shm1 = shm_used(port)
    if shm0 is not None and shm1 is not None:
        res["one_channel"]["shm_bytes_per_member"] = round((shm1 - shm0) / n, 1)
        print("  zone: shm_used {:,} -> {:,} bytes = {:.0f} B/member (incl. connections)".format(
            shm0, shm1, (shm1 - shm0) / n))
    # stats is O(1): time it
    ts = []
    for _ in range(20):
        ts.append(get(port, "/presence?id={}&stats".format(ch))[2])
    res["one_channel"]["stats_ms_median"] = round(sorted(ts)[len(ts) // 2] * 1000, 2)
    want = {"u{}".format(i) for i in range(n)}
    for limit in (1000, 100):
        ids, times, err = list_all(port, ch, limit)
        check(err is None, "listing limit={}: {}".format(limit, err or "completed"))
        dup = len(ids) - len(set(ids))
        check(len(ids) == n and dup == 0 and set(ids) == want,
              "listing limit={}: {:,} ids in {} pages, {} twice, {} missing, {} unexpected".format(
                  limit, len(ids), len(times), dup, len(want - set(ids)), len(set(ids) - want)))
        med = sorted(times)[len(times) // 2] * 1000 if times else 0
        mx = max(times) * 1000 if times else 0
        print("  limit={}: {} pages, median {:.2f} ms/page, max {:.2f} ms, total {:.2f} s".format(
            limit, len(times), med, mx, sum(times)))
        res["one_channel"]["page_ms_limit_{}".format(limit)] = {
            "pages": len(times), "median": round(med, 2), "max": round(mx, 2),
            "total_s": round(sum(times), 3)}
    _, u, _ = get(port, "/user?user=u1234")
    check(isinstance(u, dict) and u.get("online") is True and u.get("channels") == [ch],
          "user u1234 online in [{}]: {}".format(ch, json.dumps(u)[:160]))
    out, err = release(proc)
    t1 = time.time()
    gone = wait_for(lambda: stats(port, ch).get("members") == 0, 30)
    check(bool(gone), "all {:,} left {:.1f} s after the client exited (leave delay 1 s): {}".format(
        n, time.time() - t1, stats(port, ch)))
    res["one_channel"]["all_left_s"] = round(time.time() - t1, 2)


def many_channels(port, channels, per, transport, res):
    n = channels * per
    print("== {:,} channels x {} members".format(channels, per), flush=True)
    shm0 = shm_used(port)
    t0 = time.time()
    proc = hold(port, n, channels, "many", transport)
    # every channel full (the client connects in a ramp, out of order)
    wait_for(lambda: all(stats(port, "many-{}".format(c)).get("members") == per
                         for c in range(channels)), 90, step=0.5)
    t_up = time.time() - t0
    shm1 = shm_used(port)
    bad_stats, bad_list, times = [], [], []
    t_check = time.time()
    for c in range(channels):
        ch = "many-{}".format(c)
        s = stats(port, ch)
        if s.get("members") != per or s.get("connections") != per:
            bad_stats.append((ch, s))
        ids, ts, err = list_all(port, ch, 100)
        times += ts
        want = {"u{}".format(c + k * channels) for k in range(per)}
        if err or len(ids) != per or set(ids) != want:
            bad_list.append((ch, err, ids))
    check(not bad_stats, "stats of all {:,} channels: {} members each ({} wrong{})".format(
        channels, per, len(bad_stats), ": " + str(bad_stats[:2]) if bad_stats else ""))
    check(not bad_list, "listings of all {:,} channels: exactly their {} ids ({} wrong{})".format(
        channels, per, len(bad_list), ": " + str(bad_list[:2]) if bad_list else ""))
    med = sorted(times)[len(times) // 2] * 1000 if times else 0
    print("  {:,} stats + {:,} listings in {:.1f} s; median listing {:.2f} ms".format(
        channels, len(times), time.time() - t_check, med))
    res["many_channels"] = {"channels": channels, "per_channel": per,
                            "subscribe_s": round(t_up, 2),
                            "check_s": round(time.time() - t_check, 2),
                            "page_ms_median": round(med, 2)}
    if shm0 is not None and shm1 is not None:
        res["many_channels"]["shm_bytes_per_member"] = round((shm1 - shm0) / n, 1)
        print("  zone: shm_used {:,} -> {:,} bytes = {:.0f} B/member (incl. channels)".format(
            shm0, shm1, (shm1 - shm0) / n))
    _, u, _ = get(port, "/user?user=u1005")
    check(isinstance(u, dict) and u.get("online") is True and u.get("channels") == ["many-5"],
          "user u1005 online in [many-5]: {}".format(json.dumps(u)[:160]))
    release(proc)
    t1 = time.time()
    gone = wait_for(lambda: all(stats(port, "many-{}".format(c)).get("members") == 0
                                for c in range(channels)), 30, step=0.5)
    check(bool(gone), "all {:,} members of {:,} channels left after the client exited".format(
        n, channels))
    res["many_channels"]["all_left_s"] = round(time.time() - t1, 2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--members", type=int, default=10000)
    ap.add_argument("--channels", type=int, default=1000)
    ap.add_argument("--per-channel", type=int, default=10)
    ap.add_argument("--transport", default="ws", choices=["ws", "sse"])
    ap.add_argument("--json", help="also write the numbers to this file")
    a = ap.parse_args()
    for f, what in ((MODULE, "scripts/build.sh"), (CLIENT, "cmake -S bench -B build/bench && "
                                                           "cmake --build build/bench")):
        if not os.path.exists(f):
            sys.exit("presence-scale: {} missing (build it: {})".format(f, what))
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile = min(hard if hard != resource.RLIM_INFINITY else 65536, 65536)
    need = max(a.members, a.channels * a.per_channel) + 200
    if nofile < need:
        sys.exit("presence-scale: RLIMIT_NOFILE hard limit {} < {} needed".format(nofile, need))
    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))
    prefix = tempfile.mkdtemp(prefix="pubsub-presscale.")
    os.chmod(prefix, 0o755)
    port = free_port()
    write_config(prefix, port, a.workers, nofile)
    subprocess.run([NGINX, "-p", prefix, "-c", prefix + "/nginx.conf"], check=True)
    master = None
    res = {"workers": a.workers, "transport": a.transport}
    try:
        master = int(wait_for(lambda: os.path.exists(prefix + "/nginx.pid") and open(
            prefix + "/nginx.pid").read().strip(), 5))
        wait_for(lambda: shm_used(port) is not None, 5)
        t = time.time()
        one_channel(port, a.members, a.transport, res)
        many_channels(port, a.channels, a.per_channel, a.transport, res)
        res["total_s"] = round(time.time() - t, 1)
    finally:
        if master:
            os.kill(master, signal.SIGQUIT)
            wait_for(lambda: not os.path.exists(prefix + "/nginx.pid"), 10)
        log = open(prefix + "/logs/error.log").read() if os.path.exists(
            prefix + "/logs/error.log") else ""
        bad = [ln for ln in log.splitlines() if any(
            t in ln for t in ("[alert]", "[crit]", "[emerg]"))]
        check(not bad, "error.log has no alert/crit/emerg lines{}".format(
            ": " + bad[0][:200] if bad else ""))
        shutil.rmtree(prefix, ignore_errors=True)
    res["failures"] = failures
    print(json.dumps(res))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(res, fh, indent=1)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
