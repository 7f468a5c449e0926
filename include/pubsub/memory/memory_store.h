#pragma once
// The shared-memory engine: channels and messages in a zone every worker
// maps (ShmStore), subscribers in each worker's Hub.  A publish stores the
// message once; each worker that has subscribers of the channel pulls the
// messages it has not delivered yet and fans them out locally.

#include <functional>
#include <string_view>

#include "pubsub/hub.h"
#include "pubsub/memory/shm_store.h"
#include "pubsub/store.h"

namespace pubsub {

// How the engine reaches the outside world; all supplied by the nginx glue
// (or by a unit test).
struct MemoryStoreEnv {
    ShmAllocator alloc;
    StoreRoot* root = nullptr;
    void* ctx = nullptr;
    void (*lock)(void* ctx) = nullptr;
    void (*unlock)(void* ctx) = nullptr;
    int64_t (*now)(void* ctx) = nullptr;
    // This worker's slot (nginx's process slot: unique among live workers,
    // kept by a worker the master restarts).
    uint32_t slot = 0;
    // Wakes the worker in `slot`: it has notifications waiting (nullptr:
    // one worker, or the others poll).
    void (*wake)(void* ctx, uint32_t slot) = nullptr;
    // Alternative to slots and wake-ups (tests, embedders): called after a
    // publish or delete when other workers hold subscribers of the channel;
    // they must call channelChanged().
    void (*notify)(void* ctx, std::string_view key, bool deleted) = nullptr;
};

// What this worker and the zone hold, for a status page.
struct MemoryStoreStats {
    uint64_t channels = 0;
    uint64_t messages = 0;
    uint64_t messageBytes = 0;
    uint64_t subscribers = 0;  // all workers
    uint64_t published = 0;
    uint64_t localChannels = 0;     // this worker
    uint64_t localSubscribers = 0;  // this worker
    uint64_t generation = 0;
};

class MemoryStore final : public Store {
public:
    explicit MemoryStore(const MemoryStoreEnv& env)
        : env_(env), shm_(env.root, env.alloc), hub_(env.root->hashKey) {}

    void publish(std::string_view key, const PublishInput& in, PublishCallback cb) override;
    void subscribe(Subscriber* sub, const SubscribeRequest& req, SubscribeCallback cb) override;
    void unsubscribe(Subscriber* sub) override;
    void info(std::string_view key, InfoCallback cb) override;
    void remove(std::string_view key, InfoCallback cb) override;
    void groupInfo(std::string_view group, GroupCallback cb) override;
    void setGroupLimits(std::string_view group, const GroupLimitsUpdate& up,
                        GroupCallback cb) override;
    void removeGroup(std::string_view group, GroupCallback cb) override;

    // Another worker changed the channel: deliver what is new to local
    // subscribers (or tell them it was deleted).
    void channelChanged(std::string_view key, bool deleted);

    // Takes this worker's slot (forgetting what a previous owner left);
    // false when the zone has no memory for the mailbox: call
    // processNotifications() from a timer then.
    bool claimSlot(int64_t pid);
    // Gives the slot back (the worker exits).
    void releaseSlot();
    // Frees the slots of workers that died without releasing them
    // (`alive(pid)` tells); returns how many.
    size_t reapSlots(bool (*alive)(int64_t pid));
    // Handles what other workers queued for this one: pulls the changed
    // channels (every local channel after an overflow) and delivers, in
    // message time order across channels.  With `all`, pulls every local
    // channel regardless.
    void processNotifications(bool all = false);

    MemoryStoreStats stats();

    // The channels of a group that have subscribers (ShmStore::occupied);
    // false when memory ran out.
    bool occupied(std::string_view group, std::string_view prefix, size_t max, OccupiedList* out);

    // Periodic maintenance (message expiry, idle channels).
    void sweep(uint64_t maxBuckets, int64_t idleGrace);

    Hub& hub() { return hub_; }

private:
    class Guard {
    public:
        explicit Guard(const MemoryStoreEnv& env) : env_(env) { env_.lock(env_.ctx); }
        ~Guard() { env_.unlock(env_.ctx); }

    private:
        const MemoryStoreEnv& env_;
    };

    int64_t now() const { return env_.now(env_.ctx); }
    static ChannelInfo infoOf(const ShmChannel* ch);
    static GroupInfo groupInfoOf(const ShmGroup* g);
    // Copies `from` and the messages after it (and, when `seqs` is given,
    // their publish sequence); false when memory ran out.
    static bool copyOut(const ShmMessage* from, size_t max, std::vector<MessagePtr>* out,
                        std::vector<uint32_t>* seqs = nullptr);
    // Pulls and delivers one channel now.
    void pull(std::string_view key);
    // Copies what is new for the channel; false when the channel this
    // worker's subscribers are attached to is gone.
    bool collect(std::string_view key, std::vector<MessagePtr>* msgs,
                 std::vector<uint32_t>* seqs = nullptr);
    void wakeAll(const uint32_t* wake, size_t n);

    MemoryStoreEnv env_;
    ShmStore shm_;
    Hub hub_;
};

}  // namespace pubsub
