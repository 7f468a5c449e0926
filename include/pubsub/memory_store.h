#pragma once
// The shared-memory engine: channels and messages in a zone every worker
// maps (ShmStore), subscribers in each worker's Hub.  A publish stores the
// message once; each worker that has subscribers of the channel pulls the
// messages it has not delivered yet and fans them out locally.

#include <functional>
#include <string_view>

#include "pubsub/hub.h"
#include "pubsub/shm_store.h"
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
    // Tells the other workers that a channel changed (nullptr: one worker).
    void (*notify)(void* ctx, std::string_view key, bool deleted) = nullptr;
};

class MemoryStore final : public Store {
public:
    explicit MemoryStore(const MemoryStoreEnv& env) : env_(env), shm_(env.root, env.alloc) {}

    void publish(std::string_view key, const PublishInput& in, PublishCallback cb) override;
    void subscribe(Subscriber* sub, const SubscribeRequest& req, SubscribeCallback cb) override;
    void unsubscribe(Subscriber* sub) override;
    void info(std::string_view key, InfoCallback cb) override;
    void remove(std::string_view key, InfoCallback cb) override;

    // Another worker changed the channel: deliver what is new to local
    // subscribers (or tell them it was deleted).
    void channelChanged(std::string_view key, bool deleted);

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
    // Copies `from` and the messages after it; false when memory ran out.
    static bool copyOut(const ShmMessage* from, size_t max, std::vector<MessagePtr>* out);
    void pull(std::string_view key);

    MemoryStoreEnv env_;
    ShmStore shm_;
    Hub hub_;
};

}  // namespace pubsub
