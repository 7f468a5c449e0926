// Several workers (MemoryStores with their own slots) over one store root:
// cross-worker notifications through the slot mailboxes, a worker killed
// and replaced, mailbox overflow, deleted and re-created channels, group
// limits.

#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "pubsub/memory/memory_store.h"

namespace {

using pubsub::MemoryStore;
using pubsub::MessagePtr;
using pubsub::MsgId;
using pubsub::PublishInput;
using pubsub::PublishReply;
using pubsub::StoreResult;
using pubsub::SubscribeReply;
using pubsub::SubscribeRequest;

struct Zone {
    size_t live = 0;
    size_t budget = static_cast<size_t>(-1);
    std::map<void*, size_t> sizes;
    int64_t now = 1700000000;
    int locked = 0;
    std::vector<uint32_t> woken;

    static void* alloc(void* ctx, size_t n) {
        auto* z = static_cast<Zone*>(ctx);
        if (z->live + n > z->budget) {
            return nullptr;
        }
        void* p = std::malloc(n);
        z->sizes[p] = n;
        z->live += n;
        return p;
    }
    static void release(void* ctx, void* p) {
        auto* z = static_cast<Zone*>(ctx);
        z->live -= z->sizes[p];
        z->sizes.erase(p);
        std::free(p);
    }
};

class Recorder : public pubsub::Subscriber {
public:
    void deliver(const MessagePtr& m) override { got.push_back(std::string(m->data())); }
    void gap() override { gaps++; }
    void channelDeleted() override { deleted++; }
    std::vector<std::string> got;
    int gaps = 0;
    int deleted = 0;
};

// Subscribers of several channels that note every delivery in one list.
struct Ordered : Recorder {
    explicit Ordered(std::vector<std::string>* o) : order(o) {}
    std::vector<std::string>* order;
    void deliver(const MessagePtr& m) override { order->push_back(std::string(m->data())); }
};

class MultiWorkerTest : public ::testing::Test {
protected:
    void SetUp() override {
        alloc_.ctx = &zone_;
        alloc_.alloc = Zone::alloc;
        alloc_.free = Zone::release;
        root_ = pubsub::ShmStore::createRoot(alloc_, 16);
        ASSERT_NE(root_, nullptr);
        for (uint32_t i = 0; i < 4; i++) {
            workers_.push_back(make(i));
        }
    }
    void TearDown() override {
        workers_.clear();
        graveyard_.clear();
        pubsub::ShmStore(root_, alloc_).clear();
        alloc_.free(alloc_.ctx, root_->buckets);
        for (auto*& s : root_->slots) {
            if (s != nullptr) {
                alloc_.free(alloc_.ctx, s);
            }
        }
        alloc_.free(alloc_.ctx, root_);
        EXPECT_EQ(zone_.live, 0u);
    }

    std::unique_ptr<MemoryStore> make(uint32_t slot) {
        pubsub::MemoryStoreEnv env;
        env.alloc = alloc_;
        env.root = root_;
        env.ctx = &zone_;
        env.lock = [](void* c) {
            auto* z = static_cast<Zone*>(c);
            ASSERT_EQ(z->locked, 0);
            z->locked++;
        };
        env.unlock = [](void* c) { static_cast<Zone*>(c)->locked--; };
        env.now = [](void* c) { return static_cast<Zone*>(c)->now; };
        env.slot = slot;
        env.wake = [](void* c, uint32_t s) { static_cast<Zone*>(c)->woken.push_back(s); };
        auto st = std::make_unique<MemoryStore>(env);
        EXPECT_TRUE(st->claimSlot(1000 + slot));
        return st;
    }

    PublishReply publish(size_t w, const std::string& key, const std::string& data,
                         PublishInput in = {}) {
        PublishReply out;
        in.data = data;
        workers_[w]->publish(key, in, [&](PublishReply&& r) { out = std::move(r); });
        return out;
    }

    SubscribeReply subscribe(size_t w, Recorder* r, const std::string& key,
                             pubsub::GroupLimits limits = {}) {
        SubscribeReply out;
        SubscribeRequest req;
        req.key = key;
        req.start.kind = pubsub::StartSpec::kNewest;
        req.limits = limits;
        workers_[w]->subscribe(r, req, [&](SubscribeReply&& rep) { out = std::move(rep); });
        return out;
    }

    // Every woken worker handles its mailbox, as the eventfd handler does.
    void pump() {
        while (!zone_.woken.empty()) {
            std::vector<uint32_t> w;
            w.swap(zone_.woken);
            for (uint32_t s : w) {
                workers_[s]->processNotifications();
            }
        }
    }

    uint64_t subscribers(const std::string& key) {
        const pubsub::ShmChannel* ch = pubsub::ShmStore(root_, alloc_).find(key);
        return ch == nullptr ? 0 : ch->subscribers;
    }

    Zone zone_;
    pubsub::ShmAllocator alloc_;
    pubsub::StoreRoot* root_ = nullptr;
    std::vector<std::unique_ptr<MemoryStore>> workers_;
    std::vector<std::unique_ptr<MemoryStore>> graveyard_;  // "killed" workers
};

TEST_F(MultiWorkerTest, EveryWorkerDeliversOnceInOrder) {
    Recorder r[4];
    for (size_t w = 0; w < 4; w++) {
        ASSERT_TRUE(subscribe(w, &r[w], "g/ch").attached);
    }
    EXPECT_EQ(subscribers("g/ch"), 4u);
    std::vector<std::string> want;
    for (int i = 0; i < 50; i++) {
        want.push_back("m" + std::to_string(i));
        ASSERT_EQ(publish(i % 4, "g/ch", want.back()).status, StoreResult::kOk);
        if (i % 7 == 0) {
            pump();  // sometimes several publishes queue up before a worker runs
        }
    }
    pump();
    for (auto& rec : r) {
        EXPECT_EQ(rec.got, want);
        EXPECT_EQ(rec.gaps, 0);
    }
}

TEST_F(MultiWorkerTest, OnlyWorkersWithSubscribersAreWoken) {
    Recorder a;
    subscribe(2, &a, "g/x");
    publish(0, "g/x", "1");
    EXPECT_EQ(zone_.woken, std::vector<uint32_t>{2});
    publish(1, "g/x", "2");  // a wake-up is already pending: no second one
    EXPECT_EQ(zone_.woken, std::vector<uint32_t>{2});
    pump();
    EXPECT_EQ(a.got, (std::vector<std::string>{"1", "2"}));
    publish(2, "g/x", "3");  // the subscriber's own worker: delivered at once
    EXPECT_TRUE(zone_.woken.empty());
    EXPECT_EQ(a.got.size(), 3u);
}

TEST_F(MultiWorkerTest, KilledWorkerCountsAreResetByItsSuccessor) {
    auto* leaked = new Recorder[3];
    for (int i = 0; i < 3; i++) {
        subscribe(1, &leaked[i], "g/k" + std::to_string(i % 2));
    }
    Recorder kept;
    subscribe(0, &kept, "g/k0");
    EXPECT_EQ(subscribers("g/k0"), 3u);
    EXPECT_EQ(root_->slots[1]->subscribers, 3u);
    // "SIGKILL": worker 1 vanishes without unsubscribing (its hub memory
    // is gone with the process).
    graveyard_.push_back(std::move(workers_[1]));
    workers_[1] = make(1);  // the master restarts it in the same slot
    EXPECT_EQ(subscribers("g/k0"), 1u);
    EXPECT_EQ(subscribers("g/k1"), 0u);
    EXPECT_EQ(root_->subscribers, 1u);
    publish(1, "g/k0", "after");
    pump();
    EXPECT_EQ(kept.got, std::vector<std::string>{"after"});
    delete[] leaked;
}

TEST_F(MultiWorkerTest, DeadSlotsAreReaped) {
    Recorder r;
    subscribe(3, &r, "g/dead");
    graveyard_.push_back(std::move(workers_[3]));
    size_t n = workers_[0]->reapSlots([](int64_t pid) { return pid != 1003; });
    EXPECT_EQ(n, 1u);
    EXPECT_EQ(subscribers("g/dead"), 0u);
    EXPECT_EQ(root_->slots[3]->pid, 0);
    publish(0, "g/dead", "x");  // no mailbox to fill for a free slot
    EXPECT_TRUE(zone_.woken.empty());
    workers_[3] = make(3);
}

TEST_F(MultiWorkerTest, OverflowRepullsEveryLocalChannel) {
    Recorder r[600];
    for (int i = 0; i < 600; i++) {
        subscribe(1, &r[i], "g/c" + std::to_string(i));
    }
    for (int i = 0; i < 600; i++) {
        publish(0, "g/c" + std::to_string(i), "v");
    }
    EXPECT_EQ(root_->slots[1]->overflow, 1u);
    pump();
    for (auto& rec : r) {
        EXPECT_EQ(rec.got, std::vector<std::string>{"v"});
    }
}

TEST_F(MultiWorkerTest, DeletionReachesOtherWorkersEvenWhenRecreated) {
    Recorder a, b;
    subscribe(1, &a, "g/d");
    subscribe(2, &b, "g/d");
    publish(0, "g/d", "1");
    pump();
    workers_[0]->remove("g/d", [](StoreResult, const pubsub::ChannelInfo&) {});
    publish(0, "g/d", "2");  // re-created before the others ran
    pump();
    EXPECT_EQ(a.deleted, 1);
    EXPECT_EQ(b.deleted, 1);
    EXPECT_EQ(a.got, std::vector<std::string>{"1"});
    EXPECT_FALSE(a.attached());
    EXPECT_EQ(subscribers("g/d"), 0u);
    // A new subscriber on worker 1 gets the new incarnation.
    Recorder c;
    ASSERT_TRUE(subscribe(1, &c, "g/d").attached);
    publish(2, "g/d", "3");
    pump();
    EXPECT_EQ(c.got, std::vector<std::string>{"3"});
}

TEST_F(MultiWorkerTest, InterleavedChannelsAreDeliveredInTimeOrder) {
    Recorder a, b;
    subscribe(1, &a, "g/a");
    subscribe(1, &b, "g/b");
    std::vector<std::string> order;
    Ordered x(&order), y(&order);
    subscribe(1, &x, "g/a");
    subscribe(1, &y, "g/b");
    publish(0, "g/a", "a1");
    zone_.now++;
    publish(0, "g/b", "b2");
    zone_.now++;
    publish(0, "g/a", "a3");
    pump();
    EXPECT_EQ(order, (std::vector<std::string>{"a1", "b2", "a3"}));
}

// Within one second too: the zone's publish sequence orders the channels,
// not their names.
TEST_F(MultiWorkerTest, SameSecondChannelsAreDeliveredInPublishOrder) {
    std::vector<std::string> order;
    Ordered x(&order), y(&order);
    subscribe(1, &x, "g/a");
    subscribe(1, &y, "g/b");
    publish(0, "g/b", "one");
    publish(0, "g/a", "two");
    publish(0, "g/b", "three");
    pump();
    EXPECT_EQ(order, (std::vector<std::string>{"one", "two", "three"}));
}

// A worker publishing while another worker's earlier publish still waits in
// its mailbox delivers that one first.
TEST_F(MultiWorkerTest, LocalPublishComesAfterAnEarlierRemoteOne) {
    std::vector<std::string> order;
    Ordered x(&order), y(&order);
    subscribe(1, &x, "g/a");
    subscribe(1, &y, "g/b");
    publish(0, "g/b", "one");   // worker 1 not woken yet
    publish(1, "g/a", "two");   // delivered by worker 1 itself
    EXPECT_EQ(order, (std::vector<std::string>{"one", "two"}));
    pump();
    EXPECT_EQ(order, (std::vector<std::string>{"one", "two"}));
}

TEST_F(MultiWorkerTest, GroupLimits) {
    PublishInput in;
    in.limits.maxChannels = 2;
    EXPECT_EQ(publish(0, "g1/a", "x", in).status, StoreResult::kOk);
    EXPECT_EQ(publish(1, "g1/b", "x", in).status, StoreResult::kOk);
    PublishReply r = publish(2, "g1/c", "x", in);
    EXPECT_EQ(r.status, StoreResult::kForbidden);
    EXPECT_EQ(r.reason, "Group limit reached for number of channels.");
    EXPECT_EQ(publish(2, "g2/c", "x", in).status, StoreResult::kOk);  // another group
    EXPECT_EQ(publish(2, "g1/a", "x", in).status, StoreResult::kOk);  // existing channel

    Recorder s1, s2, s3;
    pubsub::GroupLimits subs;
    subs.maxSubscribers = 2;
    EXPECT_TRUE(subscribe(0, &s1, "g3/a", subs).attached);
    EXPECT_TRUE(subscribe(1, &s2, "g3/b", subs).attached);
    SubscribeReply no = subscribe(2, &s3, "g3/a", subs);
    EXPECT_EQ(no.status, StoreResult::kForbidden);
    EXPECT_EQ(no.reason, "Group limit reached for number of subscribers.");
    EXPECT_FALSE(s3.attached());
    workers_[0]->unsubscribe(&s1);
    EXPECT_TRUE(subscribe(2, &s3, "g3/a", subs).attached);

    PublishInput mem;
    mem.limits.maxBytes = 3 * (sizeof(pubsub::ShmMessage) + 100);
    mem.maxMessages = 2;
    std::string big(100, 'x');
    EXPECT_EQ(publish(0, "g4/a", big, mem).status, StoreResult::kOk);
    EXPECT_EQ(publish(0, "g4/a", big, mem).status, StoreResult::kOk);
    // The buffer holds 2: the third pushes the first out and fits.
    EXPECT_EQ(publish(0, "g4/a", big, mem).status, StoreResult::kOk);
    EXPECT_EQ(publish(0, "g4/b", big, mem).status, StoreResult::kOk);
    r = publish(0, "g4/c", big, mem);
    EXPECT_EQ(r.status, StoreResult::kForbidden);
    EXPECT_EQ(r.reason, "Group limit reached for messages memory.");
    workers_[1]->unsubscribe(&s2);
    workers_[2]->unsubscribe(&s3);
}

TEST_F(MultiWorkerTest, GroupAccountingReturnsToZero) {
    Recorder r;
    subscribe(0, &r, "grp/a");
    publish(1, "grp/a", "x");
    publish(1, "grp/b", "y");
    const pubsub::ShmGroup* g = pubsub::ShmStore(root_, alloc_).findGroup("grp");
    ASSERT_NE(g, nullptr);
    EXPECT_EQ(g->channels, 2u);
    EXPECT_EQ(g->subscribers, 1u);
    EXPECT_GT(g->bytes, 0u);
    workers_[0]->unsubscribe(&r);
    workers_[0]->remove("grp/a", [](StoreResult, const pubsub::ChannelInfo&) {});
    workers_[0]->remove("grp/b", [](StoreResult, const pubsub::ChannelInfo&) {});
    EXPECT_EQ(pubsub::ShmStore(root_, alloc_).findGroup("grp"), nullptr);
}

}  // namespace
