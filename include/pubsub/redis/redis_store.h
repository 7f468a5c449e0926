#pragma once
// The Redis engine: channels, history and ids live in Redis (see
// redis_proto.h for the keys and scripts); each worker subscribes to the
// pubsub channels of the channels it has local subscribers for and fans
// messages out through its own Hub.
//
// The connection is abstracted as RedisLink (the nginx glue implements it
// on hiredis and nginx's event loop; unit tests use a fake), so this class
// has no nginx dependency.
//
// Subscribing needs what Redis holds for the channel, but transports expect
// subscribe() to answer at once: the glue first calls prepare() for the
// request's channels and, once it completes, runs the request's handler with
// usePrepared() set; subscribe() then answers from that snapshot.

#include <hiredis/hiredis.h>

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "pubsub/hub.h"
#include "pubsub/keyed_hash.h"
#include "pubsub/memory/presence.h"
#include "pubsub/redis/redis_proto.h"
#include "pubsub/store.h"

namespace pubsub {

class RedisLink {
public:
    // `r` is nullptr when no reply came (connection lost, timeout).  The
    // reply is only valid during the call.
    using ReplyFn = std::function<void(const redisReply* r)>;

    virtual ~RedisLink() = default;
    // Connected (to at least one Redis Cluster master when a cluster).
    virtual bool ready() const = 0;
    // Whether commands and subscriptions for `redisKey` (a key or pubsub
    // channel name; in a cluster, the master owning its hash slot) work
    // now.  A single server is one node owning every slot: ready().
    virtual bool readyFor(std::string_view redisKey) const {
        (void)redisKey;
        return ready();
    }
    // Queues a command; false (and `cb` is never called) when the link is
    // not ready or too many commands are waiting.
    virtual bool command(const std::vector<std::string>& args, ReplyFn cb) = 0;
    // Pubsub connection (replies arrive through RedisStore::onSubscribed/...).
    virtual bool subscribe(const std::string& channel) = 0;
    virtual bool unsubscribe(const std::string& channel) = 0;
    // Sharded pub/sub (a Redis Cluster whose nodes all have SSUBSCRIBE):
    // the scripts then SPUBLISH live messages, and subscribe() is expected
    // to SSUBSCRIBE on the node owning the channel's slot.
    virtual bool sharded() const { return false; }
};

struct RedisStoreStats {
    uint64_t published = 0;
    uint64_t fetches = 0;           // history reads to fill a hole in the live stream
    uint64_t liveMessages = 0;      // received on the pubsub connection
    uint64_t catchUps = 0;          // subscribers that attached behind this worker
    uint64_t snapshotsSkipped = 0;  // subscribers attached from what the worker knew
    uint64_t presenceUpdates = 0;   // deltas and snapshots sent
    uint64_t presenceErrors = 0;    // presence scripts that failed
    uint64_t presenceSwept = 0;     // channels of dead instances swept
    uint64_t presenceResyncs = 0;   // refreshes that had to send the whole part
};

class RedisStore final : public Store {
public:
    struct Prepared {
        struct Channel {
            StoreResult status = StoreResult::kOk;
            std::string reason;
            redis::Snapshot snap;
        };
        std::unordered_map<std::string, Channel, KeyedStringHash> channels;
    };
    using PreparedPtr = std::shared_ptr<Prepared>;

    // `instanceId` names this worker in the subscriber counts.
    RedisStore(RedisLink* link, std::string instanceId);
    ~RedisStore() override;

    void publish(std::string_view key, const PublishInput& in, PublishCallback cb) override;
    void subscribe(Subscriber* sub, const SubscribeRequest& req, SubscribeCallback cb) override;
    void unsubscribe(Subscriber* sub) override;
    void info(std::string_view key, InfoCallback cb) override;
    void remove(std::string_view key, InfoCallback cb) override;
    // pubsub_subscriber_info: asks every instance's subscribers of `key`
    // to report on channel `replyKey` (an "I" on the channel's pubsub
    // channel, which no message starts with).  false: not sent.
    bool requestInfo(std::string_view key, std::string_view replyKey);
    // Groups (redis_store_groups.cpp): the counts are what locations with
    // group limits (or GroupLimits::useStored) recorded in Redis.
    void groupInfo(std::string_view group, GroupCallback cb) override;
    void setGroupLimits(std::string_view group, const GroupLimitsUpdate& up,
                        GroupCallback cb) override;
    void removeGroup(std::string_view group, GroupCallback cb) override;

    // Reads the channels' snapshots; `done` always runs (maybe at once).
    // With `start` (where a one-channel subscriber starts), a channel this
    // worker follows in step needs no read when the subscriber is owed
    // nothing (it resumes from the newest id, or starts at the newest).
    void prepare(const std::vector<std::string>& keys, std::function<void(PreparedPtr)> done,
                 const StartSpec* start = nullptr);
    // The same with the location's group limits (redis_groups.h): a channel
    // the group does not have yet (unless `existingOnly`), or one more
    // subscriber, over its limit answers kForbidden with nchan's text.
    // Without channel or subscriber limits, exactly the call above.
    void prepare(const std::vector<std::string>& keys, std::function<void(PreparedPtr)> done,
                 const GroupLimits& limits, bool existingOnly, const StartSpec* start = nullptr);
    // subscribe() answers from `p` until reset with nullptr.
    void usePrepared(Prepared* p) { prepared_ = p; }

    // From the link: onReady() and onDown() when the whole link comes up
    // or goes down (every channel is re-subscribed / reset);
    // onNodesChanged() when only part of it did (a cluster master failed,
    // came back or was replaced by its replica): channels whose readyFor()
    // became false are reset, and channels with local subscribers that are
    // ready but not subscribed are subscribed again (and, once confirmed,
    // read the history after their last delivered id).
    void onReady();
    void onDown();
    void onNodesChanged();
    void onSubscribed(std::string_view channel);
    void onUnsubscribed(std::string_view channel);
    void onMessage(std::string_view channel, std::string_view payload);

    // Every second: unsubscribes idle channels, refreshes subscriber counts
    // (every `countRefresh` ticks); `countTtl` is how long an instance's
    // count stays valid in Redis without a refresh.
    void tick();

    // Presence (redis_presence.h).  Events whose script ran from this
    // worker go to the hook: join and leave, then online and offline from
    // the user's key.  Nothing waits for the replies of delta and refresh.
    using PresenceHookFn = std::function<void(const PresenceEvent&)>;
    using PresenceStatsCallback = std::function<void(StoreResult, const PresenceStats&)>;
    using PresencePageCallback = std::function<void(StoreResult, PresencePage&&)>;
    using PresenceUserCallback = std::function<void(StoreResult, PresenceUserState&&)>;

    void setPresenceHook(PresenceHookFn fn) { presenceHook_ = std::move(fn); }
    // `validMs`: how long this instance's part stays without a refresh.
    // Deltas wait for presenceFlush() (the glue calls it at the end of the
    // event loop turn): one script per channel for all of them.
    void presenceDelta(const std::string& instance, const PresenceDelta& d, uint64_t validMs);
    // Sends the waiting deltas; false when there were none.
    bool presenceFlush();
    // The instance's whole part of each channel, its beat, and the sweep of
    // the channels of instances whose beat is older than `graceMs` past
    // their validity.
    void presenceRefresh(const std::string& instance,
                         const std::vector<PresenceChannelSnapshot>& channels, uint64_t validMs,
                         uint64_t graceMs);
    void presenceStats(std::string_view key, PresenceStatsCallback cb);
    // `cursor` as presencePage gave it ("" for the first page); a bad one
    // answers kNotFound.
    void presencePage(std::string_view key, size_t limit, std::string_view cursor,
                      PresencePageCallback cb);
    void presenceUser(std::string_view id, PresenceUserCallback cb);

    // Occupied channels (redis_groups.h, <gtag>:occ).  Groups whose name
    // starts with `prefix` are indexed: an instance with subscribers of one
    // of their channels keeps it listed while it has them (refreshed with
    // its count).  occupied() lists a group's channels with subscribers,
    // ids starting with `prefix`, at most `max`; each listed channel's
    // count is read from the channel itself, so one that emptied is not
    // listed.
    using OccupiedCallback = std::function<void(StoreResult, OccupiedList&&)>;
    void indexGroups(std::string prefix) {
        indexPrefix_ = std::move(prefix);
        indexOn_ = true;
    }
    void occupied(std::string_view group, std::string_view prefix, size_t max, OccupiedCallback cb);

    Hub& hub() { return hub_; }
    const RedisStoreStats& stats() const { return stats_; }
    size_t localChannels() const { return chans_.size(); }

    static constexpr int kCountTtl = 30;
    static constexpr int kCountRefreshTicks = 10;
    static constexpr const char* kUnavailable = "Redis is unavailable";
    // Live joins/leaves held for one channel while its log is read.
    static constexpr size_t kPresenceHeld = 256;

private:
    struct Chan {
        enum Sub { kNone, kSubscribing, kSubscribed, kUnsubscribing };
        std::string key;
        size_t local = 0;
        Sub sub = kNone;
        bool fetching = false;
        std::vector<MessagePtr> queue;  // live messages waiting for a fetch
        // The newest live message seen, even with no local subscriber to
        // take it; a subscriber attaching from an older snapshot needs what
        // came after its snapshot: the next fetch reads from catchUpFrom.
        MsgId lastLive;
        bool catchUp = false;
        MsgId catchUpFrom;
        bool countDirty = false;  // `local` changed since it was last sent
        // While subscribed without a hole since the last history read: the
        // channel's newest id (and whether it exists), which lets a
        // subscriber that resumes from it, or starts at the newest, attach
        // without reading a snapshot.
        bool knownValid = false;
        bool knownFound = false;
        MsgId known;
        // ... and it stores no message (none read, none since): whatever
        // its start, a new subscriber is owed nothing.
        bool knownEmpty = false;
        // The presence log (joins and leaves numbered by the scripts): the
        // newest number this worker accounted for, known from the snapshot
        // of the subscriber that made it subscribe.  Once a SUBSCRIBE is
        // confirmed, the next fetch reads what the log holds after it
        // (what happened while the SUBSCRIBE was on its way, or the link
        // was down); live events wait meanwhile, and those the log gave
        // already are dropped.
        bool plogKnown = false;
        bool plogWant = false;     // the next fetch reads the log
        bool plogReading = false;  // the running fetch reads the log
        uint64_t pseen = 0;
        std::vector<std::pair<uint64_t, PresenceEvent>> pqueue;
    };
    using ChanPtr = std::shared_ptr<Chan>;

    // A group this worker served a limited request for (redis_store_groups.cpp).
    struct Group {
        uint64_t local = 0;        // this worker's attached subscribers in the group
        uint64_t pending = 0;      // subscriber reservations not settled yet
        uint64_t written = ~0ULL;  // the count last sent
        bool channels = false;     // a channel limit: local channels refresh their expiry
        unsigned idle = 0;         // refreshes with nothing local
    };

    bool eval(const redis::Script& s, std::string_view key, std::vector<std::string> args,
              RedisLink::ReplyFn cb);
    // With the key as is (not a channel's tag).
    bool evalKey(const redis::Script& s, std::string key, std::vector<std::string> args,
                 RedisLink::ReplyFn cb);
    void presenceEvents(const std::string& key, const redisReply* r);
    void presenceUpdate(const std::string& key, std::vector<std::string> args);
    void presenceTick();
    void presenceUserCheck(const std::string& id, PresenceUserState st,
                           std::shared_ptr<PresenceUserCallback> cb);
    // `flags` go to the publish script (redis_proto.h); `after` sees a
    // successful reply before `cb`.
    void publishNow(std::string_view key, const PublishInput& in, PublishCallback cb,
                    const char* flags, std::function<void(const redisReply*)> after);
    // Group limits (redis_store_groups.cpp).  A limited publish: the
    // group's check, then (allowed) the publish and the group's record.
    struct LimitedPublish;
    using LimitedPtr = std::shared_ptr<LimitedPublish>;
    void publishLimited(std::string_view key, const PublishInput& in, PublishCallback cb);
    void limitedVerdict(const LimitedPtr& op, const redisReply* r);
    void limitedPublish(const LimitedPtr& op);
    Group* trackGroup(std::string_view name);
    void groupLocal(const std::string& key, int64_t delta);
    // Writes local + pending when it changed (or always with `force`), and
    // moves the expiry of `channels` (ids) in the group's set.
    void sendGroupCount(const std::string& name, Group& g, std::vector<std::string> channels,
                        bool force);
    void groupsTick(bool refresh);
    void groupsReady();
    // After a delete: tells the group when it may list the channel; true if
    // so, and `then` runs once the group answered.
    bool groupDeleted(const std::string& key, const redisReply* r, std::function<void()> then);
    void presenceSweep(const std::string& instance, const redisReply* dead);
    ChanPtr chan(std::string_view key, bool create);
    ChanPtr chanOf(std::string_view pubsubChannel, std::string* key);
    // The link can serve the channel `key` (its master is up).
    bool channelReady(std::string_view key) const;
    bool knownSnapshot(const std::string& key, const StartSpec& start, redis::Snapshot* snap);
    void resetChan(Chan& c);
    void addLocal(const std::string& key);
    void dropLocal(const std::string& key);
    void countChanged(Chan& c, bool edge);
    void sendCount(const Chan& c);
    void startFetch(const ChanPtr& c);
    void catchUpFrom(const std::string& key, const MsgId& cursor);
    void fetched(const ChanPtr& c, const redisReply* r);
    void onPresenceLive(const std::string& key, std::string_view payload);
    // A numbered live join/leave, and the log a fetch read (redis_store_presence.cpp).
    void presenceLive(const ChanPtr& c, uint64_t seq, const PresenceEvent& ev);
    void presenceLogRead(const ChanPtr& c, const redis::Snapshot* snap);
    void presenceOnce(Chan& c, uint64_t seq, const PresenceEvent& ev);
    void presenceHeld(Chan& c);
    void presenceForget(Chan& c);
    void deliverOne(const std::string& key, const MessagePtr& m);

    RedisLink* link_;
    std::string instanceId_;
    Hub hub_;
    std::unordered_map<std::string, ChanPtr, KeyedStringHash> chans_;
    Prepared* prepared_ = nullptr;
    RedisStoreStats stats_;
    unsigned ticks_ = 0;
    std::shared_ptr<bool> alive_;
    PresenceHookFn presenceHook_;
    struct PendingDeltas {
        std::string instance;
        uint64_t validMs = 0;
        uint64_t version = 0;  // the newest delta's, with its counts
        uint64_t connections = 0;
        uint64_t anonymous = 0;
        std::vector<std::string> entries;  // id, conns, info, opts, version
    };
    std::unordered_map<std::string, PendingDeltas, KeyedStringHash> presencePending_;
    void presenceSend(const std::string& key, PendingDeltas& p);
    void presenceSubscribed(const std::string& key);
    // channels this instance got its first member in, to register (pchans)
    std::vector<std::string> presenceNew_;
    std::string presenceNewOf_;
    std::unordered_map<std::string, Group, KeyedStringHash> groups_;
    bool indexOn_ = false;
    std::string indexPrefix_;
    // Lists the channel in its group's occupied set when the group is indexed.
    void sendOccupied(const Chan& c);
};

}  // namespace pubsub
