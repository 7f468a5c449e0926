#!/usr/bin/env python3
"""Self-test of pubsub-load's protocol handling and delivery accounting.

Starts a deliberately misbehaving fake pub/sub server on 127.0.0.1 and checks
that the client reports exactly the faults it injects:
  * per subscriber, message 3 is dropped, message 5 is sent twice and
    messages 7 and 8 are swapped  -> lost, duplicates, reorders;
  * WebSocket: every message is fragmented (text + continuation), a ping is
    interleaved, and payloads > 65535 bytes use 64-bit lengths (pong checked);
  * SSE: chunked transfer coding, multi-line data, comments, CRLF lines;
  * long-poll: resume headers are checked (Etag/Last-Modified round trip);
  * paced mode: the same faults at a fixed rate, the rate achieved, and a
    publisher whose POST answers late (?delay=) reported as behind;
  * Pusher (--transport pusher): connection_established, signed subscribes
    (HMAC-SHA256 checked, a wrong secret refused), events whose data uses
    JSON escapes, pusher:ping -> pusher:pong, presence member_added /
    member_removed counted by churn's watchers.

Usage: bench/selftest.py [path/to/pubsub-load]   (exit 0 when all pass)
"""
import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import os
import struct
import subprocess
import sys

CLIENT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "build", "bench", "pubsub-load")
LOGS = []
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
PUSHER_KEY = "app-key"
PUSHER_SECRET = "selftest-secret"


class Hub:
    def __init__(self):
        self.subs = {}        # channel -> list of (kind, writer)
        self.history = {}     # channel -> list of bodies (long-poll)
        self.waiters = {}     # channel -> list of futures (long-poll)
        self.pongs = 0
        self.bad_resume = 0
        self.pusher_pongs = 0
        self.bad_auth = 0
        self.members = {}     # presence channel -> {writer: user id}
        self.sids = itertools.count(1)


def seq_of(body):
    parts = body.split(b" ", 3)
    return int(parts[2]) if parts[0] == b"m" else None


def plan(body, held):
    """Returns the bodies to send for this published body (fault injection)."""
    s = seq_of(body)
    if s is None:
        return [body]
    if s == 3:
        return []
    if s == 5:
        return [body, body]
    if s == 7:
        held.append(body)
        return []
    if s == 8:
        return [body] + held
    return [body]


def ws_frame(opcode, payload, fin=True):
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        return bytes([b0, n]) + payload
    if n < 65536:
        return bytes([b0, 126]) + struct.pack(">H", n) + payload
    return bytes([b0, 127]) + struct.pack(">Q", n) + payload


async def read_ws_frames(reader, hub):
    try:
        while True:
            h = await reader.readexactly(2)
            n = h[1] & 0x7F
            if n == 126:
                n = struct.unpack(">H", await reader.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", await reader.readexactly(8))[0]
            mask = await reader.readexactly(4) if h[1] & 0x80 else b"\0\0\0\0"
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(await reader.readexactly(n)))
            if h[0] & 0x0F == 0xA and data == b"pingdata" and h[1] & 0x80:
                hub.pongs += 1
            if h[0] & 0x0F == 0x8:
                return
    except (asyncio.IncompleteReadError, ConnectionError):
        return


async def read_ws_messages(reader):
    """Yields the client's text messages (unmasked); ends at close or EOF."""
    try:
        while True:
            h = await reader.readexactly(2)
            n = h[1] & 0x7F
            if n == 126:
                n = struct.unpack(">H", await reader.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", await reader.readexactly(8))[0]
            mask = await reader.readexactly(4) if h[1] & 0x80 else b"\0\0\0\0"
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(await reader.readexactly(n)))
            if h[0] & 0x0F == 0x8:
                return
            if h[0] & 0x0F == 0x1:
                yield data
    except (asyncio.IncompleteReadError, ConnectionError):
        return


def pusher_send(writer, event, data, channel=None):
    msg = {"event": event}
    if channel is not None:
        msg["channel"] = channel
    msg["data"] = data if isinstance(data, str) else json.dumps(data)
    writer.write(ws_frame(0x1, json.dumps(msg).encode()))


def pusher_leave(hub, writer, ch):
    subs = hub.subs.get(ch, [])
    subs[:] = [s for s in subs if s[1] is not writer]
    members = hub.members.get(ch, {})
    user = members.pop(writer, None)
    if user is not None:
        for w in members:
            pusher_send(w, "pusher_internal:member_removed", {"user_id": user}, ch)


async def pusher_conn(reader, writer, hub):
    """A Pusher protocol 7 server, enough for the client's modes."""
    sid = "%d.%d" % (os.getpid(), next(hub.sids))
    pusher_send(writer, "pusher:connection_established",
                {"socket_id": sid, "activity_timeout": 120})
    pusher_send(writer, "pusher:ping", {})
    await writer.drain()
    mine = set()
    async for raw in read_ws_messages(reader):
        msg = json.loads(raw)
        ev, d = msg["event"], msg.get("data")
        if ev == "pusher:pong":
            hub.pusher_pongs += 1
        elif ev == "pusher:subscribe":
            ch = d["channel"]
            presence = ch.startswith("presence-")
            if presence or ch.startswith("private-"):
                signed = sid + ":" + ch + (":" + d["channel_data"] if presence else "")
                want = PUSHER_KEY + ":" + hmac.new(PUSHER_SECRET.encode(), signed.encode(),
                                                   hashlib.sha256).hexdigest()
                if d.get("auth") != want:
                    hub.bad_auth += 1
                    pusher_send(writer, "pusher:subscription_error",
                                {"type": "AuthError", "error": "bad auth", "status": 401}, ch)
                    continue
            if presence:
                user = json.loads(d["channel_data"])["user_id"]
                members = hub.members.setdefault(ch, {})
                for w in members:
                    pusher_send(w, "pusher_internal:member_added", {"user_id": user}, ch)
                members[writer] = user
            hub.subs.setdefault(ch, []).append(("pusher", writer, []))
            mine.add(ch)
            pusher_send(writer, "pusher_internal:subscription_succeeded", {}, ch)
        elif ev == "pusher:unsubscribe":
            pusher_leave(hub, writer, d["channel"])
            mine.discard(d["channel"])
        try:
            await writer.drain()
        except ConnectionError:
            break
    for ch in mine:
        pusher_leave(hub, writer, ch)


async def handle(reader, writer, hub):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            method, target, _ = lines[0].split(" ")
            hdrs = {}
            for ln in lines[1:]:
                if ":" in ln:
                    k, v = ln.split(":", 1)
                    hdrs[k.strip().lower()] = v.strip()
            ch = target.split("id=", 1)[1] if "id=" in target else ""
            if method == "POST":
                body = await reader.readexactly(int(hdrs.get("content-length", "0")))
                if "&delay=" in ch:
                    # a slow server: measured publishes are answered late
                    ch, delay = ch.split("&delay=", 1)
                    if seq_of(body) is not None:
                        await asyncio.sleep(float(delay))
                hub.history.setdefault(ch, []).append(body)
                for fut in hub.waiters.pop(ch, []):
                    if not fut.done():
                        fut.set_result(None)
                for kind, w, sub_held in hub.subs.get(ch, []):
                    for b in plan(body, sub_held):
                        await send_to(kind, w, b)
                writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
                continue
            if hdrs.get("upgrade", "").lower() == "websocket":
                acc = base64.b64encode(hashlib.sha1(hdrs["sec-websocket-key"].encode() + GUID)
                                       .digest()).decode()
                writer.write(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                              "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n" % acc)
                             .encode())
                if target.startswith("/app/"):
                    await pusher_conn(reader, writer, hub)
                    return
                writer.write(ws_frame(0x9, b"pingdata"))
                await writer.drain()
                hub.subs.setdefault(ch, []).append(("ws", writer, []))
                await read_ws_frames(reader, hub)
                return
            if "text/event-stream" in hdrs.get("accept", ""):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n")
                writer.write(chunk(b": hi\r\n\r\n"))
                await writer.drain()
                hub.subs.setdefault(ch, []).append(("sse", writer, []))
                await reader.read()
                return
            # long-poll: Etag = number of messages already seen
            seen = int(hdrs.get("if-none-match", "0") or 0)
            if seen and hdrs.get("if-modified-since") != "Thu, 01 Jan 1970 00:00:%02d GMT" % (
                    seen % 60):
                hub.bad_resume += 1
            while len(hub.history.get(ch, [])) <= seen:
                fut = asyncio.get_running_loop().create_future()
                hub.waiters.setdefault(ch, []).append(fut)
                await fut
            body = hub.history[ch][seen]
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nEtag: %d\r\n"
                         b"Last-Modified: Thu, 01 Jan 1970 00:00:%02d GMT\r\n\r\n"
                         % (len(body), seen + 1, (seen + 1) % 60) + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError,
            asyncio.CancelledError):
        pass
    finally:
        writer.close()


def chunk(b):
    return b"%x\r\n" % len(b) + b + b"\r\n"


async def send_to(kind, w, body):
    if kind == "pusher":
        # data as a JSON string whose padding is escaped (\u0078 = "x")
        data = json.dumps(body.decode()).replace("x", "\\u0078")
        w.write(ws_frame(0x1, b'{"event":"message","channel":"c","data":%s}' % data.encode()))
    elif kind == "ws" and len(body) > 65535:
        w.write(ws_frame(0x1, body))  # 64-bit length, unfragmented
    elif kind == "ws":
        half = len(body) // 2
        w.write(ws_frame(0x1, body[:half], fin=False))
        w.write(ws_frame(0x9, b"pingdata"))
        w.write(ws_frame(0x0, body[half:], fin=True))
    else:
        # data split over two lines; the client joins them with "\n", so the
        # second line carries only padding and the header stays parseable
        half = len(body) // 2
        ev = b"id: 1\r\ndata: " + body[:half] + b"\r\ndata: " + body[half:] + b"\r\n\r\n"
        w.write(chunk(ev[:7]) + chunk(ev[7:]))
    try:
        await w.drain()
    except ConnectionError:
        pass


async def run_client(args):
    proc = await asyncio.create_subprocess_exec(
        CLIENT, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    LOGS.append(err.decode())
    return json.loads(out.decode().strip().splitlines()[-1])


async def main():
    hub = Hub()
    server = await asyncio.start_server(lambda r, w: handle(r, w, hub), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    base = "http://127.0.0.1:%d" % port
    failures = []

    def check(name, cond):
        print(("ok   " if cond else "FAIL ") + name)
        if not cond:
            failures.append(name)

    subs, msgs = 20, 12
    for transport, size in (("ws", 100), ("ws", 70000), ("sse", 300)):
        hub.subs.clear()
        r = await run_client(["fanout", "--transport", transport, "--sub-url",
                              base + "/sub?id={ch}", "--pub-url", base + "/pub?id={ch}",
                              "--subs", str(subs), "--channels", "2", "--pub-conns", "2",
                              "--messages", str(msgs), "--size", str(size),
                              "--drain-timeout", "3"])
        tag = "%s size %d: " % (transport, size)
        check(tag + "all subscribed and warmed", r["subscribed"] == subs and r["warmed"] == subs)
        # per channel: 6 messages, seqs 1..6; seq 3 dropped, seq 5 doubled
        check(tag + "lost == 1 per sub (got %d)" % r["lost"], r["lost"] == subs)
        check(tag + "duplicates == 1 per sub (got %d)" % r["duplicates"],
              r["duplicates"] == subs)
        check(tag + "no reorder with 6 msgs/channel", r["reorders"] == 0)
        check(tag + "nothing unparsed / misrouted",
              r["unparsed"] == 0 and r["wrong_channel"] == 0)
    # reorder: 16 messages on one channel -> 7 and 8 swapped
    hub.subs.clear()
    r = await run_client(["fanout", "--transport", "ws", "--sub-url", base + "/sub?id={ch}",
                          "--pub-url", base + "/pub?id={ch}", "--subs", "5", "--messages", "16",
                          "--drain-timeout", "3"])
    check("reorder detected once per sub (got %d)" % r["reorders"],
          r["reorders"] == 5 and r["subs_with_reorder"] == 5)
    check("ws pongs were sent, masked, with the ping payload", hub.pongs > 0)
    # long-poll resume headers
    hub.history.clear()
    r = await run_client(["fanout", "--transport", "longpoll", "--sub-url",
                          base + "/sub?id={ch}", "--pub-url", base + "/pub?id={ch}",
                          "--subs", "3", "--messages", "4", "--drain-timeout", "3"])
    check("long-poll: resume headers echoed (bad %d)" % hub.bad_resume, hub.bad_resume == 0)
    # long-poll sees the raw published sequence (no fault injection): seq 3
    # is present, all 4 delivered once
    check("long-poll: 4 msgs x 3 subs delivered, no loss (lost %d)" % r["lost"],
          r["deliveries"] == 12 and r["lost"] == 0 and r["duplicates"] == 0)
    r = await run_client(["longpoll-rtt", "--sub-url", base + "/sub?id={ch}", "--pub-url",
                          base + "/pub?id={ch}", "--pairs", "2", "--duration", "1",
                          "--warmup", "0.2"])
    check("longpoll-rtt: round trips > 0, no stalls (%d, %d)" % (r["round_trips"], r["stalls"]),
          r["round_trips"] > 0 and r["stalls"] == 0)
    # paced: 16 messages at 40/s on one channel -> the same faults, the rate
    # achieved, every message's fan-out time measured
    hub.subs.clear()
    r = await run_client(["paced", "--transport", "ws", "--sub-url", base + "/sub?id={ch}",
                          "--pub-url", base + "/pub?id={ch}", "--subs", "5", "--rate", "40",
                          "--duration", "0.4", "--drain-timeout", "3"])
    check("paced: mode, 16 messages, lost/dup/reorder once per sub (%d, %d, %d)" % (
        r["lost"], r["duplicates"], r["reorders"]),
        r["mode"] == "paced" and r["messages"] == 16 and r["published_ok"] == 16 and
        r["lost"] == 5 and r["duplicates"] == 5 and r["reorders"] == 5)
    check("paced: offered rate achieved (%.1f of 40/s), send lag < interval (%.0f us)" % (
        r["achieved_rate"], r["send_lag_us"]["max"]),
        r["offered_rate"] == 40 and 39 <= r["achieved_rate"] <= 41 and
        r["send_lag_us"]["max"] < r["interval_us"])
    # message 3 reaches nobody: 15 messages reach every subscriber
    check("paced: fan-out time of the 15 complete messages (%d), incomplete one named" % (
        r["messages_complete"]),
        r["messages_complete"] == 15 and r["fanout_time_us"]["n"] == 15 and
        r["kept_up"] == 0 and "15 of 16 messages" in r["behind_reason"])
    # a server answering each publish 60 ms late at 40/s (25 ms interval)
    hub.subs.clear()
    r = await run_client(["paced", "--transport", "ws", "--sub-url", base + "/sub?id={ch}",
                          "--pub-url", base + "/pub?id={ch}&delay=0.06", "--subs", "2",
                          "--rate", "40", "--duration", "0.3", "--drain-timeout", "3"])
    check("paced: a slow publish is reported as behind (%.1f/s: %s)" % (
        r["achieved_rate"], r["behind_reason"]),
        r["kept_up"] == 0 and r["behind"] == 1 and r["achieved_rate"] < 30 and
        "msg/s of 40.0 offered" in r["behind_reason"] and "late" in r["behind_reason"])
    # Pusher: the same faults through Pusher event frames
    hub.subs.clear()
    app = base + "/app/" + PUSHER_KEY + "?protocol=7"
    for channel in ("{ch}", "private-{ch}"):
        r = await run_client(["fanout", "--transport", "pusher", "--sub-url", app,
                              "--pub-url", base + "/pub?id=" + channel, "--pusher-channel", channel,
                              "--pusher-secret", PUSHER_SECRET, "--subs", str(subs),
                              "--channels", "2", "--pub-conns", "2", "--messages", str(msgs),
                              "--drain-timeout", "3"])
        tag = "pusher %s: " % channel
        check(tag + "all subscribed and warmed", r["subscribed"] == subs and r["warmed"] == subs)
        check(tag + "lost == 1, duplicates == 1 per sub (got %d, %d)" % (
            r["lost"], r["duplicates"]), r["lost"] == subs and r["duplicates"] == subs)
        check(tag + "nothing unparsed / misrouted, no pusher error",
              r["unparsed"] == 0 and r["wrong_channel"] == 0 and r["pusher_errors"] == 0)
    check("pusher: signatures accepted (bad %d)" % hub.bad_auth, hub.bad_auth == 0)
    check("pusher: pusher:ping answered (%d pongs)" % hub.pusher_pongs, hub.pusher_pongs > 0)
    r = await run_client(["churn", "--transport", "pusher", "--sub-url", app,
                          "--pusher-secret", PUSHER_SECRET, "--pusher-channel", "presence-{ch}",
                          "--conns", "4", "--channels", "2", "--watchers", "2",
                          "--duration", "0.5", "--warmup", "0.1", "--drain", "2"])
    check("pusher churn: joins, every member event once (%d joins, %d/%d, missing %d extra %d)"
          % (r["subscriptions_total"], r["member_added"], r["member_events_expected"],
             r["member_events_missing"], r["member_events_extra"]),
          r["subscriptions_total"] > 0 and r["failures"] == 0 and
          r["member_events_expected"] == 2 * r["subscriptions_total"] and
          r["member_events_missing"] == 0 and r["member_events_extra"] == 0)
    r = await run_client(["churn", "--transport", "pusher", "--sub-url", app,
                          "--pusher-secret", "wrong", "--pusher-channel", "presence-{ch}",
                          "--conns", "2", "--duration", "0.3", "--warmup", "0", "--drain", "0"])
    check("pusher churn: a wrong secret is refused (%d failures, %d joins)" % (
        r["failures"], r["subscriptions_total"]),
        r["failures"] > 0 and r["subscriptions_total"] == 0)
    server.close()
    if failures:
        sys.stderr.write("client logs:\n" + "".join(LOGS))
    print("selftest: %s" % ("PASS" if not failures else "FAIL (%d)" % len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
