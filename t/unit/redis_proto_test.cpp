// The Redis engine's protocol pieces, with hand-built hiredis reply trees.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "pubsub/redis/redis_proto.h"
#include "redis_tree.h"

using namespace pubsub;
using namespace pubsub::redis;

namespace {

using pubsub_test::Tree;

redisReply* snapshotReply(Tree& t, long long found, const std::string& last, long long published,
                          long long skipped, const std::vector<std::string>& ids,
                          const std::vector<std::string>& prevs) {
    std::vector<redisReply*> items = {t.integer(found), t.str(last), t.integer(published),
                                      t.integer(skipped)};
    for (size_t i = 0; i < ids.size(); i++) {
        items.push_back(t.str(ids[i]));
        items.push_back(t.str(prevs[i]));
        items.push_back(t.str("text/plain"));
        items.push_back(t.str(""));
        items.push_back(t.str("data " + ids[i]));
        items.push_back(t.str(""));  // origin
    }
    return t.array(items);
}

}  // namespace

TEST(RedisProto, TagsEscapeBracesAndPercent) {
    EXPECT_EQ(channelTag("default/abc"), "{channel:default/abc}");
    EXPECT_EQ(channelTag("g/a}b%c"), "{channel:g/a%7Db%25c}");
    EXPECT_EQ(pubsubName("g/x"), "{channel:g/x}:ps");
    std::string key;
    for (std::string k : {"default/abc", "g/a}b%c", "g/{x}", "g/%7D", ""}) {
        ASSERT_TRUE(keyFromPubsubName(pubsubName(k), &key)) << k;
        EXPECT_EQ(key, k);
    }
    EXPECT_FALSE(keyFromPubsubName("{channel:x}", &key));
    EXPECT_FALSE(keyFromPubsubName("other:ps", &key));
    EXPECT_FALSE(keyFromPubsubName("{channel:a}b}:ps", &key));
    EXPECT_FALSE(keyFromPubsubName("{channel:a%zz}:ps", &key));
    EXPECT_FALSE(keyFromPubsubName("{channel:a%7}:ps", &key));
}

TEST(RedisProto, ScriptsHaveShas) {
    EXPECT_EQ(sha1Hex("abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
    for (const Script* s : {&publishScript(), &fetchScript(), &infoScript(), &deleteScript(),
                            &subsScript()}) {
        EXPECT_EQ(s->sha.size(), 40u);
        EXPECT_EQ(s->sha, sha1Hex(s->text));
        EXPECT_NE(s->text.find("redis.call"), std::string::npos);
    }
}

TEST(RedisProto, ParseId) {
    MsgId id;
    ASSERT_TRUE(parseId("1700000000:3", &id));
    EXPECT_EQ(id.time, 1700000000);
    EXPECT_EQ(id.tag, 3);
    for (const char* bad : {"", ":", "1:", ":1", "1:2:3", "a:1", "1:b", "1:99999999999"}) {
        EXPECT_FALSE(parseId(bad, &id)) << bad;
    }
}

TEST(RedisProto, Snapshot) {
    Tree t;
    Snapshot s;
    std::string reason;
    ASSERT_TRUE(parseSnapshot(
        snapshotReply(t, 1, "100:2", 3, 0, {"100:0", "100:1", "100:2"}, {"0:0", "100:0", "100:1"}),
        &s, &reason));
    EXPECT_TRUE(s.found);
    EXPECT_EQ(s.lastId, (MsgId{100, 2}));
    EXPECT_EQ(s.published, 3u);
    ASSERT_EQ(s.messages.size(), 3u);
    EXPECT_EQ(s.messages[1]->id(), (MsgId{100, 1}));
    EXPECT_EQ(s.messages[1]->prev(), (MsgId{100, 0}));
    EXPECT_EQ(s.messages[1]->data(), "data 100:1");
    EXPECT_EQ(s.messages[1]->contentType(), "text/plain");

    ASSERT_TRUE(parseSnapshot(snapshotReply(t, 0, "0:0", 0, 0, {}, {}), &s, &reason));
    EXPECT_FALSE(s.found);
    EXPECT_TRUE(s.messages.empty());
}

TEST(RedisProto, SnapshotBadReplies) {
    Tree t;
    Snapshot s;
    std::string reason;
    EXPECT_FALSE(parseSnapshot(nullptr, &s, &reason));
    EXPECT_FALSE(parseSnapshot(t.error("NOSCRIPT No matching script"), &s, &reason));
    EXPECT_NE(reason.find("NOSCRIPT"), std::string::npos);
    EXPECT_FALSE(parseSnapshot(t.integer(1), &s, &reason));
    EXPECT_FALSE(parseSnapshot(t.array({t.integer(1)}), &s, &reason));
    // a message cut short
    redisReply* r = snapshotReply(t, 1, "1:0", 1, 0, {"1:0"}, {"0:0"});
    r->elements -= 1;
    EXPECT_FALSE(parseSnapshot(r, &s, &reason));
    // ids going backwards
    EXPECT_FALSE(parseSnapshot(snapshotReply(t, 1, "2:0", 2, 0, {"2:0", "1:0"}, {"1:0", "0:0"}),
                               &s, &reason));
    EXPECT_FALSE(
        parseSnapshot(snapshotReply(t, 1, "bad", 1, 0, {"1:0"}, {"0:0"}), &s, &reason));
    EXPECT_FALSE(
        parseSnapshot(snapshotReply(t, 1, "1:0", 1, 0, {"1:x"}, {"0:0"}), &s, &reason));
}

TEST(RedisProto, InfoAndPublish) {
    Tree t;
    ChannelInfo info;
    std::string reason;
    ASSERT_TRUE(parseInfo(t.array({t.integer(0)}), &info, &reason));
    EXPECT_FALSE(info.found);
    ASSERT_TRUE(parseInfo(t.array({t.integer(1), t.str("5:1"), t.integer(2), t.integer(3),
                                   t.integer(-1)}),
                          &info, &reason));
    EXPECT_TRUE(info.found);
    EXPECT_EQ(info.lastId, (MsgId{5, 1}));
    EXPECT_EQ(info.messages, 2u);
    EXPECT_EQ(info.subscribers, 3u);
    EXPECT_EQ(info.lastSeen, -1);
    EXPECT_FALSE(parseInfo(t.array({t.integer(1), t.str("5:1")}), &info, &reason));
    EXPECT_FALSE(parseInfo(t.array({t.integer(1), t.str("5:1"), t.integer(-2), t.integer(3),
                                    t.integer(-1)}),
                           &info, &reason));

    PublishReply p;
    ASSERT_TRUE(parsePublish(t.array({t.str("7:0"), t.str("6:4"), t.integer(10), t.integer(1),
                                      t.integer(123)}),
                             &p, &reason));
    EXPECT_EQ(p.id, (MsgId{7, 0}));
    EXPECT_EQ(p.info.lastId, (MsgId{7, 0}));
    EXPECT_EQ(p.info.messages, 10u);
    EXPECT_EQ(p.info.subscribers, 1u);
    EXPECT_EQ(p.info.lastSeen, 123);
    EXPECT_FALSE(parsePublish(t.error("ERR boom"), &p, &reason));
    EXPECT_EQ(reason, "Redis error: ERR boom");
    EXPECT_FALSE(parsePublish(t.array({t.str("x"), t.str("6:4"), t.integer(10), t.integer(1),
                                       t.integer(1)}),
                              &p, &reason));
}

TEST(RedisProto, Live) {
    Live l;
    std::string reason;
    ASSERT_TRUE(parseLive("D", &l, &reason));
    EXPECT_TRUE(l.deleted);
    std::string payload = "M10:2 10:1 10 3 text/plainevthello world";
    ASSERT_TRUE(parseLive(payload, &l, &reason));
    EXPECT_FALSE(l.deleted);
    EXPECT_EQ(l.msg->id(), (MsgId{10, 2}));
    EXPECT_EQ(l.msg->prev(), (MsgId{10, 1}));
    EXPECT_EQ(l.msg->contentType(), "text/plain");
    EXPECT_EQ(l.msg->eventName(), "evt");
    EXPECT_EQ(l.msg->data(), "hello world");
    std::string binary = std::string("M1:0 0:0 0 0 ") + std::string("a\0 b", 4);
    ASSERT_TRUE(parseLive(binary, &l, &reason));
    EXPECT_EQ(l.msg->data(), std::string_view("a\0 b", 4));
    for (const char* bad : {"", "X", "M", "M1:0 0:0 0", "Mx 0:0 0 0 ", "M1:0 0:0 5 0 abc",
                            "M1:0 0:0 1 9 abc", "M1:0 0:0 -1 0 abc", "M1:0 0:0 a 0 abc"}) {
        EXPECT_FALSE(parseLive(bad, &l, &reason)) << bad;
    }
}

TEST(RedisProto, StartPositions) {
    Tree t;
    Snapshot s;
    std::string reason;
    ASSERT_TRUE(parseSnapshot(snapshotReply(t, 1, "100:3", 4, 0, {"100:1", "100:2", "100:3"},
                                            {"100:0", "100:1", "100:2"}),
                              &s, &reason));
    StartSpec spec;
    spec.kind = StartSpec::kOldest;
    SnapshotStart p = startIn(s, spec);
    EXPECT_EQ(p.first, 0u);
    EXPECT_EQ(p.cursor, (MsgId{100, 0}));
    EXPECT_FALSE(p.gap);

    spec.kind = StartSpec::kNewest;
    p = startIn(s, spec);
    EXPECT_EQ(p.first, 3u);
    EXPECT_EQ(p.cursor, (MsgId{100, 3}));

    spec.kind = StartSpec::kFromNewest;
    spec.n = 2;
    EXPECT_EQ(startIn(s, spec).first, 1u);
    spec.n = 9;
    EXPECT_EQ(startIn(s, spec).first, 0u);
    spec.kind = StartSpec::kFromOldest;
    spec.n = 2;
    EXPECT_EQ(startIn(s, spec).first, 1u);
    spec.n = 9;
    EXPECT_EQ(startIn(s, spec).first, 3u);

    spec.kind = StartSpec::kAfter;
    spec.after = MsgId{100, 1};
    p = startIn(s, spec);
    EXPECT_EQ(p.first, 1u);
    EXPECT_EQ(p.cursor, (MsgId{100, 1}));
    EXPECT_FALSE(p.gap);

    // 100:0 was trimmed: resuming from before it is a gap
    spec.after = MsgId{99, 0};
    p = startIn(s, spec);
    EXPECT_EQ(p.first, 0u);
    EXPECT_TRUE(p.gap);
    EXPECT_EQ(p.cursor, (MsgId{100, 0}));

    spec.after = MsgId{100, 3};
    p = startIn(s, spec);
    EXPECT_EQ(p.first, 3u);
    EXPECT_FALSE(p.gap);

    // a future id waits for newer messages
    spec.after = MsgId{200, 0};
    p = startIn(s, spec);
    EXPECT_EQ(p.first, 3u);
    EXPECT_EQ(p.cursor, (MsgId{200, 0}));

    // everything expired: a resume id before the last one missed messages
    Snapshot empty;
    empty.found = true;
    empty.lastId = MsgId{100, 3};
    empty.published = 4;
    spec.after = MsgId{100, 1};
    p = startIn(empty, spec);
    EXPECT_TRUE(p.gap);
    EXPECT_EQ(p.cursor, (MsgId{100, 3}));
}
