// Channel events: names, meta channel ids, meta keys and the pending queue.
#include "pubsub/channel_events.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace pubsub {
namespace {

TEST(ChannelEvents, NamesAreNchans) {
    EXPECT_EQ(channelEventName(ChannelEvent::kSubscriberEnqueue), "subscriber_enqueue");
    EXPECT_EQ(channelEventName(ChannelEvent::kSubscriberDequeue), "subscriber_dequeue");
    EXPECT_EQ(channelEventName(ChannelEvent::kChannelPublish), "channel_publish");
    EXPECT_EQ(channelEventName(ChannelEvent::kChannelDelete), "channel_delete");
}

TEST(ChannelEvents, MetaSettings) {
    EXPECT_EQ(kMetaGroup, "meta");
    EXPECT_EQ(kMetaBufferLength, 100u);
    EXPECT_EQ(kMetaMessageTtl, 10);
    EXPECT_EQ(kMetaContentType, "text/plain");
}

TEST(ChannelEvents, GoodMetaIds) {
    EXPECT_EQ(checkMetaChannelId("events", 1024), MetaIdError::kNone);
    EXPECT_EQ(checkMetaChannelId("a/b:c d", 1024), MetaIdError::kNone);
    EXPECT_EQ(checkMetaChannelId(std::string(1024, 'x'), 1024), MetaIdError::kNone);
    EXPECT_EQ(checkMetaChannelId("\xc3\xa9t\xc3\xa9", 1024), MetaIdError::kNone);
    EXPECT_EQ(metaIdErrorText(MetaIdError::kNone), "");
}

TEST(ChannelEvents, BadMetaIds) {
    EXPECT_EQ(checkMetaChannelId("", 1024), MetaIdError::kEmpty);
    EXPECT_EQ(checkMetaChannelId(std::string(1025, 'x'), 1024), MetaIdError::kTooLong);
    EXPECT_EQ(checkMetaChannelId("abc", 2), MetaIdError::kTooLong);
    EXPECT_EQ(checkMetaChannelId("a\tb", 1024), MetaIdError::kControlChar);
    EXPECT_EQ(checkMetaChannelId(std::string("a\0b", 3), 1024), MetaIdError::kControlChar);
    EXPECT_EQ(checkMetaChannelId("a\x7f", 1024), MetaIdError::kControlChar);
    EXPECT_EQ(checkMetaChannelId("\n", 1024), MetaIdError::kControlChar);
    for (MetaIdError e : {MetaIdError::kEmpty, MetaIdError::kTooLong,
                          MetaIdError::kControlChar}) {
        EXPECT_FALSE(metaIdErrorText(e).empty());
    }
}

TEST(ChannelEvents, MetaKeys) {
    EXPECT_TRUE(isMetaChannelKey("meta/x"));
    EXPECT_TRUE(isMetaChannelKey("meta//"));
    EXPECT_TRUE(isMetaChannelKey("meta/"));  // the group, whatever the id
    EXPECT_FALSE(isMetaChannelKey("meta"));
    EXPECT_FALSE(isMetaChannelKey("metax/a"));
    EXPECT_FALSE(isMetaChannelKey("default/meta/a"));
    EXPECT_FALSE(isMetaChannelKey("Meta/a"));
    EXPECT_FALSE(isMetaChannelKey(""));
}

TEST(ChannelEventQueue, KeepsOrderAndCopies) {
    ChannelEventQueue q;
    int ctx = 0;
    std::string key = "meta/ev";
    std::string body = "channel_publish a";

    ASSERT_TRUE(q.push(key, body, &ctx));
    key[5] = 'X';  // the queue holds copies
    body = "changed";
    ASSERT_TRUE(q.push("meta/ev2", "", nullptr));
    EXPECT_EQ(q.size(), 2u);

    std::vector<PendingChannelEvent> out;
    out.push_back(PendingChannelEvent{"stale", "stale", nullptr});
    q.takeAll(&out);
    ASSERT_EQ(out.size(), 2u);
    EXPECT_EQ(out[0].key, "meta/ev");
    EXPECT_EQ(out[0].body, "channel_publish a");
    EXPECT_EQ(out[0].context, &ctx);
    EXPECT_EQ(out[1].key, "meta/ev2");
    EXPECT_EQ(out[1].body, "");
    EXPECT_EQ(out[1].context, nullptr);
    EXPECT_TRUE(q.empty());
    EXPECT_EQ(q.dropped(), 0u);

    q.takeAll(&out);
    EXPECT_TRUE(out.empty());
}

TEST(ChannelEventQueue, DropsOverCapacity) {
    ChannelEventQueue q(3);
    for (int i = 0; i < 5; i++) {
        bool taken = q.push("meta/k", std::to_string(i), nullptr);
        EXPECT_EQ(taken, i < 3) << i;
    }
    EXPECT_EQ(q.size(), 3u);
    EXPECT_EQ(q.dropped(), 2u);

    std::vector<PendingChannelEvent> out;
    q.takeAll(&out);
    ASSERT_EQ(out.size(), 3u);
    EXPECT_EQ(out[2].body, "2");

    // room again once taken
    EXPECT_TRUE(q.push("meta/k", "3", nullptr));
    q.clear();
    EXPECT_TRUE(q.empty());
    EXPECT_EQ(q.dropped(), 2u);
}

TEST(ChannelEventQueue, ZeroCapacityTakesNothing) {
    ChannelEventQueue q(0);
    EXPECT_FALSE(q.push("meta/k", "x", nullptr));
    EXPECT_EQ(q.dropped(), 1u);
    EXPECT_TRUE(q.empty());
}

}  // namespace
}  // namespace pubsub
