#include "pubsub/codec/utf8.h"

#include <cstring>

namespace pubsub {

namespace {

constexpr uint64_t kHighBits = 0x8080808080808080ULL;

}  // namespace

void Utf8Validator::reset() {
    need_ = 0;
    lo_ = 0x80;
    hi_ = 0xBF;
    failed_ = false;
}

bool Utf8Validator::feed(const uint8_t* data, size_t len) {
    if (failed_) {
        return false;
    }
    size_t i = 0;
    while (i < len) {
        if (need_ == 0) {
            // ASCII fast path, 8 bytes at a time.
            while (len - i >= 8) {
                uint64_t word;
                std::memcpy(&word, data + i, sizeof(word));
                if ((word & kHighBits) != 0) {
                    break;
                }
                i += 8;
            }
            if (i == len) {
                break;
            }
            uint8_t b = data[i++];
            if (b < 0x80) {
                continue;
            }
            lo_ = 0x80;
            hi_ = 0xBF;
            if (b >= 0xC2 && b <= 0xDF) {
                need_ = 1;
            } else if (b == 0xE0) {
                need_ = 2;
                lo_ = 0xA0;  // no overlong 3-byte forms
            } else if (b == 0xED) {
                need_ = 2;
                hi_ = 0x9F;  // no surrogates
            } else if (b >= 0xE1 && b <= 0xEF) {
                need_ = 2;
            } else if (b == 0xF0) {
                need_ = 3;
                lo_ = 0x90;  // no overlong 4-byte forms
            } else if (b >= 0xF1 && b <= 0xF3) {
                need_ = 3;
            } else if (b == 0xF4) {
                need_ = 3;
                hi_ = 0x8F;  // nothing above U+10FFFF
            } else {
                failed_ = true;  // 0x80..0xC1 (stray or overlong 2-byte), 0xF5..0xFF
                return false;
            }
        } else {
            uint8_t b = data[i++];
            if (b < lo_ || b > hi_) {
                failed_ = true;
                return false;
            }
            lo_ = 0x80;
            hi_ = 0xBF;
            --need_;
        }
    }
    return true;
}

bool isValidUtf8(std::string_view s) {
    Utf8Validator v;
    return v.feed(s) && v.complete();
}

size_t utf8PrefixLength(std::string_view s, size_t maxLen) {
    if (s.size() <= maxLen) {
        return s.size();
    }
    // Step back over at most 3 continuation bytes to the start of a sequence.
    for (size_t k = 0; k < 4 && k <= maxLen; ++k) {
        if ((static_cast<uint8_t>(s[maxLen - k]) & 0xC0) != 0x80) {
            return maxLen - k;
        }
    }
    return maxLen;  // not UTF-8 anyway: cut at the limit
}

}  // namespace pubsub
