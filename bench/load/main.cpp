// pubsub-load: a single-threaded epoll load client for nchan-compatible
// pub/sub servers (ngx_pubsub, nchan) and plain HTTP endpoints.
//
// It depends on libc only (and libcrypto for --transport pusher's HMAC): the HTTP/1.1 response parser, the WebSocket
// client (handshake with Sec-WebSocket-Accept check, frame reader), the SSE
// parser and the long-poll loop are all here:
//
//   util.*      clocks, random, strings, URLs, limits, worker memory
//   report.*    the JSON line, histograms, latency percentiles
//   http.*      response head parser, chunked decoder, requests
//   engine.*    connections and the epoll loop (HTTP, SSE reading)
//   ws.cpp      WebSocket framing and the accept key
//   options.*   command line
//   scenario.*  message bodies, subscribe requests, the modes' entry points
//   subpub.cpp  fanout, paced and idle; modes.cpp: publish, longpoll-rtt, churn
//   pusher.*    Pusher protocol 7 client frames and channel signatures
//   pusher_churn.cpp  churn --transport pusher (presence join/leave)
//
// Modes (see --help): publish, fanout, paced, idle, longpoll-rtt, churn. Each run prints
// one JSON line on stdout and a human summary on stderr.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "options.h"
#include "scenario.h"
#include "util.h"

using namespace load;

int main(int argc, char** argv)
{
    g_rand ^= nowNs() ^ (static_cast<uint64_t>(getpid()) << 32);
    nextRand();
    Options o;
    std::string err;
    if (!parseOptions(argc, argv, o, err)) {
        if (err != "help") {
            fprintf(stderr, "pubsub-load: %s\n", err.c_str());
        }
        usage();
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, onSignal);
    signal(SIGTERM, onSignal);
    raiseNofile();
    if (o.mode == "publish") {
        if (o.conns + 16 > nofileLimit()) {
            fprintf(stderr, "pubsub-load: --conns %d exceeds RLIMIT_NOFILE %ld\n", o.conns,
                    nofileLimit());
            return 2;
        }
        return runPublish(o);
    }
    if (o.mode == "fanout" || o.mode == "paced") {
        return runFanout(o);
    }
    if (o.mode == "idle") {
        return runIdle(o);
    }
    if (o.mode == "churn") {
        return o.transport == "pusher" ? runPusherChurn(o) : runChurn(o);
    }
    return runLongpollRtt(o);
}
