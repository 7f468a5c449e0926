// Pusher's optional channel features (SPEC §12, docs/pusher.md), without
// nginx: cache channels (the last event replayed on subscribe, else
// pusher:cache_miss) and pushed subscription counts
// (pusher_internal:subscription_count), with the throttle that keeps a
// churning channel from sending a storm.
//
// Nothing here throws except std::bad_alloc.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "pubsub/message.h"

namespace pubsub {
namespace pusher {

// ------------------------------------------------------------ cache channels

// How long a cached event is replayed (Pusher: "up to 30 minutes"); the
// message buffer may drop it sooner (pubsub_message_timeout, its length).
constexpr int64_t kCacheTtl = 30 * 60;
// How many of the newest stored messages a subscribe looks through for
// the cached event (client events are stored too, and are never cached).
constexpr int64_t kCacheLookback = 8;

// cache-*, private-cache-*, private-encrypted-cache-*, presence-cache-*.
bool isCacheChannel(std::string_view name);
// Whether an event may be a cache channel's cached event: not a client
// event (client-*) and not the protocol's own (pusher:*, pusher_internal:*).
bool cacheableEvent(std::string_view eventName);
// The cached event among `backlog` (oldest first, as a store replays it):
// the newest cacheable one published at most kCacheTtl before `now` (unix
// seconds); nullptr when there is none (a cache miss).
const Message* cachedEvent(const std::vector<MessagePtr>& backlog, int64_t now);

// -------------------------------------------------------- subscription count

// Internal channel of an app group that carries the counts between
// workers and instances; clients cannot name it ('#').
constexpr std::string_view kCountsChannel = "#subscription_count";

// pusher_internal:subscription_count's data: {"subscription_count":N}
std::string subscriptionCountData(uint64_t count);

// The counts' message: one line "<count> <channel>\n" per channel (Pusher
// channel names have no spaces nor newlines).
void appendCount(std::string& batch, std::string_view channel, uint64_t count);
struct ChannelCount {
    std::string_view channel;  // points into the batch
    uint64_t count = 0;
};
// Malformed lines are skipped; false when any was.
bool parseCounts(std::string_view batch, std::vector<ChannelCount>* out);

// When a worker sends the counts of the channels it changed.  The first
// change after a quiet time goes kCountDelayMs later (a burst of joins is
// one count); later ones at least kCountEveryMs apart, kCountEveryBigMs
// above kCountBig subscribers (Pusher: every 5 s above 100).  So a channel
// churning at any rate costs its subscribers at most one count per
// interval and worker.
constexpr int64_t kCountDelayMs = 100;
constexpr int64_t kCountEveryMs = 500;
constexpr int64_t kCountEveryBigMs = 5000;
constexpr uint64_t kCountBig = 100;

class CountThrottle {
public:
    // Channel `key` changed at `now` (ms) to `count` subscribers.
    void changed(std::string_view key, uint64_t count, int64_t now);
    // The keys due at `now`, oldest due first; each counts as sent now.
    // Keys quiet for longer than kCountEveryBigMs are forgotten.
    std::vector<std::string> due(int64_t now);
    // When the next key is due (ms), or -1 when none is pending.
    int64_t next() const;
    // Keys remembered (pending or sent recently).
    size_t size() const { return keys_.size(); }

private:
    struct State {
        int64_t last = 0;  // last sent (ms)
        bool sent = false;
        int64_t dueAt = -1;  // -1: nothing pending
        uint64_t count = 0;
    };
    std::unordered_map<std::string, State> keys_;
};

}  // namespace pusher
}  // namespace pubsub
