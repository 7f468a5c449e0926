#pragma once
// Test doubles for the core engine: a budgeted allocator that counts what is
// live, a fake clock, a lock that fails the test when re-entered, a recording
// notifier and a recording subscriber.

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "pubsub/hub.h"
#include "pubsub/memory/memory_store.h"
#include "pubsub/message.h"
#include "pubsub/msgid.h"
#include "pubsub/memory/shm_store.h"

namespace pubsub_test {

// malloc/free with a byte budget (a "zone" that can fill up), counting live
// allocations and bytes so tests can check that everything is given back.
class TestAllocator {
public:
    static constexpr size_t kUnlimited = static_cast<size_t>(-1);

    explicit TestAllocator(size_t budget = kUnlimited) : budget_(budget) {}
    ~TestAllocator() = default;
    TestAllocator(const TestAllocator&) = delete;
    TestAllocator& operator=(const TestAllocator&) = delete;

    pubsub::ShmAllocator shm() {
        pubsub::ShmAllocator a;
        a.ctx = this;
        a.alloc = &TestAllocator::allocCb;
        a.free = &TestAllocator::freeCb;
        return a;
    }

    void setBudget(size_t budget) { budget_ = budget; }
    size_t budget() const { return budget_; }
    size_t liveCount() const { return liveCount_; }
    size_t liveBytes() const { return liveBytes_; }
    size_t peakBytes() const { return peakBytes_; }
    uint64_t refused() const { return refused_; }
    uint64_t frees() const { return frees_; }

    void* alloc(size_t size) {
        if (size > budget_ || liveBytes_ > budget_ - size) {
            refused_++;
            return nullptr;
        }
        auto* h = static_cast<Header*>(std::malloc(sizeof(Header) + size));
        if (h == nullptr) {
            return nullptr;
        }
        h->size = size;
        h->magic = kLiveMagic;
        liveBytes_ += size;
        liveCount_++;
        if (liveBytes_ > peakBytes_) {
            peakBytes_ = liveBytes_;
        }
        return h + 1;
    }

    void free(void* p) {
        if (p == nullptr) {
            ADD_FAILURE() << "free(nullptr) through the zone allocator";
            return;
        }
        Header* h = static_cast<Header*>(p) - 1;
        if (h->magic != kLiveMagic) {
            ADD_FAILURE() << "zone free of a pointer that is not live";
            return;
        }
        h->magic = 0;
        liveBytes_ -= h->size;
        liveCount_--;
        frees_++;
        std::free(h);
    }

private:
    static constexpr uint64_t kLiveMagic = 0x4c49564542554646ULL;
    struct alignas(std::max_align_t) Header {
        size_t size;
        uint64_t magic;
    };

    static void* allocCb(void* ctx, size_t size) {
        return static_cast<TestAllocator*>(ctx)->alloc(size);
    }
    static void freeCb(void* ctx, void* p) { static_cast<TestAllocator*>(ctx)->free(p); }

    size_t budget_;
    size_t liveBytes_ = 0;
    size_t liveCount_ = 0;
    size_t peakBytes_ = 0;
    uint64_t refused_ = 0;
    uint64_t frees_ = 0;
};

// Frees what ShmStore::createRoot allocated (clear() keeps the root and its
// bucket array so that the zone stays usable).
inline void destroyRoot(TestAllocator& a, pubsub::StoreRoot* root) {
    pubsub::ShmStore(root, a.shm()).clear();
    a.free(root->buckets);
    a.free(root);
}

inline pubsub::MsgId id(int64_t time, int32_t tag) { return pubsub::MsgId{time, tag}; }

inline pubsub::MessagePtr makeMessage(pubsub::MsgId mid, pubsub::MsgId prev,
                                      std::string_view data = "x") {
    return pubsub::MessagePtr::adopt(pubsub::Message::create(mid, prev, "", "", data));
}

// A subscriber that records everything it is told, in order.
class RecordingSubscriber : public pubsub::Subscriber {
public:
    explicit RecordingSubscriber(std::string name = "sub") : name_(std::move(name)) {}

    void deliver(const pubsub::MessagePtr& msg) override {
        ids.push_back(msg->id());
        data.push_back(std::string(msg->data()));
        log.push_back("msg " + pubsub::formatMsgId(msg->id()));
        if (onDeliver) {
            onDeliver(this, msg);
        }
    }
    void gap() override {
        gaps++;
        log.push_back("gap");
        if (onGap) {
            onGap(this);
        }
    }
    void channelDeleted() override {
        deleted++;
        log.push_back("deleted");
        EXPECT_FALSE(attached()) << name_ << ": channelDeleted() while still attached";
        if (onDeleted) {
            onDeleted(this);
        }
    }

    const std::string& name() const { return name_; }

    std::vector<pubsub::MsgId> ids;
    std::vector<std::string> data;
    std::vector<std::string> log;
    int gaps = 0;
    int deleted = 0;
    std::function<void(RecordingSubscriber*, const pubsub::MessagePtr&)> onDeliver;
    std::function<void(RecordingSubscriber*)> onGap;
    std::function<void(RecordingSubscriber*)> onDeleted;

private:
    std::string name_;
};

// The shared-memory zone of a simulated nginx: allocator, root, clock and
// the zone lock shared by every worker.
struct Zone {
    explicit Zone(size_t budget = TestAllocator::kUnlimited, uint64_t buckets = 16)
        : alloc(budget) {
        root = pubsub::ShmStore::createRoot(alloc.shm(), buckets);
    }
    ~Zone() {
        if (root != nullptr) {
            destroyRoot(alloc, root);
        }
    }
    Zone(const Zone&) = delete;
    Zone& operator=(const Zone&) = delete;

    // Makes this a zone of `bytes` (counted from now), as nginx's glue does
    // for pubsub_shm_size: the allocator's budget, and the share of it that
    // channels without messages may take.
    void limitTo(size_t bytes) {
        alloc.setBudget(alloc.liveBytes() + bytes);
        root->freshLimit = bytes / pubsub::ShmStore::kFreshShare;
    }

    void lock() {
        EXPECT_FALSE(locked) << "zone lock taken twice (re-entered)";
        locked = true;
        locks++;
    }
    void unlock() {
        EXPECT_TRUE(locked) << "zone unlocked while not locked";
        locked = false;
    }

    TestAllocator alloc;
    pubsub::StoreRoot* root = nullptr;
    int64_t now = 1795678000;
    bool locked = false;
    uint64_t locks = 0;
};

struct Notice {
    std::string key;
    bool deleted;
};

// One simulated worker process: its own MemoryStore (and so its own Hub)
// over the shared zone.  Its notify callback records the notice and calls
// `onNotify` - tests wire that to the other workers' channelChanged().
struct Worker {
    explicit Worker(Zone* z, bool withNotify = true) : zone(z) {
        pubsub::MemoryStoreEnv env;
        env.alloc = zone->alloc.shm();
        env.root = zone->root;
        env.ctx = this;
        env.lock = [](void* ctx) { static_cast<Worker*>(ctx)->zone->lock(); };
        env.unlock = [](void* ctx) { static_cast<Worker*>(ctx)->zone->unlock(); };
        env.now = [](void* ctx) { return static_cast<Worker*>(ctx)->zone->now; };
        if (withNotify) {
            env.notify = [](void* ctx, std::string_view key, bool deleted) {
                auto* w = static_cast<Worker*>(ctx);
                EXPECT_FALSE(w->zone->locked) << "notify called with the zone lock held";
                w->notices.push_back(Notice{std::string(key), deleted});
                if (w->onNotify) {
                    w->onNotify(key, deleted);
                }
            };
        }
        store = std::make_unique<pubsub::MemoryStore>(env);
    }

    // Synchronous helpers (the memory store completes before returning, but
    // the tests check that the callback really ran).
    pubsub::PublishReply publish(std::string_view key, std::string_view data,
                                 uint64_t maxMessages = 10, int64_t ttl = 3600) {
        pubsub::PublishInput in;
        in.data = data;
        in.maxMessages = maxMessages;
        in.ttl = ttl;
        pubsub::PublishReply out;
        bool called = false;
        store->publish(key, in, [&](pubsub::PublishReply&& r) {
            called = true;
            out = std::move(r);
        });
        EXPECT_TRUE(called);
        return out;
    }

    pubsub::SubscribeReply subscribe(pubsub::Subscriber* sub, const pubsub::SubscribeRequest& req) {
        pubsub::SubscribeReply out;
        bool called = false;
        store->subscribe(sub, req, [&](pubsub::SubscribeReply&& r) {
            called = true;
            out = std::move(r);
        });
        EXPECT_TRUE(called);
        return out;
    }

    std::pair<pubsub::StoreResult, pubsub::ChannelInfo> info(std::string_view key) {
        std::pair<pubsub::StoreResult, pubsub::ChannelInfo> out{pubsub::StoreResult::kError, {}};
        bool called = false;
        store->info(key, [&](pubsub::StoreResult r, const pubsub::ChannelInfo& i) {
            called = true;
            out = {r, i};
        });
        EXPECT_TRUE(called);
        return out;
    }

    std::pair<pubsub::StoreResult, pubsub::ChannelInfo> remove(std::string_view key) {
        std::pair<pubsub::StoreResult, pubsub::ChannelInfo> out{pubsub::StoreResult::kError, {}};
        bool called = false;
        store->remove(key, [&](pubsub::StoreResult r, const pubsub::ChannelInfo& i) {
            called = true;
            out = {r, i};
        });
        EXPECT_TRUE(called);
        return out;
    }

    Zone* zone;
    std::vector<Notice> notices;
    std::function<void(std::string_view, bool)> onNotify;
    std::unique_ptr<pubsub::MemoryStore> store;
};

// Two workers over one zone that tell each other of changes (notify ->
// channelChanged, synchronously here).
class TwoWorkers : public ::testing::Test {
protected:
    void SetUp() override {
        zone_ = std::make_unique<Zone>();
        a_ = std::make_unique<Worker>(zone_.get());
        b_ = std::make_unique<Worker>(zone_.get());
        a_->onNotify = [this](std::string_view key, bool deleted) {
            b_->store->channelChanged(key, deleted);
        };
        b_->onNotify = [this](std::string_view key, bool deleted) {
            a_->store->channelChanged(key, deleted);
        };
    }
    void TearDown() override {
        EXPECT_FALSE(zone_->locked);
        a_.reset();
        b_.reset();
        zone_.reset();
    }

    std::unique_ptr<Zone> zone_;
    std::unique_ptr<Worker> a_;
    std::unique_ptr<Worker> b_;
};

}  // namespace pubsub_test
