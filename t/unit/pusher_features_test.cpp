// Pusher's cache channels and subscription counts (pubsub/pusher/features.h).
#include <gtest/gtest.h>

#include "pubsub/pusher/features.h"

using namespace pubsub::pusher;
using pubsub::Message;
using pubsub::MessagePtr;
using pubsub::MsgId;

namespace {

MessagePtr msg(int64_t time, std::string_view event, std::string_view data = "d") {
    return MessagePtr::adopt(Message::create(MsgId{time, 0}, MsgId{}, {}, event, data));
}

}  // namespace

TEST(PusherFeatures, CacheChannelNames) {
    EXPECT_TRUE(isCacheChannel("cache-room"));
    EXPECT_TRUE(isCacheChannel("private-cache-room"));
    EXPECT_TRUE(isCacheChannel("private-encrypted-cache-room"));
    EXPECT_TRUE(isCacheChannel("presence-cache-room"));
    EXPECT_FALSE(isCacheChannel("room-cache-"));
    EXPECT_FALSE(isCacheChannel("private-room"));
    EXPECT_FALSE(isCacheChannel("presence-cached"));
    EXPECT_FALSE(isCacheChannel("#server-to-user-cache-1"));
    EXPECT_FALSE(isCacheChannel(""));
}

TEST(PusherFeatures, CacheableEvents) {
    EXPECT_TRUE(cacheableEvent("price"));
    EXPECT_TRUE(cacheableEvent(""));  // a plain publisher's message
    EXPECT_FALSE(cacheableEvent("client-typing"));
    EXPECT_FALSE(cacheableEvent("pusher:cache_miss"));
    EXPECT_FALSE(cacheableEvent("pusher_internal:terminate"));
}

TEST(PusherFeatures, CachedEventIsTheNewestServerEvent) {
    const int64_t now = 1000000;
    std::vector<MessagePtr> b;
    EXPECT_EQ(cachedEvent(b, now), nullptr);

    b.push_back(msg(now - 10, "old"));
    b.push_back(msg(now - 5, "price", "42"));
    b.push_back(msg(now - 1, "client-typing"));
    const Message* m = cachedEvent(b, now);
    ASSERT_NE(m, nullptr);
    EXPECT_EQ(m->eventName(), "price");
    EXPECT_EQ(m->data(), "42");

    // only client events: a miss
    std::vector<MessagePtr> c{msg(now, "client-a"), msg(now, "client-b")};
    EXPECT_EQ(cachedEvent(c, now), nullptr);
}

TEST(PusherFeatures, CachedEventExpiresAfterThirtyMinutes) {
    const int64_t now = 1000000;
    std::vector<MessagePtr> b{msg(now - kCacheTtl - 1, "price")};
    EXPECT_EQ(cachedEvent(b, now), nullptr);
    b.push_back(msg(now - kCacheTtl, "price2"));
    ASSERT_NE(cachedEvent(b, now), nullptr);
    EXPECT_EQ(cachedEvent(b, now)->eventName(), "price2");
}

TEST(PusherFeatures, SubscriptionCountData) {
    EXPECT_EQ(subscriptionCountData(0), "{\"subscription_count\":0}");
    EXPECT_EQ(subscriptionCountData(12345), "{\"subscription_count\":12345}");
}

TEST(PusherFeatures, CountsRoundTrip) {
    std::string batch;
    appendCount(batch, "room", 3);
    appendCount(batch, "private-cache-x", 18446744073709551615ULL);
    std::vector<ChannelCount> out;
    EXPECT_TRUE(parseCounts(batch, &out));
    ASSERT_EQ(out.size(), 2u);
    EXPECT_EQ(out[0].channel, "room");
    EXPECT_EQ(out[0].count, 3u);
    EXPECT_EQ(out[1].channel, "private-cache-x");
    EXPECT_EQ(out[1].count, 18446744073709551615ULL);
}

TEST(PusherFeatures, CountsSkipGarbage) {
    std::vector<ChannelCount> out;
    EXPECT_FALSE(
        parseCounts("x room\n 3 a\n3\n4 \n99999999999999999999999 big\n"
                    "5 two words\n7 ok\n",
                    &out));
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].channel, "ok");
    EXPECT_EQ(out[0].count, 7u);

    out.clear();
    EXPECT_TRUE(parseCounts("", &out));
    EXPECT_TRUE(out.empty());
    EXPECT_TRUE(parseCounts("1 a", &out));  // no final newline
    ASSERT_EQ(out.size(), 1u);
}

TEST(PusherFeatures, ThrottleCoalescesABurst) {
    CountThrottle t;
    EXPECT_EQ(t.next(), -1);
    for (int i = 1; i <= 50; i++) {
        t.changed("pusher:1/room", i, 1000 + i);
    }
    EXPECT_EQ(t.next(), 1001 + kCountDelayMs);
    EXPECT_TRUE(t.due(1000 + kCountDelayMs).empty());
    std::vector<std::string> d = t.due(1001 + kCountDelayMs);
    ASSERT_EQ(d.size(), 1u);
    EXPECT_EQ(d[0], "pusher:1/room");
    EXPECT_EQ(t.next(), -1);
}

TEST(PusherFeatures, ThrottleSpacesSends) {
    CountThrottle t;
    int64_t now = 0;
    int sends = 0;
    // a change every millisecond for 10 s: one send per interval at most
    for (; now < 10000; now++) {
        t.changed("k", 10, now);
        sends += static_cast<int>(t.due(now).size());
    }
    EXPECT_LE(sends, 10000 / kCountEveryMs + 1);
    EXPECT_GE(sends, 10000 / kCountEveryMs - 1);

    // a big channel: every 5 s
    CountThrottle big;
    sends = 0;
    for (now = 0; now < 20000; now++) {
        big.changed("k", kCountBig + 1, now);
        sends += static_cast<int>(big.due(now).size());
    }
    EXPECT_LE(sends, 20000 / kCountEveryBigMs + 1);
}

TEST(PusherFeatures, ThrottleForgetsQuietKeys) {
    CountThrottle t;
    for (int i = 0; i < 1000; i++) {
        t.changed("k" + std::to_string(i), 1, 0);
    }
    EXPECT_EQ(t.due(kCountDelayMs).size(), 1000u);
    EXPECT_EQ(t.size(), 1000u);
    EXPECT_TRUE(t.due(kCountDelayMs + kCountEveryBigMs + 1).empty());
    EXPECT_EQ(t.size(), 0u);

    // a change after a quiet time goes after the short delay again
    t.changed("k1", 1, 100000);
    EXPECT_EQ(t.next(), 100000 + kCountDelayMs);
}
