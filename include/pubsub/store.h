#pragma once
// The storage interface every engine implements (shared memory now, Redis
// later).  Every operation completes through a callback, which an engine
// may call before returning (shared memory) or later from the event loop
// (Redis); callers must not assume either.

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "pubsub/hub.h"
#include "pubsub/message.h"
#include "pubsub/msgid.h"
#include "pubsub/memory/shm_store.h"

namespace pubsub {

enum class StoreResult {
    kOk,
    kNoMemory,     // 507
    kNotFound,     // 404 (info, delete) or 403 (existing channels only)
    kForbidden,    // 403: a group limit
    kUnavailable,  // 503: the engine cannot be reached
    kError,        // 500
};

struct ChannelInfo {
    bool found = false;
    uint64_t messages = 0;
    uint64_t subscribers = 0;
    int64_t lastSeen = -1;  // unix time a subscriber last came or went; -1 never
    MsgId lastId;
    uint64_t presence = 0;
};

struct PublishReply {
    StoreResult status = StoreResult::kOk;
    std::string reason;
    MsgId id;
    ChannelInfo info;  // after the publish
};

struct SubscribeRequest {
    std::string_view key;
    StartSpec start;
    bool existingOnly = false;  // 403 for a channel that does not exist
    bool oneShot = false;       // long-poll: if anything is owed, take it and do not attach
    size_t maxBacklog = 0;      // with oneShot: how many owed messages to take (0: all)
    GroupLimits limits;
};

struct SubscribeReply {
    StoreResult status = StoreResult::kOk;
    std::string reason;
    bool attached = false;  // the subscriber now receives live messages
    bool gap = false;       // messages after its resume id were already dropped
    std::vector<MessagePtr> backlog;
};

class Store {
public:
    using PublishCallback = std::function<void(PublishReply&&)>;
    using SubscribeCallback = std::function<void(SubscribeReply&&)>;
    using InfoCallback = std::function<void(StoreResult, const ChannelInfo&)>;

    virtual ~Store() = default;

    virtual void publish(std::string_view key, const PublishInput& in, PublishCallback cb) = 0;
    // On success the reply carries what the subscriber is owed now (deliver
    // it before anything else); when attached, later messages reach
    // sub->deliver().
    virtual void subscribe(Subscriber* sub, const SubscribeRequest& req, SubscribeCallback cb) = 0;
    // Detaches (no-op if not attached).  Never fails.
    virtual void unsubscribe(Subscriber* sub) = 0;
    virtual void info(std::string_view key, InfoCallback cb) = 0;
    // Deletes the channel: its subscribers everywhere get channelDeleted().
    virtual void remove(std::string_view key, InfoCallback cb) = 0;
};

}  // namespace pubsub
