#pragma once
// The storage interface every engine implements: the memory engine
// (memory/memory_store.h, shared memory) and the Redis engine
// (redis/redis_store.h).  What it speaks is in store_model.h.
//
// Completion contract (what completes when):
//
// - subscribe() calls its callback exactly once, before it returns, in
//   every engine: callers may capture by reference and read the reply right
//   after the call.  The memory engine answers from shared memory.  The
//   Redis engine answers from the snapshot prepared for the key
//   (RedisStore::prepare / usePrepared, which the nginx glue runs through
//   its engine table before a subscriber request's handler): outside such a
//   scope, or for a key that was not prepared, it answers kUnavailable -
//   still before returning.  So "prepare, then subscribe" never waits once
//   prepare has completed.
// - unsubscribe() is synchronous and never fails.
// - publish(), info() and remove() call their callback exactly once, either
//   before returning (the memory engine always; the Redis engine when it
//   fails at once, e.g. not connected) or later from the event loop (the
//   Redis engine's replies): callers must handle both.

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "pubsub/hub.h"
#include "pubsub/message.h"
#include "pubsub/msgid.h"
#include "pubsub/store_model.h"

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
    // A channel's subscriber count, everywhere the engine counts (memory:
    // every worker of the zone; Redis: every instance), went from `before`
    // to `after` through a change made by this store.  Each change is seen
    // by exactly one store: the one that made it (memory: under the zone's
    // lock; Redis: in the script that wrote this worker's count, which may
    // hold several local changes).  Called outside any lock, never from
    // inside subscribe()'s callback.
    using CountHookFn = std::function<void(std::string_view key, uint64_t before, uint64_t after)>;
    void setCountHook(CountHookFn fn) { countHook_ = std::move(fn); }

    virtual ~Store() = default;

    virtual void publish(std::string_view key, const PublishInput& in, PublishCallback cb) = 0;
    // Completes before returning (see the contract above).  On success the
    // reply carries what the subscriber is owed now (deliver it before
    // anything else); when attached, later messages reach sub->deliver().
    virtual void subscribe(Subscriber* sub, const SubscribeRequest& req, SubscribeCallback cb) = 0;
    // Detaches (no-op if not attached).  Never fails.
    virtual void unsubscribe(Subscriber* sub) = 0;
    virtual void info(std::string_view key, InfoCallback cb) = 0;
    // Deletes the channel: its subscribers everywhere get channelDeleted().
    virtual void remove(std::string_view key, InfoCallback cb) = 0;

protected:
    CountHookFn countHook_;
};

}  // namespace pubsub
