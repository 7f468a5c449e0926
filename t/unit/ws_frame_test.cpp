// Outgoing WebSocket frames (pubsub/codec/ws_frame.h): every frame a plan
// describes is written as the transport writes it and read back by a
// client-side FrameParser (which inflates), so each case checks what a
// client gets, not only the choices.
#include "pubsub/codec/ws_frame.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "pubsub/memory/presence.h"

using namespace pubsub::ws;
using pubsub::Message;
using pubsub::MessagePtr;
using pubsub::MsgId;

namespace {

// The transport's settings (ngx_pubsub_ws): window 10, memLevel 5.
DeflateOptions transportOptions() {
    DeflateOptions o;
    o.windowBits = 10;
    o.memLevel = 5;
    return o;
}

DeflateParams params(bool noContextTakeover, int serverBits = 15) {
    DeflateParams p;
    p.serverNoContextTakeover = noContextTakeover;
    p.serverMaxWindowBits = serverBits;
    return p;
}

MessagePtr makeMsg(MsgId id, std::string_view ct, std::string_view data) {
    return MessagePtr::adopt(Message::create(id, MsgId{}, ct, "", data));
}

std::string textish(size_t n, unsigned seed) {
    static const char* words[] = {"alpha ", "beta ", "gamma ", "delta ", "channel ", "msg "};
    std::string s;
    while (s.size() < n) {
        seed = seed * 1103515245u + 12345u;
        s += words[(seed >> 16) % 6];
    }
    s.resize(n);
    return s;
}

std::string letters(size_t n, unsigned seed) {
    std::string s;
    while (s.size() < n) {
        seed = seed * 1103515245u + 12345u;
        s += static_cast<char>('a' + (seed >> 16) % 26);
    }
    return s;
}

// The bytes of the frame a plan describes, as the transport writes them.
std::string wire(const FramePlan& plan, const Message* msg) {
    std::string_view payload;
    if (plan.payload == FramePayload::kMessageData) {
        payload = msg->data();
    } else if (plan.payload == FramePayload::kSharedDeflated) {
        payload = *plan.shared;
    }
    uint8_t head[kMaxServerHeaderSize];
    size_t n =
        writeFrameHeader(head, plan.opcode, plan.head.size() + payload.size(), true, plan.rsv1);
    std::string out(reinterpret_cast<const char*>(head), n);
    out += plan.head;
    out += payload;
    return out;
}

// A client of one connection: reads the frames in order, inflating with
// the negotiated parameters (the server's window and context takeover).
class Client {
public:
    explicit Client(const DeflateParams* p) : parser_(config(p)) {}

    Event read(const FramePlan& plan, const Message* msg) {
        std::string bytes = wire(plan, msg);
        Event ev;
        size_t n = parser_.feed(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), ev);
        EXPECT_EQ(n, bytes.size());
        EXPECT_EQ(ev.type, EventType::Message) << ev.reason;
        return ev;
    }

private:
    static ParserConfig config(const DeflateParams* p) {
        ParserConfig c;
        c.maxMessageSize = 0;
        c.expectMasked = false;
        if (p != nullptr) {
            c.deflate = true;
            c.inflateWindowBits = p->serverMaxWindowBits;
            c.inflateNoContextTakeover = p->serverNoContextTakeover;
        }
        return c;
    }

    FrameParser parser_;
};

// A connection: its framer and the client at the other end.
struct Conn {
    Conn(bool meta, const DeflateParams* p, bool share) : client(p) {
        framer.configure(meta, p, transportOptions(), share);
    }

    // Frames msg (facts from cache) and reads it back.
    Event send(MessageFactsCache& cache, const MessagePtr& msg, FramePlan& plan,
               std::string_view compoundId = {}) {
        EXPECT_EQ(framer.message(*msg, cache.lookup(msg), compoundId, plan), FrameResult::kSend);
        return client.read(plan, msg.get());
    }

    MessageFramer framer;
    Client client;
};

std::string meta(std::string_view id, std::string_view ct) {
    std::string s = "id: " + std::string(id) + "\n";
    if (!ct.empty()) {
        s += "content-type: " + std::string(ct) + "\n";
    }
    return s + "\n";
}

}  // namespace

// ---------------------------------------------------------------- cache

TEST(WsFrameCache, OneEntryPerMessage) {
    MessageFactsCache cache;
    MessagePtr a = makeMsg({1, 0}, "", "hello");
    MessagePtr b = makeMsg({1, 1}, "", "\xff\xfe");

    MessageFacts& fa = cache.lookup(a);
    EXPECT_TRUE(fa.utf8);
    EXPECT_FALSE(fa.deflateTried);
    EXPECT_EQ(fa.deflated, nullptr);
    EXPECT_EQ(&cache.lookup(a), &fa);
    EXPECT_FALSE(cache.lookup(b).utf8);
    EXPECT_EQ(&cache.lookup(a), &fa);
}

TEST(WsFrameCache, HoldsAReferenceAndEvictsTheOldest) {
    MessageFactsCache cache;
    std::vector<MessagePtr> msgs;
    for (int i = 0; i <= static_cast<int>(MessageFactsCache::kSize); i++) {
        msgs.push_back(makeMsg({1, i}, "", "m"));
    }

    MessageFacts& first = cache.lookup(msgs[0]);
    first.deflateTried = true;
    EXPECT_EQ(msgs[0]->refs(), 2u);

    for (size_t i = 1; i < MessageFactsCache::kSize; i++) {
        cache.lookup(msgs[i]);
    }
    EXPECT_TRUE(cache.lookup(msgs[0]).deflateTried);  // still cached

    cache.lookup(msgs[MessageFactsCache::kSize]);  // replaces the oldest
    EXPECT_EQ(msgs[0]->refs(), 1u);
    EXPECT_FALSE(cache.lookup(msgs[0]).deflateTried);  // looked at anew
}

// ---------------------------------------------------------------- plain

TEST(WsFramePlain, TextOrBinary) {
    struct Case {
        std::string_view ct;
        std::string_view data;
        Opcode op;
    } cases[] = {
        {"", "hello", Opcode::Text},
        {"text/plain", "h\xc3\xa9llo \xe2\x82\xac", Opcode::Text},
        {"application/json", "{}", Opcode::Text},
        {"", "", Opcode::Text},
        {"application/octet-stream", "hello", Opcode::Binary},
        {"", "\xff\x00\x01", Opcode::Binary},
        {"text/plain", "\xc3", Opcode::Binary},  // cut UTF-8 sequence
        {"bad\xff", "hello", Opcode::Text},      // the type only matters with meta
    };
    MessageFactsCache cache;

    for (const Case& c : cases) {
        Conn conn(false, nullptr, false);
        MessagePtr msg = makeMsg({5, 0}, c.ct, c.data);
        FramePlan plan;
        Event ev = conn.send(cache, msg, plan);

        EXPECT_EQ(plan.opcode, c.op) << c.data;
        EXPECT_FALSE(plan.rsv1);
        EXPECT_TRUE(plan.head.empty());
        EXPECT_EQ(plan.payload, FramePayload::kMessageData);
        EXPECT_EQ(plan.shared, nullptr);
        EXPECT_EQ(ev.opcode, c.op);
        EXPECT_EQ(ev.payload, c.data);
    }
}

TEST(WsFramePlain, CompoundIdIgnoredWithoutMeta) {
    MessageFactsCache cache;
    Conn conn(false, nullptr, false);
    FramePlan plan;
    Event ev = conn.send(cache, makeMsg({5, 0}, "", "x"), plan, "5:[0],-");

    EXPECT_TRUE(plan.head.empty());
    EXPECT_EQ(ev.payload, "x");
}

// ---------------------------------------------------------------- meta

TEST(WsFrameMeta, PrefixBeforeTheData) {
    MessageFactsCache cache;
    Conn conn(true, nullptr, false);
    FramePlan plan;
    Event ev = conn.send(cache, makeMsg({1700000000, 3}, "text/plain", "hi"), plan);

    EXPECT_EQ(plan.opcode, Opcode::Text);
    EXPECT_FALSE(plan.rsv1);
    EXPECT_EQ(plan.head, "id: 1700000000:3\ncontent-type: text/plain\n\n");
    EXPECT_EQ(plan.payload, FramePayload::kMessageData);
    EXPECT_EQ(ev.payload, "id: 1700000000:3\ncontent-type: text/plain\n\nhi");
}

TEST(WsFrameMeta, NoContentTypeLine) {
    MessageFactsCache cache;
    Conn conn(true, nullptr, false);
    FramePlan plan;
    Event ev = conn.send(cache, makeMsg({7, 0}, "", ""), plan);

    EXPECT_EQ(plan.opcode, Opcode::Text);
    EXPECT_EQ(ev.payload, "id: 7:0\n\n");
}

TEST(WsFrameMeta, CompoundIdOfAMultiplexedSubscription) {
    MessageFactsCache cache;
    Conn conn(true, nullptr, false);
    FramePlan plan;
    Event ev = conn.send(cache, makeMsg({7, 2}, "text/plain", "m"), plan, "7:-,[2],-");

    EXPECT_EQ(ev.payload, meta("7:-,[2],-", "text/plain") + "m");
}

TEST(WsFrameMeta, BinaryFrames) {
    struct Case {
        std::string_view ct;
        std::string_view data;
        Opcode op;
    } cases[] = {
        {"application/octet-stream", "bytes", Opcode::Binary},
        {"", "\xff\xfe", Opcode::Binary},
        {"bad\xff", "hello", Opcode::Binary},  // a type that is not UTF-8
        {"text/plain", "hello", Opcode::Text},
    };
    MessageFactsCache cache;

    for (const Case& c : cases) {
        Conn conn(true, nullptr, false);
        MessagePtr msg = makeMsg({9, 1}, c.ct, c.data);
        FramePlan plan;
        Event ev = conn.send(cache, msg, plan);

        EXPECT_EQ(plan.opcode, c.op) << c.ct;
        EXPECT_EQ(ev.payload, meta("9:1", c.ct) + std::string(c.data));
    }
}

// ---------------------------------------------------------------- deflate

TEST(WsFrameDeflate, OwnDeflaterWithContextTakeover) {
    MessageFactsCache cache;
    DeflateParams p = params(false);
    Conn conn(false, &p, false);
    std::string text = letters(600, 1);  // fits the window (1 KiB)
    std::vector<size_t> sizes;

    for (int i = 0; i < 3; i++) {
        MessagePtr msg = makeMsg({1, i}, "", text);
        FramePlan plan;
        Event ev = conn.send(cache, msg, plan);

        EXPECT_TRUE(plan.rsv1);
        EXPECT_EQ(plan.payload, FramePayload::kNone);
        EXPECT_FALSE(plan.contextReset);
        EXPECT_TRUE(ev.compressed);
        EXPECT_EQ(ev.opcode, Opcode::Text);
        EXPECT_EQ(ev.payload, text);
        EXPECT_FALSE(cache.lookup(msg).deflateTried);  // sharing is off
        sizes.push_back(plan.head.size());
    }
    EXPECT_LT(sizes[1], sizes[0] / 10);  // the window held the first one
    EXPECT_TRUE(conn.framer.deflating());
}

TEST(WsFrameDeflate, OwnDeflaterWithoutContextTakeover) {
    MessageFactsCache cache;
    DeflateParams p = params(true);
    Conn conn(false, &p, false);
    std::string text = textish(2000, 2);
    std::vector<size_t> sizes;

    for (int i = 0; i < 2; i++) {
        FramePlan plan;
        Event ev = conn.send(cache, makeMsg({1, i}, "", text), plan);

        EXPECT_TRUE(plan.rsv1);
        EXPECT_EQ(ev.payload, text);
        sizes.push_back(plan.head.size());
    }
    EXPECT_EQ(sizes[0], sizes[1]);
}

TEST(WsFrameDeflate, MetaPrefixAndBinaryCompressedTogether) {
    MessageFactsCache cache;
    DeflateParams p = params(false);
    Conn conn(true, &p, false);
    std::string data = "\xff" + textish(500, 3);
    FramePlan plan;
    Event ev = conn.send(cache, makeMsg({4, 4}, "application/x", data), plan);

    EXPECT_EQ(plan.opcode, Opcode::Binary);
    EXPECT_TRUE(plan.rsv1);
    EXPECT_EQ(plan.payload, FramePayload::kNone);
    EXPECT_EQ(ev.opcode, Opcode::Binary);
    EXPECT_EQ(ev.payload, meta("4:4", "application/x") + data);
}

TEST(WsFrameDeflate, EmptyMessage) {
    MessageFactsCache cache;
    DeflateParams p = params(false);
    Conn conn(false, &p, false);
    FramePlan plan;
    Event ev = conn.send(cache, makeMsg({1, 0}, "", ""), plan);

    EXPECT_TRUE(plan.rsv1);
    EXPECT_EQ(plan.head, std::string(1, '\0'));
    EXPECT_EQ(ev.payload, "");
}

// ---------------------------------------------------------------- shared copy

TEST(WsFrameShared, OneCopyForEveryConnection) {
    MessageFactsCache cache;
    DeflateParams takeover = params(false);
    DeflateParams none = params(true, 12);
    Conn a(false, &takeover, true);
    Conn b(false, &none, true);
    std::string text = textish(3000, 4);
    MessagePtr msg = makeMsg({2, 0}, "", text);
    FramePlan pa, pb;

    Event ea = a.send(cache, msg, pa);
    ASSERT_NE(cache.lookup(msg).deflated, nullptr);
    const std::string* copy = cache.lookup(msg).deflated.get();
    Event eb = b.send(cache, msg, pb);

    for (const FramePlan* plan : {&pa, &pb}) {
        EXPECT_TRUE(plan->rsv1);
        EXPECT_TRUE(plan->head.empty());
        EXPECT_EQ(plan->payload, FramePayload::kSharedDeflated);
        EXPECT_EQ(plan->shared.get(), copy);
        EXPECT_FALSE(plan->contextReset);  // no Deflater of their own yet
    }
    EXPECT_TRUE(cache.lookup(msg).deflateTried);
    EXPECT_EQ(cache.lookup(msg).deflated.get(), copy);  // made once
    EXPECT_EQ(ea.payload, text);
    EXPECT_EQ(eb.payload, text);
    EXPECT_TRUE(eb.compressed);
}

TEST(WsFrameShared, MetaPrefixDeflatedBeforeTheCopy) {
    MessageFactsCache cache;
    DeflateParams p = params(false);
    Conn a(true, &p, true);
    Conn b(true, &p, true);
    std::string text = textish(1000, 5);
    MessagePtr msg = makeMsg({3, 1}, "text/plain", text);
    FramePlan pa, pb;

    Event ea = a.send(cache, msg, pa, "3:[1],-");
    Event eb = b.send(cache, msg, pb);

    EXPECT_EQ(pa.payload, FramePayload::kSharedDeflated);
    EXPECT_EQ(pa.shared, pb.shared);
    std::string tail = pa.head.substr(pa.head.size() - 4);
    EXPECT_EQ(tail, std::string("\x00\x00\xff\xff", 4));  // the prefix ends on a byte
    EXPECT_NE(pa.head, pb.head);
    EXPECT_EQ(ea.payload, meta("3:[1],-", "text/plain") + text);
    EXPECT_EQ(eb.payload, meta("3:1", "text/plain") + text);
}

TEST(WsFrameShared, NotWhenTheClientWindowIsTooSmall) {
    MessageFactsCache cache;
    DeflateParams p = params(false, 9);  // the copies are made with 10
    Conn conn(false, &p, true);
    MessagePtr msg = makeMsg({1, 0}, "", textish(800, 6));
    FramePlan plan;
    Event ev = conn.send(cache, msg, plan);

    EXPECT_TRUE(plan.rsv1);
    EXPECT_EQ(plan.payload, FramePayload::kNone);
    EXPECT_FALSE(cache.lookup(msg).deflateTried);
    EXPECT_EQ(ev.payload, msg->data());
}

TEST(WsFrameShared, NotWithoutDeflate) {
    MessageFactsCache cache;
    Conn conn(true, nullptr, true);
    MessagePtr msg = makeMsg({1, 0}, "", "abc");
    FramePlan plan;
    conn.send(cache, msg, plan);

    EXPECT_FALSE(plan.rsv1);
    EXPECT_EQ(plan.payload, FramePayload::kMessageData);
    EXPECT_FALSE(cache.lookup(msg).deflateTried);
}

// The first connection's copy failed: nobody tries again, each deflates its own.
TEST(WsFrameShared, FailedCopyFallsBackToTheConnection) {
    MessageFactsCache cache;
    DeflateParams p = params(false);
    Conn conn(true, &p, true);
    MessagePtr msg = makeMsg({1, 0}, "", textish(600, 7));
    cache.lookup(msg).deflateTried = true;
    FramePlan plan;
    Event ev = conn.send(cache, msg, plan);

    EXPECT_TRUE(plan.rsv1);
    EXPECT_EQ(plan.payload, FramePayload::kNone);
    EXPECT_EQ(cache.lookup(msg).deflated, nullptr);
    EXPECT_EQ(ev.payload, meta("1:0", "") + std::string(msg->data()));
}

// Own, shared, own on one connection with context takeover: the client's
// window then holds the shared message, which the Deflater's does not; the
// Deflater must start over or the third message would not inflate.
TEST(WsFrameShared, ContextResetAfterASharedCopy) {
    for (bool noTakeover : {false, true}) {
        MessageFactsCache cache;
        DeflateParams p = params(noTakeover);
        Conn conn(false, &p, true);
        std::string text = textish(1500, 8);
        MessagePtr own1 = makeMsg({1, 0}, "", text);
        MessagePtr shared = makeMsg({1, 1}, "", textish(1500, 9));
        MessagePtr own2 = makeMsg({1, 2}, "", text);
        cache.lookup(own1).deflateTried = true;  // no copy: the Deflater
        cache.lookup(own2).deflateTried = true;

        FramePlan plan;
        EXPECT_EQ(conn.send(cache, own1, plan).payload, text);
        EXPECT_EQ(plan.payload, FramePayload::kNone);

        EXPECT_EQ(conn.send(cache, shared, plan).payload, shared->data());
        EXPECT_EQ(plan.payload, FramePayload::kSharedDeflated);
        EXPECT_EQ(plan.contextReset, !noTakeover) << noTakeover;

        EXPECT_EQ(conn.send(cache, own2, plan).payload, text);
        EXPECT_EQ(plan.payload, FramePayload::kNone);
        EXPECT_FALSE(plan.contextReset);
    }
}

// ---------------------------------------------------------------- signals

TEST(WsFrameSignal, NothingOnAPlainConnection) {
    DeflateParams p = params(false);
    const DeflateParams* settings[] = {nullptr, &p};
    for (const DeflateParams* dp : settings) {
        MessageFramer framer;
        framer.configure(false, dp, transportOptions(), true);
        FramePlan plan;
        EXPECT_EQ(framer.gap(MsgId{5, 0}, "", plan), FrameResult::kNothing);
        EXPECT_EQ(framer.signal(MsgId{5, 0}, "5:[0]", "{}", plan), FrameResult::kNothing);
    }
}

TEST(WsFrameSignal, GapFrame) {
    Conn conn(true, nullptr, false);
    FramePlan plan;

    ASSERT_EQ(conn.framer.gap(MsgId{1700000000, 2}, "", plan), FrameResult::kSend);
    EXPECT_EQ(plan.opcode, Opcode::Text);
    EXPECT_FALSE(plan.rsv1);
    EXPECT_EQ(plan.payload, FramePayload::kNone);
    EXPECT_EQ(plan.head,
              "id: 1700000000:2\ncontent-type: application/vnd.pubsub+json\n\n"
              "{\"event\":\"pubsub.gap\",\"reason\":\"messages were dropped before they "
              "could be delivered\"}");
    EXPECT_EQ(conn.client.read(plan, nullptr).payload, plan.head);
}

TEST(WsFrameSignal, IdOfTheSignal) {
    Conn conn(true, nullptr, false);
    FramePlan plan;

    ASSERT_EQ(conn.framer.gap(MsgId{}, "", plan), FrameResult::kSend);
    // no position yet: "0:0" (issue 19), not an empty id line
    EXPECT_EQ(plan.head.substr(0, 9), "id: 0:0\nc");

    ASSERT_EQ(conn.framer.gap(MsgId{}, "9:1,-", plan), FrameResult::kSend);
    EXPECT_EQ(plan.head.substr(0, 11), "id: 9:1,-\nc");

    ASSERT_EQ(conn.framer.gap(MsgId{3, 0}, "9:1,-", plan), FrameResult::kSend);
    EXPECT_EQ(plan.head.substr(0, 11), "id: 9:1,-\nc");  // the compound id wins
}

TEST(WsFrameSignal, PresenceEvent) {
    pubsub::PresenceEvent ev;
    ev.type = pubsub::PresenceEventType::kJoin;
    ev.channel = "room";
    ev.id = "alice";
    ev.info = "{\"name\":\"Alice\"}";
    std::string json = pubsub::presenceEventJson(ev, "room");
    ASSERT_FALSE(json.empty());

    Conn conn(true, nullptr, false);
    FramePlan plan;
    ASSERT_EQ(conn.framer.signal(MsgId{8, 1}, "", json, plan), FrameResult::kSend);
    EXPECT_EQ(plan.head, meta("8:1", kSignalContentType) + json);
    EXPECT_EQ(conn.client.read(plan, nullptr).payload, plan.head);

    // on a channel with no message yet: "0:0", never an empty id line
    ASSERT_EQ(conn.framer.signal(MsgId{}, "", json, plan), FrameResult::kSend);
    EXPECT_EQ(plan.head, meta("0:0", kSignalContentType) + json);
}

// Signals go uncompressed and leave the compression context alone.
TEST(WsFrameSignal, NeverCompressed) {
    MessageFactsCache cache;
    DeflateParams p = params(false);
    Conn conn(true, &p, false);
    std::string text = textish(1200, 10);
    FramePlan plan;

    EXPECT_EQ(conn.send(cache, makeMsg({1, 0}, "", text), plan).payload, meta("1:0", "") + text);

    ASSERT_EQ(conn.framer.gap(MsgId{1, 0}, "", plan), FrameResult::kSend);
    EXPECT_FALSE(plan.rsv1);
    Event ev = conn.client.read(plan, nullptr);
    EXPECT_FALSE(ev.compressed);
    EXPECT_EQ(ev.payload, plan.head);

    EXPECT_EQ(conn.send(cache, makeMsg({1, 1}, "", text), plan).payload, meta("1:1", "") + text);
}

// ---------------------------------------------------------------- settings

TEST(WsFrameSettings, Configure) {
    MessageFramer framer;
    EXPECT_FALSE(framer.meta());
    EXPECT_FALSE(framer.deflating());
    EXPECT_EQ(framer.negotiated(), nullptr);

    DeflateParams p = params(true, 11);
    framer.configure(true, &p, transportOptions(), false);
    EXPECT_TRUE(framer.meta());
    EXPECT_TRUE(framer.deflating());
    ASSERT_NE(framer.negotiated(), nullptr);
    EXPECT_TRUE(framer.negotiated()->serverNoContextTakeover);
    EXPECT_EQ(framer.negotiated()->serverMaxWindowBits, 11);

    framer.configure(false, nullptr, transportOptions(), false);
    EXPECT_FALSE(framer.meta());
    EXPECT_FALSE(framer.deflating());
    EXPECT_EQ(framer.negotiated(), nullptr);
}
