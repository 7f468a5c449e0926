// RedisStore over a fake link: snapshots, hole filling, reconnects.
#include "pubsub/redis/redis_store.h"

#include <gtest/gtest.h>

#include <deque>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "redis_fake_link.h"
#include "redis_tree.h"

using namespace pubsub;

namespace {

using pubsub_test::Tree;

using pubsub_test::FakeLink;

struct Sub : Subscriber {
    std::vector<std::string> got;
    int gaps = 0;
    int deleted = 0;
    void deliver(const MessagePtr& m) override { got.emplace_back(m->data()); }
    void gap() override { gaps++; }
    void channelDeleted() override { deleted++; }
};

const std::string kKey = "g/a";

std::string live(const std::string& id, const std::string& prev, const std::string& data) {
    return "M" + id + " " + prev + " 10 0 text/plain" + data;
}

// subscribe() answering from `prepared`, as the glue runs a request's handler
SubscribeReply subscribeFrom(RedisStore& store, const RedisStore::PreparedPtr& prepared, Sub& sub,
                             const SubscribeRequest& req) {
    SubscribeReply reply;
    store.usePrepared(prepared.get());
    store.subscribe(&sub, req, [&](SubscribeReply&& r) { reply = std::move(r); });
    store.usePrepared(nullptr);
    return reply;
}

// prepares and subscribes `sub` from the oldest stored message
void attach(RedisStore& store, FakeLink& link, Tree& t, Sub& sub, redisReply* snapshot,
            const std::string& key = kKey) {
    RedisStore::PreparedPtr prepared;
    store.prepare({key}, [&](RedisStore::PreparedPtr p) { prepared = p; });
    ASSERT_FALSE(prepared);
    FakeLink::Cmd c = link.takeDropping(redis::fetchScript().sha);
    EXPECT_EQ(c.args[3], "{channel:" + key + "}");
    c.cb(snapshot);
    ASSERT_TRUE(prepared);
    SubscribeRequest req;
    req.key = key;
    SubscribeReply reply = subscribeFrom(store, prepared, sub, req);
    ASSERT_EQ(reply.status, StoreResult::kOk) << reply.reason;
    ASSERT_TRUE(reply.attached);
    for (auto& m : reply.backlog) {
        sub.got.emplace_back(m->data());
    }
    (void)t;
}

}  // namespace

TEST(RedisStore, SnapshotThenLiveThenHole) {
    FakeLink link;
    RedisStore store(&link, "w1");
    Tree t;
    Sub sub;
    attach(store, link, t, sub, t.snapshot("10:1", {{"10:0", "0:0", "a"}, {"10:1", "10:0", "b"}}));
    EXPECT_EQ(sub.got, (std::vector<std::string>{"a", "b"}));
    ASSERT_EQ(link.subs.size(), 1u);
    EXPECT_EQ(link.subs[0], "{channel:g/a}:ps");

    // confirmation: one history read after the snapshot's last id
    store.onSubscribed("{channel:g/a}:ps");
    FakeLink::Cmd f = link.takeDropping(redis::fetchScript().sha);
    EXPECT_EQ(f.args[4], "10:1");
    f.cb(t.snapshot("10:1", {}));

    store.onMessage("{channel:g/a}:ps", live("10:2", "10:1", "c"));
    store.onMessage("{channel:g/a}:ps", live("10:2", "10:1", "c"));  // twice: once
    EXPECT_EQ(sub.got.back(), "c");
    EXPECT_EQ(sub.got.size(), 3u);

    // 10:3 was missed: read the history, queue what comes meanwhile
    store.onMessage("{channel:g/a}:ps", live("10:4", "10:3", "e"));
    store.onMessage("{channel:g/a}:ps", live("10:5", "10:4", "f"));
    EXPECT_EQ(sub.got.size(), 3u);
    f = link.takeDropping(redis::fetchScript().sha);
    EXPECT_EQ(f.args[4], "10:2");
    f.cb(t.snapshot("10:4", {{"10:3", "10:2", "d"}, {"10:4", "10:3", "e"}}));
    EXPECT_EQ(sub.got, (std::vector<std::string>{"a", "b", "c", "d", "e", "f"}));
    EXPECT_EQ(sub.gaps, 0);

    // history lost some: the subscriber is told of the gap
    store.onMessage("{channel:g/a}:ps", live("10:9", "10:8", "z"));
    f = link.takeDropping(redis::fetchScript().sha);
    f.cb(t.snapshot("10:9", {{"10:8", "10:7", "y"}, {"10:9", "10:8", "z"}}));
    EXPECT_EQ(sub.gaps, 1);
    EXPECT_EQ(sub.got.back(), "z");

    // deleted
    store.onMessage("{channel:g/a}:ps", "D");
    EXPECT_EQ(sub.deleted, 1);
    EXPECT_FALSE(sub.attached());
}

// The origin goes to the publish script and comes back from the history
// and from live messages ('O' form).
TEST(RedisStore, OriginIsPublishedReadAndReceived) {
    FakeLink link;
    RedisStore store(&link, "w1");
    PublishInput in;
    in.data = "x";
    in.origin = "1.2 u";
    store.publish(kKey, in, [](PublishReply&&) {});
    ASSERT_EQ(link.cmds.size(), 1u);
    EXPECT_EQ(link.cmds[0].args.back(), "1.2 u");
    link.cmds[0].cb(nullptr);
    link.cmds.clear();

    Tree t;
    struct OSub : Sub {
        std::vector<std::string> origins;
        void deliver(const MessagePtr& m) override {
            Sub::deliver(m);
            origins.emplace_back(m->origin());
        }
    } sub;
    redis::Snapshot snap;
    std::string reason;
    ASSERT_TRUE(redis::parseSnapshot(
        t.snapshot("10:1", {{"10:0", "0:0", "a", "3.4"}, {"10:1", "10:0", "b"}}), &snap, &reason))
        << reason;
    ASSERT_EQ(snap.messages.size(), 2u);
    EXPECT_EQ(snap.messages[0]->origin(), "3.4");
    EXPECT_EQ(snap.messages[1]->origin(), "");
    attach(store, link, t, sub,
           t.snapshot("10:1", {{"10:0", "0:0", "a", "3.4"}, {"10:1", "10:0", "b"}}));
    store.onSubscribed("{channel:g/a}:ps");
    link.takeDropping(redis::fetchScript().sha).cb(t.snapshot("10:1", {}));
    store.onMessage("{channel:g/a}:ps", "O10:2 10:1 10 2 5 text/plainevc d5.6 u");
    store.onMessage("{channel:g/a}:ps", live("10:3", "10:2", "e"));
    EXPECT_EQ(sub.got, (std::vector<std::string>{"a", "b", "c d", "e"}));
    EXPECT_EQ(sub.origins, (std::vector<std::string>{"5.6 u", ""}));
    // an origin longer than what is left is refused
    store.onMessage("{channel:g/a}:ps", "O10:4 10:3 0 0 9 abc");
    EXPECT_EQ(sub.got.size(), 4u);
}

TEST(RedisStore, ReconnectResubscribesAndCatchesUp) {
    FakeLink link;
    RedisStore store(&link, "w1");
    Tree t;
    Sub sub;
    attach(store, link, t, sub, t.snapshot("5:0", {{"5:0", "0:0", "a"}}));
    store.onSubscribed("{channel:g/a}:ps");
    link.takeDropping(redis::fetchScript().sha).cb(t.snapshot("5:0", {}));

    link.up = false;
    store.onDown();
    // a fetch in flight when the link dropped is answered with nothing
    link.up = true;
    link.subs.clear();
    store.onReady();
    ASSERT_EQ(link.subs.size(), 1u);
    store.onSubscribed("{channel:g/a}:ps");
    FakeLink::Cmd f = link.takeDropping(redis::fetchScript().sha);
    EXPECT_EQ(f.args[4], "5:0");
    f.cb(t.snapshot("6:1", {{"6:0", "5:0", "b"}, {"6:1", "6:0", "c"}}));
    EXPECT_EQ(sub.got, (std::vector<std::string>{"a", "b", "c"}));
    f = FakeLink::Cmd();  // hiredis drops a callback once it ran

    // unsubscribing leaves the pubsub channel on the next tick
    store.unsubscribe(&sub);
    EXPECT_TRUE(link.unsubs.empty());
    store.tick();
    ASSERT_EQ(link.unsubs.size(), 1u);
    store.onUnsubscribed("{channel:g/a}:ps");
    store.tick();
    EXPECT_EQ(store.localChannels(), 0u);
}

TEST(RedisStore, UnavailableAndNoScript) {
    FakeLink link;
    RedisStore store(&link, "w1");
    Tree t;
    link.up = false;
    PublishInput in;
    in.data = "x";
    PublishReply reply;
    store.publish(kKey, in, [&](PublishReply&& r) { reply = std::move(r); });
    EXPECT_EQ(reply.status, StoreResult::kUnavailable);
    EXPECT_EQ(reply.reason, "Redis is unavailable");

    // a subscriber without a snapshot is refused, never left waiting
    Sub sub;
    SubscribeRequest req;
    req.key = kKey;
    SubscribeReply sreply;
    store.subscribe(&sub, req, [&](SubscribeReply&& r) { sreply = std::move(r); });
    EXPECT_EQ(sreply.status, StoreResult::kUnavailable);

    link.up = true;
    bool done = false;
    store.publish(kKey, in, [&](PublishReply&& r) {
        done = true;
        EXPECT_EQ(r.status, StoreResult::kOk) << r.reason;
        EXPECT_EQ(r.id, (MsgId{7, 0}));
    });
    FakeLink::Cmd c = link.takeDropping(redis::publishScript().sha);
    EXPECT_EQ(c.args[0], "EVALSHA");
    c.cb(t.str("NOSCRIPT No matching script.", REDIS_REPLY_ERROR));
    ASSERT_FALSE(link.cmds.empty());
    EXPECT_EQ(link.cmds.front().args[0], "EVAL");
    EXPECT_EQ(link.cmds.front().args[1], redis::publishScript().text);
    link.cmds.front().cb(
        t.array({t.str("7:0"), t.str("6:0"), t.integer(1), t.integer(0), t.integer(-1)}));
    EXPECT_TRUE(done);

    // a lost connection answers 503
    store.publish(kKey, in, [&](PublishReply&& r) { reply = std::move(r); });
    link.cmds.back().cb(nullptr);
    EXPECT_EQ(reply.status, StoreResult::kUnavailable);

    // existing-only on a channel Redis does not have
    RedisStore::PreparedPtr prepared;
    store.prepare({kKey}, [&](RedisStore::PreparedPtr p) { prepared = p; });
    redisReply* none = t.array({t.integer(0), t.str("0:0"), t.integer(0), t.integer(0)});
    link.cmds.back().cb(none);
    ASSERT_TRUE(prepared);
    store.usePrepared(prepared.get());
    req.existingOnly = true;
    store.subscribe(&sub, req, [&](SubscribeReply&& r) { sreply = std::move(r); });
    store.usePrepared(nullptr);
    EXPECT_EQ(sreply.status, StoreResult::kNotFound);
}

TEST(RedisStore, ScriptsPublishShardedWhenTheLinkIs) {
    FakeLink link;
    RedisStore store(&link, "w1");
    PublishInput in;
    in.data = "x";
    store.publish(kKey, in, [](PublishReply&&) {});
    store.remove(kKey, [](StoreResult, const ChannelInfo&) {});
    link.shard = true;
    store.publish(kKey, in, [](PublishReply&&) {});
    store.remove(kKey, [](StoreResult, const ChannelInfo&) {});
    ASSERT_EQ(link.cmds.size(), 4u);
    EXPECT_EQ(link.cmds[0].args.back(), "");
    EXPECT_EQ(link.cmds[1].args.back(), "");
    EXPECT_EQ(link.cmds[1].args.size(), 5u);
    EXPECT_EQ(link.cmds[2].args.back(), "S");
    EXPECT_EQ(link.cmds[2].args.size(), 10u);
    EXPECT_EQ(link.cmds[3].args.back(), "S");
    for (auto& c : link.cmds) {
        c.cb(nullptr);
    }
}

// A cluster master failing affects only the channels of its slots: the
// others keep their subscription and their commands; the failed ones answer
// 503 at once and are re-subscribed (with a history read) when their slots
// are served again.
TEST(RedisStore, OneMasterDownLeavesTheOthersAlone) {
    FakeLink link;
    RedisStore store(&link, "w1");
    Tree t;
    Sub subA, subB;
    attach(store, link, t, subA, t.snapshot("5:0", {{"5:0", "0:0", "a0"}}), "g/a");
    attach(store, link, t, subB, t.snapshot("5:1", {{"5:1", "0:0", "b0"}}), "g/b");
    ASSERT_EQ(link.subs, (std::vector<std::string>{"{channel:g/a}:ps", "{channel:g/b}:ps"}));
    store.onSubscribed("{channel:g/a}:ps");
    link.takeDropping(redis::fetchScript().sha).cb(t.snapshot("5:0", {}));
    store.onSubscribed("{channel:g/b}:ps");
    // b's catch-up read is in flight when its master dies
    FakeLink::Cmd inflight = link.takeDropping(redis::fetchScript().sha);
    link.cmds.clear();

    link.downTags.insert("{channel:g/b}");
    store.onNodesChanged();
    inflight.cb(nullptr);  // the closed connection answers nothing
    inflight = FakeLink::Cmd();
    EXPECT_EQ(link.subs.size(), 2u) << "nothing re-subscribed";

    // b: 503 at once, for publishers, info and new subscribers
    PublishInput in;
    in.data = "x";
    PublishReply pb;
    store.publish("g/b", in, [&](PublishReply&& r) { pb = std::move(r); });
    EXPECT_EQ(pb.status, StoreResult::kUnavailable);
    EXPECT_EQ(pb.reason, "Redis is unavailable");
    StoreResult ib = StoreResult::kOk;
    store.info("g/b", [&](StoreResult r, const ChannelInfo&) { ib = r; });
    EXPECT_EQ(ib, StoreResult::kUnavailable);
    RedisStore::PreparedPtr prepared;
    store.prepare({"g/a", "g/b"}, [&](RedisStore::PreparedPtr p) { prepared = p; });
    ASSERT_FALSE(prepared);  // a's snapshot is read
    link.takeDropping(redis::fetchScript().sha).cb(t.snapshot("5:0", {}));
    ASSERT_TRUE(prepared);
    EXPECT_EQ(prepared->channels["g/a"].status, StoreResult::kOk);
    EXPECT_EQ(prepared->channels["g/b"].status, StoreResult::kUnavailable);
    EXPECT_TRUE(link.cmds.empty());

    // a: publishes go out, live messages arrive without any history read
    bool published = false;
    store.publish("g/a", in, [&](PublishReply&& r) { published = r.status == StoreResult::kOk; });
    link.takeDropping(redis::publishScript().sha)
        .cb(t.array({t.str("6:0"), t.str("5:0"), t.integer(1), t.integer(0), t.integer(-1)}));
    EXPECT_TRUE(published);
    store.onMessage("{channel:g/a}:ps", live("6:0", "5:0", "a1"));
    EXPECT_EQ(subA.got, (std::vector<std::string>{"a0", "a1"}));
    EXPECT_TRUE(link.cmds.empty());

    // the tick refreshes a's count, not b's, and unsubscribes nothing
    for (int i = 0; i < RedisStore::kCountRefreshTicks; i++) {
        store.tick();
    }
    ASSERT_EQ(link.cmds.size(), 1u);
    EXPECT_EQ(link.cmds[0].args[3], "{channel:g/a}");
    EXPECT_TRUE(link.unsubs.empty());
    link.cmds.clear();

    // b's slots are served again (its replica took over): b alone is
    // re-subscribed, and reads what it missed
    link.downTags.clear();
    store.onNodesChanged();
    ASSERT_EQ(link.subs.size(), 3u);
    EXPECT_EQ(link.subs[2], "{channel:g/b}:ps");
    store.onNodesChanged();  // again: still subscribing, nothing more
    EXPECT_EQ(link.subs.size(), 3u);
    store.onSubscribed("{channel:g/b}:ps");
    FakeLink::Cmd f = link.takeDropping(redis::fetchScript().sha);
    EXPECT_EQ(f.args[3], "{channel:g/b}");
    EXPECT_EQ(f.args[4], "5:1");
    f.cb(t.snapshot("7:1", {{"7:0", "5:1", "b1"}, {"7:1", "7:0", "b2"}}));
    EXPECT_EQ(subB.got, (std::vector<std::string>{"b0", "b1", "b2"}));
    store.onMessage("{channel:g/b}:ps", live("7:2", "7:1", "b3"));
    EXPECT_EQ(subB.got.back(), "b3");
    EXPECT_EQ(subA.got.size(), 2u);
    EXPECT_EQ(subB.gaps + subA.gaps, 0);
}

// A subscriber attaching from a snapshot read before a message that this
// worker already received live (the pubsub channel was subscribed, so no
// confirmation reads the history) gets it from a catch-up read, once.
TEST(RedisStore, AttachBehindTheWorkerCatchesUp) {
    FakeLink link;
    RedisStore store(&link, "w1");
    Tree t;
    Sub a;
    attach(store, link, t, a, t.snapshot("10:1", {{"10:1", "0:0", "x"}}));
    store.onSubscribed("{channel:g/a}:ps");
    link.takeDropping(redis::fetchScript().sha).cb(t.snapshot("10:1", {}));

    // a long-poll that got its message leaves; the channel stays subscribed
    store.unsubscribe(&a);
    RedisStore::PreparedPtr prepared;
    store.prepare({kKey}, [&](RedisStore::PreparedPtr p) { prepared = p; });
    FakeLink::Cmd snap = link.takeDropping(redis::fetchScript().sha);
    // published after that read, before the reply: nobody local to take it
    store.onMessage("{channel:g/a}:ps", live("10:2", "10:1", "y"));
    snap.cb(t.snapshot("10:1", {{"10:1", "0:0", "x"}}));
    ASSERT_TRUE(prepared);

    Sub b;
    SubscribeRequest req;
    req.key = kKey;
    req.start.kind = StartSpec::kAfter;
    req.start.after = MsgId{10, 1};
    req.oneShot = true;
    SubscribeReply reply = subscribeFrom(store, prepared, b, req);
    ASSERT_TRUE(reply.attached);
    EXPECT_TRUE(reply.backlog.empty());
    EXPECT_EQ(store.stats().catchUps, 1u);

    // a live message while the catch-up read is out waits behind it
    FakeLink::Cmd f = link.takeDropping(redis::fetchScript().sha);
    EXPECT_EQ(f.args[4], "10:1");
    store.onMessage("{channel:g/a}:ps", live("10:3", "10:2", "z"));
    EXPECT_TRUE(b.got.empty());
    f.cb(t.snapshot("10:2", {{"10:2", "10:1", "y"}}));
    EXPECT_EQ(b.got, (std::vector<std::string>{"y", "z"}));
    EXPECT_EQ(b.gaps, 0);
    store.unsubscribe(&b);

    // with a subscriber that has them already: only the newcomer gets them
    Sub c;
    attach(store, link, t, c, t.snapshot("10:3", {}));
    store.onMessage("{channel:g/a}:ps", live("10:4", "10:3", "w"));
    EXPECT_EQ(c.got, (std::vector<std::string>{"w"}));
    store.prepare({kKey}, [&](RedisStore::PreparedPtr p) { prepared = p; });
    link.takeDropping(redis::fetchScript().sha).cb(t.snapshot("10:3", {}));
    Sub d;
    req.start.after = MsgId{10, 3};
    req.oneShot = false;
    reply = subscribeFrom(store, prepared, d, req);
    f = link.takeDropping(redis::fetchScript().sha);
    EXPECT_EQ(f.args[4], "10:3");
    f.cb(t.snapshot("10:4", {{"10:4", "10:3", "w"}}));
    EXPECT_EQ(d.got, (std::vector<std::string>{"w"}));
    EXPECT_EQ(c.got, (std::vector<std::string>{"w"})) << "not twice";
    store.unsubscribe(&c);
    store.unsubscribe(&d);
}

// A channel followed in step that stores no message owes a new subscriber
// nothing whatever its start (the default, oldest, included): no read, as
// for a churn of subscribers to a quiet channel; a message makes it read.
TEST(RedisStore, InStepEmptyChannelNeedsNoSnapshotForAnyStart) {
    FakeLink link;
    RedisStore store(&link, "w1");
    Tree t;
    Sub a;
    attach(store, link, t, a, t.snapshot("0:0", {}));
    store.onSubscribed("{channel:g/a}:ps");
    link.takeDropping(redis::fetchScript().sha).cb(t.snapshot("0:0", {}));
    link.cmds.clear();

    RedisStore::PreparedPtr got;
    StartSpec oldest;
    store.prepare(
        {kKey}, [&](RedisStore::PreparedPtr x) { got = x; }, &oldest);
    ASSERT_TRUE(got) << "answered at once";
    EXPECT_EQ(link.count(redis::fetchScript().sha), 0u);
    Sub b;
    SubscribeRequest req;
    req.key = kKey;
    SubscribeReply reply = subscribeFrom(store, got, b, req);
    ASSERT_TRUE(reply.attached);
    EXPECT_TRUE(reply.backlog.empty());
    store.onMessage("{channel:g/a}:ps", live("10:1", "0:0", "m"));
    EXPECT_EQ(b.got, (std::vector<std::string>{"m"}));
    EXPECT_EQ(a.got, (std::vector<std::string>{"m"}));

    // now it stores one: the oldest start reads
    got.reset();
    store.prepare(
        {kKey}, [&](RedisStore::PreparedPtr x) { got = x; }, &oldest);
    EXPECT_FALSE(got);
    link.takeDropping(redis::fetchScript().sha).cb(t.snapshot("10:1", {{"10:1", "0:0", "m"}}));
    ASSERT_TRUE(got);
    store.unsubscribe(&a);
    store.unsubscribe(&b);
}

// A worker following a channel in step knows its newest id: a subscriber
// resuming from it (a long-poll's re-poll) or starting at the newest is
// attached without a snapshot read; any other start, or after a hole, reads.
TEST(RedisStore, InStepChannelNeedsNoSnapshotForASubscriberOwedNothing) {
    FakeLink link;
    RedisStore store(&link, "w1");
    Tree t;
    Sub a;
    attach(store, link, t, a, t.snapshot("10:1", {{"10:1", "0:0", "x"}}));
    store.onSubscribed("{channel:g/a}:ps");
    link.takeDropping(redis::fetchScript().sha).cb(t.snapshot("10:1", {}));
    store.onMessage("{channel:g/a}:ps", live("10:2", "10:1", "y"));
    store.unsubscribe(&a);
    link.cmds.clear();

    RedisStore::PreparedPtr got;  // outlives the reads answered later
    auto prep = [&](const StartSpec& start) {
        got.reset();
        store.prepare(
            {kKey}, [&](RedisStore::PreparedPtr x) { got = x; }, &start);
        return got;
    };
    StartSpec resume;
    resume.kind = StartSpec::kAfter;
    resume.after = MsgId{10, 2};
    RedisStore::PreparedPtr p = prep(resume);
    ASSERT_TRUE(p) << "answered at once";
    EXPECT_TRUE(link.cmds.empty()) << "no read";
    EXPECT_EQ(store.stats().snapshotsSkipped, 1u);
    Sub b;
    SubscribeRequest req;
    req.key = kKey;
    req.start = resume;
    req.oneShot = true;
    SubscribeReply reply = subscribeFrom(store, p, b, req);
    ASSERT_TRUE(reply.attached);
    EXPECT_TRUE(reply.backlog.empty());
    EXPECT_FALSE(reply.gap);
    EXPECT_TRUE(link.cmds.empty() || link.count(redis::fetchScript().sha) == 0);
    store.onMessage("{channel:g/a}:ps", live("10:3", "10:2", "z"));
    EXPECT_EQ(b.got, (std::vector<std::string>{"z"}));
    store.unsubscribe(&b);

    StartSpec newest;
    newest.kind = StartSpec::kNewest;
    EXPECT_TRUE(prep(newest));
    // an older resume id, or the oldest: a read
    resume.after = MsgId{10, 1};
    EXPECT_FALSE(prep(resume));
    link.takeDropping(redis::fetchScript().sha).cb(t.snapshot("10:3", {}));
    StartSpec oldest;
    EXPECT_FALSE(prep(oldest));
    link.takeDropping(redis::fetchScript().sha).cb(t.snapshot("10:3", {}));
    // a hole: not in step until the next read
    store.onMessage("{channel:g/a}:ps", live("10:9", "10:8", "h"));
    resume.after = MsgId{10, 9};
    EXPECT_FALSE(prep(resume));
    link.takeDropping(redis::fetchScript().sha).cb(t.snapshot("10:9", {}));
    // deleted: not in step
    store.onMessage("{channel:g/a}:ps", "D");
    EXPECT_FALSE(prep(newest));
}

// store.h's contract: subscribe() answers before it returns, prepared or
// not (the glue reads the reply right after the call).
TEST(RedisStore, SubscribeCompletesBeforeReturning) {
    FakeLink link;
    RedisStore store(&link, "w1");
    Tree t;
    Sub sub;
    SubscribeRequest req;
    req.key = kKey;

    auto subscribeNow = [&](const SubscribeRequest& r) {
        bool called = false;
        SubscribeReply reply;
        store.subscribe(&sub, r, [&](SubscribeReply&& x) {
            called = true;
            reply = std::move(x);
        });
        EXPECT_TRUE(called);
        return reply;
    };

    // outside a prepared scope: refused at once
    EXPECT_EQ(subscribeNow(req).status, StoreResult::kUnavailable);
    EXPECT_TRUE(link.cmds.empty());

    // prepared: answered from the snapshot, nothing sent to wait for
    RedisStore::PreparedPtr prepared;
    store.prepare({kKey}, [&](RedisStore::PreparedPtr p) { prepared = p; });
    link.takeDropping(redis::fetchScript().sha)
        .cb(t.array({t.integer(0), t.str("0:0"), t.integer(0), t.integer(0)}));
    ASSERT_TRUE(prepared);
    store.usePrepared(prepared.get());
    SubscribeReply ok = subscribeNow(req);
    EXPECT_EQ(ok.status, StoreResult::kOk) << ok.reason;
    EXPECT_TRUE(ok.attached);

    // a key the scope did not prepare: refused at once
    Sub other;
    SubscribeRequest otherReq;
    otherReq.key = "g/other";
    bool called = false;
    store.subscribe(&other, otherReq, [&](SubscribeReply&& r) {
        called = true;
        EXPECT_EQ(r.status, StoreResult::kUnavailable);
    });
    EXPECT_TRUE(called);
    store.usePrepared(nullptr);
    store.unsubscribe(&sub);

    // prepared while Redis is down: prepare completes at once, and so does
    // the subscribe that follows
    link.up = false;
    prepared.reset();
    store.prepare({kKey}, [&](RedisStore::PreparedPtr p) { prepared = p; });
    ASSERT_TRUE(prepared);
    store.usePrepared(prepared.get());
    EXPECT_EQ(subscribeNow(req).status, StoreResult::kUnavailable);
    store.usePrepared(nullptr);
}
