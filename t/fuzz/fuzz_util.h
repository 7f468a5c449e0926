// Small helpers shared by the libFuzzer targets in t/fuzz.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace pubsub::fuzz {

// Reads parameters from the front of the input; what is left is the payload.
class Input {
public:
    Input(const uint8_t* data, size_t size) : p_(data), n_(size) {}

    uint8_t byte() {
        if (n_ == 0) {
            return 0;
        }
        n_--;
        return *p_++;
    }
    // Bytes up to (not including) the next `sep`, or all that is left.
    std::string_view until(char sep) {
        std::string_view rest = this->rest();
        size_t at = rest.find(sep);
        size_t take = at == std::string_view::npos ? rest.size() : at;
        size_t skip = at == std::string_view::npos ? take : take + 1;
        p_ += skip;
        n_ -= skip;
        return rest.substr(0, take);
    }
    std::string_view rest() const { return {reinterpret_cast<const char*>(p_), n_}; }
    const uint8_t* data() const { return p_; }
    size_t size() const { return n_; }

private:
    const uint8_t* p_;
    size_t n_;
};

// A broken invariant: report it and abort so that libFuzzer keeps the input.
[[noreturn]] inline void fail(const char* what) {
    std::fprintf(stderr, "fuzz invariant broken: %s\n", what);
    std::abort();
}

inline void check(bool ok, const char* what) {
    if (!ok) {
        fail(what);
    }
}

}  // namespace pubsub::fuzz
