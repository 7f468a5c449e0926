#!/usr/bin/env python3
"""Writes bench/RESULTS.md from bench/out/results.jsonl (called by run.sh)."""
import argparse
import json
import statistics

SERVERS = [("ours", "ngx_pubsub"), ("nchan", "nchan"), ("ret200", "return 200")]

# scenario -> (title, what it measures, primary metric, higher is better, extra metrics)
# metrics are (dotted json path, column label, format)
SCENARIOS = {
    "publish-1w": (
        "Publish throughput, no subscribers, 1 worker",
        "50 keep-alive connections POST a 100-byte body to one channel in a closed loop "
        "(one request in flight per connection). `return 200` answers the same POST from "
        "a plain location.",
        ("req_per_sec", "req/s", "{:,.0f}"), True,
        [("non_2xx", "non-2xx", "{:.0f}"), ("latency_us.p50", "p50 µs", "{:.0f}"),
         ("latency_us.p99", "p99 µs", "{:.0f}")]),
    "publish-2w": (
        "Publish throughput, no subscribers, 2 workers",
        "As above with `worker_processes 2`; server and client share both cores (no pinning).",
        ("req_per_sec", "req/s", "{:,.0f}"), True,
        [("non_2xx", "non-2xx", "{:.0f}"), ("latency_us.p50", "p50 µs", "{:.0f}"),
         ("latency_us.p99", "p99 µs", "{:.0f}")]),
    "fanout-ws-10k": (
        "Fan-out to 10,000 WebSocket subscribers of one channel",
        "10,000 WebSocket subscribers on one channel; one publisher posts messages back to "
        "back (next POST when the previous answered). Deliveries/s = deliveries / (last "
        "delivery − first publish). Latency = publish send → frame received (same clock).",
        ("deliveries_per_sec", "deliveries/s", "{:,.0f}"), True,
        [("subscribed", "subscribed", "{:.0f}"), ("deliveries", "deliveries", "{:.0f}"),
         ("lost", "lost", "{:.0f}"), ("duplicates", "dup", "{:.0f}"),
         ("reorders", "reorder", "{:.0f}"), ("latency_us.p50", "p50 µs", "{:,.0f}"),
         ("latency_us.p99", "p99 µs", "{:,.0f}"), ("latency_us.max", "max µs", "{:,.0f}")]),
    "fanout-ws-1000ch": (
        "5,000 WebSocket subscribers over 1,000 channels",
        "5 subscribers per channel; 50 publisher connections (each owns a fixed set of "
        "channels so per-channel order is defined) post round-robin over the channels.",
        ("deliveries_per_sec", "deliveries/s", "{:,.0f}"), True,
        [("publish_per_sec", "publish/s", "{:,.0f}"), ("subscribed", "subscribed", "{:.0f}"),
         ("deliveries", "deliveries", "{:.0f}"), ("lost", "lost", "{:.0f}"),
         ("duplicates", "dup", "{:.0f}"), ("reorders", "reorder", "{:.0f}"),
         ("latency_us.p50", "p50 µs", "{:,.0f}"), ("latency_us.p99", "p99 µs", "{:,.0f}")]),
    "idle-ws": (
        "Memory per idle WebSocket subscriber",
        "10,000 idle WebSocket subscribers on one channel. Worker Private_Dirty (and RSS) "
        "from /proc/<worker>/smaps_rollup before connecting and 1 s after all are "
        "subscribed, divided by the subscriber count; then once more after one message "
        "reached every subscriber.",
        ("private_dirty_bytes_per_sub", "bytes/sub (Private_Dirty)", "{:,.0f}"), False,
        [("rss_bytes_per_sub", "bytes/sub (RSS)", "{:,.0f}"),
         ("private_dirty_bytes_per_sub_after_msg", "bytes/sub after 1 msg", "{:,.0f}"),
         ("subscribed", "subscribed", "{:.0f}"), ("warmed", "got msg", "{:.0f}"),
         ("connects_per_sec", "connects/s", "{:,.0f}")]),
    "idle-sse": (
        "Memory per idle EventSource subscriber",
        "As idle-ws, with `Accept: text/event-stream` subscribers.",
        ("private_dirty_bytes_per_sub", "bytes/sub (Private_Dirty)", "{:,.0f}"), False,
        [("rss_bytes_per_sub", "bytes/sub (RSS)", "{:,.0f}"),
         ("private_dirty_bytes_per_sub_after_msg", "bytes/sub after 1 msg", "{:,.0f}"),
         ("subscribed", "subscribed", "{:.0f}"), ("warmed", "got msg", "{:.0f}"),
         ("connects_per_sec", "connects/s", "{:,.0f}")]),
    "idle-chunked": (
        "Memory per idle chunked subscriber",
        "As idle-ws, with `TE: chunked` subscribers (an open-ended chunked 200).",
        ("private_dirty_bytes_per_sub", "bytes/sub (Private_Dirty)", "{:,.0f}"), False,
        [("rss_bytes_per_sub", "bytes/sub (RSS)", "{:,.0f}"),
         ("private_dirty_bytes_per_sub_after_msg", "bytes/sub after 1 msg", "{:,.0f}"),
         ("subscribed", "subscribed", "{:.0f}"), ("warmed", "got msg", "{:.0f}"),
         ("connects_per_sec", "connects/s", "{:,.0f}")]),
    "idle-multipart": (
        "Memory per idle multipart subscriber",
        "As idle-ws, with `Accept: multipart/mixed` subscribers.",
        ("private_dirty_bytes_per_sub", "bytes/sub (Private_Dirty)", "{:,.0f}"), False,
        [("rss_bytes_per_sub", "bytes/sub (RSS)", "{:,.0f}"),
         ("private_dirty_bytes_per_sub_after_msg", "bytes/sub after 1 msg", "{:,.0f}"),
         ("subscribed", "subscribed", "{:.0f}"), ("warmed", "got msg", "{:.0f}"),
         ("connects_per_sec", "connects/s", "{:,.0f}")]),
    "idle-raw": (
        "Memory per idle raw-stream subscriber",
        "As idle-ws, with plain GETs to a location whose only transport is the raw stream "
        "(`pubsub_subscriber rawstream`, nchan's `nchan_subscriber http-raw-stream`).",
        ("private_dirty_bytes_per_sub", "bytes/sub (Private_Dirty)", "{:,.0f}"), False,
        [("rss_bytes_per_sub", "bytes/sub (RSS)", "{:,.0f}"),
         ("private_dirty_bytes_per_sub_after_msg", "bytes/sub after 1 msg", "{:,.0f}"),
         ("subscribed", "subscribed", "{:.0f}"), ("warmed", "got msg", "{:.0f}"),
         ("connects_per_sec", "connects/s", "{:,.0f}")]),
    "idle-longpoll": (
        "Memory per waiting long-poll subscriber",
        "As idle-ws, with long-poll subscribers waiting for a message (plain GETs; the "
        "measurement is taken while every poll waits, before the warm-up message answers "
        "them and they poll again).",
        ("private_dirty_bytes_per_sub", "bytes/sub (Private_Dirty)", "{:,.0f}"), False,
        [("rss_bytes_per_sub", "bytes/sub (RSS)", "{:,.0f}"),
         ("private_dirty_bytes_per_sub_after_msg", "bytes/sub after 1 msg", "{:,.0f}"),
         ("subscribed", "subscribed", "{:.0f}"), ("warmed", "got msg", "{:.0f}"),
         ("connects_per_sec", "connects/s", "{:,.0f}")]),
    "longpoll-rtt-1": (
        "Long-poll round trips, 1 pair",
        "One long-poll subscriber and one publisher on their own channel: publish k, wait "
        "for the long-poll answer (and the publish answer), re-poll with "
        "If-Modified-Since/If-None-Match, publish k+1. Latency = publish → long-poll answer.",
        ("round_trips_per_sec", "round trips/s", "{:,.0f}"), True,
        [("stalls", "stalls", "{:.0f}"), ("out_of_order", "out of order", "{:.0f}"),
         ("latency_us.p50", "p50 µs", "{:,.0f}"), ("latency_us.p99", "p99 µs", "{:,.0f}")]),
    "longpoll-rtt-20": (
        "Long-poll round trips, 20 pairs",
        "As above with 20 independent pairs (20 channels) in parallel.",
        ("round_trips_per_sec", "round trips/s", "{:,.0f}"), True,
        [("stalls", "stalls", "{:.0f}"), ("out_of_order", "out of order", "{:.0f}"),
         ("latency_us.p50", "p50 µs", "{:,.0f}"), ("latency_us.p99", "p99 µs", "{:,.0f}")]),
}


# Presence on vs off (run.sh --only presence): ngx_pubsub without presence,
# the same with `pubsub_presence on` (server "ourspres"), and nchan, which
# has no presence, in the same run.
PRESENCE_SERVERS = [("ours", "ngx_pubsub, presence off"), ("ourspres", "ngx_pubsub, presence on"),
                    ("nchan", "nchan (no presence)")]
PRESENCE_BEGIN = "<!-- presence:begin (written by bench/report.py) -->"
PRESENCE_END = "<!-- presence:end -->"
# Hand-written presence notes (scale check, callgrind) follow PRESENCE_END up
# to this marker; a full report keeps them, and keeps the whole old presence
# section when the run had no presence scenarios.
PRESENCE_NOTES_END = "<!-- presence:notes-end -->"
CPU_PER_OP = ("cpu_us_per_op", "server CPU µs/op", "{:,.1f}")
PRESENCE_SCENARIOS = {
    "presence-idle-ws": (
        "Memory per presence member (idle WebSocket subscribers)",
        "10,000 idle WebSocket subscribers on one channel, each with its own `?user=` (presence "
        "on: 10,000 members). Worker Private_Dirty per subscriber as in `idle-ws`, plus the "
        "growth of the shared-memory zone (`shm_used` of `pubsub_status`, page granularity) "
        "per subscriber: the zone holds the members.",
        ("private_dirty_bytes_per_sub", "worker bytes/sub (Private_Dirty)", "{:,.0f}"), False,
        [("shm_bytes_per_sub", "zone bytes/sub", "{:,.0f}"),
         ("private_dirty_bytes_per_sub_after_msg", "worker bytes/sub after 1 msg", "{:,.0f}"),
         ("subscribed", "subscribed", "{:.0f}"), ("warmed", "got msg", "{:.0f}")]),
    "presence-churn-ws": (
        "Subscribe/unsubscribe churn, WebSocket",
        "50 slots in parallel each connect, send the WebSocket upgrade, wait for the `101`, "
        "close and start again; every connection has a new `?user=` on one channel, so with "
        "presence on every subscribe is a join and every close a leave (leave delay 1 s, so "
        "leaves fall inside the run). Subscriptions/s over the measured window; server CPU "
        "µs/op = nginx CPU time / all subscriptions of the run.",
        ("subscriptions_per_sec", "subscriptions/s", "{:,.0f}"), True,
        [CPU_PER_OP, ("failures", "failures", "{:.0f}"), ("latency_us.p50", "p50 µs", "{:,.0f}"),
         ("latency_us.p99", "p99 µs", "{:,.0f}")]),
    "presence-churn-sse": (
        "Subscribe/unsubscribe churn, EventSource",
        "As above with `Accept: text/event-stream` subscribers (open = the `200` head).",
        ("subscriptions_per_sec", "subscriptions/s", "{:,.0f}"), True,
        [CPU_PER_OP, ("failures", "failures", "{:.0f}"), ("latency_us.p50", "p50 µs", "{:,.0f}"),
         ("latency_us.p99", "p99 µs", "{:,.0f}")]),
    "presence-fanout-ws-10k": (
        "Fan-out to 10,000 WebSocket subscribers, presence on vs off",
        "`fanout-ws-10k` with a distinct `?user=` per subscriber (10,000 members with presence "
        "on). Server CPU µs/op = nginx CPU time over the whole run (including the 10,000 "
        "connects) / deliveries.",
        ("deliveries_per_sec", "deliveries/s", "{:,.0f}"), True,
        [CPU_PER_OP, ("subscribed", "subscribed", "{:.0f}"), ("deliveries", "deliveries", "{:.0f}"),
         ("lost", "lost", "{:.0f}"), ("duplicates", "dup", "{:.0f}"),
         ("latency_us.p50", "p50 µs", "{:,.0f}"), ("latency_us.p99", "p99 µs", "{:,.0f}")]),
}


# Redis engine (run.sh --only redis): ngx_pubsub with pubsub_redis_pass vs
# nchan with nchan_redis_pass, each run on its own fresh redis-server; the
# presence scenarios add ngx_pubsub with presence on ("oursredispres"), the
# publish scenarios `return 200` (no Redis) as the ceiling of nginx itself.
REDIS_SERVERS = [("oursredis", "ngx_pubsub + Redis"),
                 ("oursredispres", "ngx_pubsub + Redis, presence on"),
                 ("nchanredis", "nchan + Redis"), ("ret200", "return 200 (no Redis)")]
REDIS_BEGIN = "<!-- redis:begin (written by bench/report.py) -->"
REDIS_END = "<!-- redis:end -->"
# Hand-written notes follow REDIS_END up to this marker; every report keeps them.
REDIS_NOTES_END = "<!-- redis:notes-end -->"
REDIS_CPU_PER_OP = ("redis_cpu_us_per_op", "redis CPU µs/op", "{:,.1f}")


def _redis_like(memory_sc, title, desc):
    """A memory-store scenario's entry, run through Redis."""
    _t, _d, prim, hib, extra = SCENARIOS[memory_sc]
    return (title, desc, prim, hib, extra)


_REDIS_FANOUT_EXTRA = [CPU_PER_OP, REDIS_CPU_PER_OP]
_REDIS_CHURN_EXTRA = [CPU_PER_OP, REDIS_CPU_PER_OP, ("failures", "failures", "{:.0f}"),
                      ("presence_members_after", "members left after", "{:.0f}"),
                      ("latency_us.p50", "p50 µs", "{:,.0f}"),
                      ("latency_us.p99", "p99 µs", "{:,.0f}")]
REDIS_SCENARIOS = {
    "redis-publish-1w": _redis_like(
        "publish-1w", "Publish throughput through Redis, no subscribers, 1 worker",
        "`publish-1w` with both modules in Redis mode: 50 keep-alive connections POST a "
        "100-byte body to one channel in a closed loop. `return 200` answers the same POST "
        "from a plain location (no Redis): the ceiling of nginx itself."),
    "redis-publish-2w": _redis_like(
        "publish-2w", "Publish throughput through Redis, no subscribers, 2 workers",
        "As above with `worker_processes 2`; nginx, Redis and the client share both cores "
        "(no pinning)."),
    "redis-fanout-ws-1k": (
        "Fan-out through Redis to 1,000 WebSocket subscribers of one channel",
        "1,000 WebSocket subscribers on one channel; one publisher posts 200 messages (40 with "
        "`--quick`) back to back (next POST when the previous answered), every message going "
        "through Redis. Server / redis CPU µs/op = CPU time over the whole run (connects "
        "included) / deliveries.",
        ("deliveries_per_sec", "deliveries/s", "{:,.0f}"), True,
        _REDIS_FANOUT_EXTRA + [
            ("subscribed", "subscribed", "{:.0f}"), ("deliveries", "deliveries", "{:.0f}"),
            ("lost", "lost", "{:.0f}"), ("duplicates", "dup", "{:.0f}"),
            ("reorders", "reorder", "{:.0f}"), ("latency_us.p50", "p50 µs", "{:,.0f}"),
            ("latency_us.p99", "p99 µs", "{:,.0f}")]),
    "redis-fanout-ws-1000ch": (
        "Through Redis: 5,000 WebSocket subscribers over 1,000 channels",
        "`fanout-ws-1000ch` in Redis mode: 5 subscribers per channel (1,000 Redis "
        "subscriptions), 50 publisher connections, 20,000 messages (5,000 with `--quick`).",
        ("deliveries_per_sec", "deliveries/s", "{:,.0f}"), True,
        _REDIS_FANOUT_EXTRA + [
            ("publish_per_sec", "publish/s", "{:,.0f}"), ("subscribed", "subscribed", "{:.0f}"),
            ("deliveries", "deliveries", "{:.0f}"), ("lost", "lost", "{:.0f}"),
            ("duplicates", "dup", "{:.0f}"), ("reorders", "reorder", "{:.0f}"),
            ("wrong_channel", "wrong ch", "{:.0f}"), ("latency_us.p50", "p50 µs", "{:,.0f}"),
            ("latency_us.p99", "p99 µs", "{:,.0f}")]),
    "redis-idle-ws": _redis_like(
        "idle-ws", "Through Redis: memory per idle WebSocket subscriber",
        "`idle-ws` in Redis mode: 10,000 idle WebSocket subscribers on one channel (one "
        "Redis subscription), worker Private_Dirty per subscriber before and after one "
        "message (published through Redis) reached every subscriber."),
    "redis-idle-sse": _redis_like(
        "idle-sse", "Through Redis: memory per idle EventSource subscriber",
        "As redis-idle-ws, with `Accept: text/event-stream` subscribers."),
    "redis-longpoll-rtt-1": _redis_like(
        "longpoll-rtt-1", "Through Redis: long-poll round trips, 1 pair",
        "`longpoll-rtt-1` in Redis mode: publish k, wait for the long-poll answer, re-poll "
        "with If-Modified-Since/If-None-Match, publish k+1; every publish and every re-poll "
        "that needs the channel's messages goes through Redis."),
    "redis-longpoll-rtt-20": _redis_like(
        "longpoll-rtt-20", "Through Redis: long-poll round trips, 20 pairs",
        "As above with 20 independent pairs (20 channels) in parallel."),
    "redis-presence-churn-ws": (
        "Through Redis: subscribe/unsubscribe churn, WebSocket, presence on vs off",
        "`presence-churn-ws` in Redis mode: 50 slots connect, wait for the `101`, close and "
        "start again, every connection a new `?user=` on one channel. With presence on "
        "(cluster-wide in a Redis location) every subscribe is a join and every close a "
        "leave after the 1 s delay, each sent to Redis. Server / redis CPU µs/op = CPU time "
        "/ all subscriptions of the run. \"members left after\": members still in Redis "
        "2.5 s after the run (should be 0).",
        ("subscriptions_per_sec", "subscriptions/s", "{:,.0f}"), True, _REDIS_CHURN_EXTRA),
    "redis-presence-churn-sse": (
        "Through Redis: subscribe/unsubscribe churn, EventSource, presence on vs off",
        "As above with `Accept: text/event-stream` subscribers (open = the `200` head).",
        ("subscriptions_per_sec", "subscriptions/s", "{:,.0f}"), True, _REDIS_CHURN_EXTRA),
}


# Pusher protocol 7 (run.sh --only pusher): ngx_pubsub with a Pusher app
# ("ourspusher", Pusher clients) next to the nchan-protocol counterpart on
# ngx_pubsub (and nchan where it applies; nchan has no Pusher protocol).
PUSHER_SERVERS = [("ourspusher", "ngx_pubsub, Pusher protocol 7"),
                  ("ours", "ngx_pubsub, nchan-protocol WebSocket"),
                  ("ourspres", "ngx_pubsub, nchan-protocol WebSocket, presence on"),
                  ("nchan", "nchan, nchan-protocol WebSocket")]
PUSHER_BEGIN = "<!-- pusher:begin (written by bench/report.py) -->"
PUSHER_END = "<!-- pusher:end -->"
# Hand-written notes (profiles) follow PUSHER_END up to this marker; every report keeps them.
PUSHER_NOTES_END = "<!-- pusher:notes-end -->"
# scenario -> the server that runs its nchan-protocol counterpart on ngx_pubsub
PUSHER_COUNTERPART = {"pusher-fanout-10k": ("ours", "fanout-ws-10k"),
                      "pusher-idle": ("ours", "idle-ws"),
                      "pusher-presence-churn-2w": ("ourspres", "presence-churn-ws")}
PUSHER_SCENARIOS = {
    "pusher-fanout-10k": (
        "Fan-out to 10,000 Pusher connections of one channel",
        "10,000 Pusher connections (`/app/app-key?protocol=7`) each subscribe to one public "
        "channel (subscribed at `pusher_internal:subscription_succeeded`); one publisher POSTs "
        "to a `pubsub_publisher` location in the app's group (`pubsub_channel_group "
        "pusher:1`), messages back to back; every connection gets "
        "`{\"event\":\"message\",\"channel\":…,\"data\":\"<body>\"}`. Side by side: "
        "`fanout-ws-10k` (nchan-protocol WebSocket) on plain ngx_pubsub. nchan cannot speak "
        "Pusher: n/a. Server CPU µs/op = nginx CPU time over the whole run (connects included) "
        "/ deliveries.",
        ("deliveries_per_sec", "deliveries/s", "{:,.0f}"), True,
        [CPU_PER_OP, ("subscribed", "subscribed", "{:.0f}"), ("deliveries", "deliveries", "{:.0f}"),
         ("lost", "lost", "{:.0f}"), ("duplicates", "dup", "{:.0f}"),
         ("reorders", "reorder", "{:.0f}"), ("latency_us.p50", "p50 µs", "{:,.0f}"),
         ("latency_us.p99", "p99 µs", "{:,.0f}")]),
    "pusher-idle": (
        "Memory per idle Pusher connection",
        "10,000 idle Pusher connections, each subscribed to one public channel (the same "
        "one); worker Private_Dirty per connection as in `idle-ws`, before and after one "
        "message reached every connection. Side by side: `idle-ws` (nchan-protocol "
        "WebSocket subscribers) on ngx_pubsub and on nchan.",
        ("private_dirty_bytes_per_sub", "bytes/conn (Private_Dirty)", "{:,.0f}"), False,
        [("rss_bytes_per_sub", "bytes/conn (RSS)", "{:,.0f}"),
         ("private_dirty_bytes_per_sub_after_msg", "bytes/conn after 1 msg", "{:,.0f}"),
         ("subscribed", "subscribed", "{:.0f}"), ("warmed", "got msg", "{:.0f}"),
         ("connects_per_sec", "connects/s", "{:,.0f}")]),
    "pusher-presence-churn-2w": (
        "Presence join/leave churn, 2 workers",
        "`worker_processes 2`, nothing pinned. Pusher: 50 open connections each loop "
        "`pusher:subscribe` to a presence channel of its own (50 channels) as a new member "
        "(HMAC-SHA256 auth and `channel_data` computed by the client), wait for "
        "`subscription_succeeded` (the member list), `pusher:unsubscribe`, and again; 2 more "
        "members per channel (100 watchers) count the `member_added` / `member_removed` "
        "they get: each join and each leave (after the 1 s leave delay) must reach both "
        "watchers of its channel once (\"missing\" / \"extra\"). Side by side: "
        "`presence-churn-ws` on the same 50 channels (connect, `101`, close; every "
        "connection a new member) on ngx_pubsub with presence on. Not the same operation: "
        "a Pusher join is a frame on an open connection plus the member list and member "
        "events, a nchan-protocol join is a TCP connection and an HTTP upgrade. nchan has no "
        "presence: n/a. Server CPU µs/op = nginx CPU time / all subscriptions of the run.",
        ("subscriptions_per_sec", "joins/s", "{:,.0f}"), True,
        [CPU_PER_OP, ("failures", "failures", "{:.0f}"),
         ("member_events_expected", "member events expected", "{:,.0f}"),
         ("member_events_missing", "missing", "{:.0f}"),
         ("member_events_extra", "extra", "{:.0f}"),
         ("latency_us.p50", "p50 µs", "{:,.0f}"), ("latency_us.p99", "p99 µs", "{:,.0f}")]),
}


# Paced latency (in the default run, alone: run.sh --only paced): fan-out to
# one channel at a fixed offered rate both servers sustain, latency side by
# side without queueing in the client; the client says when a run fell behind.
PACED_BEGIN = "<!-- paced:begin (written by bench/report.py) -->"
PACED_END = "<!-- paced:end -->"


def yes_no(v):
    return "yes" if v >= 1 else "**no**"


_PACED_EXTRA = [("latency_us.p90", "p90 µs", "{:,.0f}"), ("latency_us.p99", "p99 µs", "{:,.0f}"),
                ("latency_us.max", "max µs", "{:,.0f}"),
                ("rate_achieved_pct", "rate achieved", "{:.1f}%"),
                ("send_lag_us.max", "send lag max µs", "{:,.0f}"),
                ("fanout_time_us.p99", "fan-out time p99 µs", "{:,.0f}"),
                ("kept_up", "kept up", yes_no),
                ("client_cpu_pct_measured", "client CPU while paced", "{:.0f}%"),
                ("subscribed", "subscribed", "{:.0f}"),
                ("deliveries", "deliveries", "{:.0f}"), ("lost", "lost", "{:.0f}"),
                ("duplicates", "dup", "{:.0f}"), ("reorders", "reorder", "{:.0f}"),
                CPU_PER_OP]
_PACED_DESC = (
    "{subs} WebSocket subscribers on one channel; one publisher connection posts {rate} "
    "messages/s evenly spaced (message k due at start + k/{rate} s, 100-byte bodies) for 10 s "
    "(3 s with `--quick`), after every subscriber got a warm-up message. Latency = the send "
    "time in the body → frame received, per delivery. A send leaves at its slot unless the "
    "previous publish is still unanswered (\"send lag\"; the body carries the actual send "
    "time, so a late send is not counted as latency). Fan-out time = send → the last "
    "subscriber's copy of a message. **Kept up** = the rate was achieved (≥ 99%), no send "
    "left a whole interval ({interval} ms) late and the fan-out time p99 stayed under one "
    "interval; otherwise the server or the client fell behind, later messages queue behind "
    "earlier ones and the latency includes that queueing (the reason is in Notes).")
PACED_SCENARIOS = {
    "paced-ws-1k-20": (
        "Paced latency: 1,000 WebSocket subscribers × 20 messages/s",
        _PACED_DESC.format(subs="1,000", rate=20, interval=50),
        ("latency_us.p50", "p50 µs", "{:,.0f}"), False, _PACED_EXTRA),
    "paced-ws-10k-5": (
        "Paced latency: 10,000 WebSocket subscribers × 5 messages/s",
        _PACED_DESC.format(subs="10,000", rate=5, interval=200),
        ("latency_us.p50", "p50 µs", "{:,.0f}"), False, _PACED_EXTRA),
}
PACED_SIDE_BY_SIDE = [("latency_us.p50", "p50 µs", "{:,.0f}"),
                      ("latency_us.p90", "p90 µs", "{:,.0f}"),
                      ("latency_us.p99", "p99 µs", "{:,.0f}"),
                      ("latency_us.max", "max µs", "{:,.0f}"),
                      ("fanout_time_us.p99", "fan-out time p99 µs", "{:,.0f}"),
                      ("rate_achieved_pct", "rate achieved", "{:.1f}%"),
                      ("kept_up", "kept up", yes_no),
                      ("cpu_us_per_op", "server CPU µs/delivery", "{:,.1f}")]


# ngx_pubsub built from an earlier commit (run.sh --baseline): every ngx_pubsub
# server X has a twin "X-before", run with the same config right after it.
BEFORE = "-before"
CPU_COLUMNS = {"server_cpu_pct": "server CPU", "redis_cpu_pct": "redis CPU",
               "client_cpu_pct": "client CPU", "other_cpu_pct": "others' CPU"}


def with_before(servers, a):
    """servers, each ngx_pubsub one followed by its before twin when run.sh had --baseline."""
    if not a.baseline:
        return list(servers)
    out = []
    for s, name in servers:
        out.append((s, name))
        if s.startswith("ours"):
            out.append((s + BEFORE, name + " (before)"))
    return out


def baseline_line(a):
    """The header line saying what "before" is, or None."""
    if not a.baseline:
        return None
    line = "- Before/after: \"(before)\" rows are ngx_pubsub built from `{}` (`{}`, " \
        "`bench/baseline.sh`), run with the same configs right after the current build " \
        "in every repetition; \"after/before\" = current / before.".format(
            a.baseline, a.baseline_so)
    if a.baseline_ok != "1":
        line += " **The before module did not pass `nginx -t`: no before runs** (see Notes)."
    return line


def scenario_table(o, sc, spec, servers, by, commands, heading, command_intro, cpu_cols,
                   pending=()):
    """Appends one scenario's heading, description, client command and per-server table
    (median, range, extra metrics, CPU columns, runs); returns the servers' medians of
    the primary metric."""
    title, desc, prim, hib, extra = spec
    path, label, f = prim
    o.append("{} {} (`{}`)\n".format(heading, title, sc))
    o.append(desc + " " + ("Higher is better." if hib else "Lower is better.") + "\n")
    if sc in commands:
        w, cmd = commands[sc]
        o.append(command_intro.format(w))
        o.append("```\nbuild/bench/pubsub-load {}\n```\n".format(cmd))
    head = ["server", label + " (median)", "min–max"] + [e[1] for e in extra] + [
        CPU_COLUMNS[k] for k in cpu_cols] + ["runs"]
    o.append("| " + " | ".join(head) + " |")
    o.append("|" + "---|" * len(head))
    for s, name in servers:
        rs = by.get((sc, s), [])
        if s in pending:
            o.append("| {} | pending |".format(name) + " |" * (len(head) - 2))
            continue
        if not rs:
            continue
        vals = [v for v in (get(r, path) for r in rs) if v is not None]
        rng = "{}–{}".format(fmt(min(vals), f), fmt(max(vals), f)) if vals else "—"
        cells = [name, fmt(median(rs, path), f), rng]
        cells += [fmt(median(rs, e[0]), e[2]) for e in extra]
        cells += [fmt(median(rs, k), "{:.0f}%") for k in cpu_cols]
        errs = sum(1 for r in rs if "error" in r)
        cells.append(str(len(rs)) + (" ({} failed)".format(errs) if errs else ""))
        o.append("| " + " | ".join(cells) + " |")
    return {s: median(by.get((sc, s), []), path) for s, _ in servers}


def before_ratios(m, servers):
    """"; after/before: NAME r, ..." for the servers with a before twin, else ""."""
    names = dict(servers)
    parts = ["{} {}".format(names[s], ratio(m[s], m[s + BEFORE]))
             for s, _ in servers if s + BEFORE in names]
    return "; after/before: " + ", ".join(parts) if parts else ""


def summary_rows(o, by, scenarios, servers, ours, other, metric_keys, pending=False):
    """Appends the summary rows (ours[, before], other, return 200 and their ratios[,
    after/before]) of every scenario that ran, for the primary metric and the extra
    metrics named in metric_keys; returns whether a row is flagged as contended."""
    before = ours + BEFORE in dict(servers)
    flagged = False
    for sc, (title, _d, prim, _hib, extra) in scenarios.items():
        if not any((sc, s) in by for s, _ in servers):
            continue
        metrics = [prim] + [e for e in extra if e[0] in metric_keys]
        busy = [median(by.get((sc, s), []), "other_cpu_pct") for s, _ in servers]
        cpu_bound = "idle-" not in sc  # memory does not depend on CPU share
        flag = " ⚠" if cpu_bound and any(b is not None and b >= 25 for b in busy) else ""
        flagged = flagged or bool(flag)
        has_ret = (sc, "ret200") in by
        for path, label, f in metrics:
            m = {s: median(by.get((sc, s), []), path) for s, _ in servers}
            cells = [sc + flag, label, "pending" if pending else fmt(m[ours], f)]
            if before:
                cells.append(fmt(m[ours + BEFORE], f))
            cells += [fmt(m[other], f), fmt(m["ret200"], f) if has_ret else "n/a",
                      ratio(m[ours], m[other]), ratio(m[ours], m["ret200"]) if has_ret else "n/a"]
            if before:
                cells.append(ratio(m[ours], m[ours + BEFORE]))
            o.append("| " + " | ".join(cells) + " |")
    return flagged


def summary_head(ours, other, before):
    head = ["scenario", "metric", ours] + (["before"] if before else []) + [
        other, "return 200", "ours/nchan", "ours/return200"] + (["after/before"] if before else [])
    return ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]


def presence_cost_rows(o, by, scenarios, servers, off, on, other, metric_keys):
    """Appends presence off / on / other, the cost of presence and on/other for every
    scenario that ran, for the primary metric and the extra metrics in metric_keys."""
    for sc, (title, _d, prim, hib, extra) in scenarios.items():
        if not any((sc, s) in by for s, _ in servers):
            continue
        metrics = [(prim, hib)] + [(e, False) for e in extra if e[0] in metric_keys]
        for (path, label, f), h in metrics:
            m = {s: median(by.get((sc, s), []), path) for s, _ in servers}
            c = cost(m[on], m[off], h)
            if path == "shm_bytes_per_sub":
                c = "+{} B/member".format(fmt(m[on] - m[off], "{:,.0f}")) if (
                    m[on] is not None and m[off] is not None) else "—"
            o.append("| {} | {} | {} | {} | {} | {} | {} |".format(
                sc, label, fmt(m[off], f), fmt(m[on], f), fmt(m[other], f), c,
                ratio(m[on], m[other])))


def spread(rows, path):
    """(max − min) / median of a metric over the runs, None with fewer than 2 runs."""
    vals = [v for v in (get(r, path) for r in rows) if v is not None]
    if len(vals) < 2 or statistics.median(vals) == 0:
        return None
    return (max(vals) - min(vals)) / statistics.median(vals)


def before_after_table(o, by, scenarios, servers, metric_keys):
    """Appends the before/after table: for every ngx_pubsub server with a before twin,
    every scenario that ran and the primary metric (plus the extra metrics in
    metric_keys, lower is better), the medians, after/before, the noise (the larger
    relative range of the two servers' runs) and whether the change exceeds it."""
    names = dict(servers)
    pairs = [(s, n) for s, n in servers if s + BEFORE in names]
    rows = []
    for sc, (title, _d, prim, hib, extra) in scenarios.items():
        metrics = [(prim, hib)] + [(e, False) for e in extra if e[0] in metric_keys]
        for s, name in pairs:
            ra, rb = by.get((sc, s), []), by.get((sc, s + BEFORE), [])
            if not rb:
                continue
            for (path, label, f), h in metrics:
                ma, mb = median(ra, path), median(rb, path)
                noises = [spread(ra, path), spread(rb, path)]
                noise = None if None in noises else max(noises)
                if ma is None or mb is None or mb == 0:
                    verdict = "—"
                elif noise is None:
                    verdict = "no noise estimate"
                else:
                    r = ma / mb
                    worse = r < 1 - noise if h else r > 1 + noise
                    better = r > 1 + noise if h else r < 1 - noise
                    verdict = "**worse**" if worse else "better" if better else "within noise"
                rows.append("| {} | {} | {} | {} | {} | {} | {} | {} |".format(
                    sc, name, label, fmt(ma, f), fmt(mb, f), ratio(ma, mb),
                    fmt(None if noise is None else 100 * noise, "{:.1f}%"), verdict))
    if not rows:
        return
    o.append("Before/after (\"noise\" = the larger (max − min) / median of the two servers' "
             "runs; \"worse\" / \"better\" = after/before beyond 1 ± noise in that direction; "
             "with one run there is no noise estimate):\n")
    o.append("| scenario | server | metric | after | before | after/before | noise | verdict |")
    o.append("|---|---|---|---:|---:|---:|---:|---|")
    o += rows
    o.append("")


def redis_section(by, commands, a, notes=()):
    servers = with_before(REDIS_SERVERS, a)
    o = [REDIS_BEGIN, "## Redis\n"]
    if not any(k[0] in REDIS_SCENARIOS for k in by):
        o.append("No Redis runs yet: `bench/run.sh --only redis`.\n")
        o.append(REDIS_END)
        return o
    o.append("- Command: `{}`; {}; {} repetition(s), median reported; servers alternate run by "
             "run (ngx_pubsub, [ngx_pubsub with presence,] nchan[, return 200]), each run on a "
             "fresh nginx **and a fresh redis-server** "
             "{}(`--save '' --appendonly no`, loopback, free port, killed after the run).".format(
                 a.command, a.date, a.reps,
                 "{} ".format(a.redis_version) if a.redis_version else ""))
    o.append("- Machine: {} CPUs, {}, {}; load average at start {}{}. nginx "
             "(`worker_processes 1`) is pinned to core 0 and the client to core 1; Redis is "
             "not pinned and shares the two cores with them.".format(
                 a.nproc, a.cpu, a.nginx, a.loadavg,
                 "; nginx, Redis and the client under `nice -n {}`".format(a.nice)
                 if a.nice and a.nice != "0" else ""))
    o.append("- Configs: the memory-store configs plus `upstream r { pubsub_redis_server "
             "redis://127.0.0.1:PORT; }` and `pubsub_redis_pass r;` on `/pub` and `/sub` "
             "(nchan: `nchan_redis_server` / `nchan_redis_pass`, nchan's default "
             "\"distributed\" mode). Presence on (`redis-presence-*`): `/sub` adds "
             "`pubsub_presence on; pubsub_presence_id $arg_user; pubsub_presence_leave_delay "
             "1s;`, plus a `pubsub_presence_api` location with `pubsub_redis_pass r`; nchan has "
             "no presence and runs its plain Redis config. \"redis CPU\" = redis-server's "
             "CPU time over the run's wall time, % of one core.")
    if a.baseline:
        o.append(baseline_line(a))
    o.append("- The machine is shared with other engineers' jobs: \"others' CPU\" is what "
             "processes other than nginx, Redis and the client used, as % of all CPUs. Where it "
             "is high (⚠ below: ≥ 25% in a median run) absolute throughput is depressed and "
             "noisy and repetitions of the same server spread widely; the ratios come from "
             "alternating runs in one session, and server / redis CPU µs per operation is the "
             "steadier comparison.\n")
    o += summary_head("ngx_pubsub + Redis", "nchan + Redis", bool(a.baseline))
    cpu_keys = ("cpu_us_per_op", "redis_cpu_us_per_op")
    if summary_rows(o, by, REDIS_SCENARIOS, servers, "oursredis", "nchanredis", cpu_keys):
        o.append("\n⚠ = in the median run of at least one server, other processes used "
                 "≥ 25% of all CPUs: absolute numbers are depressed and noisy.")
    o.append("")
    before_after_table(o, by, REDIS_SCENARIOS, servers, cpu_keys)
    if any(k[0].startswith("redis-presence-") and k[1] == "oursredispres" for k in by):
        o.append("Presence in Redis mode (ngx_pubsub presence off vs on, nchan without presence; "
                 "\"cost\" = how much worse presence on is than off: throughput off/on − 1, "
                 "CPU per operation on/off − 1):\n")
        o.append("| scenario | metric | presence off | presence on | nchan + Redis "
                 "| cost of presence | on/nchan |")
        o.append("|---|---|---:|---:|---:|---:|---:|")
        presence_cost_rows(o, by, {k: v for k, v in REDIS_SCENARIOS.items()
                                   if k.startswith("redis-presence-")},
                           servers, "oursredis", "oursredispres", "nchanredis", cpu_keys)
        o.append("")
    for sc, spec in REDIS_SCENARIOS.items():
        if not any((sc, s) in by for s, _ in servers):
            continue
        m = scenario_table(o, sc, spec, servers, by, commands, "###",
                           "Client command, `worker_processes {}`:\n",
                           ("server_cpu_pct", "redis_cpu_pct", "client_cpu_pct", "other_cpu_pct"))
        line = "\nRatio ngx_pubsub/nchan (both on Redis): {}".format(
            ratio(m["oursredis"], m["nchanredis"]))
        if (sc, "oursredispres") in by:
            line += "; presence on/off {}, cost {}, on/nchan {}".format(
                ratio(m["oursredispres"], m["oursredis"]),
                cost(m["oursredispres"], m["oursredis"], spec[3]),
                ratio(m["oursredispres"], m["nchanredis"]))
        if (sc, "ret200") in by:
            line += "; ngx_pubsub/return 200 {}, nchan/return 200 {}".format(
                ratio(m["oursredis"], m["ret200"]), ratio(m["nchanredis"], m["ret200"]))
        o.append(line + before_ratios(m, servers) + ".\n")
    run_notes = [n for n in notes if "redis" in n and not n.startswith(" ")]
    if run_notes:
        o.append("Notes of this run (from `run.sh`):\n")
        o += ["- " + n for n in run_notes]
        o.append("")
    o.append(REDIS_END)
    return o


def read_text(path):
    try:
        return open(path).read()
    except FileNotFoundError:
        return ""


def append_section(old, text):
    return old.rstrip("\n") + ("\n\n" if old else "") + text + "\n"


def insert_redis_section(old, text):
    """A new Redis section (and its notes marker) goes before "## Notes"."""
    text += "\n\n" + REDIS_NOTES_END
    n = old.find("## Notes\n")
    return old[:n] + text + "\n\n" + old[n:] if n >= 0 else append_section(old, text)


def replace_section(path, section, begin=PRESENCE_BEGIN, end=PRESENCE_END,
                    insert=append_section):
    """Rewrites the part of the file between begin and end (markers included) with
    section, or adds section with insert(old text, section text) when there is none."""
    old = read_text(path)
    text = "\n".join(section)
    b, e = old.find(begin), old.find(end)
    if b >= 0 and e > b:
        new = old[:b] + text + old[e + len(end):]
    else:
        new = insert(old, text)
    with open(path, "w") as fh:
        fh.write(new)


def add_derived(r):
    ops = None
    if r.get("mode") == "churn":
        ops = r.get("subscriptions_total")
    elif r.get("mode") in ("fanout", "paced"):
        ops = r.get("deliveries")
    if not isinstance(ops, (int, float)) or ops <= 0:
        return
    for src, dst in (("server_cpu_s", "cpu_us_per_op"), ("redis_cpu_s", "redis_cpu_us_per_op")):
        cpu = r.get(src)
        if isinstance(cpu, (int, float)):
            r[dst] = cpu * 1e6 / ops


def cost(on, off, hib):
    """Presence cost in % (positive = presence on is worse)."""
    if on is None or off is None or off == 0 or on == 0:
        return "—"
    c = (off / on - 1) if hib else (on / off - 1)
    return "{:+.1f}%".format(100 * c)


def presence_section(by, commands, a):
    servers = with_before(PRESENCE_SERVERS, a)
    o = [PRESENCE_BEGIN, "## Presence\n"]
    if not any(k[0] in PRESENCE_SCENARIOS for k in by):
        o.append("No presence runs yet: `bench/run.sh --only presence`.\n")
        o.append(PRESENCE_END)
        return o
    o.append("- Command: `{}`; {}; {} repetition(s), median reported; servers alternate run by "
             "run (presence off, presence on, nchan), each run on a fresh nginx, "
             "`worker_processes 1` pinned to core 0, client on core 1.".format(
                 a.command, a.date, a.reps))
    o.append("- Machine: {} CPUs, {}, {}; load average at start {}{}.".format(
        a.nproc, a.cpu, a.nginx, a.loadavg,
        "; nginx and client under `nice -n {}`".format(a.nice) if a.nice and a.nice != "0"
        else ""))
    o.append("- Presence on = the subscriber location adds `pubsub_presence on; "
             "pubsub_presence_id $arg_user; pubsub_presence_leave_delay 1s;` and every "
             "subscriber URL carries a distinct `&user=u{sub}` (ignored by the other two). "
             "nchan has no presence: it runs the plain config. Target (issue 7): presence on "
             "costs ≤ 15%.")
    if a.baseline:
        o.append(baseline_line(a))
    o.append("- \"cost\" = how much worse presence on is than off (throughput: off/on − 1; "
             "memory: on/off − 1). Throughput on a shared machine is noisy (see \"others' "
             "CPU\"); server CPU µs per operation is the steadier measure of cost.\n")
    o.append("| scenario | metric | presence off | presence on | nchan | cost of presence "
             "| on/nchan |")
    o.append("|---|---|---:|---:|---:|---:|---:|")
    presence_keys = ("shm_bytes_per_sub", "cpu_us_per_op")
    presence_cost_rows(o, by, PRESENCE_SCENARIOS, servers, "ours", "ourspres", "nchan",
                       presence_keys)
    o.append("")
    before_after_table(o, by, PRESENCE_SCENARIOS, servers, presence_keys)
    for sc, spec in PRESENCE_SCENARIOS.items():
        if not any((sc, s) in by for s, _ in servers):
            continue
        m = scenario_table(o, sc, spec, servers, by, commands, "###",
                           "Client command (`@PORT@`, `@WORKER@` filled per run; `@STATUS@` = "
                           "`--status-url .../status` for ngx_pubsub), `worker_processes {}`:\n",
                           ("server_cpu_pct", "other_cpu_pct"))
        o.append("\nPresence on/off {}, cost {}; on/nchan {}, off/nchan {}{}.\n".format(
            ratio(m["ourspres"], m["ours"]), cost(m["ourspres"], m["ours"], spec[3]),
            ratio(m["ourspres"], m["nchan"]), ratio(m["ours"], m["nchan"]),
            before_ratios(m, servers)))
    o.append(PRESENCE_END)
    return o


def pusher_summary_rows(by, header):
    """Rows of the main Summary table (whose header cells are `header`) for the Pusher
    scenarios that ran: the Pusher number in the ngx_pubsub column, its ratio to the
    nchan-protocol counterpart in the metric, nchan's counterpart where it ran."""
    rows = []
    for sc, (title, _d, prim, hib, extra) in PUSHER_SCENARIOS.items():
        if (sc, "ourspusher") not in by:
            continue
        path, label, f = prim
        peer, peer_sc = PUSHER_COUNTERPART[sc]
        m = {s: median(by.get((sc, s), []), path) for s in ("ourspusher", peer, "nchan")}
        busy = [median(by.get((sc, s), []), "other_cpu_pct") for s in ("ourspusher", peer)]
        flag = " ⚠" if "idle" not in sc and any(b is not None and b >= 25 for b in busy) else ""
        metric = "{}, Pusher (ngx_pubsub `{}`: {}; Pusher/that {})".format(
            label, peer_sc, fmt(m[peer], f), ratio(m["ourspusher"], m[peer]))
        has_nchan = (sc, "nchan") in by
        cells = {"scenario": sc + flag, "metric": metric, "ngx_pubsub": fmt(m["ourspusher"], f),
                 "nchan": "{} (`{}`)".format(fmt(m["nchan"], f), peer_sc) if has_nchan
                 else "n/a (no Pusher)",
                 "ours/nchan": ratio(m["ourspusher"], m["nchan"]) if has_nchan else "n/a"}
        rows.append("| " + " | ".join(cells.get(h, "n/a") for h in header) + " |")
    return rows


def summary_header(text):
    """The header cells of the main Summary table in a RESULTS.md text, or None."""
    i = text.find("## Summary\n")
    if i < 0:
        return None
    for line in text[i:].split("\n")[1:]:
        if line.startswith("| scenario |"):
            return [c.strip() for c in line.strip().strip("|").split("|")]
    return None


def summary_table_lines(text):
    """The lines of the main Summary table in a RESULTS.md text (empty when none)."""
    i = text.find("## Summary\n")
    if i < 0:
        return []
    out, in_table = [], False
    for line in text[i:].split("\n")[1:]:
        if line.startswith("|"):
            in_table = True
            out.append(line)
        elif in_table:
            break
    return out


def set_summary_rows(text, rows, prefix="| pusher-"):
    """The text with the main Summary table's rows starting with prefix replaced by
    rows (appended at the table's end)."""
    i = text.find("## Summary\n")
    if i < 0:
        return text
    lines = text[i:].split("\n")
    out, in_table = [], False
    for k, line in enumerate(lines):
        if line.startswith("|"):
            in_table = True
            if not line.startswith(prefix):
                out.append(line)
            continue
        if in_table:
            # the rest of the file as it is
            out += rows + lines[k:]
            break
        out.append(line)
    return text[:i] + "\n".join(out)


def pusher_section(by, commands, a, notes=()):
    servers = with_before(PUSHER_SERVERS, a)
    o = [PUSHER_BEGIN, "## Pusher protocol\n"]
    o.append("- Command: `{}`; {}; {} repetition(s), median reported; servers alternate run by "
             "run (Pusher, then the nchan-protocol counterpart on ngx_pubsub, then nchan where "
             "it applies), each run on a fresh nginx; 1 worker pinned to core 0 and the client "
             "on core 1, except `pusher-presence-churn-2w` (2 workers, nothing pinned).".format(
                 a.command, a.date, a.reps))
    o.append("- Machine: {} CPUs, {}, {}; load average at start {}{}.".format(
        a.nproc, a.cpu, a.nginx, a.loadavg,
        "; nginx and client under `nice -n {}`".format(a.nice) if a.nice and a.nice != "0"
        else ""))
    o.append("- Pusher config (server `ourspusher`): the memory-store config plus "
             "`pubsub_pusher_app id=1 key=app-key secret=… max_presence_members=100000;`, "
             "`location /app/ { pubsub_pusher; pubsub_presence_leave_delay 1s; }` and the "
             "publisher location in the app's group (`pubsub_channel_group pusher:1`). The "
             "client (`--transport pusher`) speaks protocol 7 as pusher-js does: "
             "`connection_established`, `pusher:subscribe` (signed for presence), events read "
             "from the frame's `data`. Counterparts: `ours` = plain ngx_pubsub, `ourspres` = "
             "ngx_pubsub with presence on (as in the Presence section), `nchan` = nchan; nchan "
             "cannot speak Pusher, so it has no Pusher row (n/a). Target (issue 16): Pusher "
             "fan-out ≥ 0.8× the nchan-protocol WebSocket fan-out.\n")
    o.append("| scenario | metric | Pusher | ngx_pubsub, nchan protocol | nchan, nchan protocol "
             "| Pusher / ngx_pubsub nchan protocol |")
    o.append("|---|---|---:|---:|---:|---:|")
    for sc, (title, _d, prim, hib, extra) in PUSHER_SCENARIOS.items():
        if not any((sc, s) in by for s, _ in servers):
            continue
        peer = PUSHER_COUNTERPART[sc][0]
        for path, label, f in [prim] + [e for e in extra if e[0] == "cpu_us_per_op"]:
            m = {s: median(by.get((sc, s), []), path) for s in ("ourspusher", peer, "nchan")}
            o.append("| {} | {} | {} | {} | {} | {} |".format(
                sc, label, fmt(m["ourspusher"], f), fmt(m[peer], f),
                fmt(m["nchan"], f) if (sc, "nchan") in by else "n/a",
                ratio(m["ourspusher"], m[peer])))
    o.append("")
    before_after_table(o, by, PUSHER_SCENARIOS, servers, ("cpu_us_per_op",))
    for sc, spec in PUSHER_SCENARIOS.items():
        if not any((sc, s) in by for s, _ in servers):
            continue
        m = scenario_table(o, sc, spec, servers, by, commands, "###",
                           "Client command of the Pusher runs (`@PORT@`, `@WORKER@` filled per "
                           "run), `worker_processes {}`:\n",
                           ("server_cpu_pct", "client_cpu_pct", "other_cpu_pct"))
        others = [(k.split("@", 1)[1], v) for k, v in sorted(commands.items())
                  if k.startswith(sc + "@") and not k.endswith("@ourspusher")]
        if others:
            o.append("\nCounterpart commands:\n")
            for server, (w, cmd) in others:
                o.append("- `{}`: `build/bench/pubsub-load {}`".format(server, cmd))
        peer = PUSHER_COUNTERPART[sc][0]
        line = "\nPusher / ngx_pubsub nchan protocol {}".format(ratio(m["ourspusher"], m[peer]))
        if (sc, "nchan") in by:
            line += "; Pusher / nchan {}".format(ratio(m["ourspusher"], m["nchan"]))
        o.append(line + before_ratios(m, servers) + ".\n")
    run_notes = [n for n in notes if "pusher" in n and not n.startswith(" ")]
    if run_notes:
        o.append("Notes of this run (from `run.sh`):\n")
        o += ["- " + n for n in run_notes]
        o.append("")
    o.append(PUSHER_END)
    return o


def insert_pusher_section(old, text):
    """A new Pusher section (and its notes marker) goes before "## Notes"."""
    text += "\n\n" + PUSHER_NOTES_END
    n = old.find("## Notes\n")
    return old[:n] + text + "\n\n" + old[n:] if n >= 0 else append_section(old, text)


def paced_behind(by, sc, servers):
    """Names of the servers whose median run did not keep up with the offered rate."""
    out = []
    for s, name in servers:
        k = median(by.get((sc, s), []), "kept_up")
        if k is not None and k < 1:
            out.append(name)
    return out


def paced_summary_rows(by, header, servers):
    """Rows of the main Summary table (whose header cells are `header`) for the paced
    scenarios that ran: p50 and p99 latency, ours/nchan (lower is better)."""
    rows = []
    for sc, (title, _d, prim, _hib, extra) in PACED_SCENARIOS.items():
        if not any((sc, s) in by for s, _ in servers):
            continue
        busy = [median(by.get((sc, s), []), "other_cpu_pct") for s, _ in servers]
        flag = " ⚠" if any(b is not None and b >= 25 for b in busy) else ""
        if paced_behind(by, sc, servers):
            flag += " (behind: {})".format(", ".join(paced_behind(by, sc, servers)))
        for path, label, f in [prim, ("latency_us.p99", "p99 µs", "{:,.0f}")]:
            m = {s: median(by.get((sc, s), []), path) for s in ("ours", "nchan", "ours" + BEFORE)}
            cells = {"scenario": sc + flag, "metric": "latency " + label,
                     "ngx_pubsub": fmt(m["ours"], f), "before": fmt(m["ours" + BEFORE], f),
                     "nchan": fmt(m["nchan"], f), "ours/nchan": ratio(m["ours"], m["nchan"]),
                     "after/before": ratio(m["ours"], m["ours" + BEFORE])}
            rows.append("| " + " | ".join(cells.get(h, "n/a") for h in header) + " |")
    return rows


def paced_section(by, commands, a, notes=()):
    servers = with_before([("ours", "ngx_pubsub"), ("nchan", "nchan")], a)
    o = [PACED_BEGIN, "## Paced latency\n"]
    if not any(k[0] in PACED_SCENARIOS for k in by):
        o.append("No paced runs yet: `bench/run.sh --only paced`.\n")
        o.append(PACED_END)
        return o
    o.append("- Command: `{}`; {}; {} repetition(s), median reported; servers alternate run by "
             "run, each run on a fresh nginx, `worker_processes 1` pinned to core 0, client on "
             "core 1.".format(a.command, a.date, a.reps))
    o.append("- Machine: {} CPUs, {}, {}; load average at start {}{}.".format(
        a.nproc, a.cpu, a.nginx, a.loadavg,
        "; nginx and client under `nice -n {}`".format(a.nice) if a.nice and a.nice != "0"
        else ""))
    if a.baseline:
        o.append(baseline_line(a))
    o.append("- At a fixed offered load both servers should sustain (issue 17), latency is "
             "compared without queueing: each message leaves at its slot, and a run where the "
             "server or the client fell behind (rate not achieved, a send a whole interval late, "
             "or fan-out time p99 ≥ the interval) says so (\"kept up\": **no**, the reason in "
             "the Notes) instead of passing queueing off as latency. Lower is better; ratios are "
             "ngx_pubsub/nchan. \"client CPU while paced\" (the client's CPU time from the first "
             "measured send to the end of the drain, % of one core) shows whether the client "
             "could have been the bottleneck; "
             "\"others' CPU\" what other jobs took from the machine during the run.\n")
    cols = [name for s, name in servers]
    o.append("| scenario | metric | " + " | ".join(cols) + " | ngx_pubsub/nchan |" +
             (" after/before |" if a.baseline else ""))
    o.append("|---|---|" + "---:|" * (len(cols) + 1 + (1 if a.baseline else 0)))
    for sc in PACED_SCENARIOS:
        if not any((sc, s) in by for s, _ in servers):
            continue
        for path, label, f in PACED_SIDE_BY_SIDE + [
                ("client_cpu_pct", "client CPU (whole run)", "{:.0f}%"),
                ("client_cpu_pct_measured", "client CPU while paced", "{:.0f}%"),
                ("other_cpu_pct", "others' CPU", "{:.0f}%")]:
            m = {s: median(by.get((sc, s), []), path) for s, _ in servers}
            r = "" if path == "kept_up" else ratio(m["ours"], m["nchan"])
            if path in ("client_cpu_pct", "client_cpu_pct_measured", "other_cpu_pct",
                        "rate_achieved_pct"):
                r = ""
            cells = [sc, label] + [fmt(m[s], f) for s, _ in servers] + [r]
            if a.baseline:
                cells.append(ratio(m["ours"], m.get("ours" + BEFORE)) if r else "")
            o.append("| " + " | ".join(cells) + " |")
    o.append("")
    before_after_table(o, by, PACED_SCENARIOS, servers,
                       ("latency_us.p99", "latency_us.max", "cpu_us_per_op"))
    for sc, spec in PACED_SCENARIOS.items():
        if not any((sc, s) in by for s, _ in servers):
            continue
        m = scenario_table(o, sc, spec, servers, by, commands, "###",
                           "Client command (`@PORT@` filled per run), `worker_processes {}`:\n",
                           ("server_cpu_pct", "client_cpu_pct", "other_cpu_pct"))
        line = "\np50 ngx_pubsub/nchan {}".format(ratio(m["ours"], m["nchan"]))
        p99 = {s: median(by.get((sc, s), []), "latency_us.p99") for s, _ in servers}
        line += ", p99 ngx_pubsub/nchan {}".format(ratio(p99["ours"], p99["nchan"]))
        behind = paced_behind(by, sc, servers)
        if behind:
            line += "; **did not keep up: {}** (latency includes queueing)".format(
                ", ".join(behind))
        o.append(line + before_ratios(m, servers) + ".\n")
    run_notes = [n for n in notes if "paced" in n and not n.startswith(" ")]
    if run_notes:
        o.append("Notes of this run (from `run.sh`):\n")
        o += ["- " + n for n in run_notes]
        o.append("")
    o.append(PACED_END)
    return o


def insert_paced_section(old, text):
    """A new paced section goes before the first section that report.py does not
    write from the memory-store scenarios (Presence), else before "## Notes"."""
    for marker in (PRESENCE_BEGIN, "## Notes\n"):
        n = old.find(marker)
        if n >= 0:
            return old[:n] + text + "\n\n" + old[n:]
    return append_section(old, text)


def get(d, path):
    for k in path.split("."):
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d if isinstance(d, (int, float)) else None


def median(rows, path):
    vals = [v for v in (get(r, path) for r in rows) if v is not None]
    return statistics.median(vals) if vals else None


def fmt(v, f):
    if v is None:
        return "—"
    return f(v) if callable(f) else f.format(v)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "—"
    return "{:.2f}×".format(a / b)


def main():
    ap = argparse.ArgumentParser()
    for a in ("results", "commands", "notes", "out", "command", "date", "nproc", "cpu",
              "kernel", "nginx", "loadavg", "elapsed", "reps", "ours-ok", "client", "nofile",
              "worker-conns", "nice", "presence-only", "redis-only", "pusher-only", "paced-only",
              "redis-version",
              "baseline", "baseline-so", "baseline-ok"):
        ap.add_argument("--" + a, default="")
    a = ap.parse_args()

    rows = [json.loads(line) for line in open(a.results) if line.strip()]
    commands = {}
    for line in open(a.commands):
        parts = line.rstrip("\n").split("\t")
        if len(parts) == 3:
            commands[parts[0]] = (parts[1], parts[2])
    notes = [n.rstrip("\n") for n in open(a.notes)] if a.notes else []
    ours_ok = a.ours_ok == "1"
    servers = with_before(SERVERS, a)

    by = {}
    for r in rows:
        add_derived(r)
        by.setdefault((r.get("scenario"), r.get("server")), []).append(r)
    if a.presence_only == "1":
        replace_section(a.out, presence_section(by, commands, a))
        return
    if a.redis_only == "1":
        replace_section(a.out, redis_section(by, commands, a, notes), REDIS_BEGIN, REDIS_END,
                        insert_redis_section)
        return
    if a.paced_only == "1":
        replace_section(a.out, paced_section(by, commands, a, notes), PACED_BEGIN, PACED_END,
                        insert_paced_section)
        text = read_text(a.out)
        header = summary_header(text)
        if header:
            with open(a.out, "w") as fh:
                fh.write(set_summary_rows(text, paced_summary_rows(by, header, servers),
                                          "| paced-"))
        return
    if a.pusher_only == "1":
        replace_section(a.out, pusher_section(by, commands, a, notes), PUSHER_BEGIN, PUSHER_END,
                        insert_pusher_section)
        text = read_text(a.out)
        header = summary_header(text)
        if header:
            with open(a.out, "w") as fh:
                fh.write(set_summary_rows(text, pusher_summary_rows(by, header)))
        return

    o = []
    o.append("# Benchmark results: ngx_pubsub vs nchan vs nginx `return 200`\n")
    if not ours_ok:
        o.append("> **The ngx_pubsub column is pending**: `build/nginx/ngx_pubsub_module.so` "
                 "did not exist (or did not load) when this file was written. The nchan and "
                 "`return 200` numbers are final for this machine; re-run `bench/run.sh` once "
                 "the module builds to fill in ngx_pubsub and the ratios.\n")
    o.append("- Command: `{}` (client: `build/bench/pubsub-load`)".format(a.command))
    o.append("- Date: {}; total run time {} s; {} repetition(s) per server, median reported; "
             "servers alternate run by run (ngx_pubsub, {}nchan, return 200, ngx_pubsub, …), "
             "each run on a fresh nginx".format(a.date, a.elapsed, a.reps,
                                                "ngx_pubsub (before), " if a.baseline else ""))
    o.append("- Machine: {} CPUs, {}, kernel {}, {}; load average at start {}".format(
        a.nproc, a.cpu, a.kernel, a.nginx, a.loadavg))
    if a.nice and a.nice != "0":
        o.append("- Priority: nginx and the client ran under `nice -n {}`.".format(a.nice))
    o.append("- Pinning: with 1 worker, nginx (master and worker) runs on core 0 "
             "(`taskset -c 0`) and the client on core 1; with 2 workers nothing is pinned.")
    o.append("- Identical configs apart from the directive prefix: `*_publisher` and "
             "`*_subscriber` locations with `*_channel_id $arg_id`, "
             "`*_message_buffer_length 10`, `access_log off`, `keepalive_requests 10000000`, "
             "`worker_rlimit_nofile {}`, `worker_connections {}`.".format(a.nofile, a.worker_conns))
    if a.baseline:
        o.append(baseline_line(a))
    o.append("- The machine is shared with other work. Per run, \"server CPU\" is the "
             "nginx processes' CPU time over the run's wall time (% of one core: ~100% with "
             "1 worker means the server was the bottleneck), \"client CPU\" the same for "
             "the load client (near 100%: the client limited the run) and \"others' CPU\" is what "
             "processes other than nginx and the client used, as % of all CPUs (0% = the "
             "run had the machine to itself; 50% = one core's worth was taken by someone "
             "else). Runs taken while others were busy are slower for every server; compare "
             "servers within a table and treat differences under ~10% as noise.\n")

    # summary
    o.append("## Summary\n")
    head = summary_head("ngx_pubsub", "nchan", bool(a.baseline))
    o += head
    flagged = summary_rows(o, by, SCENARIOS, servers, "ours", "nchan", (), pending=not ours_ok)
    old = read_text(a.out)
    head_cells = [c.strip() for c in head[0].strip().strip("|").split("|")]
    old_summary = summary_table_lines(old)
    if any(k[0] in PACED_SCENARIOS for k in by):
        o += paced_summary_rows(by, head_cells, servers)
    else:
        o += [line for line in old_summary if line.startswith("| paced-")]
    if any(k[0] in PUSHER_SCENARIOS for k in by):
        o += pusher_summary_rows(by, head_cells)
    else:
        o += [line for line in old_summary if line.startswith("| pusher-")]
    if flagged:
        o.append("\n⚠ = in the median run of at least one server, other processes used "
                 "≥ 25% of all CPUs (see \"others' CPU\" below): absolute throughput numbers are "
                 "depressed and noisy; re-run with `--wait-idle` on a quieter machine.")
    o.append("")
    before_after_table(o, by, SCENARIOS, servers, ())

    pending = set()
    if not ours_ok:
        pending.add("ours")
    if a.baseline and a.baseline_ok != "1":
        pending.add("ours" + BEFORE)
    for sc, spec in SCENARIOS.items():
        if not any((sc, s) in by for s, _ in servers):
            continue
        m = scenario_table(o, sc, spec, servers, by, commands, "##",
                           "Client command (port filled per run; `{{ch}}` = per-run channel id), "
                           "`worker_processes {}`:\n",
                           ("server_cpu_pct", "client_cpu_pct", "other_cpu_pct"), pending)
        line = "\nRatios: ngx_pubsub/nchan {}".format(
            ratio(m["ours"], m["nchan"]) if ours_ok else "pending")
        if (sc, "ret200") in by:
            line += ", ngx_pubsub/return 200 {}, nchan/return 200 {}".format(
                ratio(m["ours"], m["ret200"]) if ours_ok else "pending",
                ratio(m["nchan"], m["ret200"]))
        o.append(line + before_ratios(m, servers) + ".\n")

    qb, qe = old.find(PACED_BEGIN), old.find(PACED_END)
    if any(k[0] in PACED_SCENARIOS for k in by):
        o += paced_section(by, commands, a, notes)
        o.append("")
    elif qb >= 0 and qe > qb:
        o.append(old[qb:qe + len(PACED_END)])
        o.append("")
    ob, oe, on = old.find(PRESENCE_BEGIN), old.find(PRESENCE_END), old.find(PRESENCE_NOTES_END)
    if any(k[0] in PRESENCE_SCENARIOS for k in by):
        o += presence_section(by, commands, a)
        if oe >= 0 and on > oe:
            o.append(old[oe + len(PRESENCE_END):on + len(PRESENCE_NOTES_END)].strip("\n"))
        o.append("")
    elif ob >= 0 and on > ob:
        o.append(old[ob:on + len(PRESENCE_NOTES_END)])
        o.append("")
    rb, re_, rn = old.find(REDIS_BEGIN), old.find(REDIS_END), old.find(REDIS_NOTES_END)
    if any(k[0] in REDIS_SCENARIOS for k in by):
        o += redis_section(by, commands, a, notes)
        if re_ >= 0 and rn > re_:
            o.append(old[re_ + len(REDIS_END):rn + len(REDIS_NOTES_END)].strip("\n"))
        o.append("")
    elif rb >= 0 and rn > rb:
        o.append(old[rb:rn + len(REDIS_NOTES_END)])
        o.append("")
    pb, pe, pn = old.find(PUSHER_BEGIN), old.find(PUSHER_END), old.find(PUSHER_NOTES_END)
    if any(k[0] in PUSHER_SCENARIOS for k in by):
        o += pusher_section(by, commands, a, notes)
        if pe >= 0 and pn > pe:
            o.append(old[pe + len(PUSHER_END):pn + len(PUSHER_NOTES_END)].strip("\n"))
        else:
            o.append("\n" + PUSHER_NOTES_END)
        o.append("")
    elif pb >= 0 and pn > pb:
        o.append(old[pb:pn + len(PUSHER_NOTES_END)])
        o.append("")
    o.append("## Notes\n")
    if notes:
        for n in notes:
            o.append("- " + n if not n.startswith(" ") else "  " + n)
    else:
        o.append("- No anomalies recorded (no failed runs, no alert/crit/emerg lines in "
                 "any error.log).")
    o.append("- Raw per-run JSON: `bench/out/results.jsonl`; client logs: `bench/out/*.log` "
             "(not committed).")
    with open(a.out, "w") as fh:
        fh.write("\n".join(o) + "\n")


if __name__ == "__main__":
    main()
