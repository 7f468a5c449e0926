#include "pubsub/memory/memory_store.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "core_fakes.h"

namespace {

using pubsub::MsgId;
using pubsub::PublishReply;
using pubsub::StartSpec;
using pubsub::StoreResult;
using pubsub::SubscribeReply;
using pubsub::SubscribeRequest;
using pubsub_test::id;
using pubsub_test::RecordingSubscriber;
using pubsub_test::Worker;
using pubsub_test::Zone;

SubscribeRequest req(std::string_view key, StartSpec::Kind kind = StartSpec::kNewest,
                     MsgId after = MsgId{}) {
    SubscribeRequest r;
    r.key = key;
    r.start.kind = kind;
    r.start.after = after;
    return r;
}

std::vector<MsgId> idsOf(const std::vector<pubsub::MessagePtr>& msgs) {
    std::vector<MsgId> out;
    for (const auto& m : msgs) {
        out.push_back(m->id());
    }
    return out;
}

class MemoryStoreTest : public pubsub_test::TwoWorkers {
protected:
    uint64_t shmSubscribers(std::string_view key) {
        pubsub::ShmChannel* ch = pubsub::ShmStore(zone_->root, zone_->alloc.shm()).find(key);
        return ch == nullptr ? 0 : ch->subscribers;
    }
};

TEST_F(MemoryStoreTest, PublishDeliversLiveToAnAttachedSubscriber) {
    RecordingSubscriber s;
    SubscribeReply sr = a_->subscribe(&s, req("ch"));
    ASSERT_EQ(sr.status, StoreResult::kOk);
    EXPECT_TRUE(sr.attached);
    EXPECT_TRUE(s.attached());
    EXPECT_TRUE(sr.backlog.empty());
    EXPECT_FALSE(sr.gap);

    PublishReply pr = a_->publish("ch", "hello");
    ASSERT_EQ(pr.status, StoreResult::kOk);
    EXPECT_EQ(pr.id, id(zone_->now, 0));
    EXPECT_TRUE(pr.info.found);
    EXPECT_EQ(pr.info.messages, 1u);
    EXPECT_EQ(pr.info.subscribers, 1u);
    EXPECT_EQ(pr.info.lastId, pr.id);
    EXPECT_EQ(s.ids, std::vector<MsgId>{pr.id});
    EXPECT_EQ(s.data, std::vector<std::string>{"hello"});

    pr = a_->publish("ch", "again");
    EXPECT_EQ(pr.id, id(zone_->now, 1));
    EXPECT_EQ(s.data, (std::vector<std::string>{"hello", "again"}));
    EXPECT_EQ(s.gaps, 0);
    EXPECT_TRUE(a_->notices.empty());  // nobody else to tell
    a_->store->unsubscribe(&s);
}

TEST_F(MemoryStoreTest, MessageFieldsSurviveTheCopyOut) {
    RecordingSubscriber s;
    std::string ct;
    std::string ev;
    s.onDeliver = [&](RecordingSubscriber*, const pubsub::MessagePtr& m) {
        ct = std::string(m->contentType());
        ev = std::string(m->eventName());
    };
    a_->subscribe(&s, req("ch"));
    pubsub::PublishInput in;
    in.data = std::string_view("bin\0ary", 7);
    in.contentType = "application/octet-stream";
    in.eventName = "tick";
    a_->store->publish("ch", in, [](PublishReply&& r) { EXPECT_EQ(r.status, StoreResult::kOk); });
    ASSERT_EQ(s.data.size(), 1u);
    EXPECT_EQ(s.data[0], std::string("bin\0ary", 7));
    EXPECT_EQ(ct, "application/octet-stream");
    EXPECT_EQ(ev, "tick");
    a_->store->unsubscribe(&s);
}

// The origin travels through the zone to every worker, live and replayed.
TEST_F(MemoryStoreTest, OriginSurvivesTheCopyOutAndHistory) {
    RecordingSubscriber s;
    std::vector<std::string> origins;
    s.onDeliver = [&](RecordingSubscriber*, const pubsub::MessagePtr& m) {
        origins.emplace_back(m->origin());
    };
    b_->subscribe(&s, req("ch"));
    pubsub::PublishInput in;
    in.data = "d";
    in.origin = "123.456 user-1";
    a_->store->publish("ch", in, [](PublishReply&& r) { EXPECT_EQ(r.status, StoreResult::kOk); });
    in.origin = "";
    a_->store->publish("ch", in, [](PublishReply&& r) { EXPECT_EQ(r.status, StoreResult::kOk); });
    EXPECT_EQ(origins, (std::vector<std::string>{"123.456 user-1", ""}));
    b_->store->unsubscribe(&s);

    RecordingSubscriber late;
    SubscribeReply sr = a_->subscribe(&late, req("ch", StartSpec::kOldest));
    ASSERT_EQ(sr.status, StoreResult::kOk);
    ASSERT_EQ(sr.backlog.size(), 2u);
    EXPECT_EQ(sr.backlog[0]->origin(), "123.456 user-1");
    EXPECT_EQ(sr.backlog[0]->data(), "d");
    EXPECT_EQ(sr.backlog[1]->origin(), "");
    a_->store->unsubscribe(&late);
}

TEST_F(MemoryStoreTest, OneShotWithBacklogIsNotAttached) {
    a_->publish("ch", "1");
    a_->publish("ch", "2");
    a_->publish("ch", "3");
    RecordingSubscriber s;
    SubscribeRequest r = req("ch", StartSpec::kOldest);
    r.oneShot = true;
    zone_->now += 7;
    SubscribeReply sr = a_->subscribe(&s, r);
    ASSERT_EQ(sr.status, StoreResult::kOk);
    EXPECT_FALSE(sr.attached);
    EXPECT_FALSE(s.attached());
    ASSERT_EQ(sr.backlog.size(), 3u);
    EXPECT_EQ(sr.backlog[0]->data(), "1");
    EXPECT_EQ(sr.backlog[2]->data(), "3");
    EXPECT_EQ(sr.backlog[1]->prev(), sr.backlog[0]->id());
    EXPECT_EQ(shmSubscribers("ch"), 0u);
    EXPECT_EQ(a_->store->hub().subscribers(), 0u);
    auto info = a_->info("ch");
    EXPECT_EQ(info.second.lastSeen, zone_->now);  // a request counts as seen

    // maxBacklog takes only the first n.
    r.maxBacklog = 2;
    sr = a_->subscribe(&s, r);
    EXPECT_FALSE(sr.attached);
    ASSERT_EQ(sr.backlog.size(), 2u);
    EXPECT_EQ(sr.backlog[1]->data(), "2");
    // Resume after the second: gets the third only.
    r = req("ch", StartSpec::kAfter, sr.backlog[1]->id());
    r.oneShot = true;
    r.maxBacklog = 1;
    sr = a_->subscribe(&s, r);
    ASSERT_EQ(sr.backlog.size(), 1u);
    EXPECT_EQ(sr.backlog[0]->data(), "3");
    EXPECT_FALSE(sr.gap);
}

TEST_F(MemoryStoreTest, OneShotWithoutBacklogIsAttached) {
    a_->publish("ch", "old");
    RecordingSubscriber s;
    s.onDeliver = [&](RecordingSubscriber* self, const pubsub::MessagePtr&) {
        a_->store->unsubscribe(self);  // long-poll: one answer, then gone
    };
    SubscribeRequest r = req("ch", StartSpec::kNewest);
    r.oneShot = true;
    SubscribeReply sr = a_->subscribe(&s, r);
    ASSERT_EQ(sr.status, StoreResult::kOk);
    EXPECT_TRUE(sr.attached);
    EXPECT_TRUE(sr.backlog.empty());
    EXPECT_EQ(shmSubscribers("ch"), 1u);
    a_->publish("ch", "new");
    EXPECT_EQ(s.data, std::vector<std::string>{"new"});
    EXPECT_FALSE(s.attached());
    EXPECT_EQ(shmSubscribers("ch"), 0u);
    a_->publish("ch", "newer");
    EXPECT_EQ(s.data.size(), 1u);
}

TEST_F(MemoryStoreTest, StreamingSubscriberGetsBacklogThenLiveWithoutDuplicates) {
    for (int i = 0; i < 4; i++) {
        a_->publish("ch", std::to_string(i));
    }
    RecordingSubscriber s;
    SubscribeReply sr = a_->subscribe(&s, req("ch", StartSpec::kOldest));
    EXPECT_TRUE(sr.attached);
    ASSERT_EQ(sr.backlog.size(), 4u);
    EXPECT_EQ(s.cursor(), sr.backlog.back()->id());
    a_->publish("ch", "4");
    b_->publish("ch", "5");
    EXPECT_EQ(s.data, (std::vector<std::string>{"4", "5"}));
    EXPECT_EQ(s.gaps, 0);
    a_->store->unsubscribe(&s);
}

TEST_F(MemoryStoreTest, ExistingOnly) {
    RecordingSubscriber s;
    SubscribeRequest r = req("nope");
    r.existingOnly = true;
    SubscribeReply sr = a_->subscribe(&s, r);
    EXPECT_EQ(sr.status, StoreResult::kNotFound);
    EXPECT_FALSE(sr.reason.empty());
    EXPECT_FALSE(sr.attached);
    EXPECT_FALSE(s.attached());
    EXPECT_EQ(a_->info("nope").first, StoreResult::kNotFound);  // not created
    EXPECT_EQ(zone_->root->channels, 0u);

    a_->publish("yes", "x");
    r.key = "yes";
    sr = a_->subscribe(&s, r);
    EXPECT_EQ(sr.status, StoreResult::kOk);
    EXPECT_TRUE(sr.attached);
    a_->store->unsubscribe(&s);
}

// store.h's contract: subscribe() answers before it returns, whatever the
// answer (the glue reads the reply right after the call).
TEST_F(MemoryStoreTest, SubscribeCompletesBeforeReturning) {
    RecordingSubscriber s, t;
    auto subscribeNow = [&](RecordingSubscriber* sub, const SubscribeRequest& r) {
        bool called = false;
        SubscribeReply reply;
        a_->store->subscribe(sub, r, [&](SubscribeReply&& x) {
            called = true;
            reply = std::move(x);
        });
        EXPECT_TRUE(called);
        return reply;
    };

    SubscribeRequest missing = req("g/none");
    missing.existingOnly = true;
    EXPECT_EQ(subscribeNow(&s, missing).status, StoreResult::kNotFound);

    SubscribeRequest limited = req("g/a");
    limited.limits.maxSubscribers = 1;
    EXPECT_EQ(subscribeNow(&s, limited).status, StoreResult::kOk);
    limited.key = "g/b";
    EXPECT_EQ(subscribeNow(&t, limited).status, StoreResult::kForbidden);
    a_->store->unsubscribe(&s);
}

TEST_F(MemoryStoreTest, SubscribeCreatesTheChannel) {
    RecordingSubscriber s;
    a_->subscribe(&s, req("ch"));
    auto info = a_->info("ch");
    EXPECT_EQ(info.first, StoreResult::kOk);
    EXPECT_EQ(info.second.messages, 0u);
    EXPECT_EQ(info.second.subscribers, 1u);
    EXPECT_EQ(info.second.lastSeen, zone_->now);
    EXPECT_TRUE(info.second.lastId.isNull());
    a_->store->unsubscribe(&s);
}

TEST_F(MemoryStoreTest, Info) {
    auto none = a_->info("ch");
    EXPECT_EQ(none.first, StoreResult::kNotFound);
    EXPECT_FALSE(none.second.found);
    a_->publish("ch", "a", 10, 10);
    zone_->now += 5;
    PublishReply last = a_->publish("ch", "b", 10, 10);
    auto info = b_->info("ch");  // any worker sees the same
    EXPECT_EQ(info.first, StoreResult::kOk);
    EXPECT_TRUE(info.second.found);
    EXPECT_EQ(info.second.messages, 2u);
    EXPECT_EQ(info.second.subscribers, 0u);
    EXPECT_EQ(info.second.lastSeen, -1);
    EXPECT_EQ(info.second.lastId, last.id);
    // Info expires what is due.
    zone_->now += 5;
    EXPECT_EQ(a_->info("ch").second.messages, 1u);
    zone_->now += 5;
    EXPECT_EQ(a_->info("ch").second.messages, 0u);
    EXPECT_EQ(a_->info("ch").second.lastId, last.id);
}

TEST_F(MemoryStoreTest, RemoveTellsSubscribers) {
    RecordingSubscriber s1("s1");
    RecordingSubscriber s2("s2");
    RecordingSubscriber remote("remote");
    a_->subscribe(&s1, req("ch"));
    a_->subscribe(&s2, req("ch"));
    b_->subscribe(&remote, req("ch"));
    a_->publish("ch", "x");
    // A subscriber reacting to the deletion by unsubscribing is harmless.
    s1.onDeleted = [&](RecordingSubscriber* self) { a_->store->unsubscribe(self); };
    auto removed = a_->remove("ch");
    EXPECT_EQ(removed.first, StoreResult::kOk);
    EXPECT_TRUE(removed.second.found);
    EXPECT_EQ(removed.second.messages, 1u);
    EXPECT_EQ(removed.second.subscribers, 3u);
    EXPECT_EQ(s1.deleted, 1);
    EXPECT_EQ(s2.deleted, 1);
    EXPECT_EQ(remote.deleted, 1);  // through notify -> channelChanged(deleted)
    ASSERT_EQ(a_->notices.size(), 2u);  // the publish and the delete
    EXPECT_TRUE(a_->notices.back().deleted);
    EXPECT_FALSE(s1.attached() || s2.attached() || remote.attached());
    EXPECT_EQ(a_->store->hub().subscribers(), 0u);
    EXPECT_EQ(b_->store->hub().subscribers(), 0u);
    EXPECT_EQ(a_->info("ch").first, StoreResult::kNotFound);
    EXPECT_EQ(a_->remove("ch").first, StoreResult::kNotFound);
    EXPECT_EQ(zone_->root->subscribers, 0u);
    // Unsubscribing after the deletion is a no-op.
    b_->store->unsubscribe(&remote);
    EXPECT_EQ(zone_->root->subscribers, 0u);
    // The channel starts over.
    PublishReply pr = a_->publish("ch", "fresh");
    EXPECT_EQ(pr.info.messages, 1u);
    EXPECT_EQ(pr.info.subscribers, 0u);
}

TEST_F(MemoryStoreTest, RemoveWithoutOtherWorkersDoesNotNotify) {
    RecordingSubscriber s;
    a_->subscribe(&s, req("ch"));
    a_->remove("ch");
    EXPECT_EQ(s.deleted, 1);
    EXPECT_TRUE(a_->notices.empty());
    a_->publish("other", "x");
    a_->remove("other");
    EXPECT_TRUE(a_->notices.empty());
}

TEST_F(MemoryStoreTest, UnsubscribeUpdatesCounts) {
    RecordingSubscriber s;
    // Published to: the channel outlives its subscribers (one that never
    // had a message goes with its last one: see below).
    a_->publish("ch", "x");
    a_->subscribe(&s, req("ch"));
    EXPECT_EQ(shmSubscribers("ch"), 1u);
    zone_->now += 3;
    a_->store->unsubscribe(&s);
    EXPECT_FALSE(s.attached());
    EXPECT_EQ(shmSubscribers("ch"), 0u);
    EXPECT_EQ(a_->info("ch").second.lastSeen, zone_->now);
    a_->store->unsubscribe(&s);  // twice: no-op
    EXPECT_EQ(zone_->root->subscribers, 0u);
    EXPECT_EQ(a_->store->hub().channels(), 0u);
}

TEST_F(MemoryStoreTest, NotifyOnlyWhenOtherWorkersHaveSubscribers) {
    // Nobody subscribed anywhere.
    a_->publish("ch", "0");
    EXPECT_TRUE(a_->notices.empty());
    // Only worker A has a subscriber: A delivers itself, nobody to tell.
    RecordingSubscriber sa("a");
    a_->subscribe(&sa, req("ch"));
    a_->publish("ch", "1");
    EXPECT_TRUE(a_->notices.empty());
    EXPECT_EQ(sa.data, std::vector<std::string>{"1"});
    // B gets a subscriber: A must tell B.
    RecordingSubscriber sb("b");
    b_->subscribe(&sb, req("ch"));
    a_->publish("ch", "2");
    ASSERT_EQ(a_->notices.size(), 1u);
    EXPECT_EQ(a_->notices[0].key, "ch");
    EXPECT_FALSE(a_->notices[0].deleted);
    EXPECT_EQ(sb.data, std::vector<std::string>{"2"});
    EXPECT_EQ(sa.data, (std::vector<std::string>{"1", "2"}));
    // And B publishing tells A.
    b_->publish("ch", "3");
    EXPECT_EQ(b_->notices.size(), 1u);
    EXPECT_EQ(sa.data, (std::vector<std::string>{"1", "2", "3"}));
    EXPECT_EQ(sb.data, (std::vector<std::string>{"2", "3"}));
    // A's subscriber leaves: B has nobody else to tell.
    a_->store->unsubscribe(&sa);
    b_->publish("ch", "4");
    EXPECT_EQ(b_->notices.size(), 1u);
    EXPECT_EQ(sb.data, (std::vector<std::string>{"2", "3", "4"}));
    // Another channel is independent.
    a_->publish("other", "x");
    EXPECT_EQ(a_->notices.size(), 1u);
    b_->store->unsubscribe(&sb);
    a_->publish("ch", "5");
    EXPECT_EQ(a_->notices.size(), 1u);
}

TEST_F(MemoryStoreTest, NoNotifyCallbackMeansOneWorker) {
    Worker solo(zone_.get(), /*withNotify=*/false);
    RecordingSubscriber s;
    solo.subscribe(&s, req("ch"));
    RecordingSubscriber other;
    a_->subscribe(&other, req("ch"));  // would need a notify, but solo has none
    solo.publish("ch", "x");
    EXPECT_EQ(s.data.size(), 1u);
    solo.store->unsubscribe(&s);
    a_->store->unsubscribe(&other);
}

TEST_F(MemoryStoreTest, GapWhenTheResumeIdIsOlderThanTheBuffer) {
    std::vector<MsgId> ids;
    for (int i = 0; i < 20; i++) {
        ids.push_back(a_->publish("ch", std::to_string(i), 5).id);
    }
    RecordingSubscriber s;
    SubscribeReply sr = b_->subscribe(&s, req("ch", StartSpec::kAfter, ids[3]));
    EXPECT_TRUE(sr.gap);
    EXPECT_TRUE(sr.attached);
    EXPECT_EQ(idsOf(sr.backlog), std::vector<MsgId>(ids.begin() + 15, ids.end()));
    // Live messages after that: no second gap.
    a_->publish("ch", "20", 5);
    EXPECT_EQ(s.gaps, 0);
    EXPECT_EQ(s.data, std::vector<std::string>{"20"});
    b_->store->unsubscribe(&s);

    // Resuming exactly at the message before the oldest kept one: no gap.
    RecordingSubscriber t;
    sr = b_->subscribe(&t, req("ch", StartSpec::kAfter, ids[15]));
    EXPECT_FALSE(sr.gap);
    EXPECT_EQ(sr.backlog.size(), 5u);
    b_->store->unsubscribe(&t);
}

TEST_F(MemoryStoreTest, GapWhenEverythingExpired) {
    MsgId first = a_->publish("ch", "a", 10, 10).id;
    a_->publish("ch", "b", 10, 10);
    zone_->now += 10;
    RecordingSubscriber s;
    SubscribeReply sr = a_->subscribe(&s, req("ch", StartSpec::kAfter, first));
    EXPECT_TRUE(sr.gap);
    EXPECT_TRUE(sr.backlog.empty());
    EXPECT_TRUE(sr.attached);
    a_->publish("ch", "c");
    EXPECT_EQ(s.data, std::vector<std::string>{"c"});
    EXPECT_EQ(s.gaps, 0);
    a_->store->unsubscribe(&s);
}

TEST_F(MemoryStoreTest, SlowWorkerIsToldOfTheGap) {
    // Notifications to B are queued (IPC delay) and the buffer is shorter
    // than what is published meanwhile.
    std::deque<std::string> queued;
    a_->onNotify = [&](std::string_view key, bool) { queued.emplace_back(key); };
    RecordingSubscriber sb;
    b_->subscribe(&sb, req("ch"));
    for (int i = 0; i < 8; i++) {
        a_->publish("ch", std::to_string(i), 3);
    }
    while (!queued.empty()) {
        b_->store->channelChanged(queued.front(), false);
        queued.pop_front();
    }
    EXPECT_EQ(sb.log.front(), "gap");
    EXPECT_EQ(sb.gaps, 1);
    EXPECT_EQ(sb.data, (std::vector<std::string>{"5", "6", "7"}));
    b_->store->unsubscribe(&sb);
}

TEST_F(MemoryStoreTest, QueuedNotificationsLoseNothingWhenTheBufferIsLongEnough) {
    std::deque<std::pair<std::string, bool>> toA;
    std::deque<std::pair<std::string, bool>> toB;
    a_->onNotify = [&](std::string_view key, bool d) { toB.emplace_back(std::string(key), d); };
    b_->onNotify = [&](std::string_view key, bool d) { toA.emplace_back(std::string(key), d); };
    RecordingSubscriber sa("a");
    RecordingSubscriber sb("b");
    a_->subscribe(&sa, req("ch"));
    b_->subscribe(&sb, req("ch"));
    std::vector<MsgId> published;
    for (int round = 0; round < 50; round++) {
        for (int i = 0; i < 4; i++) {
            Worker* w = (i % 2 == 0) ? a_.get() : b_.get();
            published.push_back(w->publish("ch", "m", 100).id);
        }
        if (round == 20) {
            // A late subscriber on B while B is behind: starts at the newest.
            RecordingSubscriber late("late");
            b_->subscribe(&late, req("ch"));
            EXPECT_TRUE(late.ids.empty());
            b_->store->unsubscribe(&late);
        }
        while (!toA.empty() || !toB.empty()) {
            if (!toA.empty()) {
                a_->store->channelChanged(toA.front().first, toA.front().second);
                toA.pop_front();
            }
            if (!toB.empty()) {
                b_->store->channelChanged(toB.front().first, toB.front().second);
                toB.pop_front();
            }
        }
    }
    EXPECT_EQ(sa.ids, published);
    EXPECT_EQ(sb.ids, published);
    EXPECT_EQ(sa.gaps + sb.gaps, 0);
    a_->store->unsubscribe(&sa);
    b_->store->unsubscribe(&sb);
}

TEST_F(MemoryStoreTest, TwoWorkersThousandAlternatingPublishes) {
    constexpr int kPublishes = 1000;
    // Streaming subscribers on both workers, plus long-poll style ones that
    // take one message, leave, and come back with the id they last got.
    std::vector<std::unique_ptr<RecordingSubscriber>> streams;
    for (int i = 0; i < 3; i++) {
        streams.push_back(std::make_unique<RecordingSubscriber>("a" + std::to_string(i)));
        ASSERT_TRUE(a_->subscribe(streams.back().get(), req("ch")).attached);
        streams.push_back(std::make_unique<RecordingSubscriber>("b" + std::to_string(i)));
        ASSERT_TRUE(b_->subscribe(streams.back().get(), req("ch")).attached);
    }
    struct Poller {
        Worker* worker;
        RecordingSubscriber sub;
        MsgId last;
        std::vector<MsgId> got;
    };
    Poller pollers[2] = {{a_.get(), RecordingSubscriber("pa"), MsgId{}, {}},
                         {b_.get(), RecordingSubscriber("pb"), MsgId{}, {}}};
    for (Poller& p : pollers) {
        p.sub.onDeliver = [&p](RecordingSubscriber* self, const pubsub::MessagePtr& m) {
            p.got.push_back(m->id());
            p.last = m->id();
            p.worker->store->unsubscribe(self);
        };
    }
    // One long-poll round trip after another until the poller waits again.
    auto poll = [](Poller& p) {
        for (int n = 0; n < 100 && !p.sub.attached(); n++) {
            SubscribeRequest r = req("ch", StartSpec::kAfter, p.last);
            r.oneShot = true;
            r.maxBacklog = 1;
            SubscribeReply sr = p.worker->subscribe(&p.sub, r);
            ASSERT_EQ(sr.status, StoreResult::kOk);
            EXPECT_FALSE(sr.gap);
            for (const auto& m : sr.backlog) {
                p.got.push_back(m->id());
                p.last = m->id();
            }
        }
        EXPECT_TRUE(p.sub.attached());
    };
    uint64_t notices = 0;
    std::vector<MsgId> published;
    for (int i = 0; i < kPublishes; i++) {
        Worker* w = (i % 2 == 0) ? a_.get() : b_.get();
        if (i % 100 == 50) {
            zone_->now += 1;  // cross a few seconds
        }
        PublishReply pr = w->publish("ch", "m" + std::to_string(i), 10);
        ASSERT_EQ(pr.status, StoreResult::kOk);
        ASSERT_TRUE(published.empty() || published.back() < pr.id);
        published.push_back(pr.id);
        EXPECT_EQ(pr.info.messages, std::min<uint64_t>(i + 1, 10));
        // Pollers sometimes lag a few messages behind (still within the buffer).
        if (i % 3 == 0) {
            poll(pollers[0]);
            poll(pollers[1]);
        }
        EXPECT_FALSE(zone_->locked);
    }
    poll(pollers[0]);
    poll(pollers[1]);
    notices = a_->notices.size() + b_->notices.size();
    EXPECT_EQ(notices, static_cast<uint64_t>(kPublishes));  // every publish had remote subscribers
    for (auto& s : streams) {
        EXPECT_EQ(s->ids, published) << s->name();
        EXPECT_EQ(s->gaps, 0) << s->name();
        EXPECT_EQ(s->data.back(), "m" + std::to_string(kPublishes - 1));
    }
    for (Poller& p : pollers) {
        EXPECT_EQ(p.got, published) << p.sub.name();
        EXPECT_EQ(p.sub.gaps, 0);
        if (p.sub.attached()) {
            p.worker->store->unsubscribe(&p.sub);
        }
    }
    for (size_t i = 0; i < streams.size(); i++) {
        (i % 2 == 0 ? a_ : b_)->store->unsubscribe(streams[i].get());
    }
    EXPECT_EQ(zone_->root->subscribers, 0u);
    EXPECT_EQ(a_->store->hub().subscribers() + b_->store->hub().subscribers(), 0u);
    EXPECT_EQ(a_->store->hub().channels() + b_->store->hub().channels(), 0u);
}

TEST_F(MemoryStoreTest, TransientMessagesReachEveryWorkerButAreNotReplayed) {
    RecordingSubscriber sa;
    RecordingSubscriber sb;
    a_->subscribe(&sa, req("ch"));
    b_->subscribe(&sb, req("ch"));
    a_->publish("ch", "t1", 0);
    b_->publish("ch", "t2", 0);
    EXPECT_EQ(sa.data, (std::vector<std::string>{"t1", "t2"}));
    EXPECT_EQ(sb.data, (std::vector<std::string>{"t1", "t2"}));
    RecordingSubscriber late;
    SubscribeReply sr = a_->subscribe(&late, req("ch", StartSpec::kOldest));
    EXPECT_TRUE(sr.backlog.empty());
    EXPECT_EQ(a_->info("ch").second.messages, 0u);
    a_->store->unsubscribe(&sa);
    a_->store->unsubscribe(&late);
    b_->store->unsubscribe(&sb);
}

TEST_F(MemoryStoreTest, FullZoneIsNoMemory) {
    zone_->alloc.setBudget(zone_->alloc.liveBytes() + 2048);
    std::string payload(300, 'x');
    PublishReply pr;
    int ok = 0;
    for (int i = 0; i < 100; i++) {
        pr = a_->publish("ch", payload, 100, 60);
        if (pr.status != StoreResult::kOk) {
            break;
        }
        ok++;
    }
    EXPECT_EQ(pr.status, StoreResult::kNoMemory);
    EXPECT_EQ(pr.reason, "shared memory is full");
    EXPECT_GT(ok, 0);
    // A new channel cannot be created by a subscriber either.
    RecordingSubscriber s;
    SubscribeReply sr = a_->subscribe(&s, req(std::string(2000, 'k')));
    EXPECT_EQ(sr.status, StoreResult::kNoMemory);
    EXPECT_FALSE(sr.attached);
    EXPECT_FALSE(s.attached());
    // Recovers once the messages expire.
    zone_->now += 60;
    EXPECT_EQ(a_->publish("ch", payload, 100, 60).status, StoreResult::kOk);
    EXPECT_FALSE(zone_->locked);
}

TEST_F(MemoryStoreTest, SweepReleasesEverything) {
    for (int i = 0; i < 50; i++) {
        std::string key = "ch" + std::to_string(i);
        RecordingSubscriber s;
        a_->subscribe(&s, req(key));
        a_->publish(key, "x", 10, 30);
        b_->publish(key, "y", 10, 30);
        a_->store->unsubscribe(&s);
    }
    EXPECT_EQ(zone_->root->channels, 50u);
    a_->store->sweep(zone_->root->nbuckets, 60);
    EXPECT_EQ(zone_->root->channels, 50u);  // messages and recent activity
    zone_->now += 30;
    a_->store->sweep(zone_->root->nbuckets, 60);
    EXPECT_EQ(zone_->root->messages, 0u);
    EXPECT_EQ(zone_->root->channels, 50u);  // empty but within the grace
    zone_->now += 30;
    b_->store->sweep(zone_->root->nbuckets, 60);
    EXPECT_EQ(zone_->root->channels, 0u);
    EXPECT_EQ(zone_->alloc.liveCount(), 2u);  // the root and its buckets
    EXPECT_FALSE(zone_->locked);
}


// ------------------------------------------------- channels without messages

TEST_F(MemoryStoreTest, AChannelNobodyPublishedToGoesWithItsLastSubscriber) {
    RecordingSubscriber s1("s1"), s2("s2");
    ASSERT_TRUE(a_->subscribe(&s1, req("ch")).attached);
    ASSERT_TRUE(b_->subscribe(&s2, req("ch")).attached);
    a_->store->unsubscribe(&s1);
    EXPECT_EQ(a_->info("ch").first, StoreResult::kOk);  // s2 still waits
    b_->store->unsubscribe(&s2);
    EXPECT_EQ(a_->info("ch").first, StoreResult::kNotFound);
    EXPECT_EQ(zone_->root->channels, 0u);
    EXPECT_EQ(zone_->root->freshBytes, 0u);
    EXPECT_EQ(zone_->alloc.liveCount(), 2u);  // the root and its buckets
    // Made again, it works as a new channel in every worker.
    ASSERT_TRUE(a_->subscribe(&s1, req("ch")).attached);
    ASSERT_TRUE(b_->subscribe(&s2, req("ch")).attached);
    EXPECT_EQ(b_->publish("ch", "hello").status, StoreResult::kOk);
    EXPECT_EQ(s1.data, std::vector<std::string>{"hello"});
    EXPECT_EQ(s2.data, std::vector<std::string>{"hello"});
    a_->store->unsubscribe(&s1);
    b_->store->unsubscribe(&s2);
    EXPECT_EQ(zone_->root->channels, 1u);  // it has a message now
}

TEST_F(MemoryStoreTest, ARefusedSubscriberLeavesNoChannel) {
    RecordingSubscriber s;
    SubscribeRequest r = req("g/ch");
    r.limits.maxSubscribers = 1;
    RecordingSubscriber other;
    ASSERT_TRUE(a_->subscribe(&other, req("g/other")).attached);
    r.limits.maxSubscribers = 1;  // the group is full
    SubscribeReply sr = a_->subscribe(&s, r);
    EXPECT_EQ(sr.status, StoreResult::kForbidden);
    EXPECT_EQ(a_->info("g/ch").first, StoreResult::kNotFound);
    a_->store->unsubscribe(&other);
    EXPECT_EQ(zone_->root->channels, 0u);
}

TEST_F(MemoryStoreTest, LongPollsToFreshChannelsLeaveNothingBehind) {
    zone_->limitTo(64 * 1024);
    for (int i = 0; i < 5000; i++) {
        RecordingSubscriber s;
        Worker* w = i % 2 ? a_.get() : b_.get();
        ASSERT_TRUE(w->subscribe(&s, req("poll-" + std::to_string(i))).attached) << i;
        w->store->unsubscribe(&s);
    }
    EXPECT_EQ(zone_->root->channels, 0u);
    EXPECT_EQ(zone_->root->freshRefused, 0u);
}

TEST_F(MemoryStoreTest, AnonymousSubscribersCannotStarvePublishers) {
    zone_->limitTo(512 * 1024);
    ASSERT_EQ(a_->publish("news", "first").status, StoreResult::kOk);
    RecordingSubscriber reader("reader");
    ASSERT_TRUE(b_->subscribe(&reader, req("news")).attached);

    // Thousands of subscribers to channels nobody publishes to, from both
    // workers, some multiplexed over a few keys each.
    std::deque<RecordingSubscriber> subs;
    int refused = 0;
    for (int i = 0; i < 10000; i++) {
        subs.emplace_back("anon");
        Worker* w = i % 2 ? a_.get() : b_.get();
        SubscribeReply sr = w->subscribe(&subs.back(), req("fresh-" + std::to_string(i)));
        if (!sr.attached) {
            EXPECT_EQ(sr.status, StoreResult::kNoMemory);
            EXPECT_EQ(sr.reason,
                      "Too many channels without messages: shared memory is kept for messages.");
            refused++;
            subs.pop_back();
        }
    }
    EXPECT_GT(refused, 5000);
    EXPECT_GT(subs.size(), 400u);  // 128 KB of channels of about 288 bytes
    EXPECT_LE(zone_->root->freshBytes, zone_->root->freshLimit);

    // Publishers to existing channels still have the rest of the zone.
    std::string payload(1000, 'p');
    for (int i = 0; i < 200; i++) {
        PublishReply pr = a_->publish("news", payload, 200, 3600);
        ASSERT_EQ(pr.status, StoreResult::kOk) << i;
    }
    EXPECT_EQ(reader.data.size(), 200u);
    // A subscriber to a channel that has messages is still accepted.
    RecordingSubscriber late("late");
    EXPECT_TRUE(a_->subscribe(&late, req("news")).attached);
    // A channel the subscribers made can still get its first message (and
    // so stops counting).
    EXPECT_EQ(a_->publish("fresh-0", "hi").status, StoreResult::kOk);
    EXPECT_EQ(subs.front().data, std::vector<std::string>{"hi"});

    for (RecordingSubscriber& s : subs) {
        (s.attached() && a_->store->hub().find(s.channel()->key()) == s.channel() ? a_ : b_)
            ->store->unsubscribe(&s);
    }
    a_->store->unsubscribe(&late);
    b_->store->unsubscribe(&reader);
    EXPECT_EQ(zone_->root->channels, 2u);  // news, fresh-0
    EXPECT_EQ(zone_->root->freshBytes, 0u);
    EXPECT_EQ(zone_->root->freshChannels, 0u);
    EXPECT_EQ(zone_->root->subscribers, 0u);
    // Subscribers to new channels are welcome again.
    RecordingSubscriber again;
    EXPECT_TRUE(a_->subscribe(&again, req("fresh-again")).attached);
    a_->store->unsubscribe(&again);
}

TEST_F(MemoryStoreTest, WorkersHashLikeTheZone) {
    RecordingSubscriber s1, s2;
    a_->subscribe(&s1, req("room"));
    b_->subscribe(&s2, req("room"));
    uint64_t h = pubsub::ShmStore(zone_->root, zone_->alloc.shm()).hashOf("room");
    EXPECT_EQ(a_->store->hub().find("room")->hash, h);
    EXPECT_EQ(b_->store->hub().find("room")->hash, h);
    std::vector<std::string> keys;
    a_->store->hub().keysWithHash(h, &keys);
    EXPECT_EQ(keys, std::vector<std::string>{"room"});
    a_->store->unsubscribe(&s1);
    b_->store->unsubscribe(&s2);
}

TEST_F(MemoryStoreTest, LockIsTakenForEveryOperationAndReleased) {
    RecordingSubscriber s;
    uint64_t before = zone_->locks;
    a_->subscribe(&s, req("ch"));
    a_->publish("ch", "x");
    a_->info("ch");
    a_->store->unsubscribe(&s);
    a_->remove("ch");
    a_->store->sweep(1, 1);
    EXPECT_GE(zone_->locks - before, 6u);
    EXPECT_FALSE(zone_->locked);
}

TEST_F(MemoryStoreTest, SubscriberMayPublishFromDeliver) {
    // A subscriber that answers every message by publishing on another
    // channel (e.g. channel events): no lock re-entry, nothing lost.
    RecordingSubscriber echo("echo");
    RecordingSubscriber watcher("watcher");
    echo.onDeliver = [&](RecordingSubscriber*, const pubsub::MessagePtr& m) {
        a_->publish("echo", m->data());
    };
    a_->subscribe(&echo, req("ch"));
    b_->subscribe(&watcher, req("echo"));
    for (int i = 0; i < 10; i++) {
        b_->publish("ch", std::to_string(i));
    }
    EXPECT_EQ(watcher.data.size(), 10u);
    EXPECT_EQ(watcher.data.back(), "9");
    a_->store->unsubscribe(&echo);
    b_->store->unsubscribe(&watcher);
}

TEST_F(MemoryStoreTest, SubscriberMayPublishOnItsOwnChannelFromDeliver) {
    // Regression: a subscriber answering "ping" with "pong" on the same
    // channel made the hub deliver "pong" (nested) before the subscribers
    // after it in the list had "ping": they lost "ping" and saw a false gap.
    RecordingSubscriber responder("responder");
    RecordingSubscriber local("local");
    RecordingSubscriber remote("remote");
    responder.onDeliver = [&](RecordingSubscriber*, const pubsub::MessagePtr& m) {
        if (m->data() == "ping") {
            a_->publish("ch", "pong");
        }
    };
    a_->subscribe(&responder, req("ch"));
    a_->subscribe(&local, req("ch"));
    b_->subscribe(&remote, req("ch"));
    a_->publish("ch", "ping");
    std::vector<std::string> expected = {"ping", "pong"};
    EXPECT_EQ(responder.data, expected);
    EXPECT_EQ(local.data, expected);
    EXPECT_EQ(remote.data, expected);
    EXPECT_EQ(local.gaps + remote.gaps + responder.gaps, 0);
    b_->publish("ch", "ping");
    expected = {"ping", "pong", "ping", "pong"};
    EXPECT_EQ(responder.data, expected);
    EXPECT_EQ(local.data, expected);
    EXPECT_EQ(remote.data, expected);
    EXPECT_EQ(local.gaps + remote.gaps + responder.gaps, 0);
    a_->store->unsubscribe(&responder);
    a_->store->unsubscribe(&local);
    b_->store->unsubscribe(&remote);
}

}  // namespace
