// The message origin the Pusher protocol keeps: socket id and user id.
#include <gtest/gtest.h>

#include "pubsub/message.h"
#include "pubsub/pusher/origin.h"

using namespace pubsub::pusher;

TEST(PusherOrigin, RoundTrip) {
    EXPECT_EQ(encodeOrigin(""), "");
    EXPECT_EQ(encodeOrigin("", "u"), "");
    EXPECT_EQ(encodeOrigin("12.34"), "12.34");
    std::string both = encodeOrigin("12.34", "user one");
    EXPECT_EQ(both, "12.34 user one");
    Origin o;
    ASSERT_TRUE(decodeOrigin(both, &o));
    EXPECT_EQ(o.socketId, "12.34");
    EXPECT_EQ(o.userId, "user one");
    ASSERT_TRUE(decodeOrigin("5.6", &o));
    EXPECT_EQ(o.socketId, "5.6");
    EXPECT_TRUE(o.userId.empty());
}

TEST(PusherOrigin, NotAPusherOrigin) {
    Origin o;
    EXPECT_FALSE(decodeOrigin("", &o));
    EXPECT_FALSE(decodeOrigin("abc", &o));
    EXPECT_FALSE(decodeOrigin("1.2x u", &o));
    EXPECT_FALSE(decodeOrigin(" 1.2", &o));
    EXPECT_TRUE(o.socketId.empty());
    EXPECT_TRUE(o.userId.empty());
}

TEST(MessageOrigin, KeptBesideTheOtherFields) {
    pubsub::Message* m = pubsub::Message::create({}, {}, "text/plain", "ev", "data", "1.2 u");
    ASSERT_NE(m, nullptr);
    EXPECT_EQ(m->contentType(), "text/plain");
    EXPECT_EQ(m->eventName(), "ev");
    EXPECT_EQ(m->data(), "data");
    EXPECT_EQ(m->origin(), "1.2 u");
    m->unref();
    m = pubsub::Message::create({}, {}, "", "", "x");
    ASSERT_NE(m, nullptr);
    EXPECT_TRUE(m->origin().empty());
    m->unref();
}
