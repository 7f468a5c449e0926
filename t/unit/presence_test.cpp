#include "pubsub/memory/presence.h"

#include <gtest/gtest.h>

#include <chrono>
#include <set>
#include <string>
#include <vector>

#include "core_fakes.h"
#include "fnv_collide.h"

using pubsub::PresenceConn;
using pubsub::PresenceEvent;
using pubsub::PresenceEvents;
using pubsub::PresenceEventType;
using pubsub::PresenceRegistry;
using pubsub::PresenceRoot;
using pubsub_test::TestAllocator;

namespace {

class PresenceTest : public ::testing::Test {
protected:
    void SetUp() override {
        root = PresenceRegistry::createRoot(alloc.shm(), 4);
        ASSERT_NE(root, nullptr);
        reg = std::make_unique<PresenceRegistry>(root, alloc.shm());
    }
    void TearDown() override {
        reg.reset();
        PresenceRegistry::destroyRoot(root, alloc.shm());
        EXPECT_EQ(alloc.liveCount(), 0u) << "the registry leaked zone memory";
    }

    PresenceConn* join(std::string_view key, std::string_view id, uint32_t slot = 0,
                       uint32_t delay = 5000, std::string_view info = "") {
        return reg->join(key, id, info, slot, 0, delay, now, &events);
    }

    std::vector<std::string> take() {
        std::vector<std::string> out;
        for (const PresenceEvent& e : events) {
            out.push_back(std::string(pubsub::presenceEventName(e.type)) + " " + e.channel +
                          " " + e.id);
        }
        events.clear();
        return out;
    }

    TestAllocator alloc;
    PresenceRoot* root = nullptr;
    std::unique_ptr<PresenceRegistry> reg;
    PresenceEvents events;
    int64_t now = 1000000;
};

using Strings = std::vector<std::string>;

TEST_F(PresenceTest, JoinMakesMemberAndUserOnline) {
    ASSERT_NE(join("g/a", "alice", 0, 5000, "{\"n\":1}"), nullptr);
    EXPECT_EQ(take(), (Strings{"online  alice", "join g/a alice"}));
    auto st = reg->stats("g/a");
    EXPECT_TRUE(st.found);
    EXPECT_EQ(st.members, 1u);
    EXPECT_EQ(st.connections, 1u);
    auto page = reg->page("g/a", 10, "");
    ASSERT_EQ(page.members.size(), 1u);
    EXPECT_EQ(page.members[0].id, "alice");
    EXPECT_EQ(page.members[0].info, "{\"n\":1}");
    EXPECT_EQ(page.members[0].joinedAt, now);
    auto u = reg->user("alice");
    EXPECT_TRUE(u.online);
    EXPECT_EQ(u.channels, (Strings{"g/a"}));
    EXPECT_FALSE(reg->user("bob").online);
}

TEST_F(PresenceTest, SeveralConnectionsOnSeveralSlotsAreOneMember) {
    PresenceConn* a = join("g/a", "alice", 0);
    PresenceConn* b = join("g/a", "alice", 1);
    PresenceConn* c = join("g/a", "alice", 3);
    EXPECT_EQ(take(), (Strings{"online  alice", "join g/a alice"}));
    auto st = reg->stats("g/a");
    EXPECT_EQ(st.members, 1u);
    EXPECT_EQ(st.connections, 3u);
    EXPECT_EQ(reg->page("g/a", 10, "").members[0].connections, 3u);
    reg->leave(a, now, &events);
    reg->leave(b, now, &events);
    EXPECT_TRUE(take().empty());
    reg->leave(c, now, &events);
    EXPECT_TRUE(take().empty()) << "the leave waits for the delay";
    reg->expire(now + 4999, &events);
    EXPECT_TRUE(take().empty());
    EXPECT_EQ(reg->stats("g/a").members, 1u) << "a leaving member is still listed";
    reg->expire(now + 5000, &events);
    EXPECT_EQ(take(), (Strings{"leave g/a alice", "offline  alice"}));
    EXPECT_FALSE(reg->stats("g/a").found);
}

TEST_F(PresenceTest, ReconnectWithinDelayCancelsLeave) {
    PresenceConn* a = join("g/a", "alice");
    take();
    reg->leave(a, now, &events);
    now += 3000;
    PresenceConn* b = join("g/a", "alice", 2);
    EXPECT_TRUE(take().empty()) << "no leave/join pair";
    reg->expire(now + 60000, &events);
    EXPECT_TRUE(take().empty());
    EXPECT_EQ(root->leavingCount, 0u);
    reg->leave(b, now, &events);
    reg->expire(now + 5000, &events);
    EXPECT_EQ(take(), (Strings{"leave g/a alice", "offline  alice"}));
}

TEST_F(PresenceTest, ZeroDelayLeavesAtOnce) {
    PresenceConn* a = join("g/a", "alice", 0, 0);
    take();
    reg->leave(a, now, &events);
    EXPECT_EQ(take(), (Strings{"leave g/a alice", "offline  alice"}));
}

TEST_F(PresenceTest, OnlineOfflineSpanChannels) {
    PresenceConn* a = join("g/a", "alice", 0, 0);
    PresenceConn* b = join("g/b", "alice", 0, 0);
    EXPECT_EQ(take(), (Strings{"online  alice", "join g/a alice", "join g/b alice"}));
    auto u = reg->user("alice");
    EXPECT_EQ(std::set<std::string>(u.channels.begin(), u.channels.end()),
              (std::set<std::string>{"g/a", "g/b"}));
    reg->leave(a, now, &events);
    EXPECT_EQ(take(), (Strings{"leave g/a alice"}));
    EXPECT_TRUE(reg->user("alice").online);
    reg->leave(b, now, &events);
    EXPECT_EQ(take(), (Strings{"leave g/b alice", "offline  alice"}));
    EXPECT_FALSE(reg->user("alice").online);
}

TEST_F(PresenceTest, AnonymousConnectionsAreOnlyCounted) {
    PresenceConn* a = join("g/a", "");
    PresenceConn* b = join("g/a", "");
    EXPECT_TRUE(take().empty());
    auto st = reg->stats("g/a");
    EXPECT_EQ(st.members, 0u);
    EXPECT_EQ(st.connections, 2u);
    EXPECT_EQ(st.anonymous, 2u);
    EXPECT_TRUE(reg->page("g/a", 10, "").members.empty());
    reg->leave(a, now, &events);
    reg->leave(b, now, &events);
    EXPECT_FALSE(reg->stats("g/a").found);
    EXPECT_TRUE(take().empty());
}

TEST_F(PresenceTest, WorkerSlotRemovalLeavesOnceAfterDelay) {
    join("g/a", "alice", 1);
    join("g/a", "bob", 1);
    PresenceConn* b2 = join("g/a", "bob", 2);
    join("g/b", "carol", 1, 0);
    join("g/a", "", 1);
    take();
    EXPECT_EQ(reg->removeWorkerConnections(1, now, &events), 4u);
    EXPECT_EQ(take(), (Strings{"leave g/b carol", "offline  carol"}));
    EXPECT_EQ(reg->stats("g/a").connections, 1u);
    reg->expire(now + 5000, &events);
    EXPECT_EQ(take(), (Strings{"leave g/a alice", "offline  alice"}));
    // nothing left in the slot: a second cleanup does nothing
    EXPECT_EQ(reg->removeWorkerConnections(1, now, &events), 0u);
    reg->expire(now + 50000, &events);
    EXPECT_TRUE(take().empty());
    EXPECT_EQ(reg->stats("g/a").members, 1u);
    reg->leave(b2, now, &events);
}

TEST_F(PresenceTest, ClaimSlotForgetsThePreviousOwner) {
    join("g/a", "alice", 5, 0);
    take();
    EXPECT_EQ(reg->claimSlot(5, 4242, now, &events), 1u);
    EXPECT_EQ(take(), (Strings{"leave g/a alice", "offline  alice"}));
    EXPECT_EQ(root->slotPid[5], 4242);
    EXPECT_EQ(reg->claimSlot(5, 4243, now, &events), 0u);
}

TEST_F(PresenceTest, BadInputIsRefusedWithoutChange) {
    EXPECT_EQ(join("g/a", "x", PresenceRoot::kMaxSlots), nullptr);
    std::string longId(PresenceRegistry::kMaxIdLength + 1, 'x');
    EXPECT_EQ(join("g/a", longId), nullptr);
    std::string longInfo(PresenceRegistry::kMaxInfoLength + 1, '1');
    EXPECT_EQ(reg->join("g/a", "x", longInfo, 0, 0, 0, now, &events), nullptr);
    EXPECT_FALSE(reg->stats("g/a").found);
    EXPECT_EQ(reg->page("g/a", 10, "nonsense").status, pubsub::PresenceStatus::kBadCursor);
    EXPECT_EQ(reg->page("g/a", 10, "1.zz").status, pubsub::PresenceStatus::kBadCursor);
    EXPECT_EQ(reg->page("g/a", 10, "99999999999999999999999.0000000000000000").status,
              pubsub::PresenceStatus::kBadCursor);
    EXPECT_EQ(reg->page("g/a", 0, "").status, pubsub::PresenceStatus::kBadArgument);
    EXPECT_EQ(reg->page("g/a", PresenceRegistry::kMaxPage + 1, "").status,
              pubsub::PresenceStatus::kBadArgument);
    EXPECT_EQ(reg->removeWorkerConnections(PresenceRoot::kMaxSlots, now, &events), 0u);
    reg->leave(nullptr, now, &events);
    EXPECT_TRUE(take().empty());
}

TEST_F(PresenceTest, PagingIsStableWhileMembersComeAndGo) {
    std::vector<PresenceConn*> conns;
    for (int i = 0; i < 25; i++) {
        conns.push_back(join("g/a", "m" + std::to_string(i), 0, 0));
    }
    auto p1 = reg->page("g/a", 10, "");
    ASSERT_EQ(p1.members.size(), 10u);
    EXPECT_EQ(p1.members[0].id, "m0");
    EXPECT_EQ(p1.stats.members, 25u);
    ASSERT_FALSE(p1.nextCursor.empty());
    // the member the cursor names leaves, and a new one joins at the end
    reg->leave(conns[9], now, &events);
    conns[9] = nullptr;
    conns.push_back(join("g/a", "late", 0, 0));
    auto p2 = reg->page("g/a", 10, p1.nextCursor);
    ASSERT_EQ(p2.members.size(), 10u);
    EXPECT_EQ(p2.members[0].id, "m10");
    auto p3 = reg->page("g/a", 10, p2.nextCursor);
    ASSERT_EQ(p3.members.size(), 6u);
    EXPECT_EQ(p3.members.back().id, "late");
    EXPECT_TRUE(p3.nextCursor.empty());
    for (PresenceConn* c : conns) {
        reg->leave(c, now, &events);
    }
}

TEST_F(PresenceTest, InfoIsReplacedByALaterConnection) {
    PresenceConn* a = join("g/a", "alice", 0, 0, "{\"v\":1}");
    PresenceConn* b = join("g/a", "alice", 0, 0, "{\"v\":2}");
    EXPECT_EQ(reg->page("g/a", 1, "").members[0].info, "{\"v\":2}");
    reg->leave(a, now, &events);
    reg->leave(b, now, &events);
}

TEST_F(PresenceTest, RingCarriesEventsOfMembersThatAskForThem) {
    uint64_t last = reg->ringSeq();
    PresenceConn* a = reg->join("g/a", "alice", "{}", 0, pubsub::kPresenceOptEvents, 0, now,
                                nullptr);
    PresenceConn* b = reg->join("g/a", "bob", "", 0, 0, 0, now, nullptr);
    reg->leave(a, now, nullptr);
    reg->leave(b, now, nullptr);
    PresenceEvents out;
    uint64_t missed = 0;
    EXPECT_EQ(reg->readRing(&last, 100, &out, &missed), 2u);
    ASSERT_EQ(out.size(), 2u);
    EXPECT_EQ(out[0].type, PresenceEventType::kJoin);
    EXPECT_EQ(out[0].id, "alice");
    EXPECT_EQ(out[0].info, "{}");
    EXPECT_EQ(out[1].type, PresenceEventType::kLeave);
    EXPECT_EQ(missed, 0u);
    EXPECT_EQ(reg->readRing(&last, 100, &out, &missed), 0u);
}

TEST_F(PresenceTest, RoutedOnlyReturnsOnlyEventsSomeoneReceives) {
    reg->setRoutedOnly(true);
    uint32_t hook = 2u << pubsub::kPresenceHookShift;
    PresenceConn* a = reg->join("g/a", "alice", "", 0, 0, 0, now, &events);
    PresenceConn* b = reg->join("g/a", "bob", "", 0, pubsub::kPresenceOptEvents, 0, now, &events);
    PresenceConn* c = reg->join("g/a", "carol", "", 0, hook, 0, now, &events);
    ASSERT_NE(a, nullptr);
    ASSERT_NE(b, nullptr);
    ASSERT_NE(c, nullptr);
    // alice: nobody listens; bob: join/leave for subscribers (not
    // online/offline); carol: everything for the hook
    EXPECT_EQ(take(), (Strings{"join g/a bob", "online  carol", "join g/a carol"}));
    reg->leave(a, now, &events);
    reg->leave(b, now, &events);
    reg->leave(c, now, &events);
    EXPECT_EQ(take(), (Strings{"leave g/a bob", "leave g/a carol", "offline  carol"}));
    EXPECT_EQ(reg->stats("g/a").members, 0u);
    EXPECT_EQ(root->events, 12u) << "unrouted events are still counted";
    reg->setRoutedOnly(false);
    ASSERT_NE(join("g/a", "dave", 0, 0), nullptr);
    EXPECT_EQ(take(), (Strings{"online  dave", "join g/a dave"}));
}

TEST_F(PresenceTest, RingOverflowIsCounted) {
    uint64_t last = reg->ringSeq();
    for (uint32_t i = 0; i < PresenceRoot::kRing / 2 + 10; i++) {
        PresenceConn* c =
            reg->join("g/a", "m", "", 0, pubsub::kPresenceOptEvents, 0, now, nullptr);
        reg->leave(c, now, nullptr);
    }
    PresenceEvents out;
    uint64_t missed = 0;
    size_t n = reg->readRing(&last, 100000, &out, &missed);
    EXPECT_EQ(n, PresenceRoot::kRing);
    EXPECT_EQ(missed, 20u);
}

TEST_F(PresenceTest, EventJson) {
    PresenceEvent ev;
    ev.type = PresenceEventType::kJoin;
    ev.id = "al\"ice";
    ev.info = "{\"name\":\"A\"}";
    EXPECT_EQ(pubsub::presenceEventJson(ev, "room"),
              "{\"event\":\"join\",\"channel\":\"room\",\"member\":{\"id\":\"al\\\"ice\","
              "\"info\":{\"name\":\"A\"}}}");
    ev.type = PresenceEventType::kOffline;
    ev.info.clear();
    EXPECT_EQ(pubsub::presenceEventJson(ev, ""),
              "{\"event\":\"offline\",\"user\":{\"id\":\"al\\\"ice\",\"info\":null}}");
}

TEST_F(PresenceTest, OutOfMemoryAtEveryStepLeavesNoTrace) {
    // Each budget fails a different allocation of a join; none may leak or
    // leave half a member behind.
    size_t base = alloc.liveBytes();
    for (size_t extra = 0; extra < 2048; extra += 8) {
        alloc.setBudget(base + extra);
        // (ring entries stay by design, so no kPresenceOptEvents here)
        PresenceConn* c = reg->join("g/oom", "alice", "{\"x\":1}", 0, 0, 0, now, &events);
        alloc.setBudget(TestAllocator::kUnlimited);
        if (c == nullptr) {
            EXPECT_FALSE(reg->stats("g/oom").found);
            EXPECT_FALSE(reg->user("alice").online);
            EXPECT_EQ(alloc.liveBytes(), base);
        } else {
            reg->leave(c, now, &events);
            EXPECT_FALSE(reg->stats("g/oom").found);
            EXPECT_EQ(alloc.liveBytes(), base);
        }
    }
    events.clear();
}

TEST_F(PresenceTest, TenThousandMembersInOneChannel) {
    auto t0 = std::chrono::steady_clock::now();
    std::vector<PresenceConn*> conns;
    for (int i = 0; i < 10000; i++) {
        PresenceConn* c = reg->join("g/big", "user" + std::to_string(i), "{\"i\":1}",
                                    static_cast<uint32_t>(i % 4), 0, 5000, now, nullptr);
        ASSERT_NE(c, nullptr);
        conns.push_back(c);
    }
    auto st = reg->stats("g/big");
    EXPECT_EQ(st.members, 10000u);
    EXPECT_EQ(st.connections, 10000u);
    // page through all of them, 1000 at a time
    std::string cursor;
    size_t seen = 0;
    int pages = 0;
    do {
        auto p = reg->page("g/big", 1000, cursor);
        ASSERT_EQ(p.status, pubsub::PresenceStatus::kOk);
        seen += p.members.size();
        cursor = p.nextCursor;
        pages++;
    } while (!cursor.empty() && pages < 20);
    EXPECT_EQ(seen, 10000u);
    EXPECT_EQ(pages, 10);
    // a worker dies: its quarter goes leaving, then leaves once
    EXPECT_EQ(reg->removeWorkerConnections(1, now, nullptr), 2500u);
    PresenceEvents ev;
    reg->expire(now + 5000, &ev);
    EXPECT_EQ(ev.size(), 5000u);  // 2500 leave + 2500 offline
    EXPECT_EQ(reg->stats("g/big").members, 7500u);
    for (size_t i = 0; i < conns.size(); i++) {
        if (i % 4 != 1) {
            reg->leave(conns[i], now, nullptr);
        }
    }
    reg->expire(now + 5000, nullptr);
    EXPECT_FALSE(reg->stats("g/big").found);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::steady_clock::now() - t0)
                  .count();
    EXPECT_LT(ms, 5000);
}

TEST_F(PresenceTest, ThousandChannelsOfTenMembers) {
    std::vector<PresenceConn*> conns;
    for (int c = 0; c < 1000; c++) {
        for (int m = 0; m < 10; m++) {
            PresenceConn* p = reg->join("g/ch" + std::to_string(c), "u" + std::to_string(m), "",
                                        0, 0, 0, now, nullptr);
            ASSERT_NE(p, nullptr);
            conns.push_back(p);
        }
    }
    EXPECT_EQ(reg->stats("g/ch999").members, 10u);
    EXPECT_EQ(reg->user("u3").channels.size(), 1000u);
    EXPECT_EQ(root->totalMembers, 10000u);
    EXPECT_EQ(reg->removeWorkerConnections(0, now, nullptr), 10000u);
    EXPECT_EQ(root->totalMembers, 0u);
    EXPECT_EQ(root->channels.count, 0u);
    EXPECT_EQ(root->users.count, 0u);
}


// The longest chain of a table, for the hash flood tests.
uint64_t longestChain(const pubsub::PresenceTable& t) {
    uint64_t longest = 0;
    for (uint64_t b = 0; b < t.nbuckets; b++) {
        uint64_t n = 0;
        for (pubsub::PresenceNode* e = t.buckets[b]; e != nullptr; e = e->hnext) {
            n++;
        }
        longest = n > longest ? n : longest;
    }
    return longest;
}

TEST_F(PresenceTest, TablesAreKeyedPerZone) {
    PresenceRoot* other = PresenceRegistry::createRoot(alloc.shm(), 4);
    ASSERT_NE(other, nullptr);
    EXPECT_FALSE(other->hashKey.k0 == root->hashKey.k0 && other->hashKey.k1 == root->hashKey.k1);
    PresenceRegistry::destroyRoot(other, alloc.shm());
    // Another worker's registry on the same root finds what this one made,
    // and a cursor made by one pages in the other.
    for (int i = 0; i < 5; i++) {
        ASSERT_NE(join("g/a", "m" + std::to_string(i)), nullptr);
    }
    PresenceRegistry second(root, alloc.shm());
    EXPECT_EQ(second.stats("g/a").members, 5u);
    EXPECT_TRUE(second.user("m3").online);
    auto first = reg->page("g/a", 2, "");
    ASSERT_FALSE(first.nextCursor.empty());
    auto next = second.page("g/a", 2, first.nextCursor);
    ASSERT_EQ(next.members.size(), 2u);
    EXPECT_EQ(next.members[0].id, "m2");
    reg->removeWorkerConnections(0, now, &events);
}

TEST_F(PresenceTest, FnvCollidingIdsDoNotShareABucket) {
    std::vector<std::string> ids = pubsub_test::fnvCollidingIds(2048);
    std::vector<PresenceConn*> conns;
    for (const std::string& id : ids) {
        // as member ids of one channel, and as channel keys
        conns.push_back(join("g/room", id, 0, 0));
        conns.push_back(join(id, "", 0, 0));
        ASSERT_NE(conns.back(), nullptr);
    }
    EXPECT_LT(longestChain(root->users), 12u);
    EXPECT_LT(longestChain(root->members), 12u);
    EXPECT_LT(longestChain(root->channels), 12u);
    for (PresenceConn* c : conns) {
        reg->leave(c, now, &events);
    }
    EXPECT_EQ(root->totalMembers, 0u);
}

}  // namespace

namespace {

class PresenceSub : public pubsub_test::RecordingSubscriber {
public:
    void presenceEvent(const PresenceEvent& ev) override {
        seen.push_back(std::string(pubsub::presenceEventName(ev.type)) + " " + ev.id);
        if (detachOnEvent && hub != nullptr) {
            hub->detach(this);
        }
    }
    std::vector<std::string> seen;
    bool detachOnEvent = false;
    pubsub::Hub* hub = nullptr;
};

TEST(PresenceHub, EventsReachEverySubscriberOfTheChannelOnly) {
    pubsub::Hub hub;
    PresenceSub a, b, c, other;
    a.hub = &hub;
    a.detachOnEvent = true;
    ASSERT_TRUE(hub.attach(&a, "g/a", {}, {}));
    ASSERT_TRUE(hub.attach(&b, "g/a", {}, {}));
    ASSERT_TRUE(hub.attach(&c, "g/a", {}, {}));
    ASSERT_TRUE(hub.attach(&other, "g/b", {}, {}));
    PresenceEvent ev;
    ev.type = PresenceEventType::kJoin;
    ev.id = "alice";
    hub.presenceEvent("g/a", ev);
    hub.presenceEvent("g/none", ev);
    EXPECT_EQ(a.seen, (Strings{"join alice"}));
    EXPECT_EQ(b.seen, (Strings{"join alice"}));
    EXPECT_EQ(c.seen, (Strings{"join alice"}));
    EXPECT_TRUE(other.seen.empty());
    EXPECT_FALSE(a.attached());
    ev.type = PresenceEventType::kLeave;
    hub.presenceEvent("g/a", ev);
    EXPECT_EQ(a.seen.size(), 1u);
    EXPECT_EQ(b.seen, (Strings{"join alice", "leave alice"}));
    hub.detach(&b);
    hub.detach(&c);
    hub.detach(&other);
    EXPECT_EQ(hub.channels(), 0u);
}

}  // namespace

// ------------------------------------------------------------ Redis mode

namespace {

constexpr uint32_t kRedisOpts = 1u << pubsub::kPresenceRedisShift;  // upstream 0

std::vector<std::string> describe(const pubsub::PresenceDeltas& ds) {
    std::vector<std::string> out;
    for (const auto& d : ds) {
        std::string s = d.channel + " v" + std::to_string(d.version) + " c" +
                        std::to_string(d.connections) + " a" + std::to_string(d.anonymous);
        if (d.member) {
            s += " " + d.id + "=" + std::to_string(d.memberConnections);
        }
        out.push_back(s);
    }
    return out;
}

}  // namespace

TEST_F(PresenceTest, RedisChannelsMakeDeltasNotEvents) {
    pubsub::PresenceDeltas deltas;
    reg->setDeltaSink(&deltas);
    auto* a1 = reg->join("g/r", "alice", "{}", 0, kRedisOpts, 1000, now, &events, 4000);
    auto* a2 = reg->join("g/r", "alice", "{}", 1, kRedisOpts, 1000, now, &events, 4000);
    auto* anon = reg->join("g/r", "", "", 0, kRedisOpts, 1000, now, &events, 4000);
    ASSERT_TRUE(a1 && a2 && anon);
    EXPECT_TRUE(events.empty()) << "Redis makes a Redis channel's events";
    EXPECT_EQ(describe(deltas),
              (Strings{"g/r v1 c1 a0 alice=1", "g/r v2 c2 a0 alice=2", "g/r v3 c3 a1"}));
    EXPECT_EQ(deltas[0].redis, 1u);
    EXPECT_EQ(deltas[0].ttlMs, 4000u);
    EXPECT_EQ(deltas[0].info, "{}");
    deltas.clear();

    reg->leave(anon, now, &events);
    reg->leave(a1, now, &events);
    reg->leave(a2, now, &events);  // leave delay starts: still a member, 0 connections here
    EXPECT_EQ(describe(deltas),
              (Strings{"g/r v4 c2 a0", "g/r v5 c1 a0 alice=1", "g/r v6 c0 a0 alice=0"}));
    deltas.clear();

    now += 1000;
    reg->expire(now, &events);
    EXPECT_EQ(describe(deltas), (Strings{"g/r v7 c0 a0 alice=-1"}));
    EXPECT_TRUE(events.empty());
    EXPECT_FALSE(reg->stats("g/r").found);
}

TEST_F(PresenceTest, MemoryChannelsStillMakeEventsBesideRedisOnes) {
    pubsub::PresenceDeltas deltas;
    reg->setDeltaSink(&deltas);
    ASSERT_NE(reg->join("g/r", "bob", "", 0, kRedisOpts, 0, now, &events, 4000), nullptr);
    ASSERT_NE(join("g/m", "carol"), nullptr);
    EXPECT_EQ(take(), (Strings{"online  carol", "join g/m carol"}));
    EXPECT_EQ(deltas.size(), 1u);
}

TEST_F(PresenceTest, RedisSnapshotHoldsEveryMemberAndTheCurrentVersion) {
    pubsub::PresenceDeltas deltas;
    reg->setDeltaSink(&deltas);
    auto* c = reg->join("g/r", "alice", "{\"a\":1}", 0, kRedisOpts, 5000, now, &events, 4000);
    ASSERT_NE(reg->join("g/r", "bob", "", 2, kRedisOpts, 5000, now, &events, 4000), nullptr);
    ASSERT_NE(reg->join("g/r", "", "", 2, kRedisOpts, 5000, now, &events, 4000), nullptr);
    ASSERT_NE(join("g/m", "carol"), nullptr);  // memory: not in the snapshot
    reg->leave(c, now, &events);               // alice: leaving, still listed with 0
    std::vector<pubsub::PresenceChannelSnapshot> snap;
    ASSERT_TRUE(reg->redisSnapshot(&snap));
    ASSERT_EQ(snap.size(), 1u);
    EXPECT_EQ(snap[0].channel, "g/r");
    EXPECT_EQ(snap[0].version, deltas.back().version);
    EXPECT_EQ(snap[0].connections, 2u);
    EXPECT_EQ(snap[0].anonymous, 1u);
    EXPECT_EQ(snap[0].ttlMs, 4000u);
    ASSERT_EQ(snap[0].members.size(), 2u);
    EXPECT_EQ(snap[0].members[0].id, "alice");
    EXPECT_EQ(snap[0].members[0].connections, 0u);
    EXPECT_EQ(snap[0].members[0].info, "{\"a\":1}");
    EXPECT_EQ(snap[0].members[1].id, "bob");
    EXPECT_EQ(snap[0].members[1].connections, 1u);
}

TEST_F(PresenceTest, DeadWorkerSlotMakesDeltasForItsConnections) {
    pubsub::PresenceDeltas deltas;
    reg->setDeltaSink(&deltas);
    ASSERT_NE(reg->join("g/r", "alice", "", 3, kRedisOpts, 0, now, &events, 4000), nullptr);
    ASSERT_NE(reg->join("g/r", "bob", "", 3, kRedisOpts, 0, now, &events, 4000), nullptr);
    deltas.clear();
    EXPECT_EQ(reg->removeWorkerConnections(3, now, &events), 2u);
    EXPECT_EQ(describe(deltas), (Strings{"g/r v3 c1 a0 bob=-1", "g/r v4 c0 a0 alice=-1"}));
    EXPECT_TRUE(events.empty());
}
