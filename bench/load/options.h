// pubsub-load: command-line options.
#pragma once

#include <string>

namespace load {

struct Options {
    std::string mode;
    std::string url;
    std::string subUrl;
    std::string pubUrl;
    std::string transport = "ws";
    std::string label;
    std::string runId;
    int conns = 50;
    double duration = 5;
    double warmup = 1;
    int size = 100;
    int subs = 1000;
    int channels = 1;
    int messages = 100;
    double rate = 0;
    int pubConns = 1;
    int connectConcurrency = 200;
    double connectTimeout = 60;
    double drainTimeout = 10;
    double hold = 2;
    double settle = 1;
    int srcAddrs = 0;
    int pairs = 1;
    int measurePid = 0;
    bool wsMeta = false;
    std::string statusUrl;  // idle: GET before/after, reads "shm_used"
    // --transport pusher: the sub URL is the Pusher endpoint
    // (http://IP:PORT/app/<key>?protocol=7), each connection subscribes to
    // --pusher-channel ({ch} and {sub} expanded); private-/presence-
    // channels are signed with --pusher-key/--pusher-secret, presence ones
    // with the member --pusher-user ({sub} expanded).
    std::string pusherKey = "app-key";
    std::string pusherSecret;
    std::string pusherChannel = "{ch}";
    std::string pusherUser = "u{sub}";
    int watchers = 0;      // churn, pusher: members per channel that only watch
    double drain = 3;      // churn, pusher: wait for member_removed after the run
};

void usage();
bool parseOptions(int argc, char** argv, Options& o, std::string& err);

}  // namespace load
