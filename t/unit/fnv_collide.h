#pragma once
// Channel ids that all land in one bucket of a table hashed with unkeyed
// 64-bit FNV-1a (what the channel and presence tables used before they were
// keyed), as a hostile client would make them.  Used by the unit tests and
// by bench/hashflood.
//
// The low k bits of FNV-1a's state depend only on the low k bits of the
// previous state and on the input byte (xor, then a multiplication modulo
// 2^64), so two blocks that collide in the low 32 bits from some state keep
// colliding whatever follows.  A birthday search finds such a pair for each
// of n stages (about 2^16 tries each); picking either block of every stage
// gives 2^n ids whose hashes agree in their low 32 bits: one bucket of any
// power-of-two table up to 2^32 buckets.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace pubsub_test {

constexpr uint64_t kFnvBasis = 1469598103934665603ULL;
constexpr uint64_t kFnvPrime = 1099511628211ULL;

inline uint64_t fnv1a(std::string_view s, uint64_t h = kFnvBasis) {
    for (unsigned char c : s) {
        h ^= c;
        h *= kFnvPrime;
    }
    return h;
}

// `count` distinct ids whose FNV-1a hashes agree in the low 32 bits.
inline std::vector<std::string> fnvCollidingIds(size_t count) {
    static const char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    constexpr uint64_t kLow = 0xffffffffULL;
    // Blocks of 6 characters drawn from a fixed pseudo-random sequence.
    auto block = [](uint64_t n) {
        uint64_t z = n * 0x9e3779b97f4a7c15ULL;  // splitmix64
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        z ^= z >> 31;
        std::string b;
        for (int i = 0; i < 6; i++) {
            b.push_back(kAlphabet[z % 36]);
            z /= 36;
        }
        return b;
    };
    std::vector<std::pair<std::string, std::string>> stages;
    uint64_t state = kFnvBasis;
    uint64_t next = 0;  // blocks are never reused: ids stay distinct
    while ((size_t{1} << stages.size()) < count) {
        std::unordered_map<uint64_t, uint64_t> seen;
        seen.reserve(1 << 18);
        for (;; next++) {
            uint64_t low = fnv1a(block(next), state) & kLow;
            auto it = seen.find(low);
            if (it != seen.end() && block(it->second) != block(next)) {
                stages.emplace_back(block(it->second), block(next));
                state = fnv1a(block(next), state);
                next++;
                break;
            }
            seen.emplace(low, next);
        }
    }
    std::vector<std::string> out;
    out.reserve(count);
    for (size_t i = 0; i < count; i++) {
        std::string id;
        for (size_t s = 0; s < stages.size(); s++) {
            id += (i >> s) & 1 ? stages[s].second : stages[s].first;
        }
        out.push_back(id);
    }
    return out;
}

}  // namespace pubsub_test
