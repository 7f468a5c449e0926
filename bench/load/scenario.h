// pubsub-load: what the scenarios share: message bodies, the subscribe
// request of each transport, and the modes' entry points.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "engine.h"
#include "options.h"

namespace load {

// Message bodies: "m <channel> <seq> <send-ns> xxx..." padded to --size;
// warm-up bodies: "w <channel> <round>".
std::string messageBody(int channel, uint64_t seq, uint64_t ts, int size);

struct ParsedMsg {
    bool warm = false;
    bool ok = false;
    int channel = -1;
    uint64_t seq = 0;
    uint64_t ts = 0;
};

ParsedMsg parseMessage(const char* p, size_t n, bool wsMeta);

// "{sub}" in a subscriber URL becomes the subscriber's number (idle and
// fanout: 0..subs-1; churn: a number unique to each connection of the run),
// e.g. a distinct presence id per connection with ...&user=u{sub}.
std::string expandSub(std::string target, int index);
std::string subscribeRequest(const Options& o, const Url& u, Conn& c, Proto proto);
Proto protoFor(const std::string& t);

// --transport pusher: the channel of a connection (--pusher-channel with
// {ch} and {sub}) and its pusher:subscribe frame, signed for private- and
// presence- channels (presence: member --pusher-user with {sub}).
std::string pusherChannelFor(const Options& o, int channel, int index);
std::string pusherSubscribeFor(const Options& o, const std::string& socketId,
                               const std::string& channel, int index);
// the same, as presence member userId
std::string pusherSubscribeAs(const Options& o, const std::string& socketId,
                              const std::string& channel, const std::string& userId);

// the modes (subpub.cpp, modes.cpp)
int runFanout(const Options& o);
int runIdle(const Options& o);
int runPublish(const Options& o);
int runLongpollRtt(const Options& o);
int runChurn(const Options& o);
int runPusherChurn(const Options& o);  // pusher_churn.cpp

}  // namespace load
