#include "pubsub/hub.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "core_fakes.h"

namespace {

using pubsub::Hub;
using pubsub::LocalChannel;
using pubsub::MessagePtr;
using pubsub::MsgId;
using pubsub_test::id;
using pubsub_test::makeMessage;
using pubsub_test::RecordingSubscriber;

// Messages kT:0 .. kT:n-1, each linked to the one before (the first to `prev`).
std::vector<MessagePtr> chain(int from, int count, MsgId prev = MsgId{}) {
    std::vector<MessagePtr> out;
    for (int i = from; i < from + count; i++) {
        MsgId mid{1000, i};
        MsgId p = i == from ? prev : MsgId{1000, i - 1};
        out.push_back(makeMessage(mid, p, "m" + std::to_string(i)));
    }
    return out;
}

std::vector<MsgId> range(int from, int count) {
    std::vector<MsgId> out;
    for (int i = from; i < from + count; i++) {
        out.push_back(MsgId{1000, i});
    }
    return out;
}

TEST(Hub, AttachAndDetach) {
    Hub hub;
    RecordingSubscriber a("a");
    RecordingSubscriber b("b");
    EXPECT_FALSE(a.attached());
    EXPECT_EQ(hub.find("ch"), nullptr);
    ASSERT_TRUE(hub.attach(&a, "ch", id(5, 0), id(7, 1)));
    EXPECT_TRUE(a.attached());
    EXPECT_EQ(a.cursor(), id(5, 0));
    LocalChannel* lc = hub.find("ch");
    ASSERT_NE(lc, nullptr);
    EXPECT_EQ(a.channel(), lc);
    EXPECT_EQ(lc->key(), "ch");
    EXPECT_EQ(lc->pulled, id(7, 1));  // new to this worker: starts at the store's last id
    EXPECT_EQ(lc->size(), 1u);
    // A second subscriber does not move `pulled`.
    ASSERT_TRUE(hub.attach(&b, "ch", id(7, 1), id(9, 9)));
    EXPECT_EQ(lc->pulled, id(7, 1));
    EXPECT_EQ(lc->size(), 2u);
    EXPECT_EQ(hub.channels(), 1u);
    EXPECT_EQ(hub.subscribers(), 2u);

    EXPECT_TRUE(hub.detach(&a));
    EXPECT_FALSE(a.attached());
    EXPECT_FALSE(hub.detach(&a));  // already detached
    EXPECT_EQ(hub.subscribers(), 1u);
    EXPECT_EQ(hub.find("ch"), lc);
    EXPECT_TRUE(hub.detach(&b));
    EXPECT_EQ(hub.find("ch"), nullptr);  // released with its last subscriber
    EXPECT_EQ(hub.channels(), 0u);
    EXPECT_EQ(hub.subscribers(), 0u);
    EXPECT_EQ(a.log.size() + b.log.size(), 0u);
}

TEST(Hub, DetachNeverAttached) {
    Hub hub;
    RecordingSubscriber a;
    EXPECT_FALSE(hub.detach(&a));
    EXPECT_EQ(hub.subscribers(), 0u);
}

TEST(Hub, KeysAreSeparate) {
    Hub hub;
    RecordingSubscriber a("a");
    RecordingSubscriber b("b");
    ASSERT_TRUE(hub.attach(&a, "x", MsgId{}, MsgId{}));
    ASSERT_TRUE(hub.attach(&b, std::string_view("x\0", 2), MsgId{}, MsgId{}));
    EXPECT_EQ(hub.channels(), 2u);
    hub.deliver("x", chain(0, 1));
    EXPECT_EQ(a.ids.size(), 1u);
    EXPECT_EQ(b.ids.size(), 0u);
    hub.deliver("nobody", chain(0, 1));  // no local subscribers: ignored
    EXPECT_EQ(hub.channels(), 2u);
    hub.detach(&a);
    hub.detach(&b);
}

TEST(Hub, SwapRemoveKeepsEveryoneElseReachable) {
    Hub hub;
    constexpr int kN = 50;
    std::vector<std::unique_ptr<RecordingSubscriber>> subs;
    for (int i = 0; i < kN; i++) {
        subs.push_back(std::make_unique<RecordingSubscriber>("s" + std::to_string(i)));
        ASSERT_TRUE(hub.attach(subs.back().get(), "ch", MsgId{}, MsgId{}));
    }
    // Detach from the front, the middle and the back, in a scrambled order.
    std::vector<int> gone = {0, 49, 25, 1, 48, 10, 11, 12, 30, 2};
    for (int g : gone) {
        ASSERT_TRUE(hub.detach(subs[g].get()));
    }
    EXPECT_EQ(hub.subscribers(), static_cast<size_t>(kN - gone.size()));
    hub.deliver("ch", chain(0, 3));
    for (int i = 0; i < kN; i++) {
        bool detached = std::find(gone.begin(), gone.end(), i) != gone.end();
        EXPECT_EQ(subs[i]->ids, detached ? std::vector<MsgId>{} : range(0, 3)) << i;
        EXPECT_EQ(subs[i]->attached(), !detached);
    }
    // Every remaining subscriber can still be detached (their indexes are right).
    for (int i = 0; i < kN; i++) {
        bool detached = std::find(gone.begin(), gone.end(), i) != gone.end();
        EXPECT_EQ(hub.detach(subs[i].get()), !detached) << i;
    }
    EXPECT_EQ(hub.subscribers(), 0u);
    EXPECT_EQ(hub.channels(), 0u);
}

TEST(Hub, DeliversExactlyOnceInOrder) {
    Hub hub;
    RecordingSubscriber a("a");
    RecordingSubscriber b("b");
    ASSERT_TRUE(hub.attach(&a, "ch", MsgId{}, MsgId{}));
    ASSERT_TRUE(hub.attach(&b, "ch", MsgId{}, MsgId{}));
    std::vector<MessagePtr> all = chain(0, 10);
    // Overlapping batches, as repeated pulls may produce.
    hub.deliver("ch", {all.begin(), all.begin() + 4});
    hub.deliver("ch", {all.begin() + 2, all.begin() + 7});
    hub.deliver("ch", {all.begin(), all.begin() + 7});
    hub.deliver("ch", {all.begin() + 6, all.end()});
    hub.deliver("ch", all);
    hub.deliver("ch", {});
    EXPECT_EQ(a.ids, range(0, 10));
    EXPECT_EQ(b.ids, range(0, 10));
    EXPECT_EQ(a.data.front(), "m0");
    EXPECT_EQ(a.data.back(), "m9");
    EXPECT_EQ(a.gaps + b.gaps, 0);
    EXPECT_EQ(a.cursor(), id(1000, 9));
    EXPECT_EQ(hub.find("ch")->pulled, id(1000, 9));
    hub.detach(&a);
    hub.detach(&b);
}

TEST(Hub, MessagesAreSharedNotCopied) {
    Hub hub;
    RecordingSubscriber a("a");
    RecordingSubscriber b("b");
    std::vector<const pubsub::Message*> seen;
    auto grab = [&](RecordingSubscriber*, const MessagePtr& m) { seen.push_back(m.get()); };
    a.onDeliver = grab;
    b.onDeliver = grab;
    ASSERT_TRUE(hub.attach(&a, "ch", MsgId{}, MsgId{}));
    ASSERT_TRUE(hub.attach(&b, "ch", MsgId{}, MsgId{}));
    std::vector<MessagePtr> msgs = chain(0, 1);
    hub.deliver("ch", msgs);
    ASSERT_EQ(seen.size(), 2u);
    EXPECT_EQ(seen[0], msgs[0].get());
    EXPECT_EQ(seen[1], msgs[0].get());
    EXPECT_EQ(msgs[0]->refs(), 1u);  // the hub kept no reference
    hub.detach(&a);
    hub.detach(&b);
}

TEST(Hub, CursorSkipsWhatASubscriberAlreadyHas) {
    Hub hub;
    RecordingSubscriber fresh("fresh");
    RecordingSubscriber resumed("resumed");
    ASSERT_TRUE(hub.attach(&fresh, "ch", MsgId{}, MsgId{}));
    ASSERT_TRUE(hub.attach(&resumed, "ch", id(1000, 4), MsgId{}));  // its backlog went to 4
    hub.deliver("ch", chain(0, 8));
    EXPECT_EQ(fresh.ids, range(0, 8));
    EXPECT_EQ(resumed.ids, range(5, 3));
    EXPECT_EQ(resumed.gaps, 0);
    hub.detach(&fresh);
    hub.detach(&resumed);
}

TEST(Hub, SubscriberDetachingItselfInDeliver) {
    // Long-poll: take one message and go.
    Hub hub;
    RecordingSubscriber poll("poll");
    RecordingSubscriber stream1("stream1");
    RecordingSubscriber stream2("stream2");
    poll.onDeliver = [&](RecordingSubscriber* s, const MessagePtr&) {
        EXPECT_TRUE(hub.detach(s));
    };
    ASSERT_TRUE(hub.attach(&stream1, "ch", MsgId{}, MsgId{}));
    ASSERT_TRUE(hub.attach(&poll, "ch", MsgId{}, MsgId{}));
    ASSERT_TRUE(hub.attach(&stream2, "ch", MsgId{}, MsgId{}));
    hub.deliver("ch", chain(0, 3));
    EXPECT_EQ(poll.ids, range(0, 1));
    EXPECT_FALSE(poll.attached());
    EXPECT_EQ(stream1.ids, range(0, 3));
    EXPECT_EQ(stream2.ids, range(0, 3));
    EXPECT_EQ(hub.subscribers(), 2u);
    // The hole left behind is compacted: the others still detach cleanly
    // and later deliveries reach them.
    hub.deliver("ch", chain(3, 1, id(1000, 2)));
    EXPECT_EQ(stream1.ids, range(0, 4));
    EXPECT_EQ(stream2.ids, range(0, 4));
    EXPECT_TRUE(hub.detach(&stream2));
    EXPECT_TRUE(hub.detach(&stream1));
    EXPECT_EQ(hub.channels(), 0u);
}

TEST(Hub, EverySubscriberDetachingInDeliverReleasesTheChannel) {
    Hub hub;
    std::vector<std::unique_ptr<RecordingSubscriber>> subs;
    for (int i = 0; i < 5; i++) {
        subs.push_back(std::make_unique<RecordingSubscriber>());
        subs.back()->onDeliver = [&](RecordingSubscriber* s, const MessagePtr&) {
            hub.detach(s);
        };
        ASSERT_TRUE(hub.attach(subs.back().get(), "ch", MsgId{}, MsgId{}));
    }
    hub.deliver("ch", chain(0, 2));
    for (auto& s : subs) {
        EXPECT_EQ(s->ids, range(0, 1));
        EXPECT_FALSE(s->attached());
    }
    EXPECT_EQ(hub.channels(), 0u);
    EXPECT_EQ(hub.subscribers(), 0u);
    EXPECT_EQ(hub.find("ch"), nullptr);
}

TEST(Hub, AttachDuringDeliverGetsOnlyLaterMessages) {
    Hub hub;
    RecordingSubscriber a("a");
    RecordingSubscriber late("late");
    a.onDeliver = [&](RecordingSubscriber*, const MessagePtr& m) {
        if (m->id() == id(1000, 0)) {
            // A new subscriber arrives; it has seen up to 1000:2 (its store backlog).
            EXPECT_TRUE(hub.attach(&late, "ch", id(1000, 2), MsgId{}));
        }
    };
    ASSERT_TRUE(hub.attach(&a, "ch", MsgId{}, MsgId{}));
    hub.deliver("ch", chain(0, 3));
    EXPECT_EQ(a.ids, range(0, 3));
    EXPECT_TRUE(late.ids.empty());
    hub.deliver("ch", chain(0, 5));
    EXPECT_EQ(a.ids, range(0, 5));
    EXPECT_EQ(late.ids, range(3, 2));
    hub.detach(&a);
    hub.detach(&late);
    EXPECT_EQ(hub.channels(), 0u);
}

TEST(Hub, DeliverReenteredFromACallbackKeepsOrder) {
    // Regression: a nested deliver() on the same channel (a subscriber's
    // callback published to it) reached the subscribers after the caller
    // before the outer message: they skipped it and got a false gap.
    Hub hub;
    RecordingSubscriber first("first");
    RecordingSubscriber second("second");
    RecordingSubscriber third("third");
    std::vector<MessagePtr> all = chain(0, 3);
    first.onDeliver = [&](RecordingSubscriber*, const MessagePtr& m) {
        if (m->id() == id(1000, 0)) {
            hub.deliver("ch", {all[1]});
            hub.deliver("ch", {all[1], all[2]});  // overlapping, as pulls may be
        }
    };
    ASSERT_TRUE(hub.attach(&first, "ch", MsgId{}, MsgId{}));
    ASSERT_TRUE(hub.attach(&second, "ch", MsgId{}, MsgId{}));
    ASSERT_TRUE(hub.attach(&third, "ch", MsgId{}, MsgId{}));
    hub.deliver("ch", {all[0]});
    for (RecordingSubscriber* s : {&first, &second, &third}) {
        EXPECT_EQ(s->ids, range(0, 3)) << s->name();
        EXPECT_EQ(s->gaps, 0) << s->name();
    }
    EXPECT_EQ(hub.find("ch")->pulled, id(1000, 2));
    hub.detach(&first);
    hub.detach(&second);
    hub.detach(&third);
    EXPECT_EQ(hub.channels(), 0u);
}

TEST(Hub, DetachingAnotherSubscriberInDeliverIsSafe) {
    // Not part of the contract, but must not crash: a detached subscriber
    // later in the list gets nothing more.
    Hub hub;
    RecordingSubscriber a("a");
    RecordingSubscriber b("b");
    a.onDeliver = [&](RecordingSubscriber*, const MessagePtr&) { hub.detach(&b); };
    ASSERT_TRUE(hub.attach(&a, "ch", MsgId{}, MsgId{}));
    ASSERT_TRUE(hub.attach(&b, "ch", MsgId{}, MsgId{}));
    hub.deliver("ch", chain(0, 2));
    EXPECT_EQ(a.ids, range(0, 2));
    EXPECT_TRUE(b.ids.empty());
    EXPECT_EQ(hub.subscribers(), 1u);
    hub.detach(&a);
    EXPECT_EQ(hub.channels(), 0u);
}

TEST(Hub, GapWhenCursorIsBeforeAMessagesPrev) {
    Hub hub;
    RecordingSubscriber behind("behind");
    RecordingSubscriber current("current");
    ASSERT_TRUE(hub.attach(&behind, "ch", id(1000, 1), MsgId{}));
    ASSERT_TRUE(hub.attach(&current, "ch", id(1000, 4), MsgId{}));
    // 1000:2..4 were dropped before this worker pulled them.
    hub.deliver("ch", chain(5, 3, id(1000, 4)));
    EXPECT_EQ(behind.log,
              (std::vector<std::string>{"gap", "msg 1000:5", "msg 1000:6", "msg 1000:7"}));
    EXPECT_EQ(current.log, (std::vector<std::string>{"msg 1000:5", "msg 1000:6", "msg 1000:7"}));
    // No further gaps once caught up.
    hub.deliver("ch", chain(8, 1, id(1000, 7)));
    EXPECT_EQ(behind.gaps, 1);
    EXPECT_EQ(current.gaps, 0);
    hub.detach(&behind);
    hub.detach(&current);
}

TEST(Hub, NoGapForTheVeryFirstMessage) {
    Hub hub;
    RecordingSubscriber s;
    ASSERT_TRUE(hub.attach(&s, "ch", MsgId{}, MsgId{}));
    hub.deliver("ch", chain(0, 2));
    EXPECT_EQ(s.gaps, 0);
    hub.detach(&s);
}

TEST(Hub, SubscriberDetachingInGapGetsNothing) {
    Hub hub;
    RecordingSubscriber s("s");
    RecordingSubscriber other("other");
    s.onGap = [&](RecordingSubscriber* self) { hub.detach(self); };
    ASSERT_TRUE(hub.attach(&s, "ch", id(1000, 0), MsgId{}));
    ASSERT_TRUE(hub.attach(&other, "ch", id(1000, 0), MsgId{}));
    hub.deliver("ch", chain(5, 2, id(1000, 4)));
    EXPECT_EQ(s.log, (std::vector<std::string>{"gap"}));
    EXPECT_EQ(other.log, (std::vector<std::string>{"gap", "msg 1000:5", "msg 1000:6"}));
    EXPECT_FALSE(s.attached());
    hub.detach(&other);
    EXPECT_EQ(hub.channels(), 0u);
}

TEST(Hub, ChannelDeletedDetachesEveryone) {
    Hub hub;
    RecordingSubscriber a("a");
    RecordingSubscriber b("b");
    RecordingSubscriber c("c");
    RecordingSubscriber elsewhere("elsewhere");
    ASSERT_TRUE(hub.attach(&a, "ch", MsgId{}, MsgId{}));
    ASSERT_TRUE(hub.attach(&b, "ch", MsgId{}, MsgId{}));
    ASSERT_TRUE(hub.attach(&c, "ch", MsgId{}, MsgId{}));
    ASSERT_TRUE(hub.attach(&elsewhere, "other", MsgId{}, MsgId{}));
    // A subscriber that tries to detach again while being told is harmless.
    b.onDeleted = [&](RecordingSubscriber* s) { EXPECT_FALSE(hub.detach(s)); };
    hub.channelDeleted("ch");
    for (RecordingSubscriber* s : {&a, &b, &c}) {
        EXPECT_EQ(s->deleted, 1) << s->name();
        EXPECT_FALSE(s->attached()) << s->name();
    }
    EXPECT_EQ(elsewhere.deleted, 0);
    EXPECT_TRUE(elsewhere.attached());
    EXPECT_EQ(hub.find("ch"), nullptr);
    EXPECT_EQ(hub.channels(), 1u);
    EXPECT_EQ(hub.subscribers(), 1u);
    hub.channelDeleted("ch");       // again: nothing left
    hub.channelDeleted("unknown");  // never existed
    EXPECT_EQ(a.deleted, 1);
    hub.detach(&elsewhere);
    EXPECT_EQ(hub.channels(), 0u);
    EXPECT_EQ(hub.subscribers(), 0u);
}

TEST(Hub, ChannelDeletedInsideDeliver) {
    Hub hub;
    RecordingSubscriber a("a");
    RecordingSubscriber b("b");
    a.onDeliver = [&](RecordingSubscriber*, const MessagePtr&) { hub.channelDeleted("ch"); };
    ASSERT_TRUE(hub.attach(&a, "ch", MsgId{}, MsgId{}));
    ASSERT_TRUE(hub.attach(&b, "ch", MsgId{}, MsgId{}));
    hub.deliver("ch", chain(0, 3));
    EXPECT_EQ(a.log, (std::vector<std::string>{"msg 1000:0", "deleted"}));
    EXPECT_EQ(b.log, (std::vector<std::string>{"deleted"}));
    EXPECT_EQ(hub.channels(), 0u);
    EXPECT_EQ(hub.subscribers(), 0u);
}

TEST(Hub, ReattachAfterDelete) {
    Hub hub;
    RecordingSubscriber a("a");
    ASSERT_TRUE(hub.attach(&a, "ch", MsgId{}, id(1000, 9)));
    hub.channelDeleted("ch");
    ASSERT_TRUE(hub.attach(&a, "ch", MsgId{}, MsgId{}));
    EXPECT_TRUE(hub.find("ch")->pulled.isNull());  // a new local channel
    hub.deliver("ch", chain(0, 1));
    EXPECT_EQ(a.ids, range(0, 1));
    hub.detach(&a);
}

TEST(Hub, CountsReturnToZeroWithManyChannels) {
    Hub hub;
    constexpr int kChannels = 200;
    constexpr int kPer = 5;
    std::vector<std::unique_ptr<RecordingSubscriber>> subs;
    for (int c = 0; c < kChannels; c++) {
        for (int i = 0; i < kPer; i++) {
            subs.push_back(std::make_unique<RecordingSubscriber>());
            ASSERT_TRUE(hub.attach(subs.back().get(), "ch" + std::to_string(c), MsgId{}, MsgId{}));
        }
    }
    EXPECT_EQ(hub.channels(), static_cast<size_t>(kChannels));
    EXPECT_EQ(hub.subscribers(), static_cast<size_t>(kChannels * kPer));
    for (int c = 0; c < kChannels; c++) {
        hub.deliver("ch" + std::to_string(c), chain(0, 1));
    }
    for (auto& s : subs) {
        EXPECT_EQ(s->ids.size(), 1u);
    }
    // Half the channels deleted, the other half detached one by one.
    for (int c = 0; c < kChannels; c += 2) {
        hub.channelDeleted("ch" + std::to_string(c));
    }
    EXPECT_EQ(hub.channels(), static_cast<size_t>(kChannels / 2));
    for (auto& s : subs) {
        if (s->attached()) {
            EXPECT_TRUE(hub.detach(s.get()));
        }
    }
    EXPECT_EQ(hub.channels(), 0u);
    EXPECT_EQ(hub.subscribers(), 0u);
}

}  // namespace
