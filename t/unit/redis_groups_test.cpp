// Group limits in Redis locations: the group protocol's helpers and
// RedisStore's commands and answers over a fake link.
#include "pubsub/redis/redis_groups.h"

#include <gtest/gtest.h>

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "pubsub/redis/redis_store.h"
#include "redis_fake_link.h"
#include "redis_tree.h"

using namespace pubsub;

namespace {

using pubsub_test::Tree;

using pubsub_test::FakeLink;

struct Sub : Subscriber {
    void deliver(const MessagePtr&) override {}
    void gap() override {}
    void channelDeleted() override {}
};

const std::string& checkSha() {
    return redis::groupCheckScript().sha;
}
const std::string& subsSha() {
    return redis::groupSubsScript().sha;
}

redisReply* verdict(Tree& t, int s, int c, int m) {
    return t.array({t.integer(s), t.integer(c), t.integer(m)});
}

redisReply* notFound(Tree& t) {
    return t.array({t.integer(0), t.str("0:0"), t.integer(0), t.integer(0)});
}

redisReply* published(Tree& t, const char* sizes = nullptr) {
    std::vector<redisReply*> v = {t.str("10:1"), t.str("10:0"), t.integer(1), t.integer(0),
                                  t.integer(-1)};
    if (sizes != nullptr) {
        v.push_back(t.str(sizes));
    }
    return t.array(v);
}

PublishInput input(const GroupLimits& limits) {
    PublishInput in;
    in.data = "hello";
    in.contentType = "text/plain";
    in.limits = limits;
    return in;
}

// prepare + subscribe one key; returns the reply
SubscribeReply subscribeWith(RedisStore& store, RedisStore::PreparedPtr prepared, Sub& sub,
                             const std::string& key) {
    store.usePrepared(prepared.get());
    SubscribeRequest req;
    req.key = key;
    SubscribeReply reply;
    store.subscribe(&sub, req, [&](SubscribeReply&& r) { reply = std::move(r); });
    store.usePrepared(nullptr);
    return reply;
}

}  // namespace

TEST(RedisGroups, KeysAndTags) {
    std::string_view g, id;
    ASSERT_TRUE(redis::splitGroupKey("grp/a/b", &g, &id));
    EXPECT_EQ(g, "grp");
    EXPECT_EQ(id, "a/b");
    EXPECT_FALSE(redis::splitGroupKey("nogroup", &g, &id));
    EXPECT_FALSE(redis::splitGroupKey("/x", &g, &id));
    EXPECT_EQ(redis::groupTag("g"), "{group:g}");
    EXPECT_EQ(redis::groupTag("a}b%c"), "{group:a%7Db%25c}");
    // distinct scripts with their own SHA1
    EXPECT_NE(checkSha(), subsSha());
    EXPECT_NE(redis::groupUpdateScript().sha, redis::groupDeleteScript().sha);
    EXPECT_EQ(redis::groupCheckScript().sha, redis::sha1Hex(redis::groupCheckScript().text));
}

TEST(RedisGroups, ParsesReplies) {
    Tree t;
    redis::GroupVerdict v;
    std::string why;
    ASSERT_TRUE(redis::parseGroupVerdict(verdict(t, 0, 1, 0), &v, &why));
    EXPECT_FALSE(v.subscribers);
    EXPECT_TRUE(v.channels);
    EXPECT_FALSE(v.memory);
    EXPECT_FALSE(redis::parseGroupVerdict(nullptr, &v, &why));
    EXPECT_FALSE(redis::parseGroupVerdict(t.error("ERR boom"), &v, &why));
    EXPECT_EQ(why, "Redis error: ERR boom");
    EXPECT_FALSE(redis::parseGroupVerdict(t.array({t.integer(0), t.integer(0)}), &v, &why));
    EXPECT_FALSE(
        redis::parseGroupVerdict(t.array({t.integer(0), t.str("1"), t.integer(0)}), &v, &why));
    EXPECT_FALSE(redis::parseGroupVerdict(t.integer(1), &v, &why));

    std::string sizes;
    ASSERT_TRUE(redis::publishedSizes(published(t, "100:5,0:7"), &sizes));
    EXPECT_EQ(sizes, "100:5,0:7");
    ASSERT_TRUE(redis::publishedSizes(published(t, ""), &sizes));
    EXPECT_EQ(sizes, "");
    EXPECT_FALSE(redis::publishedSizes(published(t), &sizes));
    for (const char* bad : {"1", "1:", ":1", "1:2,", "1:2:3", "1:2,,3:4", "a:1", "1:2 "}) {
        EXPECT_FALSE(redis::publishedSizes(published(t, bad), &sizes)) << bad;
    }
    EXPECT_FALSE(redis::publishedSizes(nullptr, &sizes));

    auto del = [&](long long flag) {
        return t.array({t.integer(1), t.str("10:1"), t.integer(0), t.integer(0), t.integer(-1),
                        t.integer(0), t.integer(flag)});
    };
    EXPECT_TRUE(redis::deletedGroupFlag(del(1)));
    EXPECT_FALSE(redis::deletedGroupFlag(del(0)));
    EXPECT_FALSE(redis::deletedGroupFlag(t.array({t.integer(0)})));
    EXPECT_FALSE(redis::deletedGroupFlag(nullptr));
}

TEST(RedisGroups, NoLimitsNoExtraCommand) {
    FakeLink link;
    RedisStore store(&link, "w1");
    Tree t;
    PublishReply reply;
    store.publish("g/a", input({}), [&](PublishReply&& r) { reply = std::move(r); });
    ASSERT_EQ(link.cmds.size(), 1u);
    EXPECT_EQ(link.cmds[0].args[1], redis::publishScript().sha);
    EXPECT_EQ(link.cmds[0].args.size(), 10u);  // EVALSHA sha 1 key + 6 ARGV: no flags
    link.take(redis::publishScript().sha).cb(published(t));
    EXPECT_EQ(reply.status, StoreResult::kOk);
    EXPECT_TRUE(link.cmds.empty());

    // a subscriber location with a memory limit only: the plain snapshot
    GroupLimits mem;
    mem.maxBytes = 100;
    RedisStore::PreparedPtr p;
    store.prepare(
        {"g/a"}, [&](RedisStore::PreparedPtr x) { p = x; }, mem, false);
    EXPECT_EQ(link.cmds.size(), 1u);
    // a channel limit with existing channels only: nothing to check either
    GroupLimits chans;
    chans.maxChannels = 2;
    store.prepare(
        {"g/a"}, [&](RedisStore::PreparedPtr x) { p = x; }, chans, true);
    EXPECT_EQ(link.cmds.size(), 2u);
    EXPECT_EQ(link.count(checkSha()), 0u);
    // a key without a group is never limited
    store.publish("plain", input(chans), [&](PublishReply&& r) { reply = std::move(r); });
    EXPECT_EQ(link.count(checkSha()), 0u);
    EXPECT_EQ(link.count(redis::publishScript().sha), 1u);
}

TEST(RedisGroups, PublishOverTheChannelLimit) {
    FakeLink link;
    RedisStore store(&link, "w1");
    Tree t;
    GroupLimits lim;
    lim.maxChannels = 2;
    PublishReply reply;
    store.publish("g/new", input(lim), [&](PublishReply&& r) { reply = std::move(r); });
    FakeLink::Cmd c = link.take(checkSha());
    EXPECT_EQ(c.args[3], "{group:g}");
    EXPECT_EQ(std::vector<std::string>(c.args.begin() + 4, c.args.end()),
              (std::vector<std::string>{"new", "2", "0", "w1", "0", "15", "10", "30"}));
    EXPECT_TRUE(link.cmds.empty());  // nothing else before the verdict
    c.cb(verdict(t, 0, 1, 0));
    // the group does not list it: does it exist in Redis?
    FakeLink::Cmd e = link.take("EXISTS");
    EXPECT_EQ(e.args[1], "{channel:g/new}");
    e.cb(t.integer(0));
    EXPECT_EQ(reply.status, StoreResult::kForbidden);
    EXPECT_EQ(reply.reason, "Group limit reached for number of channels.");
    EXPECT_TRUE(link.cmds.empty());

    // it exists (made by a location without limits): published, recorded
    store.publish("g/old", input(lim), [&](PublishReply&& r) { reply = std::move(r); });
    link.take(checkSha()).cb(verdict(t, 0, 1, 0));
    link.take("EXISTS").cb(t.integer(1));
    FakeLink::Cmd p = link.take(redis::publishScript().sha);
    EXPECT_EQ(p.args.back(), "G");
    reply.status = StoreResult::kError;
    p.cb(published(t));
    // the answer waits for the group's record
    EXPECT_EQ(reply.status, StoreResult::kError);
    FakeLink::Cmd u = link.take(redis::groupUpdateScript().sha);
    EXPECT_EQ(u.args[3], "{group:g}");
    EXPECT_EQ(std::vector<std::string>(u.args.begin() + 4, u.args.end()),
              (std::vector<std::string>{"old", "3660", "1", "-"}));
    u.cb(t.integer(1));
    EXPECT_EQ(reply.status, StoreResult::kOk);
    EXPECT_EQ(reply.id.time, 10);

    // the link fails while checking: 503
    store.publish("g/x", input(lim), [&](PublishReply&& r) { reply = std::move(r); });
    link.take(checkSha()).cb(nullptr);
    EXPECT_EQ(reply.status, StoreResult::kUnavailable);
    // a script error: 500 with the reason
    store.publish("g/x", input(lim), [&](PublishReply&& r) { reply = std::move(r); });
    link.take(checkSha()).cb(t.error("ERR bad"));
    EXPECT_EQ(reply.status, StoreResult::kError);
    EXPECT_EQ(reply.reason, "Redis error: ERR bad");
    // down: 503 at once, nothing sent
    link.up = false;
    link.cmds.clear();
    store.publish("g/x", input(lim), [&](PublishReply&& r) { reply = std::move(r); });
    EXPECT_EQ(reply.status, StoreResult::kUnavailable);
    EXPECT_EQ(reply.reason, RedisStore::kUnavailable);
}

TEST(RedisGroups, PublishOverTheMemoryLimit) {
    FakeLink link;
    RedisStore store(&link, "w1");
    Tree t;
    GroupLimits lim;
    lim.maxBytes = 1000;
    PublishReply reply;
    store.publish("g/a", input(lim), [&](PublishReply&& r) { reply = std::move(r); });
    FakeLink::Cmd c = link.take(checkSha());
    // data + content type + event name bytes, buffer length
    EXPECT_EQ(c.args[8], "1000");
    EXPECT_EQ(c.args[9], "15");
    EXPECT_EQ(c.args[10], "10");
    c.cb(verdict(t, 0, 0, 1));
    EXPECT_EQ(reply.status, StoreResult::kForbidden);
    EXPECT_EQ(reply.reason, "Group limit reached for messages memory.");
    EXPECT_TRUE(link.cmds.empty());

    store.publish("g/a", input(lim), [&](PublishReply&& r) { reply = std::move(r); });
    link.take(checkSha()).cb(verdict(t, 0, 0, 0));
    FakeLink::Cmd p = link.take(redis::publishScript().sha);
    EXPECT_EQ(p.args.back(), "GB");
    p.cb(published(t, "4000:15,4001:15"));
    FakeLink::Cmd u = link.take(redis::groupUpdateScript().sha);
    EXPECT_EQ(std::vector<std::string>(u.args.begin() + 4, u.args.end()),
              (std::vector<std::string>{"a", "3660", "0", "4000:15,4001:15"}));
    reply.status = StoreResult::kError;
    u.cb(nullptr);  // the record failed: the message was published all the same
    EXPECT_EQ(reply.status, StoreResult::kOk);

    // a message that is not stored (buffer length 0) takes no memory
    PublishInput in = input(lim);
    in.maxMessages = 0;
    in.ttl = 0;
    store.publish("g/a", in, [&](PublishReply&& r) { reply = std::move(r); });
    c = link.take(checkSha());
    EXPECT_EQ(c.args[9], "0");
    c.cb(verdict(t, 0, 0, 0));
    link.take(redis::publishScript().sha).cb(published(t, ""));
    u = link.take(redis::groupUpdateScript().sha);
    EXPECT_EQ(std::vector<std::string>(u.args.begin() + 4, u.args.end()),
              (std::vector<std::string>{"a", "0", "0", ""}));

    // both limits: a full group's new channel is refused for channels first
    lim.maxChannels = 1;
    store.publish("g/b", input(lim), [&](PublishReply&& r) { reply = std::move(r); });
    link.take(checkSha()).cb(verdict(t, 0, 1, 1));
    link.take("EXISTS").cb(t.integer(0));
    EXPECT_EQ(reply.reason, "Group limit reached for number of channels.");
    store.publish("g/b", input(lim), [&](PublishReply&& r) { reply = std::move(r); });
    link.take(checkSha()).cb(verdict(t, 0, 1, 1));
    link.take("EXISTS").cb(t.integer(1));
    EXPECT_EQ(reply.reason, "Group limit reached for messages memory.");
}

TEST(RedisGroups, SubscribersAreCheckedAndCounted) {
    FakeLink link;
    RedisStore store(&link, "w1");
    Tree t;
    GroupLimits lim;
    lim.maxSubscribers = 2;
    Sub s1, s2;

    // refused: the snapshot and the check go out together
    RedisStore::PreparedPtr p;
    store.prepare(
        {"g/a"}, [&](RedisStore::PreparedPtr x) { p = x; }, lim, false);
    EXPECT_EQ(link.count(redis::fetchScript().sha), 1u);
    FakeLink::Cmd c = link.take(checkSha());
    EXPECT_EQ(std::vector<std::string>(c.args.begin() + 4, c.args.end()),
              (std::vector<std::string>{"a", "0", "2", "w1", "0", "0", "0", "30"}));
    link.take(redis::fetchScript().sha).cb(t.snapshot("10:1", {}));
    EXPECT_FALSE(p);  // waits for the check
    c.cb(verdict(t, 1, 0, 0));
    ASSERT_TRUE(p);
    SubscribeReply r = subscribeWith(store, p, s1, "g/a");
    EXPECT_EQ(r.status, StoreResult::kForbidden);
    EXPECT_EQ(r.reason, "Group limit reached for number of subscribers.");
    EXPECT_FALSE(r.attached);
    // the reservation counted locally meanwhile is given back
    c = link.take(subsSha());
    EXPECT_EQ(c.args[5], "0");
    EXPECT_EQ(link.count(subsSha()), 0u);

    // granted: the attach (in the handler, which runs from `done`) writes
    // this worker's exact count
    p.reset();
    link.cmds.clear();
    store.prepare(
        {"g/a"},
        [&](RedisStore::PreparedPtr x) {
            p = x;
            r = subscribeWith(store, p, s1, "g/a");
        },
        lim, false);
    link.take(checkSha()).cb(verdict(t, 0, 0, 0));
    link.take(redis::fetchScript().sha).cb(t.snapshot("10:1", {}));
    ASSERT_TRUE(p);
    ASSERT_EQ(r.status, StoreResult::kOk) << r.reason;
    EXPECT_TRUE(r.attached);
    c = link.take(subsSha());
    EXPECT_EQ(c.args[3], "{group:g}");
    EXPECT_EQ(std::vector<std::string>(c.args.begin() + 4, c.args.end()),
              (std::vector<std::string>{"w1", "1", "30"}));
    EXPECT_EQ(link.count(subsSha()), 0u);  // once

    // granted but nothing attached (e.g. the handler failed): written back
    p.reset();
    link.cmds.clear();
    store.prepare(
        {"g/b"}, [&](RedisStore::PreparedPtr x) { p = x; }, lim, false);
    link.take(checkSha()).cb(verdict(t, 0, 0, 0));
    link.take(redis::fetchScript().sha).cb(t.snapshot("10:1", {}));
    c = link.take(subsSha());
    EXPECT_EQ(c.args[5], "1");

    // leaving writes the new count at once
    link.cmds.clear();
    store.unsubscribe(&s1);
    c = link.take(subsSha());
    EXPECT_EQ(c.args[5], "0");

    // the refresh rewrites it every 10 ticks
    link.cmds.clear();
    for (int i = 0; i < RedisStore::kCountRefreshTicks; i++) {
        store.tick();
    }
    EXPECT_EQ(link.count(subsSha()), 1u);

    // no answer: the request fails with 503
    p.reset();
    link.cmds.clear();
    store.prepare(
        {"g/a"}, [&](RedisStore::PreparedPtr x) { p = x; }, lim, false);
    link.take(checkSha()).cb(nullptr);
    link.take(redis::fetchScript().sha).cb(t.snapshot("10:1", {}));
    r = subscribeWith(store, p, s2, "g/a");
    EXPECT_EQ(r.status, StoreResult::kUnavailable);
}

TEST(RedisGroups, SubscribeMayNotCreateOverTheChannelLimit) {
    FakeLink link;
    RedisStore store(&link, "w1");
    Tree t;
    GroupLimits lim;
    lim.maxChannels = 1;
    Sub s1, s2;
    RedisStore::PreparedPtr p;
    store.prepare(
        {"g/a", "g/b", "x"}, [&](RedisStore::PreparedPtr x) { p = x; }, lim, false);
    EXPECT_EQ(link.count(checkSha()), 2u);  // not for "x", which has no group
    link.take(checkSha()).cb(verdict(t, 0, 1, 0));
    link.take(checkSha()).cb(verdict(t, 0, 1, 0));
    link.take(redis::fetchScript().sha).cb(notFound(t));
    link.take(redis::fetchScript().sha).cb(t.snapshot("10:1", {}));
    link.take(redis::fetchScript().sha).cb(notFound(t));
    ASSERT_TRUE(p);
    SubscribeReply r = subscribeWith(store, p, s1, "g/a");
    EXPECT_EQ(r.status, StoreResult::kForbidden);
    EXPECT_EQ(r.reason, "Group limit reached for number of channels.");
    r = subscribeWith(store, p, s2, "g/b");  // exists in Redis
    EXPECT_EQ(r.status, StoreResult::kOk) << r.reason;
    store.unsubscribe(&s2);

    // the refresh keeps the group's record of channels with subscribers
    r = subscribeWith(store, p, s2, "g/b");
    link.cmds.clear();
    for (int i = 0; i < RedisStore::kCountRefreshTicks; i++) {
        store.tick();
    }
    FakeLink::Cmd c = link.take(subsSha());
    EXPECT_EQ(std::vector<std::string>(c.args.begin() + 4, c.args.end()),
              (std::vector<std::string>{"w1", "1", "30", "b"}));
}

TEST(RedisGroups, DeleteForgetsTheChannel) {
    FakeLink link;
    RedisStore store(&link, "w1");
    Tree t;
    auto delReply = [&](long long flag) {
        return t.array({t.integer(1), t.str("10:1"), t.integer(0), t.integer(0), t.integer(-1),
                        t.integer(0), t.integer(flag)});
    };
    StoreResult got = StoreResult::kError;
    auto cb = [&](StoreResult s, const ChannelInfo&) { got = s; };
    // never limited, in a group this worker does not know: nothing more
    store.remove("g/a", cb);
    link.take(redis::deleteScript().sha).cb(delReply(0));
    EXPECT_EQ(got, StoreResult::kOk);
    EXPECT_TRUE(link.cmds.empty());
    // published with limits (by any instance): the group forgets it before
    // the answer
    got = StoreResult::kError;
    store.remove("g/a", cb);
    link.take(redis::deleteScript().sha).cb(delReply(1));
    EXPECT_EQ(got, StoreResult::kError);
    FakeLink::Cmd c = link.take(redis::groupDeleteScript().sha);
    EXPECT_EQ(c.args[3], "{group:g}");
    EXPECT_EQ(c.args[4], "a");
    c.cb(t.integer(1));
    EXPECT_EQ(got, StoreResult::kOk);
    // not found: nothing
    store.remove("g/a", cb);
    link.take(redis::deleteScript().sha).cb(t.array({t.integer(0)}));
    EXPECT_EQ(got, StoreResult::kNotFound);
    EXPECT_TRUE(link.cmds.empty());
}

namespace {

// Indexed groups list the channels their instances have subscribers of;
// occupied() reads each listed channel's count.
TEST(RedisGroups, OccupiedChannels) {
    FakeLink link;
    RedisStore store(&link, "w1");
    Tree t;
    store.indexGroups("pusher:");
    Sub s1, s2;
    RedisStore::PreparedPtr p;
    store.prepare({"pusher:1/a", "other/b"}, [&](RedisStore::PreparedPtr x) { p = x; });
    link.take(redis::fetchScript().sha)
        .cb(t.array({t.integer(0), t.str("0:0"), t.integer(0), t.integer(0)}));
    link.take(redis::fetchScript().sha)
        .cb(t.array({t.integer(0), t.str("0:0"), t.integer(0), t.integer(0)}));
    ASSERT_TRUE(p);
    store.usePrepared(p.get());
    SubscribeRequest req;
    req.key = "pusher:1/a";
    store.subscribe(&s1, req, [](SubscribeReply&&) {});
    req.key = "other/b";
    store.subscribe(&s2, req, [](SubscribeReply&&) {});
    store.usePrepared(nullptr);
    // the indexed group's channel is listed with its count, the other not
    EXPECT_EQ(link.count(redis::subsScript().sha), 2u);
    FakeLink::Cmd occ = link.take(redis::groupOccupiedScript().sha);
    EXPECT_EQ(occ.args[3], "{group:pusher:1}");
    EXPECT_EQ(occ.args[4], "a");
    EXPECT_EQ(link.count(redis::groupOccupiedScript().sha), 0u);

    StoreResult got = StoreResult::kError;
    OccupiedList list;
    store.occupied("pusher:1", "", 5, [&](StoreResult r, OccupiedList&& l) {
        got = r;
        list = std::move(l);
    });
    FakeLink::Cmd ls = link.take(redis::groupListScript().sha);
    EXPECT_EQ(ls.args[4], "");
    EXPECT_EQ(ls.args[5], "5");
    ls.cb(t.array({t.integer(1), t.str("a"), t.str("gone")}));
    EXPECT_EQ(got, StoreResult::kError);
    auto info = [&](long long subs) {
        return t.array({t.integer(1), t.str("10:0"), t.integer(0), t.integer(subs), t.integer(-1),
                        t.integer(0)});
    };
    FakeLink::Cmd i1 = link.take(redis::infoScript().sha);
    EXPECT_EQ(i1.args[3], redis::channelTag("pusher:1/a"));
    i1.cb(info(2));
    link.take(redis::infoScript().sha).cb(info(0));
    EXPECT_EQ(got, StoreResult::kOk);
    ASSERT_EQ(list.channels.size(), 1u);
    EXPECT_EQ(list.channels[0].id, "a");
    EXPECT_EQ(list.channels[0].subscribers, 2u);
    EXPECT_TRUE(list.truncated);

    // no reply: unavailable
    store.occupied("pusher:1", "x", 5, [&](StoreResult r, OccupiedList&&) { got = r; });
    link.take(redis::groupListScript().sha).cb(nullptr);
    EXPECT_EQ(got, StoreResult::kUnavailable);

    std::vector<std::string> ids;
    bool more = false;
    std::string why;
    EXPECT_FALSE(redis::parseGroupList(t.array({t.str("x")}), &ids, &more, &why));
    EXPECT_TRUE(redis::parseGroupList(t.array({t.integer(0)}), &ids, &more, &why));
    EXPECT_TRUE(ids.empty());
    store.unsubscribe(&s1);
    store.unsubscribe(&s2);
}

}  // namespace
