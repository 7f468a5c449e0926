// The multiplexer: compound ids, resume positions and backlog order.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "pubsub/multiplex.h"
#include "pubsub/memory/presence.h"

namespace {

using pubsub::Message;
using pubsub::MessagePtr;
using pubsub::MsgId;
using pubsub::Multiplexer;

MessagePtr msg(int64_t t, int32_t tag, const std::string& data) {
    return MessagePtr::adopt(Message::create(MsgId{t, tag}, MsgId{}, "", "", data));
}

struct Sink : pubsub::MultiplexSink {
    void deliver(size_t ch, const MessagePtr& m, std::string_view id) override {
        got.push_back(std::to_string(ch) + ":" + std::string(m->data()) + "@" + std::string(id));
    }
    void gap(size_t ch) override { gaps.push_back(ch); }
    void channelDeleted(size_t ch) override { deleted.push_back(ch); }
    std::vector<std::string> got;
    std::vector<size_t> gaps, deleted;
};

TEST(Multiplex, CompoundIdsFollowNchansForm) {
    Sink sink;
    auto mux = Multiplexer::create(&sink, 2);
    ASSERT_NE(mux, nullptr);
    EXPECT_EQ(mux->compoundId(2), "0:-,-");
    mux->subscriber(0)->deliver(msg(100, 0, "a"));
    mux->subscriber(1)->deliver(msg(100, 0, "b"));
    mux->subscriber(1)->deliver(msg(100, 1, "c"));
    mux->subscriber(0)->deliver(msg(101, 0, "d"));
    EXPECT_EQ(sink.got, (std::vector<std::string>{"0:a@100:[0],-", "1:b@100:0,[0]",
                                                  "1:c@100:0,[1]", "0:d@101:[0],-"}));
    EXPECT_EQ(mux->compoundTags(5), "0,-");
    EXPECT_EQ(mux->compoundTime(), 101);
}

TEST(Multiplex, ResumeSpecs) {
    pubsub::ParsedMsgId id;
    std::string reason;
    ASSERT_TRUE(pubsub::parseMsgId("100:3,[-],0", &id, &reason));
    std::vector<pubsub::StartSpec> specs;
    ASSERT_TRUE(Multiplexer::resumeSpecs(id, 3, &specs, &reason));
    EXPECT_EQ(specs[0].after, (MsgId{100, 3}));
    EXPECT_EQ(specs[1].after, (MsgId{100, -1}));  // everything from time 100
    EXPECT_EQ(specs[2].after, (MsgId{100, 0}));
    EXPECT_FALSE(Multiplexer::resumeSpecs(id, 2, &specs, &reason));
    EXPECT_EQ(reason, "message id has 3 tags for 2 channels");
    ASSERT_TRUE(pubsub::parseMsgId("100:3", &id, &reason));
    ASSERT_TRUE(Multiplexer::resumeSpecs(id, 2, &specs, &reason));  // single id: every channel
    EXPECT_EQ(specs[1].after, (MsgId{100, 3}));
}

TEST(Multiplex, BacklogIsMergedByTime) {
    Sink sink;
    auto mux = Multiplexer::create(&sink, 3);
    mux->setPosition(2, MsgId{99, 4});
    std::vector<std::vector<MessagePtr>> b(3);
    b[0] = {msg(100, 0, "a0"), msg(102, 0, "a2")};
    b[1] = {msg(101, 0, "b1")};
    EXPECT_EQ(mux->earliest(b).first, 0u);
    mux->deliverBacklog(b);
    EXPECT_EQ(sink.got, (std::vector<std::string>{"0:a0@100:[0],-,-", "1:b1@101:-,[0],-",
                                                  "0:a2@102:[0],-,-"}));
    b.assign(3, {});
    EXPECT_EQ(mux->earliest(b).first, 3u);
}

TEST(Multiplex, ResumingFromAnIdGivesEveryLaterMessageOnce) {
    // Channels a and b; the client saw a@100:0, b@100:1, then a@101:0.
    Sink first;
    auto mux = Multiplexer::create(&first, 2);
    mux->subscriber(0)->deliver(msg(100, 0, "a"));
    mux->subscriber(1)->deliver(msg(100, 1, "b"));
    mux->subscriber(0)->deliver(msg(101, 0, "c"));
    std::string last = mux->compoundId(0);
    EXPECT_EQ(last, "101:[0],-");
    pubsub::ParsedMsgId id;
    std::string reason;
    ASSERT_TRUE(pubsub::parseMsgId(last, &id, &reason));
    std::vector<pubsub::StartSpec> specs;
    ASSERT_TRUE(Multiplexer::resumeSpecs(id, 2, &specs, &reason));
    // b published 101:0 meanwhile: after (101,-1) includes it; a's 101:0 is
    // not repeated.
    EXPECT_TRUE(MsgId({101, 0}) > specs[1].after);
    EXPECT_FALSE(MsgId({101, 0}) > specs[0].after);
    EXPECT_FALSE(MsgId({100, 1}) > specs[1].after);
}

TEST(Multiplex, BadSizes) {
    Sink sink;
    EXPECT_EQ(Multiplexer::create(&sink, 0), nullptr);
    EXPECT_EQ(Multiplexer::create(&sink, 256), nullptr);
    EXPECT_NE(Multiplexer::create(&sink, 255), nullptr);
}

}  // namespace

namespace {

struct PresenceSink : Sink {
    void channelPresence(size_t ch, const pubsub::PresenceEvent& ev) override {
        events.push_back(std::to_string(ch) + ":" + ev.channel + ":" + ev.id);
    }
    std::vector<std::string> events;
};

TEST(Multiplex, PresenceEventsNameTheirChannel) {
    PresenceSink sink;
    auto mux = Multiplexer::create(&sink, 3);
    ASSERT_NE(mux, nullptr);
    pubsub::PresenceEvent ev;
    ev.channel = "g/b";
    ev.id = "alice";
    mux->subscriber(1)->presenceEvent(ev);
    ev.channel = "g/c";
    mux->subscriber(2)->presenceEvent(ev);
    EXPECT_EQ(sink.events, (std::vector<std::string>{"1:g/b:alice", "2:g/c:alice"}));
    EXPECT_TRUE(sink.got.empty());

    // A sink that does not care about presence ignores them.
    Sink plain;
    auto quiet = Multiplexer::create(&plain, 1);
    ASSERT_NE(quiet, nullptr);
    quiet->subscriber(0)->presenceEvent(ev);
    EXPECT_TRUE(plain.got.empty());
}

}  // namespace
