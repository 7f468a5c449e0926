#include "pubsub/memory/shm_store.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core_fakes.h"
#include "fnv_collide.h"

namespace {

using pubsub::MsgId;
using pubsub::PublishInput;
using pubsub::PublishOutcome;
using pubsub::ShmChannel;
using pubsub::ShmMessage;
using pubsub::ShmStore;
using pubsub::StartPosition;
using pubsub::StartSpec;
using pubsub::StoreRoot;
using pubsub::StoreStatus;
using pubsub_test::id;
using pubsub_test::TestAllocator;

constexpr int64_t kT0 = 1795678000;

class ShmStoreTest : public ::testing::Test {
protected:
    void SetUp() override { reset(16); }

    void TearDown() override {
        if (root_ != nullptr) {
            store().clear();
            EXPECT_EQ(root_->channels, 0u);
            EXPECT_EQ(root_->messages, 0u);
            EXPECT_EQ(root_->messageBytes, 0u);
            EXPECT_EQ(root_->subscribers, 0u);
            EXPECT_EQ(root_->freshChannels, 0u);
            EXPECT_EQ(root_->freshBytes, 0u);
            // clear() keeps exactly the root and its bucket array.
            EXPECT_EQ(alloc_.liveCount(), 2u);
            alloc_.free(root_->buckets);
            alloc_.free(root_);
            root_ = nullptr;
        }
        EXPECT_EQ(alloc_.liveCount(), 0u);
        EXPECT_EQ(alloc_.liveBytes(), 0u);
    }

    void reset(uint64_t buckets) {
        if (root_ != nullptr) {
            pubsub_test::destroyRoot(alloc_, root_);
        }
        root_ = ShmStore::createRoot(alloc_.shm(), buckets);
        ASSERT_NE(root_, nullptr);
    }

    ShmStore store() { return ShmStore(root_, alloc_.shm()); }

    PublishOutcome pub(std::string_view key, std::string_view data, uint64_t maxMessages = 10,
                       int64_t ttl = 3600, int64_t now = kT0) {
        PublishInput in;
        in.data = data;
        in.maxMessages = maxMessages;
        in.ttl = ttl;
        return store().publish(key, in, now);
    }

    // Ids of the channel's messages, oldest first.
    static std::vector<MsgId> ids(const ShmChannel* ch) {
        std::vector<MsgId> out;
        for (const ShmMessage* m = ch->oldest; m != nullptr; m = m->next) {
            out.push_back(m->id);
        }
        return out;
    }
    static std::vector<std::string> datas(const ShmMessage* from) {
        std::vector<std::string> out;
        for (const ShmMessage* m = from; m != nullptr; m = m->next) {
            out.emplace_back(m->data());
        }
        return out;
    }

    // Checks the channel's counters against its list and the list's links.
    static void checkChannel(const ShmChannel* ch) {
        uint64_t msgs = 0;
        uint64_t trans = 0;
        uint64_t bytes = 0;
        const ShmMessage* last = nullptr;
        for (const ShmMessage* m = ch->oldest; m != nullptr; m = m->next) {
            if (last != nullptr) {
                EXPECT_LT(last->id, m->id);
                EXPECT_EQ(m->prev, last->id);
            }
            (m->transient() ? trans : msgs)++;
            bytes += m->allocSize();
            last = m;
        }
        EXPECT_EQ(ch->newest, last);
        EXPECT_EQ(ch->messages, msgs);
        EXPECT_EQ(ch->transients, trans);
        EXPECT_EQ(ch->bytes, bytes);
        if (last != nullptr) {
            EXPECT_EQ(ch->lastId, last->id);
        }
    }

    TestAllocator alloc_;
    StoreRoot* root_ = nullptr;
};

TEST_F(ShmStoreTest, CreateRootIsCompatible) {
    EXPECT_TRUE(ShmStore::compatible(root_));
    EXPECT_FALSE(ShmStore::compatible(nullptr));
    StoreRoot copy = *root_;
    copy.version = ShmStore::kVersion + 1;
    EXPECT_FALSE(ShmStore::compatible(&copy));
    copy = *root_;
    copy.magic = 0;
    EXPECT_FALSE(ShmStore::compatible(&copy));
    EXPECT_EQ(root_->nbuckets, 16u);
    EXPECT_EQ(root_->channels, 0u);
}

TEST_F(ShmStoreTest, CreateRootZeroBucketsStillWorks) {
    reset(0);
    EXPECT_EQ(root_->nbuckets, 1u);
    ASSERT_EQ(pub("a", "1").status, StoreStatus::kOk);
    EXPECT_NE(store().find("a"), nullptr);
}

TEST_F(ShmStoreTest, CreateRootFailsCleanlyWhenFull) {
    TestAllocator tiny(sizeof(StoreRoot) + 8);
    EXPECT_EQ(ShmStore::createRoot(tiny.shm(), 1024), nullptr);
    EXPECT_EQ(tiny.liveCount(), 0u);
    TestAllocator none(0);
    EXPECT_EQ(ShmStore::createRoot(none.shm(), 4), nullptr);
    EXPECT_EQ(none.liveCount(), 0u);
}

TEST_F(ShmStoreTest, PublishAssignsIncreasingIdsAndLinksPrev) {
    PublishOutcome a = pub("ch", "one", 10, 3600, kT0);
    ASSERT_EQ(a.status, StoreStatus::kOk);
    ASSERT_NE(a.message, nullptr);
    EXPECT_EQ(a.message->id, id(kT0, 0));
    EXPECT_TRUE(a.message->prev.isNull());
    EXPECT_EQ(a.message->data(), "one");
    PublishOutcome b = pub("ch", "two", 10, 3600, kT0);
    EXPECT_EQ(b.message->id, id(kT0, 1));
    EXPECT_EQ(b.message->prev, id(kT0, 0));
    PublishOutcome c = pub("ch", "three", 10, 3600, kT0 + 1);
    EXPECT_EQ(c.message->id, id(kT0 + 1, 0));
    EXPECT_EQ(c.message->prev, id(kT0, 1));
    // The clock goes back: ids still grow.
    PublishOutcome d = pub("ch", "four", 10, 3600, kT0 - 50);
    EXPECT_EQ(d.message->id, id(kT0 + 1, 1));
    EXPECT_EQ(a.channel, d.channel);
    EXPECT_EQ(d.channel->published, 4u);
    EXPECT_EQ(d.channel->messages, 4u);
    EXPECT_EQ(root_->published, 4u);
    EXPECT_EQ(root_->messages, 4u);
    checkChannel(d.channel);
}

TEST_F(ShmStoreTest, PublishStoresContentTypeEventAndData) {
    PublishInput in;
    in.data = std::string_view("a\0b", 3);
    in.contentType = "text/plain";
    in.eventName = "evt";
    PublishOutcome out = store().publish("ch", in, kT0);
    ASSERT_EQ(out.status, StoreStatus::kOk);
    EXPECT_EQ(out.message->contentType(), "text/plain");
    EXPECT_EQ(out.message->eventName(), "evt");
    EXPECT_EQ(out.message->data(), std::string_view("a\0b", 3));
    EXPECT_EQ(out.message->allocSize(), sizeof(ShmMessage) + 10 + 3 + 3);
    EXPECT_EQ(root_->messageBytes, out.message->allocSize());

    PublishOutcome empty = pub("ch", "");
    ASSERT_EQ(empty.status, StoreStatus::kOk);
    EXPECT_EQ(empty.message->data(), "");
    EXPECT_EQ(empty.message->contentType(), "");
}

TEST_F(ShmStoreTest, KeysAreExactAndBinarySafe) {
    pub("a", "1");
    pub("A", "2");
    pub(std::string_view("a\0", 2), "3");
    pub("", "4");
    EXPECT_EQ(root_->channels, 4u);
    EXPECT_EQ(store().find("a")->newest->data(), "1");
    EXPECT_EQ(store().find("A")->newest->data(), "2");
    EXPECT_EQ(store().find(std::string_view("a\0", 2))->newest->data(), "3");
    EXPECT_EQ(store().find("")->newest->data(), "4");
    EXPECT_EQ(store().find("b"), nullptr);
    EXPECT_EQ(store().find("aa"), nullptr);
}

TEST_F(ShmStoreTest, TrimsToMaxMessages) {
    for (int i = 0; i < 25; i++) {
        pub("ch", std::to_string(i), 5);
    }
    ShmChannel* ch = store().find("ch");
    ASSERT_NE(ch, nullptr);
    EXPECT_EQ(ch->messages, 5u);
    EXPECT_EQ(ch->published, 25u);
    EXPECT_EQ(datas(ch->oldest), (std::vector<std::string>{"20", "21", "22", "23", "24"}));
    EXPECT_EQ(ch->lastId, id(kT0, 24));
    EXPECT_EQ(root_->messages, 5u);
    checkChannel(ch);
    // A shorter limit on the next publish trims further.
    pub("ch", "25", 2);
    EXPECT_EQ(datas(ch->oldest), (std::vector<std::string>{"24", "25"}));
    EXPECT_EQ(root_->messages, 2u);
    checkChannel(ch);
    // Buffer of one.
    pub("ch", "26", 1);
    EXPECT_EQ(datas(ch->oldest), (std::vector<std::string>{"26"}));
    checkChannel(ch);
}

TEST_F(ShmStoreTest, ExpiresByTtlOldestFirst) {
    pub("ch", "a", 10, 10, kT0);       // expires kT0+10
    pub("ch", "b", 10, 10, kT0 + 5);   // expires kT0+15
    pub("ch", "c", 10, 100, kT0 + 6);  // expires kT0+106
    ShmChannel* ch = store().find("ch");
    store().expire(ch, kT0 + 9);
    EXPECT_EQ(ch->messages, 3u);
    store().expire(ch, kT0 + 10);
    EXPECT_EQ(datas(ch->oldest), (std::vector<std::string>{"b", "c"}));
    store().expire(ch, kT0 + 14);
    EXPECT_EQ(ch->messages, 2u);
    store().expire(ch, kT0 + 15);
    EXPECT_EQ(datas(ch->oldest), (std::vector<std::string>{"c"}));
    store().expire(ch, kT0 + 1000);
    EXPECT_EQ(ch->messages, 0u);
    EXPECT_EQ(ch->oldest, nullptr);
    EXPECT_EQ(ch->newest, nullptr);
    EXPECT_EQ(ch->lastId, id(kT0 + 6, 0));  // kept after the buffer empties
    EXPECT_EQ(root_->messages, 0u);
    EXPECT_EQ(root_->messageBytes, 0u);
    checkChannel(ch);
}

TEST_F(ShmStoreTest, TtlZeroNeverExpires) {
    pub("ch", "forever", 10, 0, kT0);
    ShmChannel* ch = store().find("ch");
    EXPECT_EQ(ch->oldest->expires, 0);
    store().expire(ch, kT0 + 100LL * 365 * 24 * 3600);
    EXPECT_EQ(ch->messages, 1u);
}

TEST_F(ShmStoreTest, PublishExpiresTheChannelFirst) {
    pub("ch", "old", 10, 5, kT0);
    pub("ch", "new", 10, 5, kT0 + 5);
    ShmChannel* ch = store().find("ch");
    EXPECT_EQ(datas(ch->oldest), (std::vector<std::string>{"new"}));
    EXPECT_EQ(ch->newest->prev, id(kT0, 0));
}

TEST_F(ShmStoreTest, TransientIsDeliveredButNeverReplayed) {
    PublishOutcome out = pub("ch", "now-only", 0);
    ASSERT_EQ(out.status, StoreStatus::kOk);
    ASSERT_NE(out.message, nullptr);
    EXPECT_TRUE(out.message->transient());
    EXPECT_EQ(out.message->expires, kT0 + ShmStore::kTransientTtl);
    ShmChannel* ch = out.channel;
    EXPECT_EQ(ch->messages, 0u);
    EXPECT_EQ(ch->transients, 1u);
    EXPECT_EQ(root_->messages, 0u);
    EXPECT_EQ(ch->lastId, out.message->id);

    // Workers pull it (with transients) ...
    bool gap = true;
    EXPECT_EQ(store().firstAfter(ch, MsgId{}, true, &gap), out.message);
    EXPECT_FALSE(gap);
    // ... but new subscribers never get it.
    for (StartSpec::Kind kind : {StartSpec::kOldest, StartSpec::kNewest, StartSpec::kFromOldest,
                                 StartSpec::kFromNewest, StartSpec::kAfter}) {
        StartSpec spec;
        spec.kind = kind;
        spec.n = 1;
        StartPosition pos = store().start(ch, spec, kT0);
        EXPECT_EQ(pos.first, nullptr) << "kind " << kind;
        EXPECT_EQ(pos.cursor, out.message->id) << "kind " << kind;
        EXPECT_FALSE(pos.gap) << "kind " << kind;
    }
    EXPECT_EQ(store().firstAfter(ch, MsgId{}, false, &gap), nullptr);

    // Gone after the transient ttl.
    store().expire(ch, kT0 + ShmStore::kTransientTtl);
    EXPECT_EQ(ch->transients, 0u);
    EXPECT_EQ(ch->oldest, nullptr);
    checkChannel(ch);
}

TEST_F(ShmStoreTest, TransientsAreCappedPerChannel) {
    for (uint64_t i = 0; i < ShmStore::kMaxTransients + 20; i++) {
        pub("ch", std::to_string(i), 0);
    }
    ShmChannel* ch = store().find("ch");
    EXPECT_EQ(ch->transients, ShmStore::kMaxTransients);
    EXPECT_EQ(ch->oldest->data(), std::to_string(20));
    checkChannel(ch);
}

TEST_F(ShmStoreTest, TransientAfterStoredDropsTheStoredOnes) {
    pub("ch", "a", 10);
    pub("ch", "b", 10);
    pub("ch", "t", 0);
    ShmChannel* ch = store().find("ch");
    EXPECT_EQ(ch->messages, 0u);
    EXPECT_EQ(ch->transients, 1u);
    EXPECT_EQ(root_->messages, 0u);
    checkChannel(ch);
    // Stored again afterwards: the transient stays for delivery only.
    pub("ch", "c", 10);
    EXPECT_EQ(ch->messages, 1u);
    StartPosition pos = store().start(ch, StartSpec{}, kT0);
    ASSERT_NE(pos.first, nullptr);
    EXPECT_EQ(pos.first->data(), "c");
    checkChannel(ch);
}

class ShmStartTest : public ShmStoreTest {
protected:
    void SetUp() override {
        ShmStoreTest::SetUp();
        // Five messages: kT0:0, kT0:1, kT0+2:0, kT0+2:1, kT0+4:0 in a buffer of 5.
        int64_t times[] = {kT0, kT0, kT0 + 2, kT0 + 2, kT0 + 4};
        for (int i = 0; i < 5; i++) {
            pub("ch", "m" + std::to_string(i), 5, 3600, times[i]);
        }
        ch_ = store().find("ch");
        ASSERT_NE(ch_, nullptr);
    }

    StartPosition startAt(StartSpec::Kind kind, int64_t n = 0, MsgId after = MsgId{}) {
        StartSpec spec;
        spec.kind = kind;
        spec.n = n;
        spec.after = after;
        return store().start(ch_, spec, kT0 + 5);
    }
    static std::string firstData(const StartPosition& pos) {
        return pos.first == nullptr ? "<none>" : std::string(pos.first->data());
    }

    ShmChannel* ch_ = nullptr;
};

TEST_F(ShmStartTest, Oldest) {
    StartPosition pos = startAt(StartSpec::kOldest);
    EXPECT_EQ(firstData(pos), "m0");
    EXPECT_TRUE(pos.cursor.isNull());
    EXPECT_FALSE(pos.gap);
}

TEST_F(ShmStartTest, Newest) {
    StartPosition pos = startAt(StartSpec::kNewest);
    EXPECT_EQ(pos.first, nullptr);
    EXPECT_EQ(pos.cursor, id(kT0 + 4, 0));
    EXPECT_FALSE(pos.gap);
}

TEST_F(ShmStartTest, FromOldest) {
    EXPECT_EQ(firstData(startAt(StartSpec::kFromOldest, 1)), "m0");
    EXPECT_EQ(firstData(startAt(StartSpec::kFromOldest, 0)), "m0");
    StartPosition pos = startAt(StartSpec::kFromOldest, 3);
    EXPECT_EQ(firstData(pos), "m2");
    EXPECT_EQ(pos.cursor, id(kT0, 1));
    EXPECT_EQ(firstData(startAt(StartSpec::kFromOldest, 5)), "m4");
    pos = startAt(StartSpec::kFromOldest, 6);
    EXPECT_EQ(pos.first, nullptr);
    EXPECT_EQ(pos.cursor, id(kT0 + 4, 0));
}

TEST_F(ShmStartTest, FromNewest) {
    StartPosition pos = startAt(StartSpec::kFromNewest, 1);
    EXPECT_EQ(firstData(pos), "m4");
    EXPECT_EQ(pos.cursor, id(kT0 + 2, 1));
    // nchan: -2 on a 3-message channel gives the 2nd newest.
    EXPECT_EQ(firstData(startAt(StartSpec::kFromNewest, 2)), "m3");
    EXPECT_EQ(firstData(startAt(StartSpec::kFromNewest, 5)), "m0");
    EXPECT_EQ(firstData(startAt(StartSpec::kFromNewest, 50)), "m0");
    // 0 is the same as newest.
    pos = startAt(StartSpec::kFromNewest, 0);
    EXPECT_EQ(pos.first, nullptr);
    EXPECT_EQ(pos.cursor, id(kT0 + 4, 0));
}

TEST_F(ShmStartTest, AfterExactId) {
    StartPosition pos = startAt(StartSpec::kAfter, 0, id(kT0, 1));
    EXPECT_EQ(firstData(pos), "m2");
    EXPECT_EQ(pos.cursor, id(kT0, 1));
    EXPECT_FALSE(pos.gap);
    pos = startAt(StartSpec::kAfter, 0, id(kT0, 0));
    EXPECT_EQ(firstData(pos), "m1");
    EXPECT_FALSE(pos.gap);
}

TEST_F(ShmStartTest, AfterTheNewestWaits) {
    StartPosition pos = startAt(StartSpec::kAfter, 0, id(kT0 + 4, 0));
    EXPECT_EQ(pos.first, nullptr);
    EXPECT_EQ(pos.cursor, id(kT0 + 4, 0));
    EXPECT_FALSE(pos.gap);
}

TEST_F(ShmStartTest, AfterAnIdBetweenMessages) {
    // kT0:5 was never published; the next message after it is kT0+2:0.
    StartPosition pos = startAt(StartSpec::kAfter, 0, id(kT0, 5));
    EXPECT_EQ(firstData(pos), "m2");
    EXPECT_EQ(pos.cursor, id(kT0, 5));
    EXPECT_FALSE(pos.gap);
    pos = startAt(StartSpec::kAfter, 0, id(kT0 + 3, 0));
    EXPECT_EQ(firstData(pos), "m4");
    EXPECT_FALSE(pos.gap);
}

TEST_F(ShmStartTest, AfterAnIdOlderThanTheBufferIsAGap) {
    // Push two more: m0 and m1 are trimmed; the oldest is now m2 (prev kT0:1).
    pub("ch", "m5", 5, 3600, kT0 + 5);
    pub("ch", "m6", 5, 3600, kT0 + 5);
    ASSERT_EQ(ch_->oldest->data(), "m2");
    StartPosition pos = startAt(StartSpec::kAfter, 0, id(kT0, 0));
    EXPECT_EQ(firstData(pos), "m2");
    EXPECT_TRUE(pos.gap);
    EXPECT_EQ(pos.cursor, id(kT0, 1));  // m2's prev: the hub must not report another gap
    // Resuming exactly at the oldest's prev misses nothing.
    pos = startAt(StartSpec::kAfter, 0, id(kT0, 1));
    EXPECT_EQ(firstData(pos), "m2");
    EXPECT_FALSE(pos.gap);
    // An id way older (and the null id).
    pos = startAt(StartSpec::kAfter, 0, id(1, 0));
    EXPECT_TRUE(pos.gap);
    pos = startAt(StartSpec::kAfter, 0, MsgId{});
    EXPECT_TRUE(pos.gap);
    EXPECT_EQ(firstData(pos), "m2");
}

TEST_F(ShmStartTest, BeforeTheVeryFirstMessageIsNoGap) {
    // m0 has a null prev: nothing was ever dropped before it.
    ASSERT_TRUE(ch_->oldest->prev.isNull());
    StartPosition pos = startAt(StartSpec::kAfter, 0, id(1, 0));
    EXPECT_EQ(firstData(pos), "m0");
    EXPECT_FALSE(pos.gap);
    pos = startAt(StartSpec::kAfter, 0, MsgId{});
    EXPECT_EQ(firstData(pos), "m0");
    EXPECT_FALSE(pos.gap);
}

TEST_F(ShmStartTest, FutureIdWaits) {
    StartPosition pos = startAt(StartSpec::kAfter, 0, id(kT0 + 100, 3));
    EXPECT_EQ(pos.first, nullptr);
    EXPECT_EQ(pos.cursor, id(kT0 + 100, 3));
    EXPECT_FALSE(pos.gap);
}

TEST_F(ShmStartTest, AllExpiredIsAGapForOlderIds) {
    StartSpec spec;
    spec.kind = StartSpec::kAfter;
    spec.after = id(kT0, 1);
    StartPosition pos = store().start(ch_, spec, kT0 + 10000);  // everything expired
    EXPECT_EQ(ch_->oldest, nullptr);
    EXPECT_EQ(pos.first, nullptr);
    EXPECT_TRUE(pos.gap);
    EXPECT_EQ(pos.cursor, id(kT0 + 4, 0));
    // The newest id itself missed nothing.
    spec.after = id(kT0 + 4, 0);
    pos = store().start(ch_, spec, kT0 + 10000);
    EXPECT_FALSE(pos.gap);
    // Oldest on an emptied channel: nothing owed, no gap.
    pos = store().start(ch_, StartSpec{}, kT0 + 10000);
    EXPECT_EQ(pos.first, nullptr);
    EXPECT_FALSE(pos.gap);
    EXPECT_EQ(pos.cursor, id(kT0 + 4, 0));
}

TEST_F(ShmStoreTest, StartOnAnEmptyChannel) {
    ShmChannel* ch = store().findOrCreate("empty", kT0);
    ASSERT_NE(ch, nullptr);
    for (StartSpec::Kind kind : {StartSpec::kOldest, StartSpec::kNewest, StartSpec::kFromOldest,
                                 StartSpec::kFromNewest, StartSpec::kAfter}) {
        StartSpec spec;
        spec.kind = kind;
        spec.n = 2;
        spec.after = id(kT0 - 10, 0);
        StartPosition pos = store().start(ch, spec, kT0);
        EXPECT_EQ(pos.first, nullptr);
        EXPECT_FALSE(pos.gap) << "kind " << kind;
    }
}

TEST_F(ShmStoreTest, FirstAfterGapLogic) {
    for (int i = 0; i < 6; i++) {
        pub("ch", std::to_string(i), 3);  // keeps kT0:3..5
    }
    const ShmChannel* ch = store().find("ch");
    bool gap = false;
    const ShmMessage* m = store().firstAfter(ch, id(kT0, 1), false, &gap);
    ASSERT_NE(m, nullptr);
    EXPECT_EQ(m->id, id(kT0, 3));
    EXPECT_TRUE(gap);  // kT0:2 was dropped
    m = store().firstAfter(ch, id(kT0, 2), false, &gap);
    EXPECT_EQ(m->id, id(kT0, 3));
    EXPECT_FALSE(gap);
    m = store().firstAfter(ch, id(kT0, 3), false, &gap);
    EXPECT_EQ(m->id, id(kT0, 4));
    EXPECT_FALSE(gap);
    m = store().firstAfter(ch, id(kT0, 5), false, &gap);
    EXPECT_EQ(m, nullptr);
    EXPECT_FALSE(gap);
    m = store().firstAfter(ch, id(kT0 + 9, 0), false, &gap);
    EXPECT_EQ(m, nullptr);
    EXPECT_FALSE(gap);
}

TEST_F(ShmStoreTest, SubscriberCounts) {
    ShmStore s = store();
    ShmChannel* a = s.findOrCreate("a", kT0);
    ShmChannel* b = s.findOrCreate("b", kT0);
    EXPECT_EQ(a->lastSeen, -1);
    s.addSubscriber(a, kT0 + 1);
    s.addSubscriber(a, kT0 + 2);
    s.addSubscriber(b, kT0 + 3);
    EXPECT_EQ(a->subscribers, 2u);
    EXPECT_EQ(a->lastSeen, kT0 + 2);
    EXPECT_EQ(root_->subscribers, 3u);
    s.removeSubscriber(a, kT0 + 4);
    EXPECT_EQ(a->subscribers, 1u);
    EXPECT_EQ(a->lastSeen, kT0 + 4);
    EXPECT_EQ(root_->subscribers, 2u);
    s.removeSubscriber(a, kT0 + 5);
    s.removeSubscriber(a, kT0 + 6);  // one too many: stays at zero
    EXPECT_EQ(a->subscribers, 0u);
    EXPECT_EQ(root_->subscribers, 1u);
    EXPECT_EQ(a->lastSeen, kT0 + 6);
    // Removing a channel with subscribers takes them out of the total.
    s.remove(b);
    EXPECT_EQ(root_->subscribers, 0u);
}

TEST_F(ShmStoreTest, RemoveFreesTheChannelAndItsMessages) {
    for (int i = 0; i < 5; i++) {
        pub("a", "x", 10);
        pub("b", "y", 10);
    }
    size_t liveWithB = alloc_.liveCount();
    ShmStore s = store();
    s.remove(s.find("a"));
    EXPECT_EQ(s.find("a"), nullptr);
    EXPECT_NE(s.find("b"), nullptr);
    EXPECT_EQ(root_->channels, 1u);
    EXPECT_EQ(root_->messages, 5u);
    EXPECT_EQ(alloc_.liveCount(), liveWithB - 6);  // the channel and its five messages
    s.remove(s.find("b"));
    EXPECT_EQ(root_->channels, 0u);
    EXPECT_EQ(root_->messages, 0u);
    EXPECT_EQ(root_->messageBytes, 0u);
    EXPECT_EQ(alloc_.liveCount(), 2u);  // root and buckets
    // A removed channel starts over.
    PublishOutcome out = pub("a", "again", 10, 3600, kT0 + 1);
    EXPECT_TRUE(out.message->prev.isNull());
    EXPECT_EQ(out.channel->published, 1u);
}

TEST_F(ShmStoreTest, RemoveFromTheMiddleOfAHashChain) {
    // Three keys in the same bucket of 16.
    std::vector<std::string> keys;
    for (int i = 0; keys.size() < 3 && i < 100000; i++) {
        std::string k = "k" + std::to_string(i);
        if (store().hashOf(k) % root_->nbuckets == 5) {
            keys.push_back(k);
        }
    }
    ASSERT_EQ(keys.size(), 3u);
    ShmStore s = store();
    for (const std::string& k : keys) {
        s.findOrCreate(k, kT0);
    }
    ASSERT_EQ(root_->nbuckets, 16u);
    s.remove(s.find(keys[1]));
    EXPECT_NE(s.find(keys[0]), nullptr);
    EXPECT_EQ(s.find(keys[1]), nullptr);
    EXPECT_NE(s.find(keys[2]), nullptr);
    s.remove(s.find(keys[2]));
    EXPECT_NE(s.find(keys[0]), nullptr);
    s.remove(s.find(keys[0]));
    EXPECT_EQ(root_->buckets[5], nullptr);
    EXPECT_EQ(root_->channels, 0u);
}

TEST_F(ShmStoreTest, SweepRemovesIdleEmptyChannelsOnlyAfterTheGrace) {
    ShmStore s = store();
    s.findOrCreate("idle", kT0);  // never used
    pub("expiring", "x", 10, 10, kT0);
    pub("kept", "x", 10, 0, kT0);
    ShmChannel* subbed = s.findOrCreate("subscribed", kT0);
    s.addSubscriber(subbed, kT0);
    ShmChannel* left = s.findOrCreate("left", kT0);
    s.addSubscriber(left, kT0);
    s.removeSubscriber(left, kT0 + 50);

    s.sweep(kT0 + 29, root_->nbuckets, 30);
    EXPECT_EQ(root_->channels, 5u);
    // Its message expired, but the channel was published to 29s ago: kept.
    ASSERT_NE(s.find("expiring"), nullptr);
    EXPECT_EQ(s.find("expiring")->messages, 0u);

    s.sweep(kT0 + 30, root_->nbuckets, 30);
    EXPECT_EQ(s.find("idle"), nullptr);  // idle for the whole grace
    EXPECT_EQ(s.find("expiring"), nullptr);
    EXPECT_NE(s.find("kept"), nullptr);        // has a message
    EXPECT_NE(s.find("subscribed"), nullptr);  // has a subscriber
    EXPECT_NE(s.find("left"), nullptr);        // subscriber left 50s after creation
    EXPECT_EQ(root_->channels, 3u);

    s.sweep(kT0 + 79, root_->nbuckets, 30);
    EXPECT_NE(s.find("left"), nullptr);
    s.sweep(kT0 + 80, root_->nbuckets, 30);
    EXPECT_EQ(s.find("left"), nullptr);

    s.sweep(kT0 + 1000000, root_->nbuckets, 30);
    EXPECT_NE(s.find("kept"), nullptr);
    EXPECT_NE(s.find("subscribed"), nullptr);
    EXPECT_EQ(root_->channels, 2u);
}

TEST_F(ShmStoreTest, SweepExpiresMessagesOfChannelsItKeeps) {
    ShmStore s = store();
    ShmChannel* ch = s.findOrCreate("ch", kT0);
    s.addSubscriber(ch, kT0);
    pub("ch", "a", 10, 10, kT0);
    pub("ch", "b", 10, 20, kT0);
    s.sweep(kT0 + 10, root_->nbuckets, 30);
    EXPECT_EQ(ch->messages, 1u);
    s.sweep(kT0 + 20, root_->nbuckets, 30);
    EXPECT_EQ(ch->messages, 0u);
    EXPECT_EQ(root_->messages, 0u);
    EXPECT_EQ(s.find("ch"), ch);
    s.removeSubscriber(ch, kT0 + 20);
}

TEST_F(ShmStoreTest, SweepIsIncremental) {
    ShmStore s = store();
    for (int i = 0; i < 64; i++) {
        s.findOrCreate("ch" + std::to_string(i), kT0);
    }
    uint64_t nb = root_->nbuckets;
    ASSERT_GE(nb, 4u);
    // One call visits one bucket: exactly that bucket's channels go.
    for (int call = 0; call < 3; call++) {
        uint64_t b = root_->sweepCursor % nb;
        uint64_t inBucket = 0;
        for (ShmChannel* ch = root_->buckets[b]; ch != nullptr; ch = ch->hnext) {
            inBucket++;
        }
        uint64_t before = root_->channels;
        s.sweep(kT0 + 100, 1, 30);
        EXPECT_EQ(root_->channels, before - inBucket);
        EXPECT_EQ(root_->buckets[b], nullptr);
    }
    EXPECT_GT(root_->channels, 0u);
    // Enough calls visit every bucket.
    for (uint64_t i = 0; i < nb; i++) {
        s.sweep(kT0 + 100, 1, 30);
    }
    EXPECT_EQ(root_->channels, 0u);
    // maxBuckets larger than the table is fine.
    s.findOrCreate("x", kT0 + 100);
    s.sweep(kT0 + 200, 1000000, 30);
    EXPECT_EQ(root_->channels, 0u);
}

TEST_F(ShmStoreTest, HashTableGrowsWithThousandsOfChannels) {
    reset(4);
    ShmStore s = store();
    constexpr int kChannels = 5000;
    for (int i = 0; i < kChannels; i++) {
        std::string key = "channel/" + std::to_string(i);
        ASSERT_EQ(pub(key, key, 2).status, StoreStatus::kOk) << key;
    }
    EXPECT_EQ(root_->channels, static_cast<uint64_t>(kChannels));
    EXPECT_GT(root_->nbuckets, 4u);
    EXPECT_LE(root_->channels, root_->nbuckets * 2);
    uint64_t chained = 0;
    for (uint64_t b = 0; b < root_->nbuckets; b++) {
        for (ShmChannel* ch = root_->buckets[b]; ch != nullptr; ch = ch->hnext) {
            EXPECT_EQ(ch->hash % root_->nbuckets, b);
            chained++;
        }
    }
    EXPECT_EQ(chained, static_cast<uint64_t>(kChannels));
    for (int i = 0; i < kChannels; i++) {
        std::string key = "channel/" + std::to_string(i);
        ShmChannel* ch = s.find(key);
        ASSERT_NE(ch, nullptr) << key;
        EXPECT_EQ(ch->key(), key);
        EXPECT_EQ(ch->newest->data(), key);
    }
    // Remove every other one, then sweep the rest away.
    for (int i = 0; i < kChannels; i += 2) {
        s.remove(s.find("channel/" + std::to_string(i)));
    }
    EXPECT_EQ(root_->channels, static_cast<uint64_t>(kChannels / 2));
    for (int i = 1; i < kChannels; i += 2) {
        ASSERT_NE(s.find("channel/" + std::to_string(i)), nullptr);
    }
    s.sweep(kT0 + 3600, root_->nbuckets, 0);
    EXPECT_EQ(root_->channels, 0u);
    EXPECT_EQ(root_->messages, 0u);
    EXPECT_EQ(alloc_.liveCount(), 2u);
}

TEST_F(ShmStoreTest, GrowthFailureKeepsWorking) {
    reset(2);
    // Room for the channels but not for a bigger bucket array.
    alloc_.setBudget(alloc_.liveBytes() + 5 * (sizeof(ShmChannel) + 8) + 10);
    ShmStore s = store();
    for (int i = 0; i < 5; i++) {
        ASSERT_NE(s.findOrCreate("k" + std::to_string(i), kT0), nullptr);
    }
    EXPECT_EQ(root_->nbuckets, 2u);
    EXPECT_GT(alloc_.refused(), 0u);
    for (int i = 0; i < 5; i++) {
        EXPECT_NE(s.find("k" + std::to_string(i)), nullptr);
    }
}

TEST_F(ShmStoreTest, FullMemoryIsNoMemoryAndRecoversWhenMessagesExpire) {
    // Enough for the root, a few channels and some messages.
    alloc_.setBudget(alloc_.liveBytes() + 4096);
    std::string payload(200, 'p');
    int stored = 0;
    PublishOutcome out;
    for (int i = 0; i < 1000; i++) {
        out = pub("ch", payload, 1000, 60, kT0);
        if (out.status != StoreStatus::kOk) {
            break;
        }
        stored++;
    }
    ASSERT_EQ(out.status, StoreStatus::kNoMemory);
    EXPECT_GT(stored, 5);
    EXPECT_EQ(out.message, nullptr);
    ShmChannel* ch = store().find("ch");
    EXPECT_EQ(ch->messages, static_cast<uint64_t>(stored));
    checkChannel(ch);
    // Other channels cannot be created or published to either.
    EXPECT_EQ(store().findOrCreate(std::string(300, 'k'), kT0), nullptr);
    EXPECT_EQ(pub("other", payload, 10, 60, kT0).status, StoreStatus::kNoMemory);
    // Nothing expired yet one second later.
    EXPECT_EQ(pub("ch", payload, 1000, 60, kT0 + 1).status, StoreStatus::kNoMemory);
    size_t before = alloc_.liveBytes();
    // Once the messages expire, publishing (even to another channel) frees
    // them and succeeds.
    out = pub("other", payload, 10, 60, kT0 + 60);
    EXPECT_EQ(out.status, StoreStatus::kOk);
    EXPECT_LT(alloc_.liveBytes(), before);
    EXPECT_EQ(ch->messages, 0u);
    EXPECT_EQ(pub("ch", payload, 1000, 60, kT0 + 60).status, StoreStatus::kOk);
    checkChannel(ch);
}

TEST_F(ShmStoreTest, FullMemoryChannelCreationRecoversWhenMessagesExpire) {
    alloc_.setBudget(alloc_.liveBytes() + 2048);
    std::string payload(100, 'p');
    while (pub("ch", payload, 1000, 30, kT0).status == StoreStatus::kOk) {
    }
    std::string key(200, 'n');  // bigger than a message: cannot fit in what is left
    EXPECT_EQ(store().findOrCreate(key, kT0), nullptr);
    EXPECT_NE(store().findOrCreate(key, kT0 + 30), nullptr);
}

TEST_F(ShmStoreTest, ManyPublishesKeepMemoryFlat) {
    std::string payload(64, 'x');
    for (int i = 0; i < 10; i++) {
        pub("ch", payload, 10);
    }
    size_t count = alloc_.liveCount();
    size_t bytes = alloc_.liveBytes();
    ShmChannel* ch = store().find("ch");
    for (int i = 0; i < 100000; i++) {
        PublishOutcome out = pub("ch", payload, 10, 3600, kT0 + i / 1000);
        ASSERT_EQ(out.status, StoreStatus::kOk);
        if (i % 10000 == 0) {
            ASSERT_EQ(alloc_.liveCount(), count) << "after " << i;
            ASSERT_EQ(alloc_.liveBytes(), bytes) << "after " << i;
        }
    }
    EXPECT_EQ(alloc_.liveCount(), count);
    EXPECT_EQ(alloc_.liveBytes(), bytes);
    EXPECT_EQ(ch->messages, 10u);
    EXPECT_EQ(ch->published, 100010u);
    EXPECT_EQ(root_->messageBytes, ch->bytes);
    checkChannel(ch);
}

TEST_F(ShmStoreTest, ClearReleasesEverythingButTheRoot) {
    for (int i = 0; i < 100; i++) {
        std::string key = "c" + std::to_string(i);
        pub(key, "a", 5);
        pub(key, "b", 0);
        store().addSubscriber(store().find(key), kT0);
    }
    ASSERT_GT(alloc_.liveCount(), 2u);
    store().clear();
    EXPECT_EQ(root_->channels, 0u);
    EXPECT_EQ(root_->messages, 0u);
    EXPECT_EQ(root_->messageBytes, 0u);
    EXPECT_EQ(root_->subscribers, 0u);
    EXPECT_EQ(alloc_.liveCount(), 2u);
    // Still usable afterwards.
    EXPECT_EQ(pub("c1", "again").status, StoreStatus::kOk);
    EXPECT_EQ(store().find("c1")->messages, 1u);
}

// ------------------------------------------------------------ keyed hash

TEST_F(ShmStoreTest, EveryZoneHasItsOwnHashKeyAndEveryWorkerUsesIt) {
    StoreRoot* other = ShmStore::createRoot(alloc_.shm(), 16);
    ASSERT_NE(other, nullptr);
    EXPECT_FALSE(other->hashKey.k0 == root_->hashKey.k0 && other->hashKey.k1 == root_->hashKey.k1);
    EXPECT_NE(ShmStore(other, alloc_.shm()).hashOf("ch"), store().hashOf("ch"));
    pubsub_test::destroyRoot(alloc_, other);
    // Two accessors of one root (two workers, or the next configuration
    // after a reload) hash alike and find each other's channels.
    ShmStore a = store();
    ShmStore b(root_, alloc_.shm());
    ShmChannel* ch = a.findOrCreate("room", kT0);
    EXPECT_EQ(ch->hash, b.hashOf("room"));
    EXPECT_EQ(ch->hash, pubsub::keyedHash(root_->hashKey, "room"));
    EXPECT_EQ(b.find("room"), ch);
    a.remove(ch);
}

TEST_F(ShmStoreTest, FnvCollidingIdsDoNotShareABucket) {
    reset(1024);
    std::vector<std::string> ids = pubsub_test::fnvCollidingIds(3000);
    ShmStore s = store();
    for (const std::string& id : ids) {
        ASSERT_EQ(pub("g/" + id, "x").status, StoreStatus::kOk);
    }
    ASSERT_EQ(root_->channels, 3000u);
    uint64_t longest = 0;
    for (uint64_t b = 0; b < root_->nbuckets; b++) {
        uint64_t n = 0;
        for (ShmChannel* ch = root_->buckets[b]; ch != nullptr; ch = ch->hnext) {
            n++;
        }
        longest = n > longest ? n : longest;
    }
    EXPECT_LT(longest, 12u);  // FNV-1a put all 3000 in one chain
    // The group table is keyed too.
    EXPECT_NE(s.findGroup("g"), nullptr);
    EXPECT_EQ(s.findGroup("g")->hash, s.hashOf("g"));
}

// ------------------------------------------------- channels without messages

TEST_F(ShmStoreTest, ZoneCharge) {
    EXPECT_EQ(ShmStore::zoneCharge(1), 8u);
    EXPECT_EQ(ShmStore::zoneCharge(8), 8u);
    EXPECT_EQ(ShmStore::zoneCharge(9), 16u);
    EXPECT_EQ(ShmStore::zoneCharge(200), 256u);
    EXPECT_EQ(ShmStore::zoneCharge(2048), 2048u);
    EXPECT_EQ(ShmStore::zoneCharge(2049), 4096u);
    EXPECT_EQ(ShmStore::zoneCharge(8193), 12288u);
}

TEST_F(ShmStoreTest, ChannelsMadeForSubscribersAreCountedUntilPublished) {
    ShmStore s = store();
    ShmChannel* ch = s.findOrCreate("g/a", kT0, {}, nullptr, ShmStore::Creator::kSubscriber);
    ASSERT_NE(ch, nullptr);
    EXPECT_EQ(root_->freshChannels, 1u);
    uint64_t bare = root_->freshBytes;
    EXPECT_EQ(bare, ShmStore::zoneCharge(sizeof(ShmChannel) + 3) +
                        ShmStore::zoneCharge(sizeof(pubsub::ShmGroup) + 1));
    // Its subscriber counts are counted as they grow (a high worker slot).
    ASSERT_EQ(s.addSubscriber(ch, 20, kT0), StoreStatus::kOk);
    EXPECT_EQ(root_->freshBytes, bare + ShmStore::zoneCharge(32 * sizeof(uint32_t)));
    // A publisher's channel never counts.
    pub("g/b", "x");
    EXPECT_EQ(root_->freshChannels, 1u);
    // The first message ends it.
    pub("g/a", "x");
    EXPECT_EQ(root_->freshChannels, 0u);
    EXPECT_EQ(root_->freshBytes, 0u);
    s.removeSubscriber(ch, 20, kT0);
    EXPECT_FALSE(s.releaseIfUnused(ch));  // it has a message
}

TEST_F(ShmStoreTest, ReleaseIfUnused) {
    ShmStore s = store();
    ShmChannel* ch = s.findOrCreate("a", kT0, {}, nullptr, ShmStore::Creator::kSubscriber);
    s.addSubscriber(ch, kT0);
    EXPECT_FALSE(s.releaseIfUnused(ch));  // a subscriber waits
    s.removeSubscriber(ch, kT0);
    EXPECT_TRUE(s.releaseIfUnused(ch));
    EXPECT_EQ(s.find("a"), nullptr);
    EXPECT_EQ(root_->channels, 0u);
    EXPECT_EQ(root_->freshBytes, 0u);
    // Published to once, its messages gone: it stays for the sweep (its
    // last id keeps ids increasing).
    pub("b", "x", 10, 1, kT0);
    ch = s.find("b");
    s.expire(ch, kT0 + 1);
    EXPECT_FALSE(s.releaseIfUnused(ch));
}

TEST_F(ShmStoreTest, FreshChannelsStopAtTheirShareOfTheZone) {
    alloc_.setBudget(256 * 1024);
    pubsub_test::destroyRoot(alloc_, root_);
    root_ = ShmStore::createRoot(alloc_.shm(), 16, 256 * 1024);
    ASSERT_NE(root_, nullptr);
    EXPECT_EQ(root_->freshLimit, 64u * 1024);
    ShmStore s = store();
    pub("news", "first");
    size_t before = alloc_.liveBytes();
    std::vector<ShmChannel*> made;
    StoreStatus st = StoreStatus::kOk;
    for (int i = 0; i < 100000 && st == StoreStatus::kOk; i++) {
        ShmChannel* ch = s.findOrCreate("anon-" + std::to_string(i), kT0, {}, &st,
                                        ShmStore::Creator::kSubscriber);
        if (ch != nullptr) {
            ASSERT_EQ(s.addSubscriber(ch, 0, kT0), StoreStatus::kOk);
            made.push_back(ch);
        }
    }
    EXPECT_EQ(st, StoreStatus::kFreshChannels);
    EXPECT_EQ(std::string(pubsub::storeStatusReason(st)),
              "Too many channels without messages: shared memory is kept for messages.");
    EXPECT_GT(made.size(), 100u);
    EXPECT_LE(root_->freshBytes, root_->freshLimit);
    EXPECT_EQ(root_->freshRefused, 1u);
    EXPECT_LE(alloc_.liveBytes() - before, root_->freshLimit);
    // Existing channels and publishers are not affected: messages fill the
    // rest of the zone.
    std::string big(1000, 'm');
    int stored = 0;
    for (int i = 0; i < 100; i++) {
        if (pub("news", big, 1000).status == StoreStatus::kOk) {
            stored++;
        }
    }
    EXPECT_EQ(stored, 100);
    EXPECT_EQ(pub("new-by-publisher", "x").status, StoreStatus::kOk);
    // A subscriber to an existing channel is not refused either.
    ShmChannel* news = s.find("news");
    EXPECT_EQ(s.addSubscriber(news, 0, kT0), StoreStatus::kOk);
    s.removeSubscriber(news, kT0);
    // As subscribers leave, their channels go and others can come.
    for (ShmChannel* ch : made) {
        s.removeSubscriber(ch, kT0);
        EXPECT_TRUE(s.releaseIfUnused(ch));
    }
    EXPECT_EQ(root_->freshBytes, 0u);
    EXPECT_NE(s.findOrCreate("anon-again", kT0, {}, nullptr, ShmStore::Creator::kSubscriber),
              nullptr);
}

TEST_F(ShmStoreTest, TheFreshLimitCountsTheSubscribersWorkerSlot) {
    root_->freshLimit = 10000;
    ShmStore s = store();
    std::vector<ShmChannel*> made;
    for (int i = 0;; i++) {
        StoreStatus st;
        ShmChannel* ch = s.findOrCreate("k" + std::to_string(i), kT0, {}, &st,
                                        ShmStore::Creator::kSubscriber, 40);
        if (ch == nullptr) {
            EXPECT_EQ(st, StoreStatus::kFreshChannels);
            break;
        }
        ASSERT_EQ(s.addSubscriber(ch, 40, kT0), StoreStatus::kOk);  // 64 counts
        made.push_back(ch);
        EXPECT_LE(root_->freshBytes, root_->freshLimit);
    }
    // Each took its channel and 256 bytes of counts: the next did not fit.
    uint64_t each = ShmStore::zoneCharge(sizeof(ShmChannel) + 2) + 256;
    EXPECT_EQ(root_->freshBytes, made.size() * each);
    EXPECT_GT(root_->freshBytes + each, root_->freshLimit);
    for (ShmChannel* ch : made) {
        s.removeSubscriber(ch, 40, kT0);
        EXPECT_TRUE(s.releaseIfUnused(ch));
    }
}

TEST_F(ShmStoreTest, APublishThatFailsLeavesNoChannelBehind) {
    ShmStore s = store();
    PublishInput in;
    in.data = std::string(500, 'x');
    in.limits.maxBytes = 100;
    PublishOutcome out = s.publish("g/new", in, kT0);
    EXPECT_EQ(out.status, StoreStatus::kGroupMemory);
    EXPECT_EQ(out.channel, nullptr);
    EXPECT_EQ(s.find("g/new"), nullptr);
    EXPECT_EQ(root_->channels, 0u);
    EXPECT_EQ(s.findGroup("g"), nullptr);
    // A channel with a subscriber stays.
    ShmChannel* ch = s.findOrCreate("g/subbed", kT0, {}, nullptr, ShmStore::Creator::kSubscriber);
    s.addSubscriber(ch, kT0);
    EXPECT_EQ(s.publish("g/subbed", in, kT0).status, StoreStatus::kGroupMemory);
    EXPECT_EQ(s.find("g/subbed"), ch);
    s.removeSubscriber(ch, kT0);
    EXPECT_TRUE(s.releaseIfUnused(ch));
}

TEST_F(ShmStoreTest, AFullZoneFreesIdleEmptyChannelsBeforeRefusingAPublish) {
    ShmStore s = store();
    pub("busy", "x", 10, 0, kT0);
    // Channels whose messages expired, no subscribers: they would linger
    // for the sweep's grace.
    for (int i = 0; i < 50; i++) {
        pub("idle" + std::to_string(i), "x", 10, 1, kT0);
    }
    s.sweep(kT0 + 2, root_->nbuckets, 30);  // their messages go, they stay
    ASSERT_EQ(root_->channels, 51u);
    MsgId newestIdle = s.find("idle49")->lastId;
    // One that has a subscriber stays whatever happens.
    ShmChannel* kept = s.findOrCreate("waiting", kT0, {}, nullptr, ShmStore::Creator::kSubscriber);
    s.addSubscriber(kept, kT0);
    alloc_.setBudget(alloc_.liveBytes() + 100);
    std::string msg(400, 'y');
    PublishOutcome out = pub("busy", msg, 10, 0, kT0 + 5);
    ASSERT_EQ(out.status, StoreStatus::kOk);
    EXPECT_EQ(root_->reclaimed, 50u);
    EXPECT_EQ(root_->channels, 2u);
    EXPECT_EQ(s.find("waiting"), kept);
    EXPECT_EQ(s.find("idle0"), nullptr);
    EXPECT_FALSE(root_->lastRemoved < newestIdle);  // ids of a re-made channel go on
    s.removeSubscriber(kept, kT0);
    alloc_.setBudget(TestAllocator::kUnlimited);
}

}  // namespace

// A channel deleted and created again within the same second continues
// after the ids it had: a client resuming with an old id skips nothing.
TEST(ShmStoreIds, RecreatedChannelDoesNotReuseIds) {
    pubsub_test::TestAllocator a;
    pubsub::StoreRoot* root = pubsub::ShmStore::createRoot(a.shm());
    ASSERT_NE(root, nullptr);
    pubsub::ShmStore store(root, a.shm());
    pubsub::PublishInput in;
    in.data = "x";
    pubsub::MsgId old;
    for (int i = 0; i < 3; i++) {
        old = store.publish("g/c", in, 1000).message->id;
    }
    EXPECT_EQ(old, (pubsub::MsgId{1000, 2}));
    store.remove(store.find("g/c"));
    pubsub::PublishOutcome again = store.publish("g/c", in, 1000);
    ASSERT_EQ(again.status, pubsub::StoreStatus::kOk);
    EXPECT_GT(again.message->id, old);
    EXPECT_TRUE(again.message->prev.isNull());
    // a later second starts at tag 0 as usual
    store.remove(store.find("g/c"));
    EXPECT_EQ(store.publish("g/c", in, 1001).message->id, (pubsub::MsgId{1001, 0}));
    store.clear();
    pubsub_test::destroyRoot(a, root);
}

TEST_F(ShmStoreTest, GroupsWithStoredLimitsStayAndClearReleasesThem) {
    pubsub::GroupLimitsUpdate up;
    up.channels = true;
    up.limits.maxChannels = 1;
    ASSERT_EQ(store().setGroupLimits("g", up), StoreStatus::kOk);
    ASSERT_NE(store().findGroup("g"), nullptr);
    StoreStatus st;
    ASSERT_NE(store().findOrCreate("g/a", kT0, {}, &st), nullptr);
    EXPECT_EQ(store().findOrCreate("g/b", kT0, {}, &st), nullptr);
    EXPECT_EQ(st, StoreStatus::kGroupChannels);
    // the channel goes, the group stays for its limit
    store().remove(store().find("g/a"));
    ASSERT_NE(store().findGroup("g"), nullptr);
    EXPECT_EQ(store().findGroup("g")->channels, 0u);
    ASSERT_EQ(store().setGroupLimits("h", up), StoreStatus::kOk);
    // the TearDown's clear() must free both groups
}

namespace {

// Occupied channels of a group: those with subscribers, by prefix, capped.
TEST_F(ShmStoreTest, OccupiedChannelsOfAGroup) {
    ShmStore s = store();
    ShmChannel* a = s.findOrCreate("pusher:1/presence-a", kT0);
    ShmChannel* b = s.findOrCreate("pusher:1/b", kT0);
    ShmChannel* c = s.findOrCreate("pusher:1/presence-c", kT0);
    ShmChannel* other = s.findOrCreate("pusher:2/presence-a", kT0);
    ASSERT_TRUE(a && b && c && other);
    s.addSubscriber(a, kT0);
    s.addSubscriber(a, kT0);
    s.addSubscriber(b, kT0);
    s.addSubscriber(other, kT0);

    pubsub::OccupiedList l;
    s.occupied("pusher:1", "", 10, &l);
    ASSERT_EQ(l.channels.size(), 2u);
    EXPECT_FALSE(l.truncated);
    uint64_t subs = 0;
    for (const auto& o : l.channels) {
        EXPECT_TRUE(o.id == "presence-a" || o.id == "b") << o.id;
        subs += o.subscribers;
    }
    EXPECT_EQ(subs, 3u);

    l = pubsub::OccupiedList();
    s.occupied("pusher:1", "presence-", 10, &l);
    ASSERT_EQ(l.channels.size(), 1u);
    EXPECT_EQ(l.channels[0].id, "presence-a");
    EXPECT_EQ(l.channels[0].subscribers, 2u);

    l = pubsub::OccupiedList();
    s.occupied("pusher:1", "", 1, &l);
    EXPECT_EQ(l.channels.size(), 1u);
    EXPECT_TRUE(l.truncated);

    l = pubsub::OccupiedList();
    s.occupied("nothing", "", 10, &l);
    EXPECT_TRUE(l.channels.empty());

    // a freed channel leaves its group's list
    s.removeSubscriber(b, kT0);
    s.remove(b);
    s.remove(c);
    l = pubsub::OccupiedList();
    s.occupied("pusher:1", "", 10, &l);
    ASSERT_EQ(l.channels.size(), 1u);
    EXPECT_EQ(l.channels[0].id, "presence-a");
    s.removeSubscriber(a, kT0);
    s.removeSubscriber(a, kT0);
    s.removeSubscriber(other, kT0);
}

}  // namespace
