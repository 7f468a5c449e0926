// The at-least-once delivery queue of the hooks (pubsub/hook_queue.h).

#include "pubsub/hook_queue.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core_fakes.h"

namespace {

using pubsub::HookClaim;
using pubsub::HookOutcome;
using pubsub::HookQueue;
using pubsub::HookQueueRoot;
using pubsub_test::TestAllocator;

struct QueueFixture : ::testing::Test {
    TestAllocator alloc;
    HookQueueRoot* root = nullptr;

    HookQueue make(uint64_t maxBytes = 1 << 20, int64_t giveUp = HookQueue::kGiveUpMs) {
        root = HookQueue::createRoot(alloc.shm(), maxBytes, giveUp);
        EXPECT_NE(root, nullptr);
        return HookQueue(root, alloc.shm());
    }

    void TearDown() override {
        if (root != nullptr) {
            HookQueue q(root, alloc.shm());
            std::vector<HookClaim> c;
            // drain: everything claimed and delivered gives the memory back
            q.reclaim([](int64_t) { return false; });
            q.claim(1, INT64_MAX / 2, 1 << 20, &c);
            while (!c.empty()) {
                for (auto& x : c) {
                    q.finish(x.entry, x.seq, 1, true, 0);
                }
                c.clear();
                q.claim(1, INT64_MAX / 2, 1 << 20, &c);
            }
            alloc.free(root);
        }
        EXPECT_EQ(alloc.liveCount(), 0u);
    }
};

std::vector<std::string> payloads(const std::vector<HookClaim>& c) {
    std::vector<std::string> v;
    for (const auto& x : c) {
        v.push_back(x.payload);
    }
    return v;
}

TEST(HookQueueBackoff, DoublesFromOneSecondToThirty) {
    EXPECT_EQ(HookQueue::backoffMs(1), 1000);
    EXPECT_EQ(HookQueue::backoffMs(2), 2000);
    EXPECT_EQ(HookQueue::backoffMs(3), 4000);
    EXPECT_EQ(HookQueue::backoffMs(4), 8000);
    EXPECT_EQ(HookQueue::backoffMs(5), 16000);
    EXPECT_EQ(HookQueue::backoffMs(6), 30000);
    EXPECT_EQ(HookQueue::backoffMs(100), 30000);
    for (uint32_t a = 1; a < 1000; a++) {
        EXPECT_LE(HookQueue::backoffMs(a), 30000);
    }
}

TEST_F(QueueFixture, OldestFirstAndDeliveredGoes) {
    HookQueue q = make();
    ASSERT_TRUE(q.push("a", 0, 100));
    ASSERT_TRUE(q.push("b", 0, 100));
    std::vector<HookClaim> c;
    EXPECT_EQ(q.claim(7, 100, 10, &c), 2u);
    EXPECT_EQ(payloads(c), (std::vector<std::string>{"a", "b"}));
    EXPECT_EQ(q.finish(c[0].entry, c[0].seq, 7, true, 101), HookOutcome::kDelivered);
    EXPECT_EQ(q.size(), 1u);
    EXPECT_EQ(root->delivered, 1u);
}

TEST_F(QueueFixture, AClaimIsSentByOneOwnerOnly) {
    HookQueue q = make();
    ASSERT_TRUE(q.push("a", 0, 0));
    std::vector<HookClaim> c1, c2;
    EXPECT_EQ(q.claim(1, 0, 10, &c1), 1u);
    EXPECT_EQ(q.claim(2, 0, 10, &c2), 0u);
    // another owner cannot report it
    EXPECT_EQ(q.finish(c1[0].entry, c1[0].seq, 2, true, 0), HookOutcome::kNotOwned);
    EXPECT_EQ(q.size(), 1u);
    EXPECT_EQ(q.finish(c1[0].entry, c1[0].seq, 1, true, 0), HookOutcome::kDelivered);
}

TEST_F(QueueFixture, FailuresBackOffThenGiveUpAfterFiveMinutes) {
    HookQueue q = make();
    ASSERT_TRUE(q.push("a", 0, 0));
    int64_t now = 0;
    std::vector<int64_t> delays;
    for (;;) {
        std::vector<HookClaim> c;
        ASSERT_EQ(q.claim(1, now, 10, &c), 1u);
        // not due before its time
        int64_t at = 0;
        HookOutcome o = q.finish(c[0].entry, c[0].seq, 1, false, now, &at);
        if (o == HookOutcome::kGivenUp) {
            break;
        }
        ASSERT_EQ(o, HookOutcome::kRetry);
        std::vector<HookClaim> early;
        EXPECT_EQ(q.claim(1, at - 1, 10, &early), 0u);
        delays.push_back(at - now);
        now = at;
    }
    EXPECT_EQ(delays[0], 1000);
    for (int64_t d : delays) {
        EXPECT_LE(d, 30000);
    }
    EXPECT_GE(now, HookQueue::kGiveUpMs);
    EXPECT_LT(now, HookQueue::kGiveUpMs + 30000);
    EXPECT_EQ(q.size(), 0u);
    EXPECT_EQ(root->givenUp, 1u);
}

TEST_F(QueueFixture, GiveUpBoundIsConfigurable) {
    HookQueue q = make(1 << 20, 2500);
    ASSERT_TRUE(q.push("a", 0, 0));
    std::vector<HookClaim> c;
    q.claim(1, 0, 1, &c);
    EXPECT_EQ(q.finish(c[0].entry, c[0].seq, 1, false, 0), HookOutcome::kRetry);
    c.clear();
    q.claim(1, 1000, 1, &c);
    EXPECT_EQ(q.finish(c[0].entry, c[0].seq, 1, false, 1000), HookOutcome::kRetry);
    c.clear();
    q.claim(1, 3000, 1, &c);
    EXPECT_EQ(q.finish(c[0].entry, c[0].seq, 1, false, 3000), HookOutcome::kGivenUp);
}

TEST_F(QueueFixture, AKeyWaitsForItsOlderEntries) {
    HookQueue q = make();
    uint64_t alice = pubsub::hookOrderKey("alice");
    uint64_t bob = pubsub::hookOrderKey("bob");
    ASSERT_TRUE(q.push("alice join", alice, 0));
    ASSERT_TRUE(q.push("bob join", bob, 0));
    ASSERT_TRUE(q.push("alice leave", alice, 0));
    ASSERT_TRUE(q.push("anonymous", 0, 0));
    std::vector<HookClaim> c;
    q.claim(1, 0, 10, &c);
    EXPECT_EQ(payloads(c), (std::vector<std::string>{"alice join", "bob join", "anonymous"}));
    // alice's join fails: her leave still waits for it
    EXPECT_EQ(q.finish(c[0].entry, c[0].seq, 1, false, 0), HookOutcome::kRetry);
    q.finish(c[1].entry, c[1].seq, 1, true, 0);
    q.finish(c[2].entry, c[2].seq, 1, true, 0);
    std::vector<HookClaim> c2;
    EXPECT_EQ(q.claim(1, 500, 10, &c2), 0u);
    EXPECT_EQ(q.claim(1, 1000, 10, &c2), 1u);
    EXPECT_EQ(c2[0].payload, "alice join");
    EXPECT_EQ(c2[0].attempts, 1u);
    q.finish(c2[0].entry, c2[0].seq, 1, true, 1000);
    std::vector<HookClaim> c3;
    EXPECT_EQ(q.claim(1, 1000, 10, &c3), 1u);
    EXPECT_EQ(c3[0].payload, "alice leave");
}

TEST_F(QueueFixture, BoundedAndCountsWhatItDrops) {
    HookQueue q = make(10);
    EXPECT_TRUE(q.push("12345", 0, 0));
    EXPECT_TRUE(q.push("67890", 0, 0));
    EXPECT_FALSE(q.push("x", 0, 0));
    EXPECT_EQ(root->dropped, 1u);
    EXPECT_EQ(q.size(), 2u);
    // the allocator full is the same
    std::vector<HookClaim> c;
    q.claim(1, 0, 10, &c);
    q.finish(c[0].entry, c[0].seq, 1, true, 0);
    alloc.setBudget(alloc.liveBytes());
    EXPECT_FALSE(q.push("y", 0, 0));
    EXPECT_EQ(root->dropped, 2u);
    alloc.setBudget(TestAllocator::kUnlimited);
}

TEST_F(QueueFixture, ReleasedAndReclaimedClaimsAreSentAgain) {
    HookQueue q = make();
    ASSERT_TRUE(q.push("a", 0, 0));
    ASSERT_TRUE(q.push("b", 0, 0));
    ASSERT_TRUE(q.push("c", 0, 0));
    std::vector<HookClaim> c;
    q.claim(11, 0, 1, &c);
    q.claim(22, 0, 2, &c);
    ASSERT_EQ(c.size(), 3u);
    // b failed once; its retry is in flight with 22 again
    EXPECT_EQ(q.finish(c[1].entry, c[1].seq, 22, false, 0), HookOutcome::kRetry);
    std::vector<HookClaim> retry;
    ASSERT_EQ(q.claim(22, 1000, 1, &retry), 1u);
    EXPECT_EQ(retry[0].payload, "b");
    EXPECT_TRUE(q.hasOwned());
    EXPECT_EQ(q.nextDue(), -1);
    // 11 exits: its claim is due again, attempts kept
    EXPECT_EQ(q.release(11), 1u);
    EXPECT_EQ(q.nextDue(), 0);
    // 22 died: the retry of b goes back, the first attempt of c is taken
    // as delivered
    size_t assumed = 0;
    EXPECT_EQ(q.reclaim([](int64_t pid) { return pid != 22; }, &assumed), 1u);
    EXPECT_EQ(assumed, 1u);
    EXPECT_EQ(root->assumed, 1u);
    // a late report of the dead owner changes nothing
    std::vector<HookClaim> again;
    EXPECT_EQ(q.claim(33, 1000, 10, &again), 2u);
    EXPECT_EQ(q.finish(retry[0].entry, retry[0].seq, 22, true, 0), HookOutcome::kNotOwned);
    EXPECT_EQ(payloads(again), (std::vector<std::string>{"a", "b"}));
    EXPECT_EQ(again[1].attempts, 1u);  // the cut attempt is not counted
    EXPECT_FALSE(q.reclaim([](int64_t) { return true; }));
}

TEST_F(QueueFixture, AClaimLooksAtTheOldestEntriesOnly) {
    HookQueue q = make();
    for (int i = 0; i < 10; i++) {
        ASSERT_TRUE(q.push(std::to_string(i), 0, 0));
    }
    std::vector<HookClaim> c;
    EXPECT_EQ(q.claim(1, 0, 100, &c, 3), 3u);
    // the three oldest are in flight: the next three are looked at
    std::vector<HookClaim> c2;
    EXPECT_EQ(q.claim(1, 0, 100, &c2, 3), 0u);
    for (auto& x : c) {
        q.finish(x.entry, x.seq, 1, true, 0);
    }
    EXPECT_EQ(q.claim(1, 0, 100, &c2, 3), 3u);
    EXPECT_EQ(payloads(c2), (std::vector<std::string>{"3", "4", "5"}));
}

TEST(HookOrderKey, EmptyIsUnordered) {
    EXPECT_EQ(pubsub::hookOrderKey(""), 0u);
    EXPECT_NE(pubsub::hookOrderKey("a"), 0u);
    EXPECT_NE(pubsub::hookOrderKey("a"), pubsub::hookOrderKey("b"));
}

}  // namespace
