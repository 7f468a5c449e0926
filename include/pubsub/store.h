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
// - groupInfo(), setGroupLimits() and removeGroup() are the same: their
//   callback runs exactly once, before returning (memory; Redis when it
//   fails at once) or later from the event loop (Redis).  removeGroup()
//   answers once every channel of the group is deleted (each as remove()
//   deletes one: its subscribers everywhere get channelDeleted()).
//
// Group limits: every operation that can create a channel, add a
// subscriber or store a message carries the location's own limits
// (GroupLimits, 0: none of its own).  Limits stored with the group by
// setGroupLimits() apply to each limit the operation does not set (its 0):
// a location's own limit always wins, the group's stored limit is the
// default for locations without one.

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

// A channel group ("G" of the keys "G/id") as the engine counts it.
struct GroupInfo {
    bool found = false;  // the engine has counts or stored limits for it
    uint64_t channels = 0;
    uint64_t subscribers = 0;
    uint64_t messages = 0;  // stored, replayable messages
    uint64_t bytes = 0;     // memory of the stored messages (each engine's measure)
    GroupLimits limits;     // the limits stored with the group (0: none)
};

// Which of the group's stored limits setGroupLimits() changes (a limit of 0
// removes the stored one).
struct GroupLimitsUpdate {
    GroupLimits limits;
    bool channels = false;
    bool subscribers = false;
    bool bytes = false;
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
    using GroupCallback = std::function<void(StoreResult, const GroupInfo&)>;
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

    // A group's counts and stored limits (kOk also for a group the engine
    // knows nothing of: all zero, found false).
    virtual void groupInfo(std::string_view group, GroupCallback cb) = 0;
    // Stores limits with the group (see "Group limits" above); answers the
    // group's info after the change.
    virtual void setGroupLimits(std::string_view group, const GroupLimitsUpdate& up,
                                GroupCallback cb) = 0;
    // Deletes every channel of the group; answers the group's info after.
    // The stored limits stay.
    virtual void removeGroup(std::string_view group, GroupCallback cb) = 0;

protected:
    CountHookFn countHook_;
};

}  // namespace pubsub
