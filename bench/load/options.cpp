#include "options.h"

#include <cinttypes>
#include <cstdio>
#include <cstdlib>

#include "util.h"

namespace load {

void usage()
{
    fprintf(stderr,
            "usage: pubsub-load MODE [options]\n"
            "modes:\n"
            "  publish      --url URL [--conns 50] [--duration 5] [--warmup 1] [--size 100]\n"
            "               [--channels 1]   keep-alive POST loop; req/s and status histogram\n"
            "  fanout       --sub-url URL --pub-url URL [--transport ws|sse|longpoll]\n"
            "               [--subs 1000] [--channels 1] [--messages 100] [--rate 0]\n"
            "               [--pub-conns 1] [--size 100] [--drain-timeout 10]\n"
            "               deliveries/s, loss, duplicates, reorders, latency\n"
            "  paced        --sub-url URL --pub-url URL --rate MSGS_PER_S [--duration 5]\n"
            "               [--transport ws|sse|longpoll] [--subs 1000] [--size 100]\n"
            "               fanout on one channel at a fixed rate (message k due at\n"
            "               start + k/rate, one publisher): latency per delivery, send lag,\n"
            "               fan-out time (send -> last subscriber), achieved rate, and\n"
            "               whether the run kept up (else says why: kept_up, behind_reason)\n"
            "  idle         --sub-url URL [--transport ws|sse|longpoll|chunked|multipart|raw]\n"
            "               [--subs 1000] [--channels 1]\n"
            "               [--hold 2] [--settle 1] [--pub-url URL] [--measure-pid PID]\n"
            "               holds idle subscribers; with --measure-pid, worker memory\n"
            "               (smaps_rollup) before/after and bytes per subscriber\n"
            "  longpoll-rtt --sub-url URL --pub-url URL [--pairs 1] [--duration 5]\n"
            "               [--warmup 1]   publish -> long-poll delivery -> re-poll loop\n"
            "  churn        --sub-url URL [--transport ws|sse|pusher] [--conns 50] [--channels 1]\n"
            "               [--duration 5] [--warmup 1]   connect, wait for the 101 / SSE\n"
            "               head, close, repeat on --conns slots; subscriptions/s\n"
            "idle also takes [--status-url URL]: GETs it before and after and reports the\n"
            "change of its \"shm_used\" (ngx_pubsub's pubsub_status) per subscriber.\n"
            "--transport pusher (fanout, idle, churn): the sub URL is a Pusher endpoint\n"
            "  (http://IP:PORT/app/KEY?protocol=7); every connection subscribes to\n"
            "  [--pusher-channel '{ch}'] after connection_established (subscribed at\n"
            "  subscription_succeeded); private-/presence- channels are signed with\n"
            "  [--pusher-key app-key] --pusher-secret S, presence members are\n"
            "  [--pusher-user 'u{sub}']. churn: each of --conns connections subscribes\n"
            "  to a presence channel as a new member, unsubscribes at the answer and\n"
            "  starts again; [--watchers 0] members per channel count member_added /\n"
            "  member_removed, [--drain 3] seconds after the run for the removals.\n"
            "common: [--connect-concurrency 200] [--connect-timeout 60] [--src-addrs N]\n"
            "        [--ws-meta] [--label TEXT] [--run-id ID]\n"
            "URLs: http://IPv4:PORT/path?query ; '{ch}' in a URL becomes <run-id>-<channel>,\n"
            "'{sub}' in a subscriber URL the subscriber's number.\n");
}

bool parseOptions(int argc, char** argv, Options& o, std::string& err)
{
    if (argc < 2) {
        err = "missing mode";
        return false;
    }
    o.mode = argv[1];
    for (int i = 2; i < argc; i++) {
        std::string k = argv[i];
        if (k == "--ws-meta") {
            o.wsMeta = true;
            continue;
        }
        if (k == "-h" || k == "--help") {
            err = "help";
            return false;
        }
        if (i + 1 >= argc) {
            err = "option " + k + " needs a value";
            return false;
        }
        std::string v = argv[++i];
        char* end = nullptr;
        double d = strtod(v.c_str(), &end);
        bool isNum = end != v.c_str() && *end == '\0';
        auto needNum = [&](double lo) {
            if (!isNum || d < lo) {
                err = "option " + k + " needs a number >= " + std::to_string(lo) + ", got '" + v +
                      "'";
                return false;
            }
            return true;
        };
        auto asInt = [&](int& out, double lo) {
            if (!needNum(lo)) {
                return false;
            }
            out = static_cast<int>(d);
            return true;
        };
        auto asDbl = [&](double& out, double lo) {
            if (!needNum(lo)) {
                return false;
            }
            out = d;
            return true;
        };
        bool ok = true;
        if (k == "--url") {
            o.url = v;
        } else if (k == "--sub-url") {
            o.subUrl = v;
        } else if (k == "--pub-url") {
            o.pubUrl = v;
        } else if (k == "--transport") {
            o.transport = v;
        } else if (k == "--label") {
            o.label = v;
        } else if (k == "--run-id") {
            o.runId = v;
        } else if (k == "--conns") {
            ok = asInt(o.conns, 1);
        } else if (k == "--duration") {
            ok = asDbl(o.duration, 0.1);
        } else if (k == "--warmup") {
            ok = asDbl(o.warmup, 0);
        } else if (k == "--size") {
            ok = asInt(o.size, 0);
        } else if (k == "--subs") {
            ok = asInt(o.subs, 1);
        } else if (k == "--channels") {
            ok = asInt(o.channels, 1);
        } else if (k == "--messages") {
            ok = asInt(o.messages, 1);
        } else if (k == "--rate") {
            ok = asDbl(o.rate, 0);
        } else if (k == "--pub-conns") {
            ok = asInt(o.pubConns, 1);
        } else if (k == "--connect-concurrency") {
            ok = asInt(o.connectConcurrency, 1);
        } else if (k == "--connect-timeout") {
            ok = asDbl(o.connectTimeout, 0.1);
        } else if (k == "--drain-timeout") {
            ok = asDbl(o.drainTimeout, 0.1);
        } else if (k == "--hold") {
            ok = asDbl(o.hold, 0);
        } else if (k == "--settle") {
            ok = asDbl(o.settle, 0);
        } else if (k == "--src-addrs") {
            ok = asInt(o.srcAddrs, 1);
        } else if (k == "--pairs") {
            ok = asInt(o.pairs, 1);
        } else if (k == "--measure-pid") {
            ok = asInt(o.measurePid, 1);
        } else if (k == "--status-url") {
            o.statusUrl = v;
        } else if (k == "--pusher-key") {
            o.pusherKey = v;
        } else if (k == "--pusher-secret") {
            o.pusherSecret = v;
        } else if (k == "--pusher-channel") {
            o.pusherChannel = v;
        } else if (k == "--pusher-user") {
            o.pusherUser = v;
        } else if (k == "--watchers") {
            ok = asInt(o.watchers, 0);
        } else if (k == "--drain") {
            ok = asDbl(o.drain, 0);
        } else {
            err = "unknown option " + k;
            return false;
        }
        if (!ok) {
            return false;
        }
    }
    if (o.mode != "publish" && o.mode != "fanout" && o.mode != "paced" && o.mode != "idle" &&
        o.mode != "longpoll-rtt" && o.mode != "churn") {
        err = "unknown mode '" + o.mode + "'";
        return false;
    }
    bool stream = o.transport == "chunked" || o.transport == "multipart" || o.transport == "raw";
    if (o.transport != "ws" && o.transport != "sse" && o.transport != "longpoll" &&
        o.transport != "pusher" && !stream) {
        err = "unknown transport '" + o.transport +
              "' (ws, sse, longpoll, pusher; idle also chunked, multipart, raw)";
        return false;
    }
    if (stream && o.mode != "idle") {
        err = "chunked, multipart and raw are for idle mode";
        return false;
    }
    if (o.mode == "publish" && o.url.empty()) {
        err = "publish needs --url";
        return false;
    }
    if (o.mode == "paced") {
        // one channel, one publisher connection; the message count follows
        // from the rate and the duration
        if (o.rate <= 0) {
            err = "paced needs --rate MSGS_PER_S";
            return false;
        }
        if (o.channels != 1 || o.pubConns != 1) {
            err = "paced publishes to one channel from one connection";
            return false;
        }
        double n = o.rate * o.duration;
        if (n < 1 || n > 10000000) {
            err = "paced: --rate x --duration must give 1 to 10,000,000 messages";
            return false;
        }
        o.messages = static_cast<int>(n + 0.5);
    }
    if ((o.mode == "fanout" || o.mode == "paced" || o.mode == "longpoll-rtt") &&
        (o.subUrl.empty() || o.pubUrl.empty())) {
        err = o.mode + " needs --sub-url and --pub-url";
        return false;
    }
    if (o.mode == "idle" && o.subUrl.empty()) {
        err = "idle needs --sub-url";
        return false;
    }
    if (o.mode == "churn" && o.subUrl.empty()) {
        err = "churn needs --sub-url";
        return false;
    }
    if (o.transport == "pusher" && o.mode != "fanout" && o.mode != "paced" &&
        o.mode != "idle" && o.mode != "churn") {
        err = "--transport pusher is for fanout, paced, idle and churn";
        return false;
    }
    if (o.transport == "pusher" && o.mode == "churn" &&
        o.pusherChannel.compare(0, 9, "presence-") != 0) {
        err = "churn --transport pusher needs a presence- channel (--pusher-channel)";
        return false;
    }
    if (o.transport == "pusher" && o.pusherSecret.empty() &&
        (o.pusherChannel.compare(0, 8, "private-") == 0 ||
         o.pusherChannel.compare(0, 9, "presence-") == 0)) {
        err = "private and presence channels need --pusher-secret";
        return false;
    }
    if (o.mode == "churn" && o.transport == "longpoll") {
        err = "churn mode supports ws and sse";
        return false;
    }
    int chans = o.mode == "longpoll-rtt" ? o.pairs : o.channels;
    bool pusher = o.transport == "pusher";
    for (const std::string* u : {&o.url, pusher ? &o.pusherChannel : &o.subUrl, &o.pubUrl}) {
        if (!u->empty() && chans > 1 && u->find("{ch}") == std::string::npos) {
            err = "with several channels the URL needs a {ch} placeholder: " + *u;
            return false;
        }
    }
    if (o.runId.empty()) {
        char b[32];
        snprintf(b, sizeof b, "r%08" PRIx64, nextRand() & 0xffffffffu);
        o.runId = b;
    }
    return true;
}

// Message bodies: "m <channel> <seq> <send-ns> xxx..." padded to --size;
// warm-up bodies: "w <channel> <round>".
}  // namespace load
