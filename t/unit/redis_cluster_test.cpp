// Redis Cluster helpers: key slots (values recorded with
// `redis-cli cluster keyslot` on redis-server 7.0), command routing,
// CLUSTER SLOTS replies and MOVED/ASK redirections.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "pubsub/redis/redis_cluster.h"
#include "pubsub/redis/redis_proto.h"
#include "redis_tree.h"

using namespace pubsub::redis;

namespace {

using pubsub_test::Tree;

}  // namespace

TEST(RedisCluster, Crc16CheckValue) {
    EXPECT_EQ(crc16("123456789"), 0x31C3);  // CRC-16/XMODEM check value
    EXPECT_EQ(crc16(""), 0);
}

TEST(RedisCluster, KeySlotsMatchRedis) {
    EXPECT_EQ(keySlot("foo"), 12182);
    EXPECT_EQ(keySlot("bar"), 5061);
    EXPECT_EQ(keySlot(""), 0);
    EXPECT_EQ(keySlot("123456789"), 12739);
    EXPECT_EQ(keySlot("{user1000}.following"), 3443);
    EXPECT_EQ(keySlot("foo{}{bar}"), 8363);     // empty tag: the whole key
    EXPECT_EQ(keySlot("foo{{bar}}zap"), 4015);  // tag "{bar"
    EXPECT_EQ(keySlot("foo{bar}{zap}"), 5061);  // first tag only
    EXPECT_EQ(keySlot("{}foo"), 9500);
    EXPECT_EQ(keySlot("a{b"), 13340);           // no closing brace
    EXPECT_EQ(keySlot("{channel:g/a}"), 10300);
    EXPECT_EQ(keySlot("{channel:g/a}:ps"), 10300);
    EXPECT_EQ(keySlot("{channel:x%7Dy/z}:m:1:2"), 6055);
}

TEST(RedisCluster, ChannelKeysShareTheirSlot) {
    std::string tag = channelTag("g/a");
    EXPECT_EQ(keySlot(tag), 10300);
    EXPECT_EQ(keySlot(pubsubName("g/a")), 10300);
    EXPECT_EQ(keySlot(channelTag("x}y/z") + ":m:1:2"), 6055);
}

TEST(RedisCluster, CommandSlot) {
    EXPECT_EQ(commandSlot({"EVALSHA", "abc", "1", "{channel:g/a}", "x"}), 10300);
    EXPECT_EQ(commandSlot({"eval", "return 1", "1", "foo"}), 12182);
    EXPECT_EQ(commandSlot({"EVAL", "return 1", "0"}), -1);
    EXPECT_EQ(commandSlot({"EVAL", "return 1"}), -1);
    EXPECT_EQ(commandSlot({"SSUBSCRIBE", "{channel:g/a}:ps"}), 10300);
    EXPECT_EQ(commandSlot({"GET", "bar"}), 5061);
    EXPECT_EQ(commandSlot({"PING"}), -1);
    EXPECT_EQ(commandSlot({"CLUSTER", "SLOTS"}), -1);
    EXPECT_EQ(commandSlot({}), -1);
}

TEST(RedisCluster, ParsesClusterSlots) {
    Tree t;
    std::vector<SlotRange> out;
    std::string reason;
    redisReply* r = t.array({t.range(0, 5460, "127.0.0.1", 7000),
                             t.range(5461, 10922, "127.0.0.1", 7001),
                             t.range(10923, 16383, "10.0.0.3", 7002)});
    ASSERT_TRUE(parseClusterSlots(r, &out, &reason)) << reason;
    ASSERT_EQ(out.size(), 3u);
    EXPECT_EQ(out[1].first, 5461);
    EXPECT_EQ(out[1].last, 10922);
    EXPECT_EQ(out[1].host, "127.0.0.1");
    EXPECT_EQ(out[1].port, 7001);
    EXPECT_EQ(out[2].host, "10.0.0.3");
}

TEST(RedisCluster, RefusesBadClusterSlots) {
    Tree t;
    std::vector<SlotRange> out;
    std::string reason;
    EXPECT_FALSE(parseClusterSlots(nullptr, &out, &reason));
    EXPECT_FALSE(parseClusterSlots(t.error("ERR This instance has cluster support disabled"),
                                   &out, &reason));
    EXPECT_EQ(reason, "ERR This instance has cluster support disabled");
    EXPECT_FALSE(parseClusterSlots(t.str("x"), &out, &reason));
    EXPECT_FALSE(parseClusterSlots(t.error(""), &out, &reason));
    EXPECT_FALSE(reason.empty());
    // a hole in the slots
    EXPECT_FALSE(parseClusterSlots(t.array({t.range(0, 100, "h", 1)}), &out, &reason));
    EXPECT_NE(reason.find("101 of 16384"), std::string::npos) << reason;
    EXPECT_TRUE(out.empty());
    // empty cluster (no slots assigned yet)
    EXPECT_FALSE(parseClusterSlots(t.array({}), &out, &reason));
    // out of range, reversed, malformed node, bad port, unknown address
    EXPECT_FALSE(parseClusterSlots(t.array({t.range(0, 16384, "h", 1)}), &out, &reason));
    EXPECT_FALSE(parseClusterSlots(t.array({t.range(10, 5, "h", 1)}), &out, &reason));
    EXPECT_FALSE(parseClusterSlots(t.array({t.array({t.integer(0), t.integer(16383),
                                                     t.str("h:1")})}),
                                   &out, &reason));
    EXPECT_FALSE(parseClusterSlots(t.array({t.range(0, 16383, "h", 70000)}), &out, &reason));
    EXPECT_FALSE(parseClusterSlots(t.array({t.range(0, 16383, "", 7000)}), &out, &reason));
    EXPECT_FALSE(parseClusterSlots(t.array({t.array({t.integer(0)})}), &out, &reason));
    // a good range before a bad one: nothing is kept
    EXPECT_FALSE(parseClusterSlots(t.array({t.range(0, 100, "h", 1), t.range(101, 50, "h", 2)}),
                                   &out, &reason));
    EXPECT_TRUE(out.empty());
    EXPECT_TRUE(parseClusterSlots(t.array({t.range(0, 16383, "h", 7000)}), &out, &reason));
}

TEST(RedisCluster, ParsesRedirections) {
    Tree t;
    Redirect m = parseRedirect(t.error("MOVED 3999 127.0.0.1:6381"));
    EXPECT_EQ(m.kind, Redirect::kMoved);
    EXPECT_EQ(m.slot, 3999);
    EXPECT_EQ(m.host, "127.0.0.1");
    EXPECT_EQ(m.port, 6381);
    Redirect a = parseRedirect(t.error("ASK 16383 ::1:7000"));
    EXPECT_EQ(a.kind, Redirect::kAsk);
    EXPECT_EQ(a.slot, 16383);
    EXPECT_EQ(a.host, "::1");
    EXPECT_EQ(a.port, 7000);
    EXPECT_EQ(parseRedirect(nullptr).kind, Redirect::kNone);
    EXPECT_EQ(parseRedirect(t.str("MOVED 1 h:1")).kind, Redirect::kNone);  // not an error
    EXPECT_EQ(parseRedirect(t.error("ERR wrong")).kind, Redirect::kNone);
    EXPECT_EQ(parseRedirect(t.error("MOVED 16384 h:1")).kind, Redirect::kNone);
    EXPECT_EQ(parseRedirect(t.error("MOVED x h:1")).kind, Redirect::kNone);
    EXPECT_EQ(parseRedirect(t.error("MOVED 1 h")).kind, Redirect::kNone);
    EXPECT_EQ(parseRedirect(t.error("MOVED 1 h:0")).kind, Redirect::kNone);
    EXPECT_EQ(parseRedirect(t.error("MOVED 1 h:99999")).kind, Redirect::kNone);
    EXPECT_EQ(parseRedirect(t.error("MOVED 1 :1")).kind, Redirect::kNone);
    EXPECT_EQ(parseRedirect(t.error("ASK  h:1")).kind, Redirect::kNone);
    EXPECT_EQ(parseRedirect(t.error("MOVED")).kind, Redirect::kNone);
}
