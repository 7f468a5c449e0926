// The subscription object over the real memory engine (a simulated zone):
// every channel's store subscribe, hook session, presence join and channel
// events happen exactly once and are undone exactly once, for fixed and
// multiplexed sets, for channels added and removed at run time, and however
// the subscription ends.

#include "pubsub/subscription.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core_fakes.h"

namespace {

using pubsub::MessagePtr;
using pubsub::MsgId;
using pubsub::StartSpec;
using pubsub::StoreResult;
using pubsub::SubChannel;
using pubsub::SubscribeReply;
using pubsub::Subscription;
using pubsub::SubscriptionOptions;
using pubsub_test::Worker;
using pubsub_test::Zone;

// Records every hook, presence and event call; handles are unique ids so
// the test sees which open each close ends.
class RecordingHost : public pubsub::SubscriptionHost {
public:
    explicit RecordingHost(pubsub::Store* store) : store_(store) {}

    pubsub::Store* store() override { return store_; }

    void prepare(const std::vector<std::string>& keys, std::function<void()> ready) override {
        prepared.insert(prepared.end(), keys.begin(), keys.end());
        if (deferPrepare) {
            pending.push_back(std::move(ready));
            return;
        }
        ready();
    }

    Handle hookOpen(const SubChannel& ch, const std::string* pollAt) override {
        log.push_back("hook+ " + ch.key + (pollAt ? " @" + *pollAt : ""));
        return open("hook", ch.key);
    }
    void hookClose(Handle h, const std::string* pollNext, bool deleted) override {
        log.push_back("hook- " + close("hook", h) + (pollNext ? " @" + *pollNext : "") +
                      (deleted ? " deleted" : ""));
    }
    Handle presenceJoin(const SubChannel& ch) override {
        if (ch.presence) {
            log.push_back("join " + ch.key + " as " + ch.presence->id + " " + ch.presence->info);
            return open("presence", ch.key);
        }
        log.push_back("join " + ch.key);
        return open("presence", ch.key);
    }
    void presenceLeave(Handle h) override { log.push_back("leave " + close("presence", h)); }
    Handle eventsOpen(const SubChannel& ch) override {
        log.push_back("enqueue " + ch.key);
        return open("events", ch.key);
    }
    void eventsClose(Handle h) override { log.push_back("dequeue " + close("events", h)); }
    void countStart() override {
        counted++;
        log.push_back("count+");
    }
    void countEnd() override {
        counted--;
        log.push_back("count-");
    }
    void infoRequest(std::string_view key, std::string_view replyKey) override {
        log.push_back("info " + std::string(key) + " " + std::string(replyKey));
    }

    // open handles per kind and key: each must come back to zero
    int openOf(const std::string& kind, const std::string& key) { return live[kind + " " + key]; }
    int openTotal() const {
        int n = 0;
        for (const auto& kv : live) {
            n += kv.second;
        }
        return n;
    }

    std::vector<std::string> log;
    std::vector<std::string> prepared;
    std::vector<std::function<void()>> pending;
    bool deferPrepare = false;
    int counted = 0;

private:
    Handle open(const std::string& kind, const std::string& key) {
        auto* h = new std::string(kind + " " + key);
        live[*h]++;
        handles.emplace_back(h);
        return h;
    }
    std::string close(const std::string& kind, Handle h) {
        auto* s = static_cast<std::string*>(h);
        EXPECT_NE(s, nullptr) << kind << " closed without a handle";
        if (s == nullptr) {
            return "?";
        }
        EXPECT_EQ(s->rfind(kind, 0), 0u) << "a " << kind << " close got a " << *s;
        EXPECT_GT(live[*s], 0) << *s << " closed twice";
        live[*s]--;
        return s->substr(kind.size() + 1);
    }

    pubsub::Store* store_;
    std::map<std::string, int> live;
    std::vector<std::unique_ptr<std::string>> handles;
};

struct Received {
    size_t channel;
    std::string data;
    std::string id;
};

class RecordingSink : public pubsub::SubscriptionSink {
public:
    void deliver(size_t channel, const MessagePtr& msg, std::string_view id) override {
        got.push_back(Received{channel, std::string(msg->data()), std::string(id)});
        if (onDeliver) {
            onDeliver();
        }
    }
    void gap(size_t channel) override { gaps.push_back(channel); }
    void channelDeleted(size_t channel) override { deleted.push_back(channel); }
    void presenceEvent(size_t, const pubsub::PresenceEvent&) override {}

    std::vector<Received> got;
    std::vector<size_t> gaps;
    std::vector<size_t> deleted;
    std::function<void()> onDeliver;
};

StartSpec newest() {
    StartSpec s;
    s.kind = StartSpec::kNewest;
    return s;
}

StartSpec after(MsgId id) {
    StartSpec s;
    s.kind = StartSpec::kAfter;
    s.after = id;
    return s;
}

class SubscriptionTest : public ::testing::Test {
protected:
    void SetUp() override {
        zone_ = std::make_unique<Zone>();
        worker_ = std::make_unique<Worker>(zone_.get(), false);
        host_ = std::make_unique<RecordingHost>(worker_->store.get());
    }

    void TearDown() override {
        EXPECT_EQ(host_->openTotal(), 0) << "something opened was never closed";
        EXPECT_EQ(host_->counted, 0);
    }

    uint64_t subscribers(std::string_view key) {
        auto [rc, info] = worker_->info(key);
        return rc == StoreResult::kOk ? info.subscribers : 0;
    }

    SubscribeReply add(Subscription& s, const std::string& key, size_t* index = nullptr) {
        SubscribeReply out;
        bool called = false;
        s.add(SubChannel{key, "default/" + key}, newest(), [&](size_t i, SubscribeReply&& r) {
            called = true;
            if (index != nullptr) {
                *index = i;
            }
            out = std::move(r);
        });
        EXPECT_TRUE(called);
        return out;
    }

    std::unique_ptr<Zone> zone_;
    std::unique_ptr<Worker> worker_;
    std::unique_ptr<RecordingHost> host_;
    RecordingSink sink_;
};

TEST_F(SubscriptionTest, OneChannelIsOpenedOnceAndClosedOnce) {
    auto s = std::make_unique<Subscription>(host_.get(), &sink_, SubscriptionOptions{});
    auto start = s->subscribe({SubChannel{"a", "default/a"}}, {newest()});
    ASSERT_EQ(start.status, StoreResult::kOk);
    EXPECT_FALSE(s->multiplexed());
    EXPECT_TRUE(s->attached());
    // nothing but the store before open(): the transport is not ready yet
    EXPECT_TRUE(host_->log.empty());

    s->open();
    s->open();  // again: nothing twice
    EXPECT_EQ(host_->log, (std::vector<std::string>{"hook+ default/a", "join default/a",
                                                    "enqueue default/a", "count+"}));
    EXPECT_EQ(subscribers("default/a"), 1u);

    worker_->publish("default/a", "m1");
    ASSERT_EQ(sink_.got.size(), 1u);
    EXPECT_EQ(sink_.got[0].channel, 0u);
    EXPECT_EQ(sink_.got[0].data, "m1");
    EXPECT_EQ(sink_.got[0].id, "");

    host_->log.clear();
    s->close();
    s->close();
    s.reset();
    EXPECT_EQ(host_->log, (std::vector<std::string>{"count-", "dequeue default/a",
                                                    "leave default/a", "hook- default/a"}));
    EXPECT_EQ(subscribers("default/a"), 0u);
}

TEST_F(SubscriptionTest, ClosedWithoutOpenUndoesOnlyTheStore) {
    {
        Subscription s(host_.get(), &sink_, SubscriptionOptions{});
        ASSERT_EQ(s.subscribe({SubChannel{"a", "default/a"}}, {newest()}).status, StoreResult::kOk);
        EXPECT_EQ(subscribers("default/a"), 1u);
    }
    EXPECT_TRUE(host_->log.empty());
    EXPECT_EQ(subscribers("default/a"), 0u);
}

TEST_F(SubscriptionTest, RefusedSetUndoesEveryChannelAndOpensNothing) {
    SubscriptionOptions opts;
    opts.existingOnly = true;
    worker_->publish("default/a", "x");
    worker_->publish("default/b", "x");

    Subscription s(host_.get(), &sink_, opts);
    auto start = s.subscribe(
        {SubChannel{"a", "default/a"}, SubChannel{"b", "default/b"}, SubChannel{"c", "default/c"}},
        {newest(), newest(), newest()});
    EXPECT_EQ(start.status, StoreResult::kNotFound);
    EXPECT_EQ(s.size(), 0u);
    s.open();
    EXPECT_TRUE(host_->log.empty());
    EXPECT_EQ(subscribers("default/a"), 0u);
    EXPECT_EQ(subscribers("default/b"), 0u);
}

TEST_F(SubscriptionTest, GroupLimitRefusesEveryTransportAlike) {
    SubscriptionOptions opts;
    opts.limits.maxSubscribers = 2;

    Subscription one(host_.get(), &sink_, opts);
    ASSERT_EQ(one.subscribe({SubChannel{"a", "default/a"}}, {newest()}).status, StoreResult::kOk);
    Subscription two(host_.get(), &sink_, opts);
    ASSERT_EQ(two.subscribe({SubChannel{"b", "default/b"}}, {newest()}).status, StoreResult::kOk);

    Subscription three(host_.get(), &sink_, opts);
    auto start = three.subscribe({SubChannel{"c", "default/c"}}, {newest()});
    EXPECT_EQ(start.status, StoreResult::kForbidden);
    EXPECT_FALSE(start.reason.empty());

    // multiplexed: the same limit, all or nothing
    Subscription four(host_.get(), &sink_, opts);
    auto multi = four.subscribe({SubChannel{"d", "default/d"}, SubChannel{"e", "default/e"}},
                                {newest(), newest()});
    EXPECT_EQ(multi.status, StoreResult::kForbidden);
    EXPECT_EQ(subscribers("default/d"), 0u);
}

TEST_F(SubscriptionTest, MultiplexedChannelsEachPairedAndCompoundIds) {
    auto s = std::make_unique<Subscription>(host_.get(), &sink_, SubscriptionOptions{});
    auto start = s->subscribe({SubChannel{"a", "default/a"}, SubChannel{"b", "default/b"}},
                              {newest(), newest()});
    ASSERT_EQ(start.status, StoreResult::kOk);
    ASSERT_TRUE(s->multiplexed());
    s->open();
    EXPECT_EQ(host_->openOf("hook", "default/a"), 1);
    EXPECT_EQ(host_->openOf("hook", "default/b"), 1);
    EXPECT_EQ(host_->openOf("presence", "default/a"), 1);
    EXPECT_EQ(host_->openOf("presence", "default/b"), 1);
    EXPECT_EQ(host_->counted, 1);

    auto r = worker_->publish("default/b", "to-b");
    ASSERT_EQ(sink_.got.size(), 1u);
    EXPECT_EQ(sink_.got[0].channel, 1u);
    EXPECT_EQ(sink_.got[0].id, std::to_string(r.id.time) + ":-,[0]");

    s.reset();
    EXPECT_EQ(host_->openTotal(), 0);
    EXPECT_EQ(subscribers("default/a"), 0u);
    EXPECT_EQ(subscribers("default/b"), 0u);
}

TEST_F(SubscriptionTest, ChannelsAddedAndRemovedOnALiveSubscription) {
    Subscription s(host_.get(), &sink_, SubscriptionOptions{});
    s.open();  // a socket with no channel yet
    EXPECT_EQ(host_->counted, 0);

    size_t ia = SIZE_MAX, ib = SIZE_MAX;
    EXPECT_EQ(add(s, "a", &ia).status, StoreResult::kOk);
    EXPECT_EQ(add(s, "b", &ib).status, StoreResult::kOk);
    EXPECT_NE(ia, ib);
    EXPECT_EQ(host_->counted, 1);
    EXPECT_EQ(host_->openOf("hook", "default/a"), 1);
    EXPECT_EQ(host_->openOf("presence", "default/b"), 1);
    EXPECT_EQ(host_->prepared, (std::vector<std::string>{"default/a", "default/b"}));

    // adding a channel twice does nothing twice
    size_t again = SIZE_MAX;
    EXPECT_EQ(add(s, "a", &again).status, StoreResult::kOk);
    EXPECT_EQ(again, ia);
    EXPECT_EQ(host_->openOf("hook", "default/a"), 1);
    EXPECT_EQ(subscribers("default/a"), 1u);

    worker_->publish("default/b", "to-b");
    ASSERT_EQ(sink_.got.size(), 1u);
    EXPECT_EQ(sink_.got[0].channel, ib);

    EXPECT_TRUE(s.remove("default/a"));
    EXPECT_FALSE(s.remove("default/a"));
    EXPECT_EQ(host_->openOf("hook", "default/a"), 0);
    EXPECT_EQ(host_->openOf("presence", "default/a"), 0);
    EXPECT_EQ(host_->openOf("events", "default/a"), 0);
    EXPECT_EQ(host_->openOf("hook", "default/b"), 1);
    EXPECT_EQ(subscribers("default/a"), 0u);
    worker_->publish("default/a", "gone");
    EXPECT_EQ(sink_.got.size(), 1u);

    // the slot is reused; b keeps its index
    size_t ic = SIZE_MAX;
    EXPECT_EQ(add(s, "c", &ic).status, StoreResult::kOk);
    EXPECT_EQ(ic, ia);
    worker_->publish("default/b", "b2");
    worker_->publish("default/c", "c1");
    ASSERT_EQ(sink_.got.size(), 3u);
    EXPECT_EQ(sink_.got[1].channel, ib);
    EXPECT_EQ(sink_.got[2].channel, ic);

    EXPECT_TRUE(s.remove("default/b"));
    EXPECT_TRUE(s.remove("default/c"));
    EXPECT_EQ(host_->counted, 0);  // nothing attached: not counted
    EXPECT_EQ(host_->openTotal(), 0);

    // every open matched by exactly one close, per channel
    int hooks = 0, joins = 0;
    for (const auto& l : host_->log) {
        hooks += l.rfind("hook+", 0) == 0 ? 1 : l.rfind("hook-", 0) == 0 ? -1 : 0;
        joins += l.rfind("join", 0) == 0 ? 1 : l.rfind("leave", 0) == 0 ? -1 : 0;
    }
    EXPECT_EQ(hooks, 0);
    EXPECT_EQ(joins, 0);
}

// A protocol names the presence member per channel (Pusher's channel_data):
// the host gets it when the channel opens, and a channel later added in the
// same slot without one does not inherit it.
TEST_F(SubscriptionTest, AddCarriesAPerChannelPresenceIdentity) {
    Subscription s(host_.get(), &sink_, SubscriptionOptions{});
    s.open();
    SubChannel ch{"p", "default/p"};
    ch.presence =
        std::make_shared<pubsub::PresenceIdentity>(pubsub::PresenceIdentity{"u1", R"({"n":1})"});
    bool called = false;
    s.add(std::move(ch), newest(), [&](size_t, SubscribeReply&& r) {
        called = true;
        EXPECT_EQ(r.status, StoreResult::kOk);
    });
    EXPECT_TRUE(called);
    EXPECT_EQ(add(s, "q").status, StoreResult::kOk);
    EXPECT_TRUE(s.remove("default/p"));
    EXPECT_EQ(add(s, "r").status, StoreResult::kOk);
    std::vector<std::string> joins;
    for (const auto& l : host_->log) {
        if (l.rfind("join", 0) == 0) {
            joins.push_back(l);
        }
    }
    EXPECT_EQ(joins, (std::vector<std::string>{R"(join default/p as u1 {"n":1})", "join default/q",
                                               "join default/r"}));
}

TEST_F(SubscriptionTest, RefusedAddChangesNothing) {
    SubscriptionOptions opts;
    opts.existingOnly = true;
    Subscription s(host_.get(), &sink_, opts);
    s.open();
    size_t i = 0;
    SubscribeReply r = add(s, "nope", &i);
    EXPECT_EQ(r.status, StoreResult::kNotFound);
    EXPECT_EQ(i, SIZE_MAX);
    EXPECT_EQ(s.size(), 0u);
    EXPECT_TRUE(host_->log.empty());
}

TEST_F(SubscriptionTest, AddAnsweredAfterPrepareAndNeverAfterDestruction) {
    host_->deferPrepare = true;
    bool called = false;
    {
        Subscription s(host_.get(), &sink_, SubscriptionOptions{});
        s.open();
        s.add(SubChannel{"a", "default/a"}, newest(),
              [&](size_t, SubscribeReply&&) { called = true; });
        EXPECT_FALSE(called);  // the engine is not ready yet
        EXPECT_EQ(subscribers("default/a"), 0u);
        ASSERT_EQ(host_->pending.size(), 1u);
        host_->pending[0]();
        EXPECT_TRUE(called);
        EXPECT_EQ(subscribers("default/a"), 1u);
        EXPECT_EQ(host_->openOf("hook", "default/a"), 1);

        called = false;
        s.add(SubChannel{"b", "default/b"}, newest(),
              [&](size_t, SubscribeReply&&) { called = true; });
    }
    // destroyed before the engine was ready: nothing subscribed, nothing called
    host_->pending[1]();
    EXPECT_FALSE(called);
    EXPECT_EQ(subscribers("default/b"), 0u);
    EXPECT_EQ(subscribers("default/a"), 0u);
}

// A channel removed before the store answered its add(), its slot taken by
// the next add(): the late completion subscribes nothing (the store holds
// each channel once), and each add() is answered once.
TEST_F(SubscriptionTest, AddRemovedBeforeItsAnswerSubscribesNothing) {
    host_->deferPrepare = true;
    Subscription s(host_.get(), &sink_, SubscriptionOptions{});
    s.open();
    std::vector<std::string> answers;
    auto note = [&](const char* what) {
        return [&answers, what](size_t i, SubscribeReply&& r) {
            answers.push_back(std::string(what) + (i == SIZE_MAX ? " refused: " + r.reason : " ok"));
        };
    };
    s.add(SubChannel{"a", "default/a"}, newest(), note("a"));
    EXPECT_TRUE(s.remove("default/a"));
    s.add(SubChannel{"a", "default/a"}, newest(), note("a again"));
    s.add(SubChannel{"b", "default/b"}, newest(), note("b"));
    ASSERT_EQ(host_->pending.size(), 3u);
    host_->pending[0]();  // the first add's late answer
    host_->pending[1]();
    host_->pending[2]();
    EXPECT_EQ(answers, (std::vector<std::string>{"a refused: channel left before it was subscribed",
                                                 "a again ok", "b ok"}));
    EXPECT_EQ(subscribers("default/a"), 1u);
    EXPECT_EQ(subscribers("default/b"), 1u);
    EXPECT_EQ(host_->openOf("hook", "default/a"), 1);
    s.close();
    EXPECT_EQ(subscribers("default/a"), 0u);
    EXPECT_EQ(subscribers("default/b"), 0u);
}

TEST_F(SubscriptionTest, PollingSessionsParkWhereThePollEnded) {
    auto r1 = worker_->publish("default/a", "m1");
    auto r2 = worker_->publish("default/a", "m2");

    SubscriptionOptions opts;
    opts.poll = true;
    opts.oneShot = true;
    opts.maxBacklog = 1;
    Subscription s(host_.get(), &sink_, opts);
    auto start = s.subscribe({SubChannel{"a", "default/a"}}, {after(r1.id)});
    ASSERT_EQ(start.status, StoreResult::kOk);
    ASSERT_EQ(start.backlogs[0].size(), 1u);
    EXPECT_FALSE(s.attached());  // answered from the backlog: not waiting

    s.open();
    EXPECT_EQ(host_->log.front(), "hook+ default/a @" + pubsub::formatMsgId(r1.id));
    EXPECT_EQ(host_->counted, 0);  // not waiting: not counted

    s.pollNext(start.backlogs[0][0]->id());
    s.close();
    EXPECT_EQ(host_->log.back(), "hook- default/a @" + pubsub::formatMsgId(r2.id));
}

TEST_F(SubscriptionTest, DeletedChannelEndsThePollingSession) {
    SubscriptionOptions opts;
    opts.poll = true;
    opts.oneShot = true;
    Subscription s(host_.get(), &sink_, opts);
    ASSERT_EQ(s.subscribe({SubChannel{"a", "default/a"}}, {newest()}).status, StoreResult::kOk);
    s.open();
    EXPECT_EQ(host_->counted, 1);  // waiting
    sink_.onDeliver = nullptr;
    bool removed = false;
    worker_->store->remove("default/a",
                           [&](StoreResult, const pubsub::ChannelInfo&) { removed = true; });
    EXPECT_TRUE(removed);
    ASSERT_EQ(sink_.deleted.size(), 1u);
    s.markDeleted();
    s.close();
    EXPECT_EQ(host_->log.back(), "hook- default/a @ deleted");
}

TEST_F(SubscriptionTest, TransportMayCloseFromInsideADelivery) {
    auto s = std::make_unique<Subscription>(host_.get(), &sink_, SubscriptionOptions{});
    ASSERT_EQ(s->subscribe({SubChannel{"a", "default/a"}}, {newest()}).status, StoreResult::kOk);
    s->open();
    sink_.onDeliver = [&] { s->close(); };
    worker_->publish("default/a", "m1");
    worker_->publish("default/a", "m2");
    EXPECT_EQ(sink_.got.size(), 1u);
    EXPECT_EQ(host_->openTotal(), 0);
    EXPECT_EQ(subscribers("default/a"), 0u);
}

TEST_F(SubscriptionTest, BacklogOfAMultiplexedSetIsMergedInTimeOrder) {
    zone_->now = 100;
    worker_->publish("default/a", "a1");
    zone_->now = 101;
    worker_->publish("default/b", "b1");
    zone_->now = 102;
    worker_->publish("default/a", "a2");

    StartSpec oldest;
    oldest.kind = StartSpec::kOldest;
    Subscription s(host_.get(), &sink_, SubscriptionOptions{});
    auto start =
        s.subscribe({SubChannel{"a", "default/a"}, SubChannel{"b", "default/b"}}, {oldest, oldest});
    ASSERT_EQ(start.status, StoreResult::kOk);
    s.open();
    s.deliverBacklog(start.backlogs);
    ASSERT_EQ(sink_.got.size(), 3u);
    EXPECT_EQ(sink_.got[0].data, "a1");
    EXPECT_EQ(sink_.got[1].data, "b1");
    EXPECT_EQ(sink_.got[2].data, "a2");
}

}  // namespace

TEST_F(SubscriptionTest, InfoRequestsReachTheHostForEachChannelNeverTheSink) {
    auto one = std::make_unique<Subscription>(host_.get(), &sink_, SubscriptionOptions{});
    ASSERT_EQ(one->subscribe({SubChannel{"a", "default/a"}}, {newest()}).status, StoreResult::kOk);
    auto mux = std::make_unique<Subscription>(host_.get(), &sink_, SubscriptionOptions{});
    ASSERT_EQ(mux->subscribe({SubChannel{"a", "default/a"}, SubChannel{"b", "default/b"}},
                             {newest(), newest()})
                  .status,
              StoreResult::kOk);
    ASSERT_TRUE(mux->multiplexed());
    host_->log.clear();
    worker_->store->hub().infoRequest("default/a", "subinfo:1");
    worker_->store->hub().infoRequest("default/b", "subinfo:2");
    std::vector<std::string> log = host_->log;
    std::sort(log.begin(), log.end());
    EXPECT_EQ(log, (std::vector<std::string>{"info default/a subinfo:1", "info default/a subinfo:1",
                                             "info default/b subinfo:2"}));
    EXPECT_TRUE(sink_.got.empty());
    one.reset();
    mux.reset();
}
