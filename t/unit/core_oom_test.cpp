// Worker-memory exhaustion in the hub, the memory store and the WebSocket
// framing.
//
// This file replaces the global operator new/delete of the unit test binary
// with malloc/free plus a per-thread fault injector: when armed, the n-th
// allocation from now throws std::bad_alloc.  Unarmed it behaves like the
// default (ASan still checks every access; only its new/delete mismatch
// check is lost).  No other test file may replace operator new.

// GCC sees free() on memory from (our own, malloc-based) operator new once
// it inlines them into each other.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "core_fakes.h"
#include "pubsub/codec/ws_frame.h"
#include "pubsub/hub.h"
#include "pubsub/memory/memory_store.h"

namespace pubsub_test {
namespace {
thread_local long tNewFailsIn = -1;  // allocations left before one fails; -1: never
}  // namespace
}  // namespace pubsub_test

void* operator new(std::size_t n) {
    long& k = pubsub_test::tNewFailsIn;
    if (k == 0) {
        k = -1;
        throw std::bad_alloc();
    }
    if (k > 0) {
        k--;
    }
    void* p = std::malloc(n == 0 ? 1 : n);
    if (p == nullptr) {
        throw std::bad_alloc();
    }
    return p;
}
void* operator new[](std::size_t n) { return ::operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
// The nothrow forms must come from the same allocator as the deletes above.
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
    try {
        return ::operator new(n);
    } catch (...) {
        return nullptr;
    }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
    return ::operator new(n, std::nothrow);
}
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }

namespace {

using pubsub::Hub;
using pubsub::MsgId;
using pubsub::StoreResult;
using pubsub_test::RecordingSubscriber;

// Arms the injector for the lifetime of the object.
class FailNthAllocation {
public:
    explicit FailNthAllocation(long n) { pubsub_test::tNewFailsIn = n; }
    ~FailNthAllocation() { pubsub_test::tNewFailsIn = -1; }
    // True when the armed failure happened.
    static bool fired() { return pubsub_test::tNewFailsIn == -1; }
};

TEST(CoreOom, InjectorWorks) {
    // Direct operator new calls: the optimizer may not drop them as it may
    // drop a new-expression whose result is unused.
    bool threw = false;
    void* volatile first = nullptr;
    {
        FailNthAllocation f(1);
        first = ::operator new(32);  // allocation 0 succeeds
        try {
            void* volatile second = ::operator new(32);
            ::operator delete(second);
        } catch (const std::bad_alloc&) {
            threw = true;
        }
    }
    ::operator delete(first);
    EXPECT_TRUE(threw);
}

TEST(CoreOom, HubAttachToANewChannel) {
    // Fail each allocation attach makes in turn: it either works or fails
    // cleanly, leaving nothing behind.
    const std::string key(64, 'k');  // long enough to allocate
    bool succeeded = false;
    for (long n = 0; n < 50 && !succeeded; n++) {
        Hub hub;
        RecordingSubscriber sub;
        bool ok;
        bool fired;
        {
            FailNthAllocation f(n);
            ok = hub.attach(&sub, key, MsgId{}, MsgId{1, 0});
            fired = FailNthAllocation::fired();
        }
        if (ok) {
            EXPECT_FALSE(fired) << "attach reported success after a failed allocation, n=" << n;
            EXPECT_TRUE(sub.attached());
            EXPECT_EQ(hub.channels(), 1u);
            EXPECT_EQ(hub.subscribers(), 1u);
            EXPECT_TRUE(hub.detach(&sub));
            succeeded = true;
        } else {
            EXPECT_FALSE(sub.attached()) << "n=" << n;
            EXPECT_EQ(hub.channels(), 0u) << "n=" << n;
            EXPECT_EQ(hub.subscribers(), 0u) << "n=" << n;
            EXPECT_EQ(hub.find(key), nullptr) << "n=" << n;
            // The hub still works afterwards.
            ASSERT_TRUE(hub.attach(&sub, key, MsgId{}, MsgId{}));
            hub.deliver(key, {pubsub_test::makeMessage(MsgId{1, 0}, MsgId{})});
            EXPECT_EQ(sub.ids.size(), 1u);
            hub.detach(&sub);
        }
        EXPECT_EQ(hub.channels(), 0u);
    }
    EXPECT_TRUE(succeeded);
}

TEST(CoreOom, HubAttachToAnExistingChannel) {
    bool succeeded = false;
    for (long n = 0; n < 50 && !succeeded; n++) {
        Hub hub;
        std::vector<std::unique_ptr<RecordingSubscriber>> subs;
        for (int i = 0; i < 4; i++) {  // fills the vector to its capacity
            subs.push_back(std::make_unique<RecordingSubscriber>());
            ASSERT_TRUE(hub.attach(subs.back().get(), "ch", MsgId{}, MsgId{}));
        }
        RecordingSubscriber extra;
        bool ok;
        {
            FailNthAllocation f(n);
            ok = hub.attach(&extra, "ch", MsgId{}, MsgId{});
        }
        EXPECT_EQ(extra.attached(), ok);
        EXPECT_EQ(hub.subscribers(), ok ? 5u : 4u);
        hub.deliver("ch", {pubsub_test::makeMessage(MsgId{1, 0}, MsgId{})});
        for (auto& s : subs) {
            EXPECT_EQ(s->ids.size(), 1u);
        }
        EXPECT_EQ(extra.ids.size(), ok ? 1u : 0u);
        for (auto& s : subs) {
            EXPECT_TRUE(hub.detach(s.get()));
        }
        EXPECT_EQ(hub.detach(&extra), ok);
        EXPECT_EQ(hub.channels(), 0u);
        succeeded = ok;
    }
    EXPECT_TRUE(succeeded);
}

TEST(CoreOom, MemoryStoreSubscribeAndPublish) {
    bool succeeded = false;
    for (long n = 0; n < 100 && !succeeded; n++) {
        pubsub_test::Zone zone;
        pubsub_test::Worker w(&zone);
        w.publish("ch", "backlog-1");
        w.publish("ch", "backlog-2");
        RecordingSubscriber sub;
        pubsub::SubscribeRequest req;
        req.key = "ch";
        req.start.kind = pubsub::StartSpec::kOldest;
        pubsub::SubscribeReply reply;
        {
            FailNthAllocation f(n);
            w.store->subscribe(&sub, req, [&](pubsub::SubscribeReply&& r) {
                reply = std::move(r);
            });
        }
        EXPECT_FALSE(zone.locked);
        pubsub::ShmChannel* ch = pubsub::ShmStore(zone.root, zone.alloc.shm()).find("ch");
        ASSERT_NE(ch, nullptr);
        if (reply.status == StoreResult::kOk) {
            EXPECT_TRUE(reply.attached);
            EXPECT_TRUE(sub.attached());
            EXPECT_EQ(reply.backlog.size(), 2u);
            EXPECT_EQ(ch->subscribers, 1u);
            succeeded = true;
        } else {
            EXPECT_EQ(reply.status, StoreResult::kError) << "n=" << n;
            EXPECT_FALSE(reply.reason.empty());
            EXPECT_FALSE(reply.attached);
            EXPECT_FALSE(sub.attached());
            EXPECT_EQ(ch->subscribers, 0u) << "n=" << n;  // no leaked count
        }
        w.store->unsubscribe(&sub);
        EXPECT_EQ(zone.root->subscribers, 0u);
    }
    EXPECT_TRUE(succeeded);
}

// ---------------------------------------------------------------- WebSocket frames

namespace ws = pubsub::ws;

// What a client reads from the frame a plan describes (inflating with p).
std::string wsClientRead(ws::FrameParser& parser, const ws::FramePlan& plan,
                         const pubsub::Message& msg) {
    std::string_view payload;
    if (plan.payload == ws::FramePayload::kMessageData) {
        payload = msg.data();
    } else if (plan.payload == ws::FramePayload::kSharedDeflated) {
        payload = *plan.shared;
    }
    uint8_t head[ws::kMaxServerHeaderSize];
    size_t n =
        ws::writeFrameHeader(head, plan.opcode, plan.head.size() + payload.size(), true, plan.rsv1);
    std::string bytes(reinterpret_cast<const char*>(head), n);
    bytes += plan.head;
    bytes += payload;
    ws::Event ev;
    EXPECT_EQ(parser.feed(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), ev),
              bytes.size());
    EXPECT_EQ(ev.type, ws::EventType::Message) << ev.reason;
    return ev.payload;
}

ws::ParserConfig wsClientConfig(const ws::DeflateParams& p) {
    ws::ParserConfig c;
    c.maxMessageSize = 0;
    c.expectMasked = false;
    c.deflate = true;
    c.inflateWindowBits = p.serverMaxWindowBits;
    c.inflateNoContextTakeover = p.serverNoContextTakeover;
    return c;
}

ws::DeflateOptions wsOptions() {
    ws::DeflateOptions o;
    o.windowBits = 10;
    o.memLevel = 5;
    return o;
}

// The connection's Deflater cannot be allocated: this message and the later
// ones go uncompressed, as zlib failing would have them.
TEST(CoreOom, WsFrameNoDeflaterSendsUncompressed) {
    ws::DeflateParams p;
    ws::MessageFramer framer;
    framer.configure(false, &p, wsOptions(), false);
    ws::MessageFactsCache cache;
    ws::FrameParser client(wsClientConfig(p));
    auto m1 = pubsub_test::makeMessage(MsgId{1, 0}, MsgId{}, "first");
    auto m2 = pubsub_test::makeMessage(MsgId{1, 1}, MsgId{}, "second");
    ws::MessageFacts& f1 = cache.lookup(m1);
    ws::FramePlan plan;
    ws::FrameResult rc;
    {
        FailNthAllocation f(0);
        rc = framer.message(*m1, f1, "", plan);
        EXPECT_TRUE(FailNthAllocation::fired());
    }
    ASSERT_EQ(rc, ws::FrameResult::kSend);
    EXPECT_FALSE(plan.rsv1);
    EXPECT_EQ(plan.payload, ws::FramePayload::kMessageData);
    EXPECT_FALSE(framer.deflating());
    EXPECT_EQ(wsClientRead(client, plan, *m1), "first");

    ASSERT_EQ(framer.message(*m2, cache.lookup(m2), "", plan), ws::FrameResult::kSend);
    EXPECT_FALSE(plan.rsv1);
    EXPECT_EQ(wsClientRead(client, plan, *m2), "second");
}

// Each allocation of a meta, shared-copy frame failing in turn: the frame is
// right or reported as kNoMemory, and the next one is right.
TEST(CoreOom, WsFrameEveryAllocation) {
    bool succeeded = false;
    const std::string data(3000, 'd');
    for (long n = 0; n < 50 && !succeeded; n++) {
        ws::DeflateParams p;
        ws::MessageFramer framer;
        framer.configure(true, &p, wsOptions(), true);
        ws::MessageFactsCache cache;
        ws::FrameParser client(wsClientConfig(p));
        auto m1 = pubsub_test::makeMessage(MsgId{1, 0}, MsgId{}, data);
        auto m2 = pubsub_test::makeMessage(MsgId{1, 1}, MsgId{}, data);
        ws::MessageFacts& f1 = cache.lookup(m1);
        ws::MessageFacts& f2 = cache.lookup(m2);
        f2.deflateTried = true;  // the Deflater's, after the shared copy
        ws::FramePlan plan;
        ws::FrameResult rc;
        bool fired;
        {
            FailNthAllocation f(n);
            rc = framer.message(*m1, f1, "", plan);
            fired = FailNthAllocation::fired();
        }
        if (rc == ws::FrameResult::kSend) {
            EXPECT_EQ(wsClientRead(client, plan, *m1), "id: 1:0\n\n" + data) << "n=" << n;
            succeeded = !fired;
        } else {
            EXPECT_EQ(rc, ws::FrameResult::kNoMemory);
            EXPECT_TRUE(fired);
        }
        ASSERT_EQ(framer.message(*m2, f2, "", plan), ws::FrameResult::kSend);
        EXPECT_EQ(wsClientRead(client, plan, *m2), "id: 1:1\n\n" + data) << "n=" << n;
    }
    EXPECT_TRUE(succeeded);
}

}  // namespace
