#include "pubsub/codec/utf8.h"

#include <gtest/gtest.h>

#include <string>

using pubsub::isValidUtf8;
using pubsub::utf8PrefixLength;
using pubsub::Utf8Validator;

namespace {

std::string bytes(std::initializer_list<int> b) {
    std::string s;
    for (int c : b) {
        s.push_back(static_cast<char>(c));
    }
    return s;
}

// Every split of s into two pieces gives the same verdict as the whole.
bool validSplitEverywhere(const std::string& s) {
    bool whole = isValidUtf8(s);
    for (size_t cut = 0; cut <= s.size(); ++cut) {
        Utf8Validator v;
        bool ok = v.feed(std::string_view(s).substr(0, cut));
        ok = v.feed(std::string_view(s).substr(cut)) && ok;
        EXPECT_EQ(whole, ok && v.complete()) << "cut at " << cut;
    }
    return whole;
}

}  // namespace

TEST(Utf8, ValidSequences) {
    EXPECT_TRUE(validSplitEverywhere(""));
    EXPECT_TRUE(validSplitEverywhere("Hello, world: plain ASCII longer than eight bytes"));
    EXPECT_TRUE(validSplitEverywhere("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"));  // kosme
    EXPECT_TRUE(validSplitEverywhere(bytes({0xC2, 0x80})));                             // U+0080
    EXPECT_TRUE(validSplitEverywhere(bytes({0xDF, 0xBF})));                             // U+07FF
    EXPECT_TRUE(validSplitEverywhere(bytes({0xE0, 0xA0, 0x80})));                       // U+0800
    EXPECT_TRUE(validSplitEverywhere(bytes({0xED, 0x9F, 0xBF})));                       // U+D7FF
    EXPECT_TRUE(validSplitEverywhere(bytes({0xEE, 0x80, 0x80})));                       // U+E000
    EXPECT_TRUE(validSplitEverywhere(bytes({0xEF, 0xBF, 0xBF})));                       // U+FFFF
    EXPECT_TRUE(validSplitEverywhere(bytes({0xF0, 0x90, 0x80, 0x80})));                 // U+10000
    EXPECT_TRUE(validSplitEverywhere(bytes({0xF4, 0x8F, 0xBF, 0xBF})));                 // U+10FFFF
    EXPECT_TRUE(validSplitEverywhere("a\xf0\x9f\x98\x80z"));                            // emoji
    EXPECT_TRUE(validSplitEverywhere(std::string(1, '\0')));
}

TEST(Utf8, Overlongs) {
    EXPECT_FALSE(validSplitEverywhere(bytes({0xC0, 0xAF})));
    EXPECT_FALSE(validSplitEverywhere(bytes({0xC1, 0xBF})));
    EXPECT_FALSE(validSplitEverywhere(bytes({0xE0, 0x80, 0xAF})));
    EXPECT_FALSE(validSplitEverywhere(bytes({0xE0, 0x9F, 0xBF})));
    EXPECT_FALSE(validSplitEverywhere(bytes({0xF0, 0x80, 0x80, 0xAF})));
    EXPECT_FALSE(validSplitEverywhere(bytes({0xF0, 0x8F, 0xBF, 0xBF})));
    EXPECT_FALSE(validSplitEverywhere(bytes({0xF8, 0x80, 0x80, 0x80, 0xAF})));
    EXPECT_FALSE(validSplitEverywhere(bytes({0xFC, 0x80, 0x80, 0x80, 0x80, 0xAF})));
    EXPECT_FALSE(validSplitEverywhere(bytes({0xC0, 0x80})));  // overlong NUL
}

TEST(Utf8, Surrogates) {
    EXPECT_FALSE(validSplitEverywhere(bytes({0xED, 0xA0, 0x80})));                    // U+D800
    EXPECT_FALSE(validSplitEverywhere(bytes({0xED, 0xAD, 0xBF})));                    // U+DB7F
    EXPECT_FALSE(validSplitEverywhere(bytes({0xED, 0xBF, 0xBF})));                    // U+DFFF
    EXPECT_FALSE(validSplitEverywhere(bytes({0xED, 0xA0, 0x80, 0xED, 0xB0, 0x80})));  // pair
}

TEST(Utf8, AboveMax) {
    EXPECT_FALSE(validSplitEverywhere(bytes({0xF4, 0x90, 0x80, 0x80})));  // U+110000
    EXPECT_FALSE(validSplitEverywhere(bytes({0xF5, 0x80, 0x80, 0x80})));
    EXPECT_FALSE(validSplitEverywhere(bytes({0xF7, 0xBF, 0xBF, 0xBF})));
    EXPECT_FALSE(validSplitEverywhere(bytes({0xFE})));
    EXPECT_FALSE(validSplitEverywhere(bytes({0xFF})));
}

TEST(Utf8, StrayAndTruncated) {
    EXPECT_FALSE(validSplitEverywhere(bytes({0x80})));
    EXPECT_FALSE(validSplitEverywhere(bytes({0xBF})));
    EXPECT_FALSE(validSplitEverywhere(bytes({0x41, 0x80, 0x41})));
    EXPECT_FALSE(validSplitEverywhere(bytes({0xC2})));
    EXPECT_FALSE(validSplitEverywhere(bytes({0xE0, 0xA0})));
    EXPECT_FALSE(validSplitEverywhere(bytes({0xF0, 0x90, 0x80})));
    EXPECT_FALSE(validSplitEverywhere(bytes({0xC2, 0x41})));        // cut by ASCII
    EXPECT_FALSE(validSplitEverywhere(bytes({0xE1, 0x80, 0xC2})));  // cut by a lead byte
    // 0xF4 0x90 must fail at the second byte, before the sequence ends.
    Utf8Validator v;
    EXPECT_TRUE(v.feed(bytes({0xF4})));
    EXPECT_FALSE(v.feed(bytes({0x90})));
    EXPECT_TRUE(v.failed());
    EXPECT_FALSE(v.feed("a"));  // sticky
    v.reset();
    EXPECT_TRUE(v.feed("a") && v.complete());
}

TEST(Utf8, TruncatedSequenceIsIncompleteNotFailed) {
    Utf8Validator v;
    EXPECT_TRUE(v.feed(bytes({0xE2, 0x82})));
    EXPECT_FALSE(v.failed());
    EXPECT_FALSE(v.complete());
    EXPECT_TRUE(v.feed(bytes({0xAC})));
    EXPECT_TRUE(v.complete());
}

TEST(Utf8, PrefixLength) {
    std::string euro = "\xe2\x82\xac";  // 3 bytes
    std::string s = "ab" + euro + "c";
    EXPECT_EQ(utf8PrefixLength(s, 10), s.size());
    EXPECT_EQ(utf8PrefixLength(s, 6), 6u);
    EXPECT_EQ(utf8PrefixLength(s, 5), 5u);
    EXPECT_EQ(utf8PrefixLength(s, 4), 2u);
    EXPECT_EQ(utf8PrefixLength(s, 3), 2u);
    EXPECT_EQ(utf8PrefixLength(s, 2), 2u);
    EXPECT_EQ(utf8PrefixLength(s, 0), 0u);
    std::string four = "\xf0\x9f\x98\x80\xf0\x9f\x98\x80";
    EXPECT_EQ(utf8PrefixLength(four, 7), 4u);
    EXPECT_EQ(utf8PrefixLength(four, 4), 4u);
    EXPECT_EQ(utf8PrefixLength(four, 3), 0u);
    std::string junk(10, '\x80');  // not UTF-8: cut at the limit
    EXPECT_EQ(utf8PrefixLength(junk, 6), 6u);
}
