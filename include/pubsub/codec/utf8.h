// Streaming UTF-8 validation (RFC 3629): rejects overlong forms, UTF-16
// surrogates (U+D800..U+DFFF), code points above U+10FFFF and sequences left
// unfinished at the end of the input. Used for WebSocket text messages and
// close reasons, which may arrive split at any byte.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace pubsub {

class Utf8Validator {
public:
    // Checks the next bytes. Returns false as soon as the input seen so far
    // cannot be the start of valid UTF-8; the failure is sticky until reset().
    bool feed(const uint8_t* data, size_t len);
    bool feed(std::string_view s) {
        return feed(reinterpret_cast<const uint8_t*>(s.data()), s.size());
    }
    // True when everything fed is valid and no multi-byte sequence is open:
    // call at the end of a message.
    bool complete() const { return !failed_ && need_ == 0; }
    bool failed() const { return failed_; }
    void reset();

private:
    uint8_t need_ = 0;   // continuation bytes still expected
    uint8_t lo_ = 0x80;  // allowed range of the next continuation byte
    uint8_t hi_ = 0xBF;
    bool failed_ = false;
};

// Whole-buffer check.
bool isValidUtf8(std::string_view s);

// The largest n <= maxLen such that s[0, n) does not end inside a multi-byte
// sequence (cuts before a continuation byte). Does not validate s.
size_t utf8PrefixLength(std::string_view s, size_t maxLen);

}  // namespace pubsub
