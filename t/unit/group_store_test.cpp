// Store::groupInfo / setGroupLimits / removeGroup in both engines, the
// precedence of a location's own limits over the group's stored ones, the
// group info formats, and pubsub_subscriber_info's question through the
// Hub (Hub::infoRequest, the Redis "I" live message, Subscription's host).
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "core_fakes.h"
#include "pubsub/codec/format.h"
#include "pubsub/memory/memory_store.h"
#include "pubsub/redis/redis_groups.h"
#include "pubsub/redis/redis_store.h"
#include "pubsub/subscription.h"
#include "redis_fake_link.h"
#include "redis_tree.h"

using namespace pubsub;

namespace {

using pubsub_test::FakeLink;
using pubsub_test::RecordingSubscriber;
using pubsub_test::Tree;
using pubsub_test::Worker;
using pubsub_test::Zone;

class GroupMemoryTest : public pubsub_test::TwoWorkers {
protected:
    // every group call of the memory engine completes before returning
    static GroupInfo groupInfo(Store& s, std::string_view g) {
        GroupInfo out;
        bool called = false;
        s.groupInfo(g, [&](StoreResult r, const GroupInfo& i) {
            EXPECT_EQ(r, StoreResult::kOk);
            out = i;
            called = true;
        });
        EXPECT_TRUE(called);
        return out;
    }
    static GroupInfo setLimits(Store& s, std::string_view g, const GroupLimitsUpdate& up) {
        GroupInfo out;
        bool called = false;
        s.setGroupLimits(g, up, [&](StoreResult r, const GroupInfo& i) {
            EXPECT_EQ(r, StoreResult::kOk);
            out = i;
            called = true;
        });
        EXPECT_TRUE(called);
        return out;
    }
    PublishReply publish(Worker& w, std::string_view key, const GroupLimits& l,
                         std::string_view data = "hello") {
        PublishInput in;
        in.data = data;
        in.limits = l;
        PublishReply out;
        w.store->publish(key, in, [&](PublishReply&& r) { out = std::move(r); });
        return out;
    }
    static SubscribeRequest req(std::string_view key, const GroupLimits& l = {}) {
        SubscribeRequest r;
        r.key = key;
        r.limits = l;
        return r;
    }
};

TEST_F(GroupMemoryTest, CountsEveryWorkersChannelsSubscribersAndMessages) {
    EXPECT_FALSE(groupInfo(*a_->store, "g").found);
    RecordingSubscriber s1, s2;
    ASSERT_TRUE(a_->subscribe(&s1, req("g/a")).attached);
    ASSERT_TRUE(b_->subscribe(&s2, req("g/b")).attached);
    ASSERT_EQ(a_->publish("g/a", "one").status, StoreResult::kOk);
    ASSERT_EQ(b_->publish("g/c", "two").status, StoreResult::kOk);
    ASSERT_EQ(b_->publish("other/c", "two").status, StoreResult::kOk);
    for (Worker* w : {a_.get(), b_.get()}) {
        GroupInfo i = groupInfo(*w->store, "g");
        EXPECT_TRUE(i.found);
        EXPECT_EQ(i.channels, 3u);
        EXPECT_EQ(i.subscribers, 2u);
        EXPECT_EQ(i.messages, 2u);
        EXPECT_GT(i.bytes, 6u);
    }
    // trimmed messages leave the count
    ASSERT_EQ(a_->publish("g/a", "three", 1).status, StoreResult::kOk);
    EXPECT_EQ(groupInfo(*a_->store, "g").messages, 2u);
    a_->store->unsubscribe(&s1);
    b_->store->unsubscribe(&s2);
    EXPECT_EQ(groupInfo(*a_->store, "g").subscribers, 0u);
}

TEST_F(GroupMemoryTest, StoredLimitsApplyWhereTheOperationHasNone) {
    GroupLimitsUpdate up;
    up.channels = true;
    up.limits.maxChannels = 2;
    GroupInfo set = setLimits(*a_->store, "g", up);
    EXPECT_TRUE(set.found);  // kept for its limits, without channels
    EXPECT_EQ(set.limits.maxChannels, 2u);
    EXPECT_EQ(set.channels, 0u);
    EXPECT_EQ(publish(*a_, "g/a", {}).status, StoreResult::kOk);
    EXPECT_EQ(publish(*b_, "g/b", {}).status, StoreResult::kOk);
    PublishReply over = publish(*a_, "g/c", {});
    EXPECT_EQ(over.status, StoreResult::kForbidden);
    EXPECT_EQ(over.reason, "Group limit reached for number of channels.");
    // a subscriber may not create one either
    RecordingSubscriber s;
    EXPECT_EQ(b_->subscribe(&s, req("g/c")).status, StoreResult::kForbidden);
    // the operation's own limit wins
    GroupLimits own;
    own.maxChannels = 3;
    EXPECT_EQ(publish(*a_, "g/c", own).status, StoreResult::kOk);
    // other groups are not affected
    EXPECT_EQ(publish(*a_, "h/c", {}).status, StoreResult::kOk);

    // subscribers and memory, stored
    GroupLimitsUpdate subs;
    subs.subscribers = true;
    subs.limits.maxSubscribers = 1;
    subs.bytes = true;
    subs.limits.maxBytes = 600;
    setLimits(*b_->store, "g", subs);
    EXPECT_EQ(setLimits(*b_->store, "g", {}).limits.maxChannels, 2u);  // left as it was
    RecordingSubscriber s1, s2;
    EXPECT_TRUE(a_->subscribe(&s1, req("g/a")).attached);
    EXPECT_EQ(b_->subscribe(&s2, req("g/b")).status, StoreResult::kForbidden);
    GroupLimits ownSubs;
    ownSubs.maxSubscribers = 5;
    EXPECT_TRUE(b_->subscribe(&s2, req("g/b", ownSubs)).attached);
    EXPECT_EQ(publish(*a_, "g/a", {}, std::string(600, 'x')).status, StoreResult::kForbidden);
    a_->store->unsubscribe(&s1);
    b_->store->unsubscribe(&s2);

    // 0 removes a stored limit; a group with neither channels nor limits goes
    GroupLimitsUpdate clear;
    clear.channels = clear.subscribers = clear.bytes = true;
    EXPECT_EQ(setLimits(*a_->store, "g", clear).limits.maxChannels, 0u);
    EXPECT_EQ(publish(*a_, "g/d", {}).status, StoreResult::kOk);
    setLimits(*a_->store, "empty", up);
    EXPECT_TRUE(groupInfo(*a_->store, "empty").found);
    setLimits(*a_->store, "empty", clear);
    EXPECT_FALSE(groupInfo(*a_->store, "empty").found);
    // nothing to store for a group that does not exist: nothing made
    setLimits(*a_->store, "never", clear);
    EXPECT_FALSE(groupInfo(*a_->store, "never").found);
}

TEST_F(GroupMemoryTest, RemoveGroupDeletesItsChannelsEverywhere) {
    RecordingSubscriber s1, s2, other;
    ASSERT_TRUE(a_->subscribe(&s1, req("g/a")).attached);
    ASSERT_TRUE(b_->subscribe(&s2, req("g/b")).attached);
    ASSERT_TRUE(b_->subscribe(&other, req("h/a")).attached);
    ASSERT_EQ(a_->publish("g/a", "x").status, StoreResult::kOk);
    GroupLimitsUpdate up;
    up.subscribers = true;
    up.limits.maxSubscribers = 9;
    setLimits(*a_->store, "g", up);
    GroupInfo after;
    a_->store->removeGroup("g", [&](StoreResult r, const GroupInfo& i) {
        EXPECT_EQ(r, StoreResult::kOk);
        after = i;
    });
    EXPECT_EQ(after.channels, 0u);
    EXPECT_EQ(after.subscribers, 0u);
    EXPECT_EQ(after.messages, 0u);
    EXPECT_EQ(after.limits.maxSubscribers, 9u);  // the limits stay
    EXPECT_EQ(s1.deleted, 1);
    EXPECT_EQ(s2.deleted, 1);  // the other worker's subscriber too
    EXPECT_EQ(other.deleted, 0);
    EXPECT_EQ(a_->info("g/a").first, StoreResult::kNotFound);
    EXPECT_EQ(a_->info("h/a").first, StoreResult::kOk);
    b_->store->unsubscribe(&other);
}

TEST(GroupFormat, TextIsNchansBytesOthersCarryItsKeys) {
    GroupInfo i;
    i.channels = 3;
    i.subscribers = 4;
    i.messages = 5;
    i.bytes = 600;
    i.limits.maxChannels = 7;
    i.limits.maxBytes = 1024;
    EXPECT_EQ(formatGroupInfo(i, InfoFormat::kText),
              "channels: 3\r\nsubscribers: 4\r\nmessages: 5\r\n"
              "shared memory used by messages: 600 bytes\r\n"
              "disk space used by messages: 0 bytes\r\nlimits:\r\n  max channels: 7\r\n"
              "  max subscribers: 0\r\n  max messages: 0\r\n"
              "  max messages shared memory: 1024\r\n  max messages disk space: 0\r\n");
    EXPECT_EQ(formatGroupInfo(i, InfoFormat::kJson),
              "{\"channels\": 3, \"subscribers\": 4, \"messages\": 5, \"messages_memory\": 600, "
              "\"messages_disk\": 0, \"limits\": {\"channels\": 7, \"subscribers\": 0, "
              "\"messages\": 0, \"messages_memory\": 1024, \"messages_disk\": 0}}\n");
    EXPECT_NE(formatGroupInfo(i, InfoFormat::kXml).find("<group>\n  <channels>3</channels>"),
              std::string::npos);
    EXPECT_EQ(formatGroupInfo(i, InfoFormat::kYaml).rfind("---\nchannels: 3\n", 0), 0u);
}

// ---------------------------------------------------------------- Redis

struct Sub : Subscriber {
    void deliver(const MessagePtr&) override {}
    void gap() override {}
    void channelDeleted() override {}
};

TEST(GroupRedis, InfoLimitsAndTheirReplies) {
    FakeLink link;
    RedisStore store(&link, "w1");
    Tree t;
    GroupInfo got;
    StoreResult res = StoreResult::kError;
    store.groupInfo("g", [&](StoreResult r, const GroupInfo& i) {
        res = r;
        got = i;
    });
    FakeLink::Cmd c = link.take(redis::groupInfoScript().sha);
    EXPECT_EQ(c.args[3], "{group:g}");
    EXPECT_EQ(res, StoreResult::kError);  // not before the reply
    c.cb(t.array({t.integer(3), t.integer(2), t.integer(5), t.integer(90), t.integer(10),
                  t.integer(0), t.integer(4096)}));
    EXPECT_EQ(res, StoreResult::kOk);
    EXPECT_TRUE(got.found);
    EXPECT_EQ(got.channels, 3u);
    EXPECT_EQ(got.subscribers, 2u);
    EXPECT_EQ(got.messages, 5u);
    EXPECT_EQ(got.bytes, 90u);
    EXPECT_EQ(got.limits.maxChannels, 10u);
    EXPECT_EQ(got.limits.maxBytes, 4096u);

    // set: only what the update names, then the info
    GroupLimitsUpdate up;
    up.channels = true;
    up.limits.maxChannels = 2;
    up.bytes = true;
    store.setGroupLimits("g", up, [&](StoreResult r, const GroupInfo& i) {
        res = r;
        got = i;
    });
    FakeLink::Cmd l = link.take(redis::groupLimitsScript().sha);
    EXPECT_EQ(std::vector<std::string>(l.args.begin() + 4, l.args.end()),
              (std::vector<std::string>{"c", "2", "b", "0"}));
    res = StoreResult::kError;
    l.cb(t.integer(1));
    link.take(redis::groupInfoScript().sha)
        .cb(t.array({t.integer(0), t.integer(0), t.integer(0), t.integer(0), t.integer(2),
                     t.integer(0), t.integer(0)}));
    EXPECT_EQ(res, StoreResult::kOk);
    EXPECT_EQ(got.limits.maxChannels, 2u);

    // errors and a link that is down
    store.groupInfo("g", [&](StoreResult r, const GroupInfo&) { res = r; });
    link.take(redis::groupInfoScript().sha).cb(t.error("ERR x"));
    EXPECT_EQ(res, StoreResult::kError);
    link.up = false;
    store.groupInfo("g", [&](StoreResult r, const GroupInfo&) { res = r; });
    EXPECT_EQ(res, StoreResult::kUnavailable);
    EXPECT_TRUE(link.cmds.empty());
}

TEST(GroupRedis, StoredLimitsAreAskedForWithMinusOne) {
    FakeLink link;
    RedisStore store(&link, "w1");
    Tree t;
    // a location without limits and without useStored: one command
    PublishInput in;
    in.data = "hello";
    in.contentType = "text/plain";
    PublishReply reply;
    store.publish("g/a", in, [&](PublishReply&& r) { reply = std::move(r); });
    EXPECT_EQ(link.count(redis::groupCheckScript().sha), 0u);
    link.cmds.clear();
    // useStored: the check runs with -1 where the location has no limit
    in.limits.useStored = true;
    in.limits.maxBytes = 100;
    store.publish("g/a", in, [&](PublishReply&& r) { reply = std::move(r); });
    FakeLink::Cmd c = link.take(redis::groupCheckScript().sha);
    EXPECT_EQ(std::vector<std::string>(c.args.begin() + 4, c.args.end()),
              (std::vector<std::string>{"a", "-1", "0", "w1", "100", "15", "10", "30"}));
    // subscribers: counted (and the stored limit asked for)
    GroupLimits l;
    l.useStored = true;
    store.prepare(
        {"g/b"}, [](RedisStore::PreparedPtr) {}, l, false);
    FakeLink::Cmd s = link.take(redis::groupCheckScript().sha);
    EXPECT_EQ(std::vector<std::string>(s.args.begin() + 4, s.args.end()),
              (std::vector<std::string>{"b", "-1", "-1", "w1", "0", "0", "0", "30"}));
    // existing channels only: channels are not counted
    store.prepare(
        {"g/c"}, [](RedisStore::PreparedPtr) {}, l, true);
    FakeLink::Cmd e = link.take(redis::groupCheckScript().sha);
    EXPECT_EQ(e.args[5], "0");
    EXPECT_EQ(e.args[6], "-1");
}

TEST(GroupRedis, RemoveGroupDeletesTheChannelsItLists) {
    FakeLink link;
    RedisStore store(&link, "w1");
    Tree t;
    StoreResult res = StoreResult::kError;
    store.removeGroup("g", [&](StoreResult r, const GroupInfo&) { res = r; });
    link.take(redis::groupChannelsScript().sha).cb(t.array({t.str("a"), t.str("b")}));
    // a DELETE of each
    FakeLink::Cmd da = link.take(redis::deleteScript().sha);
    EXPECT_EQ(da.args[3], "{channel:g/a}");
    FakeLink::Cmd db = link.take(redis::deleteScript().sha);
    EXPECT_EQ(db.args[3], "{channel:g/b}");
    // g/b is gone already: the group forgets it
    db.cb(t.array({t.integer(0), t.str("0:0"), t.integer(0), t.integer(0), t.integer(-1)}));
    FakeLink::Cmd forget = link.take(redis::groupDeleteScript().sha);
    EXPECT_EQ(forget.args[4], "b");
    forget.cb(t.integer(1));
    EXPECT_EQ(res, StoreResult::kError);  // g/a still pending
    da.cb(t.array({t.integer(1), t.str("5:0"), t.integer(1), t.integer(0), t.integer(-1),
                   t.integer(0), t.integer(1)}));
    link.take(redis::groupDeleteScript().sha).cb(t.integer(1));
    link.take(redis::groupInfoScript().sha)
        .cb(t.array({t.integer(0), t.integer(0), t.integer(0), t.integer(0), t.integer(0),
                     t.integer(0), t.integer(0)}));
    EXPECT_EQ(res, StoreResult::kOk);
}

// ------------------------------------------------- subscriber info

struct Asked : Subscriber {
    void deliver(const MessagePtr&) override { delivered++; }
    void gap() override {}
    void channelDeleted() override {}
    void infoRequest(std::string_view replyKey) override { replies.emplace_back(replyKey); }
    int delivered = 0;
    std::vector<std::string> replies;
};

TEST(SubscriberInfo, TheHubAsksEverySubscriberOfTheChannelOnly) {
    Hub hub;
    Asked a, b, c;
    ASSERT_TRUE(hub.attach(&a, "g/x", MsgId{}, MsgId{}));
    ASSERT_TRUE(hub.attach(&b, "g/x", MsgId{}, MsgId{}));
    ASSERT_TRUE(hub.attach(&c, "g/y", MsgId{}, MsgId{}));
    hub.infoRequest("g/x", "subinfo:1");
    hub.infoRequest("g/none", "subinfo:2");
    EXPECT_EQ(a.replies, std::vector<std::string>{"subinfo:1"});
    EXPECT_EQ(b.replies, std::vector<std::string>{"subinfo:1"});
    EXPECT_TRUE(c.replies.empty());
    EXPECT_EQ(a.delivered, 0);  // not a message
    hub.detach(&a);
    hub.detach(&b);
    hub.detach(&c);
}

TEST(SubscriberInfo, RedisAsksWithAnILiveMessageAndHandsItToTheHub) {
    FakeLink link;
    RedisStore store(&link, "w1");
    EXPECT_TRUE(store.requestInfo("g/x", "subinfo:7"));
    FakeLink::Cmd p = link.take("PUBLISH");
    EXPECT_EQ(p.args[1], redis::pubsubName("g/x"));
    EXPECT_EQ(p.args[2], "Isubinfo:7");
    Asked a;
    ASSERT_TRUE(store.hub().attach(&a, "g/x", MsgId{}, MsgId{}));
    store.onMessage(redis::pubsubName("g/x"), "Isubinfo:7");
    EXPECT_EQ(a.replies, std::vector<std::string>{"subinfo:7"});
    EXPECT_EQ(a.delivered, 0);
    store.hub().detach(&a);
    link.up = false;
    EXPECT_FALSE(store.requestInfo("g/x", "subinfo:8"));
}

}  // namespace
