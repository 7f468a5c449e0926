#!/usr/bin/env python3
"""Long-poll re-poll vs publish race check (what longpoll-rtt does, one pair).

    bench/longpoll-race.py --base http://127.0.0.1:PORT [--rounds 300] [--delay 0]

One keep-alive subscriber connection long-polls /sub?id=CH; one publisher
connection POSTs m1, m2, ... to /pub?id=CH. After each answer the subscriber
re-polls at once with If-Modified-Since / If-None-Match of the answer, and the
next message is published without waiting (--delay adds a pause). A long-poll
that is not answered within 3 s is a stall: the script then publishes three
more messages, prints what the subscriber gets, and exits 1. Exit 0: every
message arrived in order.
"""
import argparse
import random
import re
import socket
import sys
import time
from urllib.parse import urlparse


def read_resp(s, buf):
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            raise EOFError("connection closed")
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    m = re.search(rb"content-length: *(\d+)", head, re.I)
    n = int(m.group(1)) if m else 0
    while len(rest) < n:
        d = s.recv(65536)
        if not d:
            raise EOFError("connection closed")
        rest += d
    return head.decode("latin-1"), rest[:n], rest[n:]


def header(head, name):
    m = re.search(r"^" + name + r": *(.*)$", head, re.I | re.M)
    return m.group(1).strip() if m else ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--delay", type=float, default=0.0)
    a = ap.parse_args()
    u = urlparse(a.base)
    ch = "race%d" % random.randint(0, 1 << 30)

    def conn():
        s = socket.create_connection((u.hostname, u.port or 80))
        s.settimeout(3)
        return s

    sub, pub = conn(), conn()
    sbuf = pbuf = b""
    cond = ""

    def poll():
        sub.sendall(("GET /sub?id=%s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (ch, cond)).encode())

    def publish(body):
        nonlocal pbuf
        pub.sendall(b"POST /pub?id=%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                    % (ch.encode(), len(body)) + body)
        h, _, pbuf = read_resp(pub, pbuf)
        return h.split("\r\n")[0]

    poll()
    time.sleep(0.2)
    for k in range(1, a.rounds + 1):
        want = b"m%d" % k
        status = publish(want)
        while True:
            try:
                sh, sb, sbuf = read_resp(sub, sbuf)
            except socket.timeout:
                print("round %d: STALL, no long-poll answer in 3 s (publish of %s: %s; poll "
                      "sent %r)" % (k, want.decode(), status, cond))
                for x in range(3):
                    st = publish(b"x%d" % x)
                    try:
                        sh, sb, sbuf = read_resp(sub, sbuf)
                        print("  then publish x%d: %s; the poll got %r (etag %s)"
                              % (x, st, sb, header(sh, "etag")))
                        cond = "If-Modified-Since: %s\r\nIf-None-Match: %s\r\n" % (
                            header(sh, "last-modified"), header(sh, "etag"))
                        poll()
                    except socket.timeout:
                        print("  then publish x%d: %s; the poll is still unanswered" % (x, st))
                return 1
            cond = "If-Modified-Since: %s\r\nIf-None-Match: %s\r\n" % (
                header(sh, "last-modified"), header(sh, "etag"))
            poll()
            if sb == want:
                break
            print("round %d: got %r, expected %r" % (k, sb, want))
        if a.delay:
            time.sleep(a.delay)
    print("ok: %d round trips, every message in order" % a.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
