#include "pubsub/channel_id.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace pubsub {
namespace {

struct Split {
    ChannelIdError err;
    std::vector<std::string> ids;
};

Split split(std::string_view value, std::string_view delim, size_t maxLen = 1024,
            size_t max = kMaxChannelIds) {
    std::vector<std::string_view> out(kMaxChannelIds + 1);
    size_t n = 0;
    Split s;
    s.err = splitChannelIds(value, delim, maxLen, out.data(), &n, max);
    for (size_t i = 0; i < n; i++) {
        s.ids.emplace_back(out[i]);
    }
    return s;
}

using V = std::vector<std::string>;

TEST(ChannelId, SingleWithoutDelimiter) {
    auto s = split("chat,room", "");
    EXPECT_EQ(s.err, ChannelIdError::kNone);
    EXPECT_EQ(s.ids, V{"chat,room"});
}

TEST(ChannelId, EmptyValueFails) {
    EXPECT_EQ(split("", "").err, ChannelIdError::kEmpty);
    EXPECT_EQ(split("", ",").err, ChannelIdError::kEmpty);
}

TEST(ChannelId, SplitsAndSkipsEmptyPiecesAfterTheFirst) {
    auto s = split("a,b,,c,", ",");
    EXPECT_EQ(s.err, ChannelIdError::kNone);
    EXPECT_EQ(s.ids, (V{"a", "b", "c"}));
    EXPECT_EQ(split(",a", ",").err, ChannelIdError::kEmpty);
    EXPECT_EQ(split(",", ",").err, ChannelIdError::kEmpty);
}

TEST(ChannelId, MultiByteDelimiter) {
    auto s = split("x--y--z", "--");
    EXPECT_EQ(s.err, ChannelIdError::kNone);
    EXPECT_EQ(s.ids, (V{"x", "y", "z"}));
    EXPECT_EQ(split("x-y", "--").ids, V{"x-y"});
}

TEST(ChannelId, CountSpansCalls) {
    std::string_view out[3];
    size_t n = 0;
    EXPECT_EQ(splitChannelIds("a,b", ",", 10, out, &n, 3), ChannelIdError::kNone);
    // A later value's leading empty piece is skipped: ids were already taken.
    EXPECT_EQ(splitChannelIds(",c", ",", 10, out, &n, 3), ChannelIdError::kNone);
    EXPECT_EQ(n, 3u);
    EXPECT_EQ(splitChannelIds("d", ",", 10, out, &n, 3), ChannelIdError::kTooMany);
    EXPECT_EQ(n, 3u);
    EXPECT_EQ(out[2], "c");
}

TEST(ChannelId, TooLong) {
    EXPECT_EQ(split(std::string(11, 'a'), "", 10).err, ChannelIdError::kTooLong);
    EXPECT_EQ(split(std::string(10, 'a'), "", 10).err, ChannelIdError::kNone);
    // The whole value is bounded too, before splitting.
    std::string many;
    for (int i = 0; i < 300; i++) {
        many += "abcd,";
    }
    EXPECT_EQ(split(many, ",", 4).err, ChannelIdError::kTooLong);
    // A huge limit does not overflow the bound.
    EXPECT_EQ(split("abc", "", SIZE_MAX).err, ChannelIdError::kNone);
}

TEST(ChannelId, ControlCharacters) {
    EXPECT_EQ(split(std::string("a\0b", 3), "").err, ChannelIdError::kControlChar);
    EXPECT_EQ(split("a\nb", "").err, ChannelIdError::kControlChar);
    EXPECT_EQ(split("a\x7f", "").err, ChannelIdError::kControlChar);
    EXPECT_EQ(split("ok,bad\t", ",").ids, V{"ok"});
    EXPECT_EQ(split("caf\xc3\xa9 space", "").err, ChannelIdError::kNone);
}

TEST(ChannelId, TooMany) {
    std::string v;
    for (int i = 0; i < 256; i++) {
        v += "c" + std::to_string(i) + ",";
    }
    auto s = split(v, ",");
    EXPECT_EQ(s.err, ChannelIdError::kTooMany);
    EXPECT_EQ(s.ids.size(), kMaxChannelIds);
}

TEST(ChannelId, Group) {
    EXPECT_EQ(checkChannelGroup("default"), ChannelIdError::kNone);
    EXPECT_EQ(checkChannelGroup(""), ChannelIdError::kNone);
    EXPECT_EQ(checkChannelGroup("a/b"), ChannelIdError::kBadGroup);
    EXPECT_EQ(checkChannelGroup(std::string_view("a\nb")), ChannelIdError::kGroupControlChar);
    EXPECT_EQ(checkChannelGroup(std::string_view("a\x7f")), ChannelIdError::kGroupControlChar);
    EXPECT_EQ(checkChannelGroup(std::string_view("a\0b", 3)), ChannelIdError::kGroupControlChar);
}

TEST(ChannelId, ErrorTexts) {
    EXPECT_EQ(channelIdErrorText(ChannelIdError::kNone), "");
    EXPECT_EQ(channelIdErrorText(ChannelIdError::kTooMany),
              "Too many channel ids (at most 255).\n");
    EXPECT_EQ(channelIdErrorText(ChannelIdError::kBadGroup),
              "Channel group must not contain '/'.\n");
}

}  // namespace
}  // namespace pubsub
