#include "pubsub/codec/hex.h"

#include <gtest/gtest.h>

#include <cctype>
#include <string>

namespace {

using pubsub::hexValue;
using pubsub::toHex;

TEST(Hex, ValueOfEachDigitInEitherCase) {
    const std::string digits = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        EXPECT_EQ(hexValue(digits[i]), i);
        EXPECT_EQ(hexValue(static_cast<char>(std::toupper(digits[i]))), i);
    }
}

TEST(Hex, OtherCharactersAreNotDigits) {
    for (char c : std::string("gGzZ/:@`%+ \x7f")) {
        EXPECT_EQ(hexValue(c), -1) << c;
    }
    EXPECT_EQ(hexValue('\0'), -1);
    EXPECT_EQ(hexValue(static_cast<char>(0xC3)), -1);
    static_assert(hexValue('F') == 15, "usable at compile time");
}

TEST(Hex, BytesAsLowercaseDigits) {
    const unsigned char bytes[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
    EXPECT_EQ(toHex(bytes, sizeof bytes), "00017f80abff");
    EXPECT_EQ(toHex(bytes, 0), "");
}

}  // namespace
