#pragma once
// What the storage interface (store.h) speaks, whatever the engine: where a
// subscriber starts, what a publish carries, a group's limits and the
// reasons a store gives when it refuses.  No engine's header is needed to
// use the interface; the engines (memory/, redis/) include this one.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "pubsub/msgid.h"

namespace pubsub {

// Why a store refused an operation; the group limits' reasons are the same
// text in every engine.
enum class StoreStatus {
    kOk,
    kNoMemory,
    kNotFound,
    kGroupChannels,     // pubsub_group_max_channels reached
    kGroupSubscribers,  // pubsub_group_max_subscribers reached
    kGroupMemory,       // pubsub_group_max_messages_memory reached
    kFreshChannels,     // channels without messages have used their share of the zone
};

// The reason a client gets for a refused operation.
const char* storeStatusReason(StoreStatus s);

// Channels of a group that have subscribers (Pusher's "occupied"), by id.
struct OccupiedChannel {
    std::string id;  // the key after "<group>/"
    uint64_t subscribers = 0;
};
struct OccupiedList {
    std::vector<OccupiedChannel> channels;
    bool truncated = false;  // there were more than asked for
};

// Per-group limits; 0 is no limit of the location's own (the limit stored
// with the group applies then: store.h "Group limits").
struct GroupLimits {
    uint64_t maxChannels = 0;
    uint64_t maxSubscribers = 0;
    uint64_t maxBytes = 0;
    // The Redis engine counts a group's channels, subscribers and memory,
    // and applies its stored limits, only for operations that ask for it
    // (a location with a pubsub_group_max_* directive): without a limit
    // of their own they cost nothing.  The memory engine always does.
    bool useStored = false;
};

struct PublishInput {
    std::string_view data;
    std::string_view contentType;
    std::string_view eventName;
    std::string_view origin;    // opaque: who published it (Message::origin())
    uint64_t maxMessages = 10;  // 0: deliver only, never replay
    int64_t ttl = 3600;         // seconds; 0 never expires
    GroupLimits limits;
};

// Where a subscriber without a resume id starts.
struct StartSpec {
    enum Kind { kOldest, kNewest, kFromOldest, kFromNewest, kAfter };
    Kind kind = kOldest;
    int64_t n = 0;  // kFromOldest: start at the n-th oldest (1 = oldest);
                    // kFromNewest: start n messages back from the newest
    MsgId after;    // kAfter
};

}  // namespace pubsub
