#pragma once
// Hexadecimal digits, read and written: %XX escapes, \uXXXX in JSON,
// digests shown as text.

#include <cstddef>
#include <string>

namespace pubsub {

// The value of one hex digit (either case); -1 for any other character.
constexpr int hexValue(char c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

// n bytes as 2n lowercase hex digits.
std::string toHex(const unsigned char* p, std::size_t n);

}  // namespace pubsub
