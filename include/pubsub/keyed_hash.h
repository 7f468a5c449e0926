#pragma once
// A keyed hash (SipHash-2-4) for every table indexed by names that clients
// choose (channel ids, presence ids, group names).  With an unkeyed hash a
// client can pick thousands of names that land in one bucket and make every
// lookup walk them; with a secret random key it cannot predict where a name
// lands.
//
// Tables in a shared-memory zone keep their key in the zone's root, made
// when the zone is first created, so that every worker and every later
// configuration (reload) computes the same hash.  Tables in one process's
// memory use processHashKey().

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace pubsub {

struct HashKey {
    uint64_t k0 = 0;
    uint64_t k1 = 0;
};

// SipHash-2-4 of `len` bytes (Aumasson and Bernstein, 2012).
uint64_t sipHash24(const HashKey& key, const void* data, size_t len);

inline uint64_t keyedHash(const HashKey& key, std::string_view s) {
    return sipHash24(key, s.data(), s.size());
}

// SipHash-2-4 of a byte string given in pieces: the result is the same as
// sipHash24() of the pieces concatenated.
class SipHasher {
public:
    explicit SipHasher(const HashKey& key);
    void update(const void* data, size_t len);
    void update(std::string_view s) { update(s.data(), s.size()); }
    uint64_t finish() const;

private:
    uint64_t v0_, v1_, v2_, v3_;
    uint64_t tail_ = 0;  // bytes not yet in a full word, little-endian
    size_t tailLen_ = 0;
    uint64_t total_ = 0;
};

// A random key from the kernel's generator (getrandom(2), else
// /dev/urandom; the clock, pid and addresses as a last resort).
HashKey randomHashKey();

// One random key for this process's own tables, made on first use.
const HashKey& processHashKey();

// For std::unordered_map / unordered_set keyed by client-chosen strings.
struct KeyedStringHash {
    HashKey key = processHashKey();

    KeyedStringHash() = default;
    explicit KeyedStringHash(const HashKey& k) : key(k) {}
    size_t operator()(std::string_view s) const { return static_cast<size_t>(keyedHash(key, s)); }
};

}  // namespace pubsub
