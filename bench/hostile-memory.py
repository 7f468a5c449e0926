#!/usr/bin/env python3
"""Worker memory per hostile connection vs pubsub_subscriber_max_pending
(issue 14 item 2, SPEC 11 "Bounded per-connection memory").

    bench/hostile-memory.py [--before SO] [--after SO] [--max-pending 256k,1m]
                            [--conns 4] [--only ping-flood,slow-ws,slow-sse]
                            [--json FILE]

For each module (before, after), each pubsub_subscriber_max_pending and
each scenario, starts a fresh nginx (temp prefix, free port,
worker_processes 1, `listen ... sndbuf=64k` so that the kernel takes
little of what the worker writes) and opens --conns hostile connections,
each with a 4 KB receive buffer and never reading:

  ping-flood  WebSocket subscribers that send empty pings as fast as the
              worker takes them (2,000,000 each) and read nothing: every
              ping is owed a pong.
  slow-ws     WebSocket subscribers of one channel; a WebSocket publisher
              (whose info replies are read) sends 600,000 1-byte
              messages to it.
  slow-sse    The same with EventSource subscribers (the HTTP streaming
              path).

Once the worker has read everything sent (the sockets' queues in
/proc/net/tcp are empty) or dropped the connections, reported per
connection: the worker's peak RSS growth (VmHWM at the end minus VmRSS
before the hostile clients; /proc/<pid>/status) divided by the
number of connections, that growth over max_pending, and how many of the
connections the worker dropped ("client dropped" / "subscriber dropped"
lines in error.log).
Memory the allocator keeps after a drop still counts: the peak is what the
machine must have.

Needs nginx and the modules: --after defaults to build/nginx/ (scripts/build.sh),
--before to /work/baseline/ngx_pubsub_module.so. Takes ~1-3 minutes.
"""
import argparse
import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NGINX = os.environ.get("NGINX", "/usr/sbin/nginx")

PING_CAP = 2_000_000      # pings per connection
MSG_CAP = 600_000         # 1-byte messages published
BATCH = 20_000            # frames per round
RCVBUF = 4096


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def size_arg(text):
    m = re.fullmatch(r"(\d+)([kKmM]?)", text)
    if not m:
        raise ValueError("bad size: " + text)
    return int(m.group(1)) * {"": 1, "k": 1024, "m": 1024 * 1024}[m.group(2).lower()]


class Nginx:
    def __init__(self, module, max_pending):
        self.prefix = tempfile.mkdtemp(prefix="pubsub-hostile.")
        os.chmod(self.prefix, 0o755)
        os.mkdir(os.path.join(self.prefix, "logs"))
        self.port = free_port()
        self.log = os.path.join(self.prefix, "logs", "error.log")
        user = "user root;\n" if os.getuid() == 0 else ""
        conf = f"""load_module {module};
{user}daemon off;
master_process on;
worker_processes 1;
pid {self.prefix}/nginx.pid;
error_log {self.log} info;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {self.prefix}/tmp;
    server {{
        # a small kernel send buffer: what the worker writes and the
        # client does not read soon stays in the worker
        listen 127.0.0.1:{self.port} sndbuf=64k;
        pubsub_subscriber_max_pending {max_pending};
        location ~ ^/sub/(.+)$ {{ pubsub_subscriber; pubsub_channel_id $1; }}
        # the publisher: a WebSocket that publishes to "slow" and gets
        # nothing back (no info replies, its own channel stays empty)
        location = /feed {{
            pubsub_pubsub;
            pubsub_publisher_channel_id slow;
            pubsub_subscriber_channel_id quiet;
        }}
    }}
}}
"""
        path = os.path.join(self.prefix, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        self.proc = subprocess.Popen([NGINX, "-p", self.prefix + "/", "-c", path,
                                      "-e", self.log],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 10
        self.worker = None
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("nginx exited: " + self.proc.stderr.read().decode())
            self.worker = self._worker()
            if self.worker:
                try:
                    socket.create_connection(("127.0.0.1", self.port), 1).close()
                    return
                except OSError:
                    pass
            time.sleep(0.05)
        raise RuntimeError("nginx did not start")

    def _worker(self):
        for ent in os.listdir("/proc"):
            if not ent.isdigit():
                continue
            try:
                with open(f"/proc/{ent}/stat") as f:
                    stat = f.read()
                ppid = int(stat[stat.rindex(")") + 2:].split()[1])
                if ppid == self.proc.pid:
                    return int(ent)
            except (OSError, ValueError):
                pass
        return None

    def status(self, key):
        with open(f"/proc/{self.worker}/status") as f:
            m = re.search(key + r":\s+(\d+) kB", f.read())
        return int(m.group(1)) * 1024

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.prefix, ignore_errors=True)


def connect(port, small=True):
    s = socket.socket()
    if small:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    s.connect(("127.0.0.1", port))
    s.settimeout(60)
    return s


def tcp_queues():
    """{(local port, remote port): (tx_queue, rx_queue)} of established
    loopback TCP sockets."""
    out = {}
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            f_ = line.split()
            if f_[3] != "01":
                continue
            lp = int(f_[1].split(":")[1], 16)
            rp = int(f_[2].split(":")[1], 16)
            tx, rx = (int(x, 16) for x in f_[4].split(":"))
            out[(lp, rp)] = (tx, rx)
    return out


def settle(port, socks, deadline):
    """Waits until the worker has read all that socks sent (nothing left
    in the client's send queue nor in the worker's receive queue) or the
    connection is gone. False: not by the deadline (time.time())."""
    ports = [s.getsockname()[1] for s in socks]
    while True:
        q = tcp_queues()
        busy = False
        for cp in ports:
            client = q.get((cp, port))
            server = q.get((port, cp))
            if client is None or server is None:
                continue
            if client[0] or server[1]:
                busy = True
        if not busy:
            return True
        if time.time() > deadline:
            return False
        time.sleep(0.01)


def read_head(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(4096)
        if not d:
            raise RuntimeError("closed during the handshake")
        buf += d
    head = buf[:buf.index(b"\r\n\r\n")]
    return head.split(b" ", 2)[1].decode()


def ws_open(port, path, small=True):
    s = connect(port, small)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
    status = read_head(s)
    if status != "101":
        raise RuntimeError(f"websocket handshake: {status}")
    return s


def sse_open(port, path):
    s = connect(port)
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               "Accept: text/event-stream\r\n\r\n").encode())
    status = read_head(s)
    if status != "200":
        raise RuntimeError(f"eventsource: {status}")
    return s


def masked(opcode, payload):
    # zero mask key: the payload goes as is
    return bytes([0x80 | opcode, 0x80 | len(payload), 0, 0, 0, 0]) + payload


def send_all(port, conns, frame, cap, deadline):
    """Sends `cap` copies of frame on each connection, round robin, in
    batches, each round once the worker has read the last; a connection
    the server closed stops. Returns (frames the worker read, whether it
    read them all by the deadline)."""
    chunk = frame * BATCH
    sent = 0
    live = list(conns)
    per = {id(c): 0 for c in conns}
    while live:
        for c in list(live):
            try:
                c.sendall(chunk)
                per[id(c)] += BATCH
                sent += BATCH
            except OSError:
                live.remove(c)
                continue
            if per[id(c)] >= cap:
                live.remove(c)
        if not settle(port, conns, deadline):
            return sent, False
    return sent, True


def drain(sock):
    """Reads and discards until the socket is shut down."""
    while True:
        try:
            if not sock.recv(65536):
                return
        except OSError:
            return


def scenario(name, ngx, conns, time_limit):
    port = ngx.port
    hostile = []
    t0 = time.time()
    if name == "ping-flood":
        hostile = [ws_open(port, f"/sub/pf{i}") for i in range(conns)]
        time.sleep(0.2)
        before = ngx.status("VmRSS")
        t0 = time.time()
        sent, done = send_all(port, hostile, masked(0x9, b""), PING_CAP,
                              t0 + time_limit)
    else:
        for _ in range(conns):
            if name == "slow-ws":
                hostile.append(ws_open(port, "/sub/slow"))
            else:
                hostile.append(sse_open(port, "/sub/slow"))
        pub = ws_open(port, "/feed", small=False)
        t = threading.Thread(target=drain, args=(pub,), daemon=True)
        t.start()
        time.sleep(0.2)
        before = ngx.status("VmRSS")
        t0 = time.time()
        sent, done = send_all(port, [pub], masked(0x1, b"x"), MSG_CAP,
                              t0 + time_limit)
        pub.shutdown(socket.SHUT_RDWR)
        t.join()
        pub.close()
    elapsed = time.time() - t0
    time.sleep(0.5)   # deliveries of the last messages
    peak = ngx.status("VmHWM")
    after = ngx.status("VmRSS")
    for s in hostile:
        s.close()
    time.sleep(0.3)
    log = ngx.log_text()
    dropped = len(re.findall(r"(?:client|subscriber) dropped", log))
    bad = [l for l in log.splitlines() if re.search(r"\[(alert|crit|emerg)\]", l)]
    return {
        "sent": sent,
        "seconds": elapsed,
        "complete": done,
        "rss_before": before,
        "rss_after": after,
        "peak": peak,
        "growth_per_conn": (peak - before) / conns,
        "dropped": dropped,
        "bad_log_lines": bad,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", default="/work/baseline/ngx_pubsub_module.so")
    ap.add_argument("--after", default=os.path.join(ROOT, "build/nginx/ngx_pubsub_module.so"))
    ap.add_argument("--max-pending", default="256k,1m")
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--only", default="ping-flood,slow-ws,slow-sse")
    ap.add_argument("--time-limit", type=float, default=60,
                    help="seconds per run; a worker slower than that stops the run")
    ap.add_argument("--json")
    args = ap.parse_args()

    rows = []
    for scen in args.only.split(","):
        for mp in args.max_pending.split(","):
            for label, module in (("before", args.before), ("after", args.after)):
                ngx = Nginx(os.path.abspath(module), mp)
                try:
                    r = scenario(scen, ngx, args.conns, args.time_limit)
                finally:
                    ngx.stop()
                r.update(scenario=scen, module=label, max_pending=mp,
                         ratio=r["growth_per_conn"] / size_arg(mp))
                rows.append(r)
                print(f"{scen:10} {label:6} max_pending {mp:>5}: sent {r['sent']:>9,}, "
                      f"{r['seconds']:.1f} s{'' if r['complete'] else ' (time limit)'}, dropped {r['dropped']}/{args.conns}, "
                      f"growth/conn {r['growth_per_conn'] / 1e6:8.2f} MB "
                      f"({r['ratio']:.1f}x max_pending)"
                      + (f", {len(r['bad_log_lines'])} alert/crit lines"
                         if r["bad_log_lines"] else ""), flush=True)

    print()
    print("| scenario | max_pending | module | frames sent | in | dropped | worker peak RSS growth per connection | growth / max_pending |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        limit = "" if r["complete"] else " (time limit)"
        print(f"| {r['scenario']} | {r['max_pending']} | {r['module']} | {r['sent']:,} | "
              f"{r['seconds']:.1f} s{limit} | {r['dropped']}/{args.conns} | "
              f"{r['growth_per_conn'] / 1e6:,.2f} MB | {r['ratio']:.1f}x |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 1 if any(r["bad_log_lines"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
