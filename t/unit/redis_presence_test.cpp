// Presence in Redis mode: reply parsing, keys, cursors, and RedisStore's
// presence calls over a fake link (the scripts themselves run against a
// real Redis in t/redis-presence.test.js).
#include <gtest/gtest.h>

#include <deque>
#include <string>
#include <vector>

#include "pubsub/redis/redis_presence.h"
#include "pubsub/redis/redis_store.h"
#include "redis_fake_link.h"
#include "redis_tree.h"

using namespace pubsub;
using pubsub_test::Tree;

namespace {

using Link = pubsub_test::FakeLink;

struct Watcher : Subscriber {
    std::vector<std::string> events;
    void deliver(const MessagePtr&) override {}
    void gap() override {}
    void channelDeleted() override {}
    void presenceEvent(const PresenceEvent& ev) override {
        events.push_back(std::string(presenceEventName(ev.type)) + " " + ev.channel + " " +
                         ev.id + " " + ev.info);
    }
};

// {events: kind, id, info, opts ...}
redisReply* eventsReply(Tree& t, std::vector<std::vector<std::string>> evs,
                        std::vector<redisReply*> rest = {}) {
    std::vector<redisReply*> flat;
    for (auto& e : evs) {
        for (auto& f : e) {
            flat.push_back(t.str(f));
        }
    }
    std::vector<redisReply*> top{t.array(flat)};
    top.insert(top.end(), rest.begin(), rest.end());
    return t.array(top);
}

struct RedisStorePresence : ::testing::Test {
    Link link;
    RedisStore store{&link, "w1"};
    Tree t;
    std::vector<std::string> hooks;

    // w subscribes to g/a from the snapshot `snap`
    void attachWatcher(Watcher& w, redisReply* snap) {
        RedisStore::PreparedPtr prepared;
        store.prepare({"g/a"}, [&](RedisStore::PreparedPtr p) { prepared = p; });
        link.take(redis::fetchScript().sha).cb(snap);
        ASSERT_TRUE(prepared);
        store.usePrepared(prepared.get());
        SubscribeRequest req;
        req.key = "g/a";
        store.subscribe(&w, req, [](SubscribeReply&&) {});
        store.usePrepared(nullptr);
        ASSERT_TRUE(w.attached());
    }

    void SetUp() override {
        store.setPresenceHook([this](const PresenceEvent& ev) {
            hooks.push_back(std::string(presenceEventName(ev.type)) + " " + ev.channel + " " +
                            ev.id);
        });
    }
};

PresenceDelta memberDelta(const std::string& id, int64_t conns, uint64_t version) {
    PresenceDelta d;
    d.channel = "g/a";
    d.redis = 1;
    d.version = version;
    d.connections = conns > 0 ? static_cast<uint64_t>(conns) : 0;
    d.member = true;
    d.id = id;
    d.memberConnections = conns;
    d.info = "{\"n\":1}";
    d.opts = 1 | (1u << kPresenceHookShift);
    return d;
}

}  // namespace

// ---------------------------------------------------------------- parsing

TEST(RedisPresenceParse, EventsOfAScriptReply) {
    Tree t;
    PresenceEvents evs;
    std::string why;
    ASSERT_TRUE(redis::parsePresenceEvents(
        eventsReply(t, {{"J", "alice", "{}", "257"}, {"L", "bob", "", "0"}}), "g/a", &evs, &why))
        << why;
    ASSERT_EQ(evs.size(), 2u);
    EXPECT_EQ(evs[0].type, PresenceEventType::kJoin);
    EXPECT_EQ(evs[0].channel, "g/a");
    EXPECT_EQ(evs[0].id, "alice");
    EXPECT_EQ(evs[0].info, "{}");
    EXPECT_EQ(evs[0].opts, 257u);
    EXPECT_EQ(evs[1].type, PresenceEventType::kLeave);
    EXPECT_EQ(evs[1].info, "");
}

TEST(RedisPresenceParse, BadScriptRepliesAreRefusedWithAReason) {
    Tree t;
    PresenceEvents evs;
    std::string why;
    EXPECT_FALSE(redis::parsePresenceEvents(nullptr, "g/a", &evs, &why));
    EXPECT_EQ(why, "no reply from Redis");
    EXPECT_FALSE(redis::parsePresenceEvents(t.error("ERR boom"), "g/a", &evs, &why));
    EXPECT_EQ(why, "Redis error: ERR boom");
    EXPECT_FALSE(redis::parsePresenceEvents(t.array({t.str("J")}), "g/a", &evs, &why));
    EXPECT_FALSE(redis::parsePresenceEvents(eventsReply(t, {{"X", "a", "", "0"}}), "g/a", &evs,
                                            &why));
    EXPECT_EQ(why, "unknown presence event from Redis");
    EXPECT_FALSE(redis::parsePresenceEvents(eventsReply(t, {{"J", "a", "", "-1"}}), "g/a", &evs,
                                            &why));
    EXPECT_FALSE(redis::parsePresenceEvents(t.array({t.array({t.str("J"), t.str("a")})}), "g/a",
                                            &evs, &why));
    EXPECT_TRUE(evs.empty());
}

TEST(RedisPresenceParse, LivePayloads) {
    PresenceEvent ev;
    std::string why;
    ASSERT_TRUE(redis::parsePresenceLive("J5 alice{\"a\":1}", "g/a", &ev, &why)) << why;
    EXPECT_EQ(ev.type, PresenceEventType::kJoin);
    EXPECT_EQ(ev.id, "alice");
    EXPECT_EQ(ev.info, "{\"a\":1}");
    EXPECT_EQ(ev.channel, "g/a");
    ASSERT_TRUE(redis::parsePresenceLive("L3 a b", "g/a", &ev, &why));  // ids may hold spaces
    EXPECT_EQ(ev.type, PresenceEventType::kLeave);
    EXPECT_EQ(ev.id, "a b");
    EXPECT_EQ(ev.info, "");
    for (const char* bad : {"", "J", "J5", "J5 abc", "Jx alice", "J-1 a", "M5 alice",
                            "J99999999999999999999999 a", "j", "j5", "j0 5 alice", "j5 alice",
                            "jx 5 alice", "j7 9 alice", "l-1 1 a"}) {
        EXPECT_FALSE(redis::parsePresenceLive(bad, "g/a", &ev, &why)) << bad;
    }
    // numbered (the presence log's form)
    uint64_t seq = 0;
    ASSERT_TRUE(redis::parsePresenceLive("j1700000000000001 5 alice{}", "g/a", &ev, &why, &seq));
    EXPECT_EQ(seq, 1700000000000001u);
    EXPECT_EQ(ev.type, PresenceEventType::kJoin);
    EXPECT_EQ(ev.id, "alice");
    EXPECT_EQ(ev.info, "{}");
    ASSERT_TRUE(redis::parsePresenceLive("l42 3 a b", "g/a", &ev, &why, &seq));
    EXPECT_EQ(seq, 42u);
    EXPECT_EQ(ev.type, PresenceEventType::kLeave);
    EXPECT_EQ(ev.id, "a b");
    ASSERT_TRUE(redis::parsePresenceLive("J5 alice", "g/a", &ev, &why, &seq));
    EXPECT_EQ(seq, 0u);
}

TEST(RedisPresenceParse, StatsListAndUser) {
    Tree t;
    std::string why;
    PresenceStats st;
    ASSERT_TRUE(redis::parsePresenceStats(
        eventsReply(t, {}, {t.integer(2), t.integer(5), t.integer(1)}), &st, &why));
    EXPECT_TRUE(st.found);
    EXPECT_EQ(st.members, 2u);
    EXPECT_EQ(st.connections, 5u);
    EXPECT_EQ(st.anonymous, 1u);
    EXPECT_FALSE(redis::parsePresenceStats(
        eventsReply(t, {}, {t.integer(-2), t.integer(5), t.integer(1)}), &st, &why));

    PresencePage page;
    ASSERT_TRUE(redis::parsePresenceList(
        eventsReply(t, {},
                    {t.integer(3), t.integer(4), t.integer(0), t.integer(1), t.str("alice"),
                     t.str("7"), t.str("2:3:1700000000123:1"), t.str("{\"n\":1}"), t.str("bob"),
                     t.str("9"), t.str("1:0:1700000001000:0"), t.str("")}),
        &page, &why))
        << why;
    ASSERT_EQ(page.members.size(), 2u);
    EXPECT_EQ(page.members[0].id, "alice");
    EXPECT_EQ(page.members[0].connections, 3u);
    EXPECT_EQ(page.members[0].joinedAt, 1700000000123);
    EXPECT_FALSE(page.members[0].leaving);
    EXPECT_EQ(page.members[0].info, "{\"n\":1}");
    EXPECT_TRUE(page.members[1].leaving);  // in its leave delay everywhere
    EXPECT_EQ(page.nextCursor, "r9");
    EXPECT_EQ(page.stats.members, 3u);

    PresencePage last;
    ASSERT_TRUE(redis::parsePresenceList(
        eventsReply(t, {}, {t.integer(1), t.integer(1), t.integer(0), t.integer(0),
                            t.str("carol"), t.str("3"), t.str(""), t.str("")}),
        &last, &why));
    EXPECT_EQ(last.nextCursor, "");  // nothing after it
    EXPECT_FALSE(redis::parsePresenceList(
        eventsReply(t, {}, {t.integer(1), t.integer(1), t.integer(0), t.integer(0),
                            t.str("carol"), t.str("x"), t.str(""), t.str("")}),
        &last, &why));
    EXPECT_FALSE(redis::parsePresenceList(
        eventsReply(t, {}, {t.integer(1), t.integer(1), t.integer(0), t.integer(0),
                            t.str("carol")}),
        &last, &why));

    PresenceUserState u;
    ASSERT_TRUE(redis::parsePresenceUser(
        t.array({t.str("1700000000500"), t.str("default/a"), t.str("default/b")}), &u, &why));
    EXPECT_TRUE(u.online);
    EXPECT_EQ(u.onlineSince, 1700000000500);
    EXPECT_EQ(u.channels, (std::vector<std::string>{"default/a", "default/b"}));
    PresenceUserState off;
    ASSERT_TRUE(redis::parsePresenceUser(t.array({t.str("")}), &off, &why));
    EXPECT_FALSE(off.online);
    EXPECT_FALSE(redis::parsePresenceUser(t.array({t.integer(1)}), &off, &why));
}

TEST(RedisPresenceParse, DigestIsTheScriptsOne) {
    // redis-cli eval "return tonumber(string.sub(redis.sha1hex('a:1'),1,8),16)" 0
    EXPECT_EQ(redis::presenceDigest({{"a", "", 1, 0}}), 3733569455u);
    // order does not matter; a member twice cancels out
    PresenceSnapshotMember a{"alice", "", 2, 0};
    PresenceSnapshotMember b{"bob", "{}", 0, 1};
    EXPECT_EQ(redis::presenceDigest({a, b}), redis::presenceDigest({b, a}));
    EXPECT_EQ(redis::presenceDigest({a, b, b}), redis::presenceDigest({a}));
    EXPECT_EQ(redis::presenceDigest({}), 0u);
    PresenceSnapshotMember a3{"alice", "", 3, 0};
    EXPECT_NE(redis::presenceDigest({a}), redis::presenceDigest({a3}));
}

TEST(RedisPresenceParse, CursorsAndKeys) {
    uint64_t seq = 0;
    EXPECT_TRUE(redis::parsePresenceListCursor(redis::presenceListCursor(42), &seq));
    EXPECT_EQ(seq, 42u);
    for (const char* bad : {"", "r", "42", "r-1", "rx", "r1.2", "r123456789012345678901234",
                            "1.00000000000000ff"}) {
        EXPECT_FALSE(redis::parsePresenceListCursor(bad, &seq)) << bad;
    }
    EXPECT_EQ(redis::userKey("a}b%c"), "{user:a%7Db%25c}");
    EXPECT_EQ(redis::instanceChannelsKey("i1"), "{pubsub:presence:i1}:channels");
    EXPECT_EQ(redis::instancesKey(), "{pubsub:presence}:instances");
    // every presence script is a different script
    EXPECT_NE(redis::presenceUpdateScript().sha, redis::presenceReapScript().sha);
    EXPECT_NE(redis::presenceStatsScript().sha, redis::presenceListScript().sha);
}

// ---------------------------------------------------------------- RedisStore

TEST_F(RedisStorePresence, DeltaSendsThisInstancePartAndRegistersTheChannel) {
    store.presenceDelta("inst1", memberDelta("alice", 1, 7), 15000);
    store.presenceFlush();
    Link::Cmd up = link.take(redis::presenceUpdateScript().sha);
    EXPECT_EQ(up.args[3], "{channel:g/a}");
    EXPECT_EQ(std::vector<std::string>(up.args.begin() + 4, up.args.end()),
              (std::vector<std::string>{"inst1", "d", "7", "15000", "1", "0", "", "alice", "1",
                                        "{\"n\":1}", "257", "7"}));
    // the channel is registered on the next tick, with others of that second
    EXPECT_EQ(link.count(redis::presenceChannelsScript().sha), 0u);
    PresenceDelta other = memberDelta("bob", 1, 8);
    other.channel = "g/b";
    store.presenceDelta("inst1", other, 15000);
    store.presenceFlush();
    link.take(redis::presenceUpdateScript().sha);
    store.tick();
    Link::Cmd chans = link.take(redis::presenceChannelsScript().sha);
    EXPECT_EQ(chans.args[3], "{pubsub:presence:inst1}:channels");
    EXPECT_EQ(std::vector<std::string>(chans.args.begin() + 4, chans.args.end()),
              (std::vector<std::string>{"120000", "add", "g/a", "g/b"}));
    store.tick();
    EXPECT_EQ(link.count(redis::presenceChannelsScript().sha), 0u) << "once";

    // a second connection of the same member: no new registration
    store.presenceDelta("inst1", memberDelta("alice", 2, 8), 15000);
    store.presenceFlush();
    store.tick();
    EXPECT_EQ(link.count(redis::presenceChannelsScript().sha), 0u);

    // an anonymous connection: counts only
    PresenceDelta anon;
    anon.channel = "g/a";
    anon.redis = 1;
    anon.version = 9;
    anon.connections = 3;
    anon.anonymous = 1;
    store.presenceDelta("inst1", anon, 15000);
    store.presenceFlush();
    link.take(redis::presenceUpdateScript().sha);
    Link::Cmd a = link.take(redis::presenceUpdateScript().sha);
    EXPECT_EQ(a.args.size(), 11u);
    EXPECT_EQ(a.args[9], "1");

    link.up = false;
    store.presenceDelta("inst1", memberDelta("bob", 1, 10), 15000);
    store.presenceFlush();
    EXPECT_TRUE(link.cmds.empty()) << "nothing is queued while Redis is away";
}

TEST_F(RedisStorePresence, DeltasOfOneTurnGoTogetherPerChannel) {
    store.presenceDelta("inst1", memberDelta("alice", 1, 11), 15000);
    PresenceDelta anon;  // counts only, between two members' changes
    anon.channel = "g/a";
    anon.redis = 1;
    anon.version = 12;
    anon.connections = 2;
    anon.anonymous = 1;
    store.presenceDelta("inst1", anon, 15000);
    PresenceDelta bob = memberDelta("bob", 1, 13);
    bob.connections = 3;
    bob.anonymous = 1;
    store.presenceDelta("inst1", bob, 15000);
    PresenceDelta other = memberDelta("carol", 1, 14);
    other.channel = "g/b";
    store.presenceDelta("inst1", other, 15000);
    EXPECT_TRUE(link.cmds.empty()) << "nothing before the flush";
    EXPECT_TRUE(store.presenceFlush());
    EXPECT_FALSE(store.presenceFlush()) << "nothing left";
    ASSERT_EQ(link.count(redis::presenceUpdateScript().sha), 2u);
    Link::Cmd x = link.take(redis::presenceUpdateScript().sha);
    Link::Cmd y = link.take(redis::presenceUpdateScript().sha);
    Link::Cmd& a = x.args[3] == "{channel:g/a}" ? x : y;
    // the newest version and counts, then each member's change with its own
    EXPECT_EQ(std::vector<std::string>(a.args.begin() + 4, a.args.end()),
              (std::vector<std::string>{"inst1", "d", "13", "15000", "3", "1", "", "alice", "1",
                                        "{\"n\":1}", "257", "11", "bob", "1", "{\"n\":1}",
                                        "257", "13"}));
}

TEST_F(RedisStorePresence, HookHearsOnlineJoinLeaveOfflineInOrderOnce) {
    store.presenceDelta("inst1", memberDelta("alice", 1, 1), 15000);
    store.presenceFlush();
    link.take(redis::presenceUpdateScript().sha)
        .cb(eventsReply(t, {{"J", "alice", "{}", "257"}}));
    EXPECT_TRUE(hooks.empty()) << "join waits for the user's online state";
    Link::Cmd user = link.take(redis::presenceUserScript().sha);
    EXPECT_EQ(user.args[3], "{user:alice}");
    EXPECT_EQ(user.args[4], "+");
    EXPECT_EQ(user.args[5], "g/a");
    user.cb(t.integer(1));
    EXPECT_EQ(hooks, (std::vector<std::string>{"online  alice", "join g/a alice"}));
    hooks.clear();

    store.presenceDelta("inst1", memberDelta("alice", -1, 2), 15000);
    store.presenceFlush();
    link.take(redis::presenceUpdateScript().sha)
        .cb(eventsReply(t, {{"L", "alice", "{}", "257"}}));
    EXPECT_EQ(hooks, (std::vector<std::string>{"leave g/a alice"}));
    Link::Cmd gone = link.take(redis::presenceUserScript().sha);
    EXPECT_EQ(gone.args[4], "-");
    gone.cb(t.integer(1));
    EXPECT_EQ(hooks, (std::vector<std::string>{"leave g/a alice", "offline  alice"}));
    hooks.clear();

    // still in another channel: no offline; a lost reply: the join still goes out
    store.presenceDelta("inst1", memberDelta("bob", 1, 3), 15000);
    store.presenceFlush();
    link.take(redis::presenceUpdateScript().sha).cb(eventsReply(t, {{"J", "bob", "", "256"}}));
    link.take(redis::presenceUserScript().sha).cb(nullptr);
    EXPECT_EQ(hooks, (std::vector<std::string>{"join g/a bob"}));
    EXPECT_EQ(store.stats().presenceErrors, 0u + 1u);
}

TEST_F(RedisStorePresence, LiveJoinAndLeaveReachTheChannelsSubscribers) {
    Watcher w;
    attachWatcher(w, t.snapshot("0:0", {}));

    store.onMessage("{channel:g/a}:ps", "J5 alice{\"n\":1}");
    store.onMessage("{channel:g/a}:ps", "L5 alice");
    store.onMessage("{channel:g/a}:ps", "J99 truncated");  // malformed: dropped
    store.onMessage("{channel:g/b}:ps", "J3 bob");        // another channel
    EXPECT_EQ(w.events, (std::vector<std::string>{"join g/a alice {\"n\":1}", "leave g/a alice "}));
    EXPECT_TRUE(hooks.empty()) << "live events are for subscribers, hooks come from scripts";
    store.unsubscribe(&w);
}

namespace {

// A fetch reply with the presence log: its newest number and the events.
redisReply* snapshotWithLog(Tree& t, long long seq, std::vector<std::string> log) {
    std::vector<redisReply*> plog{t.integer(seq)};
    for (auto& e : log) {
        plog.push_back(t.str(e));
    }
    return t.array({t.integer(1), t.str("0:0"), t.integer(0), t.integer(0), t.array(plog)});
}

}  // namespace

// Joins and leaves made while this worker's SUBSCRIBE was on its way come
// from the log once it is confirmed; live ones that arrive meanwhile wait,
// and none is given twice.
TEST_F(RedisStorePresence, JoinsDuringTheSubscribeComeFromTheLogOnce) {
    Watcher w;
    attachWatcher(w, snapshotWithLog(t, 100, {}));

    // confirmed: the fetch asks for the log after 100
    store.onSubscribed("{channel:g/a}:ps");
    Link::Cmd f = link.take(redis::fetchScript().sha);
    ASSERT_GE(f.args.size(), 6u);
    EXPECT_EQ(f.args[5], "100");
    // live events before the fetch is answered wait (102 is also in the log)
    store.onMessage("{channel:g/a}:ps", "j102 3 bob");
    store.onMessage("{channel:g/a}:ps", "j103 5 carol");
    EXPECT_TRUE(w.events.empty());
    f.cb(snapshotWithLog(t, 102, {"j101 5 alice{}", "j102 3 bob"}));
    EXPECT_EQ(w.events, (std::vector<std::string>{"join g/a alice {}", "join g/a bob ",
                                                  "join g/a carol "}));
    // then live, once
    store.onMessage("{channel:g/a}:ps", "j103 5 carol");
    store.onMessage("{channel:g/a}:ps", "l104 3 bob");
    EXPECT_EQ(w.events.size(), 4u);
    EXPECT_EQ(w.events.back(), "leave g/a bob ");

    // the link goes down and comes back: the log after 104 is read again
    link.up = false;
    store.onDown();
    link.up = true;
    store.onReady();
    store.onSubscribed("{channel:g/a}:ps");
    Link::Cmd g = link.take(redis::fetchScript().sha);
    ASSERT_GE(g.args.size(), 6u);
    EXPECT_EQ(g.args[5], "104");
    g.cb(snapshotWithLog(t, 105, {"l104 3 bob", "l105 5 alice"}));
    EXPECT_EQ(w.events.size(), 5u);
    EXPECT_EQ(w.events.back(), "leave g/a alice ");
    store.unsubscribe(&w);
}

TEST_F(RedisStorePresence, RefreshSendsSnapshotsBeatAndSweepsDeadInstances) {
    PresenceChannelSnapshot s;
    s.channel = "g/a";
    s.redis = 1;
    s.version = 12;
    s.connections = 3;
    s.anonymous = 1;
    s.members.push_back({"alice", "{}", 2, 1});
    s.members.push_back({"bob", "", 0, 0});
    store.presenceRefresh("inst1", {s}, 15000, 7500);

    // a beat with the part's digest first; the whole part when Redis' differs
    Link::Cmd part = link.take(redis::presenceUpdateScript().sha);
    std::string digest = std::to_string(redis::presenceDigest(s.members));
    EXPECT_EQ(std::vector<std::string>(part.args.begin() + 4, part.args.end()),
              (std::vector<std::string>{"inst1", "b", "12", "15000", "3", "1", "", digest}));
    part.cb(eventsReply(t, {}, {t.integer(0)}));
    EXPECT_EQ(link.count(redis::presenceUpdateScript().sha), 0u) << "same digest: nothing more";
    store.presenceRefresh("inst1", {s}, 15000, 7500);
    link.take(redis::presenceUpdateScript().sha).cb(eventsReply(t, {}, {t.integer(1)}));
    Link::Cmd snap = link.take(redis::presenceUpdateScript().sha);
    EXPECT_EQ(std::vector<std::string>(snap.args.begin() + 4, snap.args.end()),
              (std::vector<std::string>{"inst1", "s", "12", "15000", "3", "1", "", "alice", "2",
                                        "{}", "1", "bob", "0", "", "0"}));
    EXPECT_EQ(store.stats().presenceResyncs, 1u);
    link.take(redis::presenceChannelsScript().sha);
    link.take(redis::presenceBeatScript().sha);
    Link::Cmd chans = link.take(redis::presenceChannelsScript().sha);
    EXPECT_EQ(chans.args[5], "replace");
    EXPECT_EQ(chans.args[6], "g/a");
    Link::Cmd beat = link.take(redis::presenceBeatScript().sha);
    EXPECT_EQ(beat.args[3], "{pubsub:presence}:instances");
    EXPECT_EQ(std::vector<std::string>(beat.args.begin() + 4, beat.args.end()),
              (std::vector<std::string>{"inst1", "15000", "7500", "16"}));

    // two dead instances besides this one (which the beat itself renews)
    beat.cb(t.array({t.str("dead1"), t.str("inst1"), t.str("dead2")}));
    Link::Cmd m1 = link.take("SMEMBERS");
    EXPECT_EQ(m1.args[1], "{pubsub:presence:dead1}:channels");
    Link::Cmd m2 = link.take("SMEMBERS");
    EXPECT_EQ(m2.args[1], "{pubsub:presence:dead2}:channels");
    EXPECT_EQ(link.count("SMEMBERS"), 0u);

    m1.cb(t.array({t.str("g/a"), t.str("g/b")}));
    Link::Cmd r1 = link.take(redis::presenceReapScript().sha);
    Link::Cmd r2 = link.take(redis::presenceReapScript().sha);
    EXPECT_EQ(r1.args[3], "{channel:g/a}");
    EXPECT_EQ(r2.args[3], "{channel:g/b}");
    r1.cb(eventsReply(t, {{"L", "carol", "", "256"}}));
    EXPECT_EQ(hooks, (std::vector<std::string>{"leave g/a carol"}));
    EXPECT_EQ(link.count("DEL"), 0u) << "forgotten only when every channel is swept";
    r2.cb(eventsReply(t, {}));
    Link::Cmd del = link.take("DEL");
    EXPECT_EQ(del.args[1], "{pubsub:presence:dead1}:channels");
    Link::Cmd zrem = link.take("ZREM");
    EXPECT_EQ(zrem.args[2], "dead1");

    // a failed sweep keeps the instance for the next beat
    m2.cb(t.array({t.str("g/c")}));
    link.take(redis::presenceReapScript().sha).cb(nullptr);
    EXPECT_EQ(link.count("DEL"), 0u);
    EXPECT_EQ(link.count("ZREM"), 0u);
    EXPECT_EQ(store.stats().presenceSwept, 3u);
}

TEST_F(RedisStorePresence, QueriesAnswerFromRedisAndRefuseBadInput) {
    StoreResult res = StoreResult::kError;
    PresencePage page;
    store.presencePage("g/a", 10, "bogus", [&](StoreResult r, PresencePage&& p) {
        res = r;
        page = std::move(p);
    });
    EXPECT_EQ(res, StoreResult::kNotFound) << "a cursor this API never gave";
    EXPECT_TRUE(link.cmds.empty());

    store.presencePage("g/a", 10, "r5", [&](StoreResult r, PresencePage&& p) {
        res = r;
        page = std::move(p);
    });
    Link::Cmd list = link.take(redis::presenceListScript().sha);
    EXPECT_EQ(std::vector<std::string>(list.args.begin() + 4, list.args.end()),
              (std::vector<std::string>{"", "5", "10"}));
    list.cb(eventsReply(t, {}, {t.integer(1), t.integer(1), t.integer(0), t.integer(0),
                                t.str("alice"), t.str("6"), t.str("1:1:1000:0"), t.str("")}));
    EXPECT_EQ(res, StoreResult::kOk);
    ASSERT_EQ(page.members.size(), 1u);

    PresenceStats st;
    store.presenceStats("g/a", [&](StoreResult r, const PresenceStats& s) {
        res = r;
        st = s;
    });
    link.take(redis::presenceStatsScript().sha).cb(t.error("ERR script"));
    EXPECT_EQ(res, StoreResult::kError);
    store.presenceStats("g/a", [&](StoreResult r, const PresenceStats& s) {
        res = r;
        st = s;
    });
    link.take(redis::presenceStatsScript().sha).cb(nullptr);
    EXPECT_EQ(res, StoreResult::kUnavailable);

    PresenceUserState u;
    store.presenceUser("alice", [&](StoreResult r, PresenceUserState&& s) {
        res = r;
        u = std::move(s);
    });
    Link::Cmd get = link.take(redis::presenceUserGetScript().sha);
    EXPECT_EQ(get.args[3], "{user:alice}");
    res = StoreResult::kError;
    get.cb(t.array({t.str("1000"), t.str("default/a"), t.str("default/b")}));
    EXPECT_EQ(res, StoreResult::kError) << "each channel is checked first";
    // still a member of a; b was left behind by an instance that died
    Link::Cmd za = link.take("ZSCORE");
    EXPECT_EQ(za.args, (std::vector<std::string>{"ZSCORE", "{channel:default/a}:pz", "alice"}));
    Link::Cmd zb = link.take("ZSCORE");
    zb.cb(t.nil());
    za.cb(t.str("7"));
    EXPECT_EQ(res, StoreResult::kOk);
    EXPECT_TRUE(u.online);
    EXPECT_EQ(u.onlineSince, 1000);
    EXPECT_EQ(u.channels, (std::vector<std::string>{"default/a"}));

    // in none of them any more: offline; a check without an answer: 503
    store.presenceUser("alice", [&](StoreResult r, PresenceUserState&& s) {
        res = r;
        u = std::move(s);
    });
    link.take(redis::presenceUserGetScript().sha).cb(t.array({t.str("1000"), t.str("default/b")}));
    link.take("ZSCORE").cb(t.nil());
    EXPECT_EQ(res, StoreResult::kOk);
    EXPECT_FALSE(u.online);
    EXPECT_TRUE(u.channels.empty());
    store.presenceUser("alice", [&](StoreResult r, PresenceUserState&&) { res = r; });
    link.take(redis::presenceUserGetScript().sha).cb(t.array({t.str("1000"), t.str("default/b")}));
    link.take("ZSCORE").cb(nullptr);
    EXPECT_EQ(res, StoreResult::kUnavailable);

    link.up = false;
    store.presenceUser("alice", [&](StoreResult r, PresenceUserState&&) { res = r; });
    EXPECT_EQ(res, StoreResult::kUnavailable);
    store.presencePage("g/a", 10, "", [&](StoreResult r, PresencePage&&) { res = r; });
    EXPECT_EQ(res, StoreResult::kUnavailable);
}
