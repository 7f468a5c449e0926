#include "pubsub/msgid.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <limits>
#include <string>

namespace {

using pubsub::formatMsgId;
using pubsub::MsgId;
using pubsub::nextMsgId;
using pubsub::parseMsgId;
using pubsub::parseMsgTags;
using pubsub::ParsedMsgId;

TEST(MsgId, NullAndOrdering) {
    EXPECT_TRUE(MsgId{}.isNull());
    EXPECT_FALSE((MsgId{0, 1}).isNull());
    EXPECT_FALSE((MsgId{1, 0}).isNull());
    EXPECT_LT((MsgId{5, 9}), (MsgId{6, 0}));
    EXPECT_LT((MsgId{5, 0}), (MsgId{5, 1}));
    EXPECT_EQ((MsgId{5, 1}), (MsgId{5, 1}));
    EXPECT_NE((MsgId{5, 1}), (MsgId{5, 2}));
    EXPECT_LE((MsgId{5, 1}), (MsgId{5, 1}));
    EXPECT_GE((MsgId{5, 2}), (MsgId{5, 1}));
    EXPECT_GT((MsgId{6, 0}), (MsgId{5, 100}));
}

TEST(MsgId, NextWithinOneSecondCountsTags) {
    MsgId a = nextMsgId(MsgId{}, 1000);
    EXPECT_EQ(a, (MsgId{1000, 0}));
    MsgId b = nextMsgId(a, 1000);
    EXPECT_EQ(b, (MsgId{1000, 1}));
    MsgId c = nextMsgId(b, 1000);
    EXPECT_EQ(c, (MsgId{1000, 2}));
}

TEST(MsgId, NextAcrossSecondsResetsTag) {
    MsgId a{1000, 7};
    EXPECT_EQ(nextMsgId(a, 1001), (MsgId{1001, 0}));
    EXPECT_EQ(nextMsgId(a, 5000), (MsgId{5000, 0}));
}

TEST(MsgId, ClockGoingBackwardsStillIncreases) {
    MsgId last{2000, 3};
    MsgId n1 = nextMsgId(last, 1990);
    EXPECT_GT(n1, last);
    EXPECT_EQ(n1, (MsgId{2000, 4}));
    MsgId n2 = nextMsgId(n1, 0);
    EXPECT_GT(n2, n1);
    // A long run with a clock that jitters back and forth.
    MsgId prev{};
    int64_t clock[] = {100, 101, 99, 99, 102, 50, 102, 103, 103, 1};
    for (int64_t now : clock) {
        MsgId next = nextMsgId(prev, now);
        EXPECT_GT(next, prev) << "at now=" << now;
        prev = next;
    }
}

TEST(MsgId, TagOverflowMovesToTheNextSecond) {
    MsgId last{3000, std::numeric_limits<int32_t>::max()};
    MsgId n = nextMsgId(last, 3000);
    EXPECT_GT(n, last);
    EXPECT_EQ(n, (MsgId{3001, 0}));
}

TEST(MsgId, Format) {
    EXPECT_EQ(formatMsgId(MsgId{1795678158, 0}), "1795678158:0");
    EXPECT_EQ(formatMsgId(MsgId{0, 0}), "0:0");
    EXPECT_EQ(formatMsgId(MsgId{12, 345}), "12:345");
    std::string s = "id=";
    EXPECT_EQ(pubsub::appendMsgId(s, MsgId{1, 2}), 3u);
    EXPECT_EQ(s, "id=1:2");
    char buf[pubsub::kMaxMsgIdText];
    MsgId widest{std::numeric_limits<int64_t>::max(), std::numeric_limits<int32_t>::max()};
    size_t n = pubsub::writeMsgId(buf, widest);
    EXPECT_EQ(std::string(buf, n), "9223372036854775807:2147483647");
    EXPECT_LT(n, pubsub::kMaxMsgIdText);
}

TEST(MsgId, WidestIdFitsTheBuffer) {
    // Regression: kMaxMsgIdText was 32, so the widest id was cut short and
    // writeMsgId returned 32 (snprintf's untruncated length), which made
    // appendMsgId append the terminating NUL.
    char buf[pubsub::kMaxMsgIdText];
    MsgId negative{std::numeric_limits<int64_t>::min(), std::numeric_limits<int32_t>::min()};
    size_t n = pubsub::writeMsgId(buf, negative);
    EXPECT_LT(n, pubsub::kMaxMsgIdText);
    EXPECT_EQ(std::string(buf, n), "-9223372036854775808:-2147483648");
    std::string s;
    EXPECT_EQ(pubsub::appendMsgId(s, negative), 32u);
    EXPECT_EQ(s, "-9223372036854775808:-2147483648");
    EXPECT_EQ(std::strlen(s.c_str()), s.size());
}

TEST(MsgId, ParseFormatRoundTrip) {
    MsgId ids[] = {{0, 0}, {1, 0}, {1795678158, 0}, {1795678158, 41},
                   {std::numeric_limits<int64_t>::max() / 2, std::numeric_limits<int32_t>::max()}};
    for (const MsgId& mid : ids) {
        std::string text = formatMsgId(mid);
        ParsedMsgId p;
        std::string reason;
        ASSERT_TRUE(parseMsgId(text, &p, &reason)) << text << ": " << reason;
        EXPECT_EQ(p.single(), mid) << text;
        EXPECT_EQ(p.tags.size(), 1u);
        EXPECT_EQ(p.active, -1);
        EXPECT_EQ(formatMsgId(p.single()), text);
    }
}

TEST(MsgId, ParseSingle) {
    ParsedMsgId p;
    std::string reason;
    ASSERT_TRUE(parseMsgId("1795678158:3", &p, &reason)) << reason;
    EXPECT_EQ(p.time, 1795678158);
    ASSERT_EQ(p.tags.size(), 1u);
    EXPECT_EQ(p.tags[0], 3);
    EXPECT_EQ(p.active, -1);
}

TEST(MsgId, ParseMultiplexed) {
    ParsedMsgId p;
    std::string reason;
    ASSERT_TRUE(parseMsgId("1795678158:[0],-", &p, &reason)) << reason;
    EXPECT_EQ(p.time, 1795678158);
    ASSERT_EQ(p.tags.size(), 2u);
    EXPECT_EQ(p.tags[0], 0);
    EXPECT_EQ(p.tags[1], -1);
    EXPECT_EQ(p.active, 0);
    EXPECT_EQ(p.single(), (MsgId{1795678158, 0}));

    ASSERT_TRUE(parseMsgId("5:-,3,[7],-1", &p, &reason)) << reason;
    ASSERT_EQ(p.tags.size(), 4u);
    EXPECT_EQ(p.tags[0], -1);
    EXPECT_EQ(p.tags[1], 3);
    EXPECT_EQ(p.tags[2], 7);
    EXPECT_EQ(p.tags[3], -1);
    EXPECT_EQ(p.active, 2);
}

TEST(MsgId, ParseTagsOnly) {
    // Etag header next to a Last-Modified time.
    ParsedMsgId p;
    std::string reason;
    ASSERT_TRUE(parseMsgTags("0,[1]", &p, &reason)) << reason;
    ASSERT_EQ(p.tags.size(), 2u);
    EXPECT_EQ(p.tags[0], 0);
    EXPECT_EQ(p.tags[1], 1);
    EXPECT_EQ(p.active, 1);

    ASSERT_TRUE(parseMsgTags("12", &p, &reason)) << reason;
    ASSERT_EQ(p.tags.size(), 1u);
    EXPECT_EQ(p.tags[0], 12);
    EXPECT_EQ(p.active, -1);

    ASSERT_TRUE(parseMsgTags("[-]", &p, &reason)) << reason;
    ASSERT_EQ(p.tags.size(), 1u);
    EXPECT_EQ(p.tags[0], -1);
    EXPECT_EQ(p.active, 0);
}

TEST(MsgId, ParseReusesOutputCleanly) {
    ParsedMsgId p;
    std::string reason;
    ASSERT_TRUE(parseMsgId("1:[1],2,3", &p, &reason));
    ASSERT_TRUE(parseMsgId("2:5", &p, &reason));
    EXPECT_EQ(p.time, 2);
    ASSERT_EQ(p.tags.size(), 1u);
    EXPECT_EQ(p.tags[0], 5);
    EXPECT_EQ(p.active, -1);
}

TEST(MsgId, TooManyTags) {
    ParsedMsgId p;
    std::string reason;
    EXPECT_TRUE(parseMsgId("1:1,2,3", &p, &reason, 3)) << reason;
    EXPECT_FALSE(parseMsgId("1:1,2,3,4", &p, &reason, 3));
    EXPECT_EQ(reason, "too many message tags");
    EXPECT_FALSE(parseMsgTags("1", &p, &reason, 0));
    EXPECT_EQ(reason, "too many message tags");

    // The default limit is 255.
    std::string many = "1:0";
    for (int i = 1; i < 255; i++) {
        many += ",0";
    }
    EXPECT_TRUE(parseMsgId(many, &p, &reason)) << reason;
    EXPECT_EQ(p.tags.size(), 255u);
    many += ",0";
    EXPECT_FALSE(parseMsgId(many, &p, &reason));
    EXPECT_EQ(reason, "too many message tags");
}

struct BadId {
    const char* text;
    const char* reason;
};

class MsgIdBadInput : public ::testing::TestWithParam<BadId> {};

TEST_P(MsgIdBadInput, IsRejectedWithAReason) {
    const BadId& bad = GetParam();
    ParsedMsgId p;
    std::string reason;
    EXPECT_FALSE(parseMsgId(bad.text, &p, &reason)) << "accepted '" << bad.text << "'";
    EXPECT_EQ(reason, bad.reason) << "for '" << bad.text << "'";
}

INSTANTIATE_TEST_SUITE_P(
    All, MsgIdBadInput,
    ::testing::Values(
        BadId{"", "message id has no ':'"},
        BadId{"1795678158", "message id has no ':'"},
        BadId{"abc", "message id has no ':'"},
        BadId{":", "message id time is not a number"},
        BadId{":0", "message id time is not a number"},
        BadId{"1795678158:", "empty message tag"},
        BadId{"abc:0", "message id time is not a number"},
        BadId{"12a:0", "message id time is not a number"},
        BadId{" 1:0", "message id time is not a number"},
        BadId{"+1:0", "message id time is not a number"},
        BadId{"0x10:0", "message id time is not a number"},
        BadId{"1:x", "message tag is not a number"},
        BadId{"1:1x", "message tag is not a number"},
        BadId{"1:1 ", "message tag is not a number"},
        BadId{"1:2:3", "message tag is not a number"},
        BadId{"-1:0", "message id time is not a number"},
        BadId{"-:0", "message id time is not a number"},
        BadId{"-0x:0", "message id time is not a number"},
        // overflow
        BadId{"99999999999999999999:0", "message id time is not a number"},
        BadId{"18446744073709551616:0", "message id time is not a number"},
        BadId{"9223372036854775807:0", "message id time is not a number"},
        BadId{"123456789012345678901234:0", "message id time is not a number"},
        BadId{"1:2147483648", "message tag is not a number"},
        BadId{"1:99999999999999999999", "message tag is not a number"},
        BadId{"1:-2", "message tag is not a number"},
        BadId{"1:--", "message tag is not a number"},
        // lists
        BadId{"1:0,", "message tag is not a number"},
        BadId{"1:,0", "message tag is not a number"},
        BadId{"1:0,,1", "message tag is not a number"},
        // brackets
        BadId{"1:[", "unbalanced brackets in message tag"},
        BadId{"1:[]", "unbalanced brackets in message tag"},
        BadId{"1:[0", "unbalanced brackets in message tag"},
        BadId{"1:[0,1]", "unbalanced brackets in message tag"},
        BadId{"1:0]", "message tag is not a number"},
        BadId{"1:[[0]]", "message tag is not a number"},
        BadId{"1:[x]", "message tag is not a number"},
        BadId{"1:[0],[1]", "more than one active message tag"},
        BadId{"1:[0],-,[-]", "more than one active message tag"}));

TEST(MsgId, BadTagsOnly) {
    ParsedMsgId p;
    std::string reason;
    EXPECT_FALSE(parseMsgTags("", &p, &reason));
    EXPECT_EQ(reason, "empty message tag");
    EXPECT_FALSE(parseMsgTags("1795678158:0", &p, &reason));
    EXPECT_EQ(reason, "message tag is not a number");
    EXPECT_FALSE(parseMsgTags("[1],[2]", &p, &reason));
    EXPECT_EQ(reason, "more than one active message tag");
    EXPECT_FALSE(parseMsgTags("[1", &p, &reason));
    EXPECT_EQ(reason, "unbalanced brackets in message tag");
}

TEST(MsgId, EmbeddedNulIsRejected) {
    ParsedMsgId p;
    std::string reason;
    std::string text("1:0\0", 4);
    EXPECT_FALSE(parseMsgId(text, &p, &reason));
}

}  // namespace

TEST(WriteDecimal, MatchesPrintfAtDigitBoundaries) {
    const int64_t values[] = {0,
                              1,
                              9,
                              10,
                              11,
                              99,
                              100,
                              101,
                              999,
                              1000,
                              1795682838,
                              -1,
                              -9,
                              -10,
                              -12672,
                              std::numeric_limits<int64_t>::max(),
                              std::numeric_limits<int64_t>::min()};
    for (int64_t v : values) {
        char buf[32];
        char want[32];
        size_t n = pubsub::writeDecimal(buf, v);
        int m = snprintf(want, sizeof(want), "%lld", static_cast<long long>(v));
        EXPECT_EQ(std::string(buf, n), std::string(want, m)) << v;
    }
}
